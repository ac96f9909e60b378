-- The http executor's deliveries: one row per idempotency key (runId:ExecuteST:taskKey), the
-- same key the receiver gets in its Idempotency-Key header. A key with delivered_at set got a
-- 2xx and is never POSTed again; attempts counts every POST sent for it (a retry after a 503,
-- or the one request in flight when a worker died), so a repeat shows.
CREATE TABLE app.deliveries (
    idempotency_key  text PRIMARY KEY,
    run_id           text NOT NULL,
    task_key         text NOT NULL,
    executor         text NOT NULL DEFAULT 'http',
    url              text NOT NULL,  -- where it was sent, without any user:password@
    status_code      integer,        -- the answer to the latest POST; NULL: none (yet)
    attempts         integer NOT NULL DEFAULT 1,
    first_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,    -- set by the first 2xx
    response         text            -- the start of that answer's body
);
CREATE INDEX deliveries_run_idx ON app.deliveries (run_id);
