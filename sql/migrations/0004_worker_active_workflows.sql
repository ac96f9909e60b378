-- What each worker's heartbeat says it runs right now (workflow ids with a live thread), so that
-- a run PENDING on a live worker that no thread runs (stalled) can be told from a slow step.
ALTER TABLE app.workers ADD COLUMN active_workflows text[] NOT NULL DEFAULT '{}';
