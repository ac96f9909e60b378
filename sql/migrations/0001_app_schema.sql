-- sisu's own tables. DBOS owns schema dbos; sisu never alters it.

CREATE TABLE app.intents (
    id          text PRIMARY KEY,
    goal        text NOT NULL,
    inputs      jsonb NOT NULL DEFAULT '{}'::jsonb,
    constraints jsonb NOT NULL DEFAULT '{}'::jsonb,
    connectors  jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One run per intent: runs.id = intents.id = the DBOS workflow id.
CREATE TABLE app.runs (
    id          text PRIMARY KEY REFERENCES app.intents (id),
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'waiting_input',
                    'succeeded', 'failed', 'canceled', 'retries_exceeded')),
    next_action text CHECK (next_action IN ('REPAIR', 'INPUT')),
    last_step   text,
    error       jsonb,
    retry_count integer NOT NULL DEFAULT 0,
    trace_id    text,
    lane        text NOT NULL DEFAULT 'batch',
    priority    integer,
    queue_name  text NOT NULL,
    app_version text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_status_created_idx ON app.runs (status, created_at);

-- One row per step attempt.
CREATE TABLE app.run_steps (
    run_id      text NOT NULL REFERENCES app.runs (id),
    step_id     text NOT NULL,
    attempt     integer NOT NULL,
    phase       text NOT NULL CHECK (phase IN ('running', 'succeeded', 'failed')),
    output      jsonb,
    error       jsonb,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (run_id, step_id, attempt)
);

CREATE TABLE app.artifacts (
    run_id     text NOT NULL REFERENCES app.runs (id),
    step_id    text NOT NULL,
    idx        integer NOT NULL,
    kind       text NOT NULL,
    uri        text,
    inline     jsonb,
    sha256     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step_id, idx)
);

-- Every compiler call, with its full request and response.
CREATE TABLE app.opencode_calls (
    id         bigserial PRIMARY KEY,
    run_id     text NOT NULL,
    step_id    text NOT NULL,
    request    jsonb NOT NULL,
    response   jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX opencode_calls_run_idx ON app.opencode_calls (run_id);

-- The mock outside system. receipt_key is the idempotency key (runId, stepId, taskKey);
-- seen_count counts deliveries, so a duplicate side effect shows as seen_count > 1.
CREATE TABLE app.mock_receipts (
    receipt_key   text PRIMARY KEY,
    run_id        text NOT NULL,
    step_id       text NOT NULL,
    task_key      text NOT NULL,
    payload_hash  text NOT NULL,
    seen_count    integer NOT NULL DEFAULT 1,
    attempts      integer NOT NULL DEFAULT 1,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mock_receipts_run_idx ON app.mock_receipts (run_id);

CREATE TABLE app.human_events (
    id          bigserial PRIMARY KEY,
    run_id      text NOT NULL REFERENCES app.runs (id),
    type        text NOT NULL,
    payload     jsonb NOT NULL,
    dedupe_key  text NOT NULL UNIQUE,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Crash-demo evidence. No uniqueness on purpose: a duplicated step would show as two rows.
CREATE TABLE app.marks (
    id          bigserial PRIMARY KEY,
    workflow_id text NOT NULL,
    step        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX marks_workflow_idx ON app.marks (workflow_id);

-- One row per crash-demo drill: what was killed, when, and what the oracles said.
CREATE TABLE app.workflow_runs (
    workflow_id  text PRIMARY KEY,
    kind         text NOT NULL,
    killed_pid   integer,
    killed_at    timestamptz,
    resumed_pid  integer,
    finished_at  timestamptz,
    ok           boolean,
    detail       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Worker heartbeats. executor_id is the DBOS executor id: stable across restarts of a worker.
CREATE TABLE app.workers (
    executor_id  text PRIMARY KEY,
    app_version  text NOT NULL,
    pid          integer NOT NULL,
    host         text NOT NULL,
    admin_port   integer,
    queues       text[] NOT NULL DEFAULT '{}',
    concurrency  integer,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);
