-- Every compiler call, as the model compiler will make them: which compiler and model, the
-- attempt of the step it belongs to, tokens, latency, and the error when the call failed.
ALTER TABLE app.opencode_calls
    ADD COLUMN compiler      text NOT NULL DEFAULT 'builtin',
    ADD COLUMN model         text,
    ADD COLUMN attempt       integer NOT NULL DEFAULT 1,
    ADD COLUMN input_tokens  integer,
    ADD COLUMN output_tokens integer,
    ADD COLUMN latency_ms    integer,
    ADD COLUMN error         jsonb;
