-- Named queries, loaded by sisu/db/queries.py. Parameters use psycopg's %(name)s style.

-- name: insert_mark
INSERT INTO app.marks (workflow_id, step)
VALUES (%(workflow_id)s, %(step)s)
RETURNING id;

-- name: mark_counts
SELECT step, count(*)::int AS n, min(created_at) AS first_at, max(created_at) AS last_at
FROM app.marks
WHERE workflow_id = %(workflow_id)s
GROUP BY step;

-- name: workflow_status
SELECT workflow_uuid AS workflow_id, status, executor_id, application_version,
       created_at, updated_at, started_at_epoch_ms
FROM dbos.workflow_status
WHERE workflow_uuid = %(workflow_id)s;

-- name: record_drill_start
INSERT INTO app.workflow_runs (workflow_id, kind)
VALUES (%(workflow_id)s, %(kind)s);

-- name: record_drill_kill
UPDATE app.workflow_runs
SET killed_pid = %(killed_pid)s, killed_at = %(killed_at)s
WHERE workflow_id = %(workflow_id)s;

-- name: record_drill_end
UPDATE app.workflow_runs
SET resumed_pid = %(resumed_pid)s, finished_at = now(), ok = %(ok)s, detail = %(detail)s
WHERE workflow_id = %(workflow_id)s;

-- name: worker_claim_check
SELECT executor_id, pid, host, heartbeat_at, stopped_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS age_seconds
FROM app.workers
WHERE executor_id = %(executor_id)s;

-- name: worker_start
INSERT INTO app.workers (executor_id, app_version, pid, host, admin_port, queues, concurrency)
VALUES (%(executor_id)s, %(app_version)s, %(pid)s, %(host)s, %(admin_port)s, %(queues)s,
        %(concurrency)s)
ON CONFLICT (executor_id) DO UPDATE
SET app_version = EXCLUDED.app_version, pid = EXCLUDED.pid, host = EXCLUDED.host,
    admin_port = EXCLUDED.admin_port, queues = EXCLUDED.queues,
    concurrency = EXCLUDED.concurrency, started_at = now(), heartbeat_at = now(),
    stopped_at = NULL;

-- name: worker_heartbeat
UPDATE app.workers SET heartbeat_at = now()
WHERE executor_id = %(executor_id)s AND pid = %(pid)s;

-- name: worker_stopped
UPDATE app.workers SET stopped_at = now()
WHERE executor_id = %(executor_id)s AND pid = %(pid)s;

-- name: live_workers
SELECT executor_id, app_version, pid, host, admin_port, queues, concurrency,
       started_at, heartbeat_at
FROM app.workers
WHERE stopped_at IS NULL
  AND heartbeat_at > now() - make_interval(secs => %(dead_after_seconds)s)
ORDER BY executor_id;
