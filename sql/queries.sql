-- Named queries, loaded by sisu/db/queries.py. Parameters use psycopg's %(name)s style.
-- Each query's first comment line says what it answers; queries are grouped by the code
-- that runs them.

-- ================================================================================================
-- Worker: heartbeat, claim, queue settings, resume, failover, shutdown (sisu/worker/).
-- ================================================================================================

-- name: worker_claim_check
-- The heartbeat row holding an executor id, and how long it has been silent (start-up claim).
SELECT executor_id, pid, host, heartbeat_at, stopped_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS age_seconds
FROM app.workers
WHERE executor_id = %(executor_id)s;

-- name: worker_start
-- A worker starting under its executor id: its heartbeat row, created or taken over.
INSERT INTO app.workers (executor_id, app_version, pid, host, admin_port, queues, concurrency)
VALUES (%(executor_id)s, %(app_version)s, %(pid)s, %(host)s, %(admin_port)s, %(queues)s,
        %(concurrency)s)
ON CONFLICT (executor_id) DO UPDATE
SET app_version = EXCLUDED.app_version, pid = EXCLUDED.pid, host = EXCLUDED.host,
    admin_port = EXCLUDED.admin_port, queues = EXCLUDED.queues,
    concurrency = EXCLUDED.concurrency, started_at = now(), heartbeat_at = now(),
    stopped_at = NULL;

-- name: worker_heartbeat
-- A worker's heartbeat, with the workflows a thread of it runs right now.
UPDATE app.workers SET heartbeat_at = now(), active_workflows = %(active_workflows)s
WHERE executor_id = %(executor_id)s AND pid = %(pid)s;

-- name: worker_stopped
-- A worker stopping cleanly: its heartbeat row says so.
UPDATE app.workers SET stopped_at = now()
WHERE executor_id = %(executor_id)s AND pid = %(pid)s;

-- name: queue_settings_set
-- A worker stored a queue's settings (in dbos.queues, through DBOS) before its first dequeue.
INSERT INTO app.queue_settings (queue_name, settings, set_by)
VALUES (%(queue_name)s, %(settings)s, %(set_by)s)
ON CONFLICT (queue_name) DO UPDATE
SET settings = EXCLUDED.settings, set_by = EXCLUDED.set_by, set_at = now();

-- name: executor_pending_workflows
-- The workflows the database says this executor runs (the worker's resume sweep).
SELECT workflow_uuid AS workflow_id FROM dbos.workflow_status
WHERE executor_id = %(executor_id)s AND status = 'PENDING'
  AND application_version = %(app_version)s;

-- name: executor_pending_count
-- How many workflows are PENDING on an executor (a stopping worker's grace period).
SELECT count(*)::int AS n FROM dbos.workflow_status
WHERE executor_id = %(executor_id)s AND status = 'PENDING';

-- name: failover_candidates
-- Executors of this app version that died (no heartbeat within the timeout, or stopped)
-- with workflows still pending on them.
SELECT DISTINCT w.executor_id
FROM dbos.workflow_status w
LEFT JOIN app.workers k ON k.executor_id = w.executor_id
WHERE w.status = 'PENDING' AND w.application_version = %(app_version)s
  AND w.executor_id <> %(me)s
  AND (k.executor_id IS NULL
       OR k.stopped_at IS NOT NULL
       OR k.heartbeat_at < now() - make_interval(secs => %(timeout_seconds)s));

-- name: failover_lock
-- One live worker per dead executor does the recovery (released at the end of the transaction).
SELECT pg_try_advisory_xact_lock(1936291189, hashtext(%(executor_id)s)) AS won;

-- name: record_failover
-- A live worker recovered a dead executor's workflows: who, whose, how many.
INSERT INTO app.failovers (dead_executor_id, recovered_by, app_version, workflows, workflow_ids)
VALUES (%(dead)s, %(me)s, %(app_version)s, %(n)s, %(ids)s);

-- ================================================================================================
-- Run-loop steps: what RunIntentWF's steps read and write (sisu/workflow/steps/).
-- ================================================================================================

-- name: get_intent
-- One intent, whole (a step of a run enqueued before the intent travelled with its workflow).
SELECT id, goal, inputs, constraints, connectors, repo, ref, commit_sha, created_at
FROM app.intents WHERE id = %(id)s;

-- name: next_attempt
-- The attempt number a step's next attempt row gets.
SELECT coalesce(max(attempt), 0) + 1 AS attempt
FROM app.run_steps WHERE run_id = %(run_id)s AND step_id = %(step_id)s;

-- name: step_trace
-- What a step's span is annotated with on a tracing worker: the run's traceId, and the number
-- this attempt's row gets.
SELECT r.trace_id,
       (SELECT coalesce(max(s.attempt), 0) + 1 FROM app.run_steps s
        WHERE s.run_id = %(run_id)s AND s.step_id = %(step_id)s) AS attempt
FROM app.runs r WHERE r.id = %(run_id)s;

-- name: insert_step_attempt
-- One step attempt row, finished now (a failed attempt, recorded with its error).
INSERT INTO app.run_steps (run_id, step_id, attempt, phase, output, error, started_at, finished_at)
VALUES (%(run_id)s, %(step_id)s, %(attempt)s, %(phase)s, %(output)s, %(error)s, %(started_at)s,
        clock_timestamp());

-- name: step_succeeded
-- One round trip for a completed step: its attempt row (numbered after the step's failed
-- attempts), and the run moved forward (the last step finishes it). A canceled run stays
-- canceled.
WITH attempt AS (
    INSERT INTO app.run_steps
        (run_id, step_id, attempt, phase, output, error, started_at, finished_at)
    SELECT %(run_id)s, %(step_id)s, coalesce(max(attempt), 0) + 1, 'succeeded', %(output)s, NULL,
           %(started_at)s, clock_timestamp()
    FROM app.run_steps WHERE run_id = %(run_id)s AND step_id = %(step_id)s
    RETURNING run_id
)
UPDATE app.runs
SET status = %(status)s, last_step = %(step_id)s, next_action = NULL, error = NULL,
    updated_at = clock_timestamp()
WHERE id = (SELECT run_id FROM attempt) AND status <> 'canceled';

-- name: run_finished_badly
-- A run ended failed or out of retries, with next action and error (canceled stays canceled).
UPDATE app.runs
SET status = %(status)s, next_action = %(next_action)s, error = %(error)s,
    updated_at = clock_timestamp()
WHERE id = %(run_id)s AND status <> 'canceled';

-- name: run_waiting_input
-- A run now waits for a human (status waiting_input, next action INPUT).
UPDATE app.runs
SET status = 'waiting_input', next_action = 'INPUT', updated_at = clock_timestamp()
WHERE id = %(run_id)s AND status <> 'canceled';

-- name: insert_opencode_call
-- The attempt is the step's: one more than its failed attempts so far.
INSERT INTO app.opencode_calls (run_id, step_id, request, response, compiler, model, attempt,
                                input_tokens, output_tokens, latency_ms, error)
SELECT %(run_id)s, %(step_id)s, %(request)s, %(response)s, %(compiler)s, %(model)s,
       count(*)::int + 1, %(input_tokens)s, %(output_tokens)s, %(latency_ms)s, %(error)s
FROM app.run_steps WHERE run_id = %(run_id)s AND step_id = %(step_id)s;

-- name: insert_artifact
-- One artifact of a step at a known index.
INSERT INTO app.artifacts (run_id, step_id, idx, kind, uri, inline, sha256)
VALUES (%(run_id)s, %(step_id)s, %(idx)s, %(kind)s, %(uri)s, %(inline)s, %(sha256)s);

-- name: insert_next_artifact
-- An artifact numbered after the step's earlier ones (a question card, then the decision).
INSERT INTO app.artifacts (run_id, step_id, idx, kind, uri, inline, sha256)
SELECT %(run_id)s, %(step_id)s, coalesce(max(idx), -1) + 1, %(kind)s, %(uri)s, %(inline)s,
       %(sha256)s
FROM app.artifacts WHERE run_id = %(run_id)s AND step_id = %(step_id)s;

-- name: receipt_lookup
-- Whether the mock outside system has seen a receipt key, and how often.
SELECT receipt_key, seen_count FROM app.mock_receipts WHERE receipt_key = %(receipt_key)s;

-- name: receipt_deliver
-- The mock outside system receiving a delivery: a repeat of a key it has seen counts as seen again.
INSERT INTO app.mock_receipts (receipt_key, run_id, step_id, task_key, payload_hash)
VALUES (%(receipt_key)s, %(run_id)s, %(step_id)s, %(task_key)s, %(payload_hash)s)
ON CONFLICT (receipt_key) DO UPDATE
SET seen_count = app.mock_receipts.seen_count + 1,
    attempts = app.mock_receipts.attempts + 1,
    last_seen_at = now()
RETURNING receipt_key, seen_count;

-- name: deliveries_lookup
-- The http executor's record of a run's keys: a key with delivered_at is never POSTed again.
SELECT idempotency_key, status_code, delivered_at
FROM app.deliveries
WHERE idempotency_key = ANY(%(keys)s);

-- name: delivery_attempt
-- Counted before the POST goes out, so a request in flight when its worker died still shows.
-- The status and answer are the latest attempt's: none until the receiver answers it.
INSERT INTO app.deliveries (idempotency_key, run_id, task_key, executor, url)
VALUES (%(key)s, %(run_id)s, %(task_key)s, %(executor)s, %(url)s)
ON CONFLICT (idempotency_key) DO UPDATE
SET attempts = app.deliveries.attempts + 1,
    url = EXCLUDED.url,
    status_code = NULL,
    response = NULL,
    last_attempt_at = now()
RETURNING attempts;

-- name: delivery_answered
-- The receiver's answer to the last attempt; the first 2xx marks the key delivered for good.
UPDATE app.deliveries
SET status_code = %(status_code)s,
    response = %(response)s,
    delivered_at = CASE WHEN %(delivered)s THEN coalesce(delivered_at, now()) ELSE delivered_at END
WHERE idempotency_key = %(key)s;

-- name: insert_mark
-- A crash-demo mark: CrashDemoWF's step records that it ran (no uniqueness, so a duplicate shows).
INSERT INTO app.marks (workflow_id, step)
VALUES (%(workflow_id)s, %(step)s)
RETURNING id;

-- ================================================================================================
-- Service writes: intents and runs (sisu/service/intents.py).
-- ================================================================================================

-- name: insert_intent
-- A new intent row (POST /intents, `sisu intent create`, bench).
INSERT INTO app.intents (id, goal, inputs, constraints, connectors, repo, ref, commit_sha)
VALUES (%(id)s, %(goal)s, %(inputs)s, %(constraints)s, %(connectors)s, %(repo)s, %(ref)s,
        %(commit_sha)s);

-- name: insert_intent_idempotent
-- With an Idempotency-Key: a concurrent insert of the same key waits for the first one and then
-- does nothing (no row returned); the caller reads the winner with intent_by_idempotency_key.
INSERT INTO app.intents (id, goal, inputs, constraints, connectors, repo, ref, commit_sha,
                         idempotency_key, request_hash)
VALUES (%(id)s, %(goal)s, %(inputs)s, %(constraints)s, %(connectors)s, %(repo)s, %(ref)s,
        %(commit_sha)s, %(idempotency_key)s, %(request_hash)s)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id;

-- name: intent_by_idempotency_key
-- The intent an Idempotency-Key already created, with the hash of its request.
SELECT id, request_hash FROM app.intents WHERE idempotency_key = %(idempotency_key)s;

-- name: lock_intent
-- The whole intent: start_run hands it to the run's workflow, whose steps then need not read it.
SELECT id, goal, inputs, constraints, connectors, repo, commit_sha
FROM app.intents WHERE id = %(id)s FOR UPDATE;

-- name: insert_run
-- A new run row, queued (written in the transaction that enqueues its workflow).
INSERT INTO app.runs (id, status, trace_id, lane, priority, queue_name, app_version)
VALUES (%(id)s, 'queued', %(trace_id)s, %(lane)s, %(priority)s, %(queue_name)s, %(app_version)s);

-- name: dedupe_holder
-- DBOS releases a deduplication id when its workflow leaves the queue (ENQUEUED or PENDING).
SELECT workflow_uuid AS run_id, coalesce(r.status, 'queued') AS status
FROM dbos.workflow_status w
LEFT JOIN app.runs r ON r.id = w.workflow_uuid
WHERE w.queue_name = %(queue_name)s AND w.deduplication_id = %(deduplication_id)s
  AND w.status IN ('ENQUEUED', 'PENDING')
LIMIT 1;

-- ================================================================================================
-- Service writes: human input and the inbox (sisu/service/human.py).
-- ================================================================================================

-- name: lock_run
-- One run's row, locked for a state change (answer, retry, cancel).
SELECT id, status, next_action, last_step, error, retry_count
FROM app.runs WHERE id = %(id)s FOR UPDATE;

-- name: human_event_by_key
-- A human event already received under this dedupe key.
SELECT id FROM app.human_events WHERE dedupe_key = %(dedupe_key)s;

-- name: insert_human_event
-- A human event received for a run.
INSERT INTO app.human_events (run_id, type, payload, dedupe_key)
VALUES (%(run_id)s, %(type)s, %(payload)s, %(key)s);

-- name: run_input_received
-- A waiting run got its answer: running again.
UPDATE app.runs SET status = 'running', next_action = NULL, updated_at = clock_timestamp()
WHERE id = %(run_id)s;

-- name: question_card
-- The run's latest question card (AwaitInputST writes it under DecideST): read backwards along
-- app.artifacts' primary key (run_id, step_id, idx).
SELECT inline FROM app.artifacts
WHERE run_id = %(run_id)s AND step_id = 'DecideST' AND kind = 'question_card'
ORDER BY idx DESC LIMIT 1;

-- name: inbox
-- A page of the runs waiting for a human, longest waiting first, after the cursor (updated_at,
-- id) of the previous page's last run (a waiting run's updated_at is when it began to wait).
-- The partial index runs_waiting_idx gives the page in order; each run's latest card is then
-- one primary-key probe of app.artifacts, as in question_card.
SELECT r.id, r.updated_at, card.inline AS card
FROM app.runs r
JOIN LATERAL (
    SELECT inline FROM app.artifacts a
    WHERE a.run_id = r.id AND a.step_id = 'DecideST' AND a.kind = 'question_card'
    ORDER BY a.idx DESC LIMIT 1
) card ON true
WHERE r.status = 'waiting_input'
  AND (r.updated_at, r.id) > (coalesce(%(after_at)s::timestamptz, '-infinity'),
                              coalesce(%(after_id)s::text, ''))
ORDER BY r.updated_at, r.id
LIMIT %(limit)s;

-- ================================================================================================
-- Service writes: retry, cancel and resume (sisu/service/repair.py).
-- ================================================================================================

-- name: retry_start_step
-- Where a retry resumes: the function after the last stable step that succeeded.
SELECT coalesce(max(function_id), 0) + 1 AS start_step
FROM dbos.operation_outputs
WHERE workflow_uuid = %(workflow_id)s AND error IS NULL
  AND function_name IN ('CompileST', 'ApplyPatchST', 'DecideST', 'ExecuteST');

-- name: run_retry_undone
-- The rewind failed: put the run back as it was.
UPDATE app.runs
SET status = %(status)s, next_action = %(next_action)s, error = %(error)s,
    retry_count = retry_count - 1, updated_at = clock_timestamp()
WHERE id = %(run_id)s;

-- name: delete_datasource_checkpoints
-- A run's datasource checkpoints from a step on, so that a rewound workflow runs those steps again.
DELETE FROM dbos.datasource_outputs
WHERE workflow_id = %(workflow_id)s AND step_id >= %(start_step)s;

-- name: run_retried
-- A run retried: queued again, its retry count one higher.
UPDATE app.runs
SET status = 'queued', next_action = NULL, error = NULL, retry_count = retry_count + 1,
    updated_at = clock_timestamp()
WHERE id = %(run_id)s;

-- name: run_canceled
-- A run canceled.
UPDATE app.runs
SET status = 'canceled', next_action = NULL, updated_at = clock_timestamp()
WHERE id = %(run_id)s;

-- name: run_ids_by_status
-- The ids of every run in one status, oldest first (bulk retry and cancel).
SELECT id FROM app.runs WHERE status = %(status)s ORDER BY created_at;

-- name: workflow_resume_point
-- The step a moved run resumes at: the first function without a recorded output — in DBOS's
-- step record or in the datasource checkpoints (a step can commit its checkpoint and die
-- before DBOS records it; that step is done and replays, it must not run again).
SELECT w.status,
       greatest(
           (SELECT coalesce(max(function_id), 0) FROM dbos.operation_outputs o
            WHERE o.workflow_uuid = w.workflow_uuid),
           (SELECT coalesce(max(step_id), 0) FROM dbos.datasource_outputs d
            WHERE d.workflow_id = w.workflow_uuid AND d.error IS NULL)
       ) + 1 AS start_step
FROM dbos.workflow_status w
WHERE w.workflow_uuid = %(workflow_id)s;

-- name: run_moved
-- A stranded run moved to another app version (`sisu run resume`).
UPDATE app.runs SET app_version = %(app_version)s, updated_at = clock_timestamp()
WHERE id = %(run_id)s;

-- ================================================================================================
-- Service reads: runs, lists, queues, workers (sisu/service/views, queues, workers, health).
-- ================================================================================================

-- name: get_run
-- One run's row (RunView, the run's current state).
SELECT id, status, next_action, last_step, error, retry_count, trace_id, lane, priority,
       queue_name, app_version, created_at, updated_at
FROM app.runs WHERE id = %(id)s;

-- name: list_runs
-- A page of runs, newest first, after the cursor (created_at, id) of the previous page's last
-- run; no cursor starts before every run. One index range scan (runs_created_id_idx) that stops
-- after `limit` rows: never OFFSET, which would read every skipped row.
SELECT id, status, next_action, last_step, retry_count, trace_id, lane, priority,
       created_at, updated_at
FROM app.runs
WHERE (created_at, id) < (coalesce(%(after_at)s::timestamptz, 'infinity'),
                          coalesce(%(after_id)s::text, ''))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: list_runs_by_status
-- The same within one status (runs_status_created_id_idx). A query of its own: "status = $1
-- OR $1 IS NULL" cannot be an index condition in a cached generic plan.
SELECT id, status, next_action, last_step, retry_count, trace_id, lane, priority,
       created_at, updated_at
FROM app.runs
WHERE status = %(status)s
  AND (created_at, id) < (coalesce(%(after_at)s::timestamptz, 'infinity'),
                          coalesce(%(after_id)s::text, ''))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: run_steps
-- A run's step attempts, in step order then attempt order (RunView.steps).
SELECT step_id, attempt, phase, output, error, started_at, finished_at
FROM app.run_steps
WHERE run_id = %(run_id)s
ORDER BY array_position(ARRAY['CompileST', 'ApplyPatchST', 'DecideST', 'ExecuteST'], step_id),
         attempt;

-- name: run_artifacts
-- A run's artifacts, in step order then index order (RunView.artifacts).
SELECT step_id, idx, kind, uri, inline, sha256
FROM app.artifacts
WHERE run_id = %(run_id)s
ORDER BY array_position(ARRAY['CompileST', 'ApplyPatchST', 'DecideST', 'ExecuteST'], step_id),
         idx;

-- name: run_compiler_calls
-- A run's compiler calls, oldest first (`sisu run calls`, GET /runs/{id}/calls).
SELECT id, step_id, compiler, model, attempt, request, response, error, input_tokens,
       output_tokens, latency_ms, created_at
FROM app.opencode_calls WHERE run_id = %(run_id)s ORDER BY id;

-- name: run_patch
-- The diff ApplyPatchST recorded for a run (`sisu run patch`, GET /runs/{id}/patch).
SELECT inline FROM app.artifacts
WHERE run_id = %(run_id)s AND step_id = 'ApplyPatchST' AND kind = 'patch'
ORDER BY idx DESC LIMIT 1;

-- name: run_compiler_summary
-- Which compiler and model planned a run (its latest call), and what its calls cost.
SELECT (array_agg(compiler ORDER BY id DESC))[1] AS name,
       (array_agg(model ORDER BY id DESC))[1] AS model,
       count(*)::int AS requests,
       sum(input_tokens)::int AS input_tokens, sum(output_tokens)::int AS output_tokens
FROM app.opencode_calls WHERE run_id = %(run_id)s HAVING count(*) > 0;

-- name: queue_depth
-- Runs waiting or executing per queue, lane, partition and status, from DBOS's in-flight
-- workflows (idx_workflow_status_in_flight_v2). The lane is sisu's: a run in a queue is queued,
-- running or waiting in app.runs too, so its lane comes from runs_active_idx (index only, the
-- runs in flight), never from a scan of every run ever made. The rare workflow not found there
-- (a run whose end app.runs shows a moment before DBOS does, or no sisu run at all: no lane)
-- is grouped alone and looked up by its id afterwards, a lookup the planner costs as what it
-- is, a few rows: a per-row lookup it would cost for every in-flight workflow.
WITH depth AS MATERIALIZED (
    SELECT w.queue_name, a.lane, w.queue_partition_key AS partition_key, w.status,
           CASE WHEN a.id IS NULL THEN w.workflow_uuid END AS unmatched,
           count(*)::int AS n, min(w.created_at) AS oldest_ms
    FROM dbos.workflow_status w
    LEFT JOIN app.runs a
           ON a.id = w.workflow_uuid AND a.status IN ('queued', 'running', 'waiting_input')
    WHERE w.queue_name IS NOT NULL AND w.status IN ('ENQUEUED', 'PENDING')
    GROUP BY 1, 2, 3, 4, 5
), unmatched AS (
    SELECT id, lane FROM app.runs
    WHERE id = ANY (ARRAY(SELECT unmatched FROM depth WHERE unmatched IS NOT NULL))
)
SELECT d.queue_name, coalesce(d.lane, u.lane) AS lane, d.partition_key, d.status,
       sum(d.n)::int AS n,
       extract(epoch FROM now() - to_timestamp(min(d.oldest_ms) / 1000.0))::float8
           AS oldest_age_seconds
FROM depth d
LEFT JOIN unmatched u ON u.id = d.unmatched
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2 NULLS LAST, 3 NULLS FIRST, 4;

-- name: queue_settings_stored
-- The queue settings in force for the whole fleet, and which worker set them, when.
SELECT q.name AS queue_name, q.worker_concurrency, q.concurrency AS global_concurrency,
       q.partition_concurrency, q.polling_interval_sec, s.set_by, s.set_at
FROM dbos.queues q LEFT JOIN app.queue_settings s ON s.queue_name = q.name
WHERE q.name = ANY(%(names)s)
ORDER BY q.name;

-- name: run_unserved
-- A run DBOS holds enqueued, with no live worker of its app version on its queue: what
-- `intent run --wait` and `run watch` tell the operator instead of waiting in silence. No row
-- when the run is not enqueued, or a live worker can take it.
SELECT w.application_version AS app_version, w.queue_name
FROM dbos.workflow_status w
WHERE w.workflow_uuid = %(run_id)s AND w.status = 'ENQUEUED'
  AND NOT EXISTS (
      SELECT 1 FROM app.workers k
      WHERE k.stopped_at IS NULL AND k.app_version = w.application_version
        AND w.queue_name = ANY (k.queues)
        AND k.heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s));

-- name: live_workers
-- Workers whose heartbeat is recent and who have not stopped (healthz, doctor).
SELECT executor_id, app_version, pid, host, admin_port, queues, concurrency,
       started_at, heartbeat_at
FROM app.workers
WHERE stopped_at IS NULL
  AND heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s)
ORDER BY executor_id;

-- name: workers_list
-- Every worker ever seen, live first, with its workflows in flight (`sisu workers`).
SELECT k.executor_id, k.host, k.pid, k.app_version, k.admin_port, k.concurrency, k.started_at,
       k.heartbeat_at, k.stopped_at,
       (k.stopped_at IS NULL
        AND k.heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s)) AS alive,
       (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.executor_id = k.executor_id AND w.status = 'PENDING')::int AS in_flight
FROM app.workers k
ORDER BY alive DESC, k.executor_id;

-- ================================================================================================
-- Audit: one oracle per law, each counting the rows that break it (sisu/audit/oracles.py).
-- ================================================================================================

-- name: audit_duplicate_effects
-- Deliveries the mock outside system received more than once (must be none).
SELECT receipt_key, run_id, step_id, seen_count
FROM app.mock_receipts
WHERE seen_count > 1 AND (%(run_ids)s::text[] IS NULL OR run_id = ANY(%(run_ids)s))
ORDER BY run_id, receipt_key;

-- name: audit_step_sequence
-- Succeeded runs whose succeeded step attempts are not exactly the four stable steps, in order
-- (each step by its first success; a tie in time goes by name). One pass over the succeeded
-- attempts (run_steps_succeeded_idx, index only), grouped by run; the steps as they are only
-- for the runs that break it.
WITH done AS (
    SELECT s.run_id,
           bool_and(s.step_id IN ('CompileST', 'ApplyPatchST', 'DecideST', 'ExecuteST'))
               AS only_four,
           -- NULL: the step never succeeded. A success without a finish time sorts last, as
           -- NULLS LAST would sort it.
           min(coalesce(s.finished_at, 'infinity')) FILTER (WHERE s.step_id = 'CompileST')
               AS compile_at,
           min(coalesce(s.finished_at, 'infinity')) FILTER (WHERE s.step_id = 'ApplyPatchST')
               AS apply_at,
           min(coalesce(s.finished_at, 'infinity')) FILTER (WHERE s.step_id = 'DecideST')
               AS decide_at,
           min(coalesce(s.finished_at, 'infinity')) FILTER (WHERE s.step_id = 'ExecuteST')
               AS execute_at
    FROM app.run_steps s
    WHERE s.phase = 'succeeded' AND (%(run_ids)s::text[] IS NULL OR s.run_id = ANY(%(run_ids)s))
    GROUP BY s.run_id
)
SELECT r.id AS run_id,
       ARRAY(SELECT step_id FROM app.run_steps
             WHERE run_id = r.id AND phase = 'succeeded'
             GROUP BY step_id ORDER BY min(finished_at), step_id) AS steps
FROM app.runs r
LEFT JOIN done d ON d.run_id = r.id
WHERE r.status = 'succeeded' AND (%(run_ids)s::text[] IS NULL OR r.id = ANY(%(run_ids)s))
  AND NOT coalesce(
      d.only_four
      AND (d.compile_at, 'CompileST') < (d.apply_at, 'ApplyPatchST')
      AND (d.apply_at, 'ApplyPatchST') < (d.decide_at, 'DecideST')
      AND (d.decide_at, 'DecideST') < (d.execute_at, 'ExecuteST'), false)
ORDER BY r.id;

-- name: audit_status_agreement
-- app.runs.status against dbos.workflow_status.status. A run's last step commits its outcome
-- a moment before DBOS records the workflow's end, so a run that ended within the last minute
-- may still show a PENDING workflow (longer, and a live executor should have finished it).
SELECT r.id AS run_id, r.status AS run_status, w.status AS workflow_status
FROM app.runs r
LEFT JOIN dbos.workflow_status w ON w.workflow_uuid = r.id
WHERE (%(run_ids)s::text[] IS NULL OR r.id = ANY(%(run_ids)s))
  AND NOT coalesce(
      (r.status = 'queued' AND w.status IN ('ENQUEUED', 'PENDING'))
   OR (r.status = 'running' AND w.status IN ('PENDING', 'ENQUEUED'))
   OR (r.status = 'waiting_input' AND w.status = 'PENDING')
   OR (r.status = 'succeeded' AND w.status = 'SUCCESS')
   OR (r.status = 'failed' AND w.status = 'ERROR')
   OR (r.status = 'retries_exceeded' AND w.status IN ('ERROR', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'))
   OR (r.status = 'canceled' AND w.status = 'CANCELLED')
   -- A change rejected at its approval gate: the workflow ended normally, the run is canceled.
   OR (r.status = 'canceled' AND w.status = 'SUCCESS' AND r.error->>'code' = 'rejected')
   OR (r.status IN ('succeeded', 'failed', 'retries_exceeded') AND w.status = 'PENDING'
       AND r.updated_at > now() - interval '1 minute'), false)
ORDER BY r.id;

-- name: audit_compiler_calls
-- Runs whose CompileST succeeded without a recorded compiler call (request and response).
SELECT s.run_id
FROM app.run_steps s
WHERE s.step_id = 'CompileST' AND s.phase = 'succeeded'
  AND (%(run_ids)s::text[] IS NULL OR s.run_id = ANY(%(run_ids)s))
  AND NOT EXISTS (
      SELECT 1 FROM app.opencode_calls c
      WHERE c.run_id = s.run_id AND c.step_id = 'CompileST'
        AND c.request IS NOT NULL AND c.response IS NOT NULL)
ORDER BY s.run_id;

-- name: audit_deliveries
-- Runs whose ExecuteST succeeded with the http executor (its output lists `deliveries`) with a
-- task (of its decision, or of that list) that app.deliveries does not show answered with a 2xx.
WITH http_runs AS (
    SELECT s.run_id, s.output -> 'deliveries' AS deliveries
    FROM app.run_steps s
    WHERE s.step_id = 'ExecuteST' AND s.phase = 'succeeded'
      AND jsonb_typeof(s.output -> 'deliveries') = 'array'
      AND (%(run_ids)s::text[] IS NULL OR s.run_id = ANY(%(run_ids)s))
),
tasks AS (
    SELECT h.run_id, t.value ->> 'taskKey' AS task_key
    FROM http_runs h, jsonb_array_elements(h.deliveries) t
    UNION
    SELECT d.run_id, t.value ->> 'taskKey'
    FROM app.run_steps d
    JOIN http_runs h ON h.run_id = d.run_id,
    jsonb_array_elements(CASE WHEN jsonb_typeof(d.output -> 'tasks') = 'array'
                              THEN d.output -> 'tasks' ELSE '[]'::jsonb END) t
    WHERE d.step_id = 'DecideST' AND d.phase = 'succeeded'
)
SELECT t.run_id, array_agg(t.task_key ORDER BY t.task_key) AS undelivered
FROM tasks t
LEFT JOIN app.deliveries d
       ON d.idempotency_key = t.run_id || ':ExecuteST:' || t.task_key
      AND d.status_code BETWEEN 200 AND 299
WHERE d.idempotency_key IS NULL
GROUP BY t.run_id
ORDER BY t.run_id;

-- name: audit_stranded_runs
-- Queued runs whose app version no live worker serves, and runs pending on a dead executor.
SELECT w.workflow_uuid AS run_id, w.status, w.application_version AS app_version,
       w.executor_id, 'no live worker serves app version ' || w.application_version AS reason
FROM dbos.workflow_status w
JOIN app.runs r ON r.id = w.workflow_uuid
WHERE w.status = 'ENQUEUED' AND (%(run_ids)s::text[] IS NULL OR r.id = ANY(%(run_ids)s))
  AND NOT EXISTS (
      SELECT 1 FROM app.workers k
      WHERE k.stopped_at IS NULL AND k.app_version = w.application_version
        AND k.heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s))
UNION ALL
SELECT w.workflow_uuid, w.status, w.application_version, w.executor_id,
       'pending on executor ' || w.executor_id || ', which has no recent heartbeat'
FROM dbos.workflow_status w
JOIN app.runs r ON r.id = w.workflow_uuid
WHERE w.status = 'PENDING' AND (%(run_ids)s::text[] IS NULL OR r.id = ANY(%(run_ids)s))
  AND NOT EXISTS (
      SELECT 1 FROM app.workers k
      WHERE k.executor_id = w.executor_id AND k.stopped_at IS NULL
        AND k.heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s))
ORDER BY 1;

-- name: audit_stalled_runs
-- Runs PENDING on a live worker whose heartbeat says no thread of it runs them, with no progress
-- for a while: the worker lost them (a database outage ended their threads) and has not resumed
-- them. A run waiting for a human, sleeping before a retry or inside a slow step is running.
SELECT w.workflow_uuid AS run_id, r.status, w.executor_id, w.application_version AS app_version,
       round(extract(epoch FROM now() - greatest(r.updated_at,
             to_timestamp(w.updated_at / 1000.0))))::int AS idle_seconds
FROM dbos.workflow_status w
JOIN app.runs r ON r.id = w.workflow_uuid
JOIN app.workers k ON k.executor_id = w.executor_id
WHERE w.status = 'PENDING' AND r.status <> 'waiting_input'
  AND (%(run_ids)s::text[] IS NULL OR r.id = ANY(%(run_ids)s))
  AND k.stopped_at IS NULL
  AND k.heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s)
  AND NOT (w.workflow_uuid = ANY (k.active_workflows))
  AND greatest(r.updated_at, to_timestamp(w.updated_at / 1000.0))
      < now() - make_interval(secs => %(stalled_after_seconds)s)
ORDER BY idle_seconds DESC, 1;

-- name: audit_unread_events
-- Human answers sent to runs that finished without reading them.
SELECT n.destination_uuid AS run_id, r.status, n.topic,
       to_timestamp(n.created_at_epoch_ms / 1000.0) AS sent_at
FROM dbos.notifications n
JOIN app.runs r ON r.id = n.destination_uuid
WHERE n.topic = 'human_input' AND NOT n.consumed
  AND r.status IN ('succeeded', 'failed', 'canceled', 'retries_exceeded')
  AND (%(run_ids)s::text[] IS NULL OR r.id = ANY(%(run_ids)s))
ORDER BY n.created_at_epoch_ms;

-- name: audit_orphan_intents
-- Intents older than the threshold that were never run: a client that created one and never
-- triggered it (or lost the reply and created another). A warning, not a broken law.
SELECT i.id AS intent_id, i.goal, i.idempotency_key, i.created_at
FROM app.intents i
WHERE i.created_at < now() - make_interval(secs => %(orphan_after_seconds)s)
  AND (%(run_ids)s::text[] IS NULL OR i.id = ANY(%(run_ids)s))
  AND NOT EXISTS (SELECT 1 FROM app.runs r WHERE r.id = i.id)
ORDER BY i.created_at, i.id;

-- ================================================================================================
-- Doctor: what is not making progress, and why (sisu/audit/doctor.py).
-- ================================================================================================

-- name: doctor_port_holder
-- The heartbeat row a process listening on a port is tied to: this host, this pid, that port as
-- its admin port. `started_epoch` lets doctor tell a reused pid (a process born after the row).
SELECT executor_id, app_version, heartbeat_at, stopped_at,
       extract(epoch FROM started_at)::float8 AS started_epoch,
       extract(epoch FROM now() - heartbeat_at)::float8 AS silent_seconds,
       (stopped_at IS NULL
        AND heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s)) AS alive
FROM app.workers
WHERE host = %(host)s AND pid = %(pid)s AND admin_port = %(port)s
ORDER BY started_at DESC
LIMIT 1;

-- name: doctor_stuck_versions
-- Queued runs by app version, with whether a live worker serves that version.
SELECT w.application_version AS app_version, count(*)::int AS n,
       min(r.id) AS example_run,
       extract(epoch FROM now() - to_timestamp(min(w.created_at) / 1000.0))::float8 AS oldest_s,
       EXISTS (
           SELECT 1 FROM app.workers k
           WHERE k.stopped_at IS NULL AND k.app_version = w.application_version
             AND k.heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s)
       ) AS served
FROM dbos.workflow_status w
JOIN app.runs r ON r.id = w.workflow_uuid
WHERE w.status = 'ENQUEUED'
GROUP BY w.application_version
ORDER BY w.application_version;

-- name: doctor_dead_executors
-- Runs pending on executors whose heartbeat stopped: DBOS's pending workflows of those
-- executors that are sisu runs (in flight in app.runs, runs_active_idx; or, having just ended
-- there, found by id).
SELECT w.executor_id, w.application_version AS app_version, count(*)::int AS n
FROM dbos.workflow_status w
LEFT JOIN app.runs a
       ON a.id = w.workflow_uuid AND a.status IN ('queued', 'running', 'waiting_input')
WHERE w.status = 'PENDING'
  AND NOT EXISTS (
      SELECT 1 FROM app.workers k
      WHERE k.executor_id = w.executor_id AND k.stopped_at IS NULL
        AND k.heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s))
  AND (a.id IS NOT NULL OR EXISTS (SELECT 1 FROM app.runs r WHERE r.id = w.workflow_uuid))
GROUP BY w.executor_id, w.application_version
ORDER BY w.executor_id;

-- ================================================================================================
-- gc: retention (sisu/service/gc.py).
-- ================================================================================================

-- name: gc_cutoff
-- Retention's cutoff, on the clock of the database (the one that stamps app.runs.updated_at).
SELECT now() - make_interval(secs => %(seconds)s) AS cutoff;

-- name: gc_lock_finished_runs
-- The next batch of runs with one finished status, last updated before the cutoff, oldest first
-- after the keyset (updated_at, id), each row locked. A row another transaction holds (a retry,
-- a cancel, an answer) is skipped, and FOR UPDATE re-reads the status of each row it locks, so a
-- run retried since this statement's snapshot no longer matches. A run whose workflow DBOS still
-- has in flight, or that a live worker's heartbeat says a thread still runs (a cancelled run's
-- step finishing its work), is left for a later gc.
SELECT r.id, r.status, r.updated_at
FROM app.runs r
WHERE r.status = %(status)s
  AND r.updated_at < %(cutoff)s
  AND (r.updated_at, r.id) > (%(after_at)s, %(after_id)s)
  AND NOT EXISTS (
      SELECT 1 FROM dbos.workflow_status w
      WHERE w.workflow_uuid = r.id
        AND w.status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'))
  AND NOT EXISTS (
      SELECT 1 FROM app.workers k
      WHERE k.stopped_at IS NULL
        AND k.heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s)
        AND r.id = ANY (k.active_workflows))
ORDER BY r.updated_at, r.id
LIMIT %(limit)s
FOR UPDATE OF r SKIP LOCKED;

-- name: gc_workflow_family
-- The runs' workflows and every workflow they started (DBOS child workflows), recursively.
WITH RECURSIVE family (id) AS (
    SELECT unnest(%(ids)s::text[])
    UNION
    SELECT w.workflow_uuid
    FROM dbos.workflow_status w JOIN family f ON w.parent_workflow_id = f.id
)
SELECT id FROM family;

-- name: gc_row_counts
-- The rows removing these runs removes, table by table: sisu's by run id, DBOS's by workflow
-- id (the runs' and their children's).
SELECT
    (SELECT count(*) FROM app.intents WHERE id = ANY (%(ids)s))::int AS "app.intents",
    (SELECT count(*) FROM app.runs WHERE id = ANY (%(ids)s))::int AS "app.runs",
    (SELECT count(*) FROM app.run_steps WHERE run_id = ANY (%(ids)s))::int AS "app.run_steps",
    (SELECT count(*) FROM app.artifacts WHERE run_id = ANY (%(ids)s))::int AS "app.artifacts",
    (SELECT count(*) FROM app.opencode_calls
     WHERE run_id = ANY (%(ids)s))::int AS "app.opencode_calls",
    (SELECT count(*) FROM app.human_events
     WHERE run_id = ANY (%(ids)s))::int AS "app.human_events",
    (SELECT count(*) FROM app.mock_receipts
     WHERE run_id = ANY (%(ids)s))::int AS "app.mock_receipts",
    (SELECT count(*) FROM app.deliveries WHERE run_id = ANY (%(ids)s))::int AS "app.deliveries",
    (SELECT count(*) FROM dbos.workflow_status
     WHERE workflow_uuid = ANY (%(family)s))::int AS "dbos.workflow_status",
    (SELECT count(*) FROM dbos.workflow_input
     WHERE workflow_uuid = ANY (%(family)s))::int AS "dbos.workflow_input",
    (SELECT count(*) FROM dbos.workflow_output
     WHERE workflow_uuid = ANY (%(family)s))::int AS "dbos.workflow_output",
    (SELECT count(*) FROM dbos.operation_outputs
     WHERE workflow_uuid = ANY (%(family)s))::int AS "dbos.operation_outputs",
    (SELECT count(*) FROM dbos.notifications
     WHERE destination_uuid = ANY (%(family)s))::int AS "dbos.notifications",
    (SELECT count(*) FROM dbos.workflow_events
     WHERE workflow_uuid = ANY (%(family)s))::int AS "dbos.workflow_events",
    (SELECT count(*) FROM dbos.workflow_events_history
     WHERE workflow_uuid = ANY (%(family)s))::int AS "dbos.workflow_events_history",
    (SELECT count(*) FROM dbos.streams WHERE workflow_uuid = ANY (%(family)s))::int AS "dbos.streams",
    (SELECT count(*) FROM dbos.datasource_outputs
     WHERE workflow_id = ANY (%(family)s))::int AS "dbos.datasource_outputs";

-- name: gc_delete_app_rows
-- sisu's rows of these runs, and the datasource checkpoints of their workflows (DBOS's
-- delete_workflows, which removes the rest of dbos.*, leaves those behind). One statement: the
-- foreign keys to app.runs and app.intents are checked at its end, after every part has run.
-- Worker history stays, forgetting these ids: a failover keeps its row (who recovered how many
-- runs of which dead executor), and a stopped worker's last heartbeat its row (a live worker's
-- cannot name them: a run a live worker runs is not selected).
WITH steps AS (DELETE FROM app.run_steps WHERE run_id = ANY (%(ids)s)),
     artifacts AS (DELETE FROM app.artifacts WHERE run_id = ANY (%(ids)s)),
     calls AS (DELETE FROM app.opencode_calls WHERE run_id = ANY (%(ids)s)),
     events AS (DELETE FROM app.human_events WHERE run_id = ANY (%(ids)s)),
     receipts AS (DELETE FROM app.mock_receipts WHERE run_id = ANY (%(ids)s)),
     deliveries AS (DELETE FROM app.deliveries WHERE run_id = ANY (%(ids)s)),
     failovers AS (
         UPDATE app.failovers
         SET workflow_ids = ARRAY(SELECT x FROM unnest(workflow_ids) WITH ORDINALITY AS u (x, n)
                                  WHERE x <> ALL (%(ids)s::text[]) ORDER BY n)
         WHERE workflow_ids && %(ids)s::text[]),
     heartbeats AS (
         UPDATE app.workers
         SET active_workflows = ARRAY(SELECT x FROM unnest(active_workflows) AS u (x)
                                      WHERE x <> ALL (%(ids)s::text[]))
         WHERE active_workflows && %(ids)s::text[]),
     checkpoints AS (DELETE FROM dbos.datasource_outputs WHERE workflow_id = ANY (%(family)s)),
     runs AS (DELETE FROM app.runs WHERE id = ANY (%(ids)s))
DELETE FROM app.intents WHERE id = ANY (%(ids)s);

-- ================================================================================================
-- sisu top: the live dashboard's frame (sisu/service/top.py).
-- ================================================================================================

-- name: top_snapshot
-- Makes the rest of this transaction read one snapshot: the numbers of a `sisu top` frame agree.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: top_clock
-- The database's clock when the frame's transaction began (every age in the frame is from it).
SELECT now() AS at;

-- name: top_status_counts
-- How many runs are in each status, every run counted (`sisu top` on a small history, --exact).
SELECT status, count(*)::bigint AS n
FROM app.runs
GROUP BY status;

-- name: top_in_flight_counts
-- How many runs are queued, running or waiting for a human, counted exactly.
-- Three short ranges of a status-leading index (runs_status_updated_idx), index only: the runs
-- in flight, a small part of the table however long the history.
SELECT status, count(*)::bigint AS n
FROM app.runs
WHERE status IN ('queued', 'running', 'waiting_input')
GROUP BY status;

-- name: top_status_statistics
-- What the planner knows about app.runs: rows, pages, each status's share, and when it learned.
-- reltuples and the shares are from the last ANALYZE; the rows now are reltuples scaled by the
-- table's pages now, as the planner scales them. A few catalog rows: no scan of app.runs.
SELECT c.reltuples::float8 AS reltuples, c.relpages::bigint AS relpages,
       (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint AS pages_now,
       s.most_common_vals::text::text[] AS statuses, s.most_common_freqs::float8[] AS shares,
       greatest(pg_stat_get_last_analyze_time(c.oid),
                pg_stat_get_last_autoanalyze_time(c.oid)) AS analyzed_at
FROM pg_class c
LEFT JOIN pg_stats s ON s.schemaname = 'app' AND s.tablename = 'runs' AND s.attname = 'status'
WHERE c.oid = 'app.runs'::regclass;

-- name: top_throughput
-- How many runs reached a terminal status in each of the last `minutes` minutes (0: the last).
-- One range of runs_status_updated_idx per terminal status, index only: as many entries as runs
-- finished in the window, whatever the history. A finished run's updated_at is when it finished.
SELECT greatest(floor(extract(epoch FROM now() - updated_at) / 60), 0)::int AS minutes_ago,
       count(*)::int AS finished,
       count(*) FILTER (WHERE status = 'succeeded')::int AS succeeded
FROM app.runs
WHERE status IN ('succeeded', 'failed', 'canceled', 'retries_exceeded')
  AND updated_at > now() - make_interval(mins => %(minutes)s)
GROUP BY 1;

-- name: top_step_latency
-- Step attempt latency (p50, p95) per step and over all steps, in recently finished runs.
-- The attempts that finished in the last `minutes` minutes, of the (at most `runs`) runs that
-- finished last in that window: each terminal status's newest, read backwards along
-- runs_status_updated_idx and merged, then their attempts by app.run_steps' primary key. No
-- index on the attempts' times: the hottest table gets no extra index to maintain.
WITH recent AS (
    SELECT id FROM (
        (SELECT id, updated_at FROM app.runs WHERE status = 'succeeded'
           AND updated_at > now() - make_interval(mins => %(minutes)s)
         ORDER BY updated_at DESC LIMIT %(runs)s)
        UNION ALL
        (SELECT id, updated_at FROM app.runs WHERE status = 'failed'
           AND updated_at > now() - make_interval(mins => %(minutes)s)
         ORDER BY updated_at DESC LIMIT %(runs)s)
        UNION ALL
        (SELECT id, updated_at FROM app.runs WHERE status = 'canceled'
           AND updated_at > now() - make_interval(mins => %(minutes)s)
         ORDER BY updated_at DESC LIMIT %(runs)s)
        UNION ALL
        (SELECT id, updated_at FROM app.runs WHERE status = 'retries_exceeded'
           AND updated_at > now() - make_interval(mins => %(minutes)s)
         ORDER BY updated_at DESC LIMIT %(runs)s)
    ) finished
    ORDER BY updated_at DESC
    LIMIT %(runs)s
)
SELECT s.step_id, count(*)::int AS attempts, count(DISTINCT s.run_id)::int AS runs,
       1000 * percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM s.finished_at - s.started_at))::float8 AS p50_ms,
       1000 * percentile_cont(0.95) WITHIN GROUP (
           ORDER BY extract(epoch FROM s.finished_at - s.started_at))::float8 AS p95_ms
FROM recent r
JOIN app.run_steps s ON s.run_id = r.id
WHERE s.finished_at > now() - make_interval(mins => %(minutes)s)
GROUP BY ROLLUP (s.step_id);

-- name: top_inbox
-- How many runs wait for a human, and how long the longest has waited (index only).
SELECT count(*)::int AS n,
       -- (greatest() skips a NULL: with nobody waiting there is no oldest, not an age of 0)
       CASE WHEN count(*) > 0
            THEN greatest(extract(epoch FROM now() - min(updated_at)), 0)::float8
       END AS oldest_age_seconds
FROM app.runs
WHERE status = 'waiting_input';

-- name: top_failures
-- The last `limit` runs that failed or ran out of attempts, newest first, with their error code.
-- The newest of each of the two statuses, read backwards along runs_status_updated_idx, merged.
SELECT id, status, error ->> 'code' AS code, coalesce(error ->> 'step', last_step) AS step,
       error ->> 'message' AS message, updated_at,
       greatest(extract(epoch FROM now() - updated_at), 0)::float8 AS age_seconds
FROM (
    (SELECT id, status, error, last_step, updated_at FROM app.runs WHERE status = 'failed'
     ORDER BY updated_at DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT id, status, error, last_step, updated_at FROM app.runs
     WHERE status = 'retries_exceeded' ORDER BY updated_at DESC LIMIT %(limit)s)
) failed
ORDER BY updated_at DESC, id DESC
LIMIT %(limit)s;

-- name: top_workers
-- The workers that have not stopped, alive first, with heartbeat age and runs in flight on each.
-- In flight: the worker's PENDING workflows, from DBOS's partial index of PENDING workflows
-- (idx_workflow_status_pending), never from every workflow an executor has ever run.
SELECT k.executor_id, k.host, k.pid, k.app_version,
       greatest(extract(epoch FROM now() - k.heartbeat_at), 0)::float8 AS heartbeat_age_seconds,
       (k.heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s)) AS alive,
       coalesce(f.n, 0)::int AS in_flight
FROM app.workers k
LEFT JOIN (
    SELECT executor_id, count(*) AS n FROM dbos.workflow_status
    WHERE status = 'PENDING' GROUP BY executor_id
) f ON f.executor_id = k.executor_id
WHERE k.stopped_at IS NULL
ORDER BY alive DESC, k.heartbeat_at DESC, k.executor_id
LIMIT %(limit)s;

-- ================================================================================================
-- Metrics: the database gauges of GET /metrics (sisu/metrics.py).
-- ================================================================================================

-- name: metrics_runs_in_flight
-- How many runs are queued, running or waiting for a human, by status (the /metrics gauges).
-- Three short range scans of runs_status_updated_idx, index only: the runs in flight, never the
-- whole history (ended runs are counted by the workers' sisu_runs_total instead).
SELECT status, count(*)::int AS n
FROM app.runs
WHERE status IN ('queued', 'running', 'waiting_input')
GROUP BY status
ORDER BY status;

-- name: metrics_worker_heartbeats
-- How long ago each live worker last beat, by the database's clock (the /metrics gauge).
SELECT executor_id, extract(epoch FROM now() - heartbeat_at)::float8 AS age_seconds
FROM app.workers
WHERE stopped_at IS NULL
  AND heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s)
ORDER BY executor_id;

-- ================================================================================================
-- Bench (sisu/drills/bench.py).
-- ================================================================================================

-- name: bench_timings
-- Per workflow: enqueue to start, start to finish (ms), from DBOS's own timestamps. DBOS stamps
-- the start with now() of the dequeuing transaction, which may have begun a few milliseconds
-- before the enqueue committed: such a start counts as immediate, not as negative.
SELECT workflow_uuid, status, created_at, started_at_epoch_ms, completed_at,
       greatest(started_at_epoch_ms - created_at, 0)::float8 AS enqueue_to_start_ms,
       (coalesce(completed_at, updated_at) - started_at_epoch_ms)::float8 AS run_ms
FROM dbos.workflow_status
WHERE workflow_uuid = ANY(%(ids)s);

-- ================================================================================================
-- Drills: the crash demo and the chaos drills (sisu/drills/).
-- ================================================================================================

-- name: workflow_status
-- One workflow's row in dbos.workflow_status: status, executor, app version, timestamps.
SELECT workflow_uuid AS workflow_id, status, executor_id, application_version,
       created_at, updated_at, started_at_epoch_ms
FROM dbos.workflow_status
WHERE workflow_uuid = %(workflow_id)s;

-- name: mark_counts
-- How many times each crash-demo step ran for one workflow, first and last time.
SELECT step, count(*)::int AS n, min(created_at) AS first_at, max(created_at) AS last_at
FROM app.marks
WHERE workflow_id = %(workflow_id)s
GROUP BY step;

-- name: record_drill_start
-- A drill's workflow started (app.workflow_runs).
INSERT INTO app.workflow_runs (workflow_id, kind)
VALUES (%(workflow_id)s, %(kind)s);

-- name: record_drill_kill
-- Which worker pid a drill killed, and when.
UPDATE app.workflow_runs
SET killed_pid = %(killed_pid)s, killed_at = %(killed_at)s
WHERE workflow_id = %(workflow_id)s;

-- name: record_drill_end
-- How a drill ended: the pid that finished the workflow, and whether it passed.
UPDATE app.workflow_runs
SET resumed_pid = %(resumed_pid)s, finished_at = now(), ok = %(ok)s, detail = %(detail)s
WHERE workflow_id = %(workflow_id)s;

-- name: chaos_run_evidence
-- A run after a chaos kill: its status, its receipts, and whether ExecuteST succeeded.
SELECT r.updated_at, r.status,
       (SELECT count(*) FROM app.mock_receipts m WHERE m.run_id = r.id)::int AS receipts,
       EXISTS (SELECT 1 FROM app.run_steps s
               WHERE s.run_id = r.id AND s.step_id = 'ExecuteST' AND s.phase = 'succeeded')
           AS execute_done
FROM app.runs r WHERE r.id = %(run_id)s;

-- name: chaos_statuses
-- How many of a drill's runs are in each status.
SELECT status, count(*)::int AS n FROM app.runs WHERE id = ANY(%(run_ids)s) GROUP BY status;

-- name: chaos_drill_intents
-- Intents a drill's clients created (their goals start with the drill's tag), accepted or not.
SELECT count(*)::int AS n FROM app.intents WHERE starts_with(goal, %(prefix)s);
