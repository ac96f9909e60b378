-- Every failover: a live worker recovered a dead executor's pending workflows.
CREATE TABLE app.failovers (
    id               bigserial PRIMARY KEY,
    dead_executor_id text NOT NULL,
    recovered_by     text NOT NULL,
    app_version      text NOT NULL,
    workflows        integer NOT NULL,
    workflow_ids     text[] NOT NULL DEFAULT '{}',
    at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX failovers_dead_idx ON app.failovers (dead_executor_id, at);
