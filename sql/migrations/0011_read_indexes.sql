-- Indexes for the reads that go over the whole history (`sisu audit`), measured on a million
-- runs with `sisu bench --history` (docs/PERFORMANCE.md). Each is partial or narrow: what one
-- check reads, not a copy of the table. (Plain CREATE INDEX, as in 0009: the runner applies a
-- migration in one transaction.)

-- audit step_sequence: every succeeded run's succeeded attempts, grouped by run, read from the
-- index alone (the attempts' outputs, most of the table, stay unread).
CREATE INDEX run_steps_succeeded_idx ON app.run_steps (run_id, step_id, finished_at)
    WHERE phase = 'succeeded';

-- audit compiler_calls: the runs with a recorded compile (request and response), index only.
-- (request is NOT NULL by its column: the planner drops that test from the query, so the
-- predicate must not carry it, or the index would never be chosen.)
CREATE INDEX opencode_calls_compiled_idx ON app.opencode_calls (run_id)
    WHERE step_id = 'CompileST' AND response IS NOT NULL;

-- audit duplicate_effects: the receipts seen more than once, which must be none.
CREATE INDEX mock_receipts_repeated_idx ON app.mock_receipts (run_id, receipt_key)
    WHERE seen_count > 1;

-- audit deliveries: the runs the http executor finished (their ExecuteST output lists its
-- deliveries), not every ExecuteST output parsed.
CREATE INDEX run_steps_http_idx ON app.run_steps (run_id)
    WHERE step_id = 'ExecuteST' AND phase = 'succeeded'
      AND jsonb_typeof(output -> 'deliveries') = 'array';

-- queue list, doctor, audit: the runs in flight (queued, running, waiting for a human) and their
-- lane, index only. DBOS's in-flight workflows are matched with these, not with every run ever
-- made: a small part of the table, however long the history.
CREATE INDEX runs_active_idx ON app.runs (id) INCLUDE (lane)
    WHERE status IN ('queued', 'running', 'waiting_input');
