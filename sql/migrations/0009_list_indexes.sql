-- Indexes for the paged lists (`run list`, `run inbox`): each page is one index range scan that
-- starts at the cursor and stops after `limit` rows, however many runs the database holds.
-- (Plain CREATE INDEX: the runner applies a migration in one transaction, where CONCURRENTLY is
-- not allowed; writes to app.runs wait while it builds, seconds at a million runs.)

-- `run list`, newest first: ORDER BY created_at DESC, id DESC after the cursor.
CREATE INDEX runs_created_id_idx ON app.runs (created_at DESC, id DESC);

-- `run list --status S`: the same order within one status. It covers every query the old
-- (status, created_at) index served, so that one goes.
CREATE INDEX runs_status_created_id_idx ON app.runs (status, created_at DESC, id DESC);
DROP INDEX app.runs_status_created_idx;

-- `run inbox`, oldest question first. A waiting run's updated_at is the moment it began to wait:
-- the step that writes its question card sets it, and only leaving that status (or a move to
-- another app version, `run resume`, which sends it to the back) changes it again. Partial: only
-- the waiting runs, a small part of the table. Each card is then read by app.artifacts' primary
-- key (run_id, step_id, idx).
CREATE INDEX runs_waiting_idx ON app.runs (updated_at, id) WHERE status = 'waiting_input';
