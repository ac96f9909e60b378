-- Retention (`sisu gc`): it walks each finished status oldest first by last update, keyset on
-- (updated_at, id), and deletes each removed run's human events (whose foreign key to app.runs
-- is also checked on every run deleted). Without these indexes every batch scans both tables.
CREATE INDEX runs_status_updated_idx ON app.runs (status, updated_at, id);
CREATE INDEX human_events_run_idx ON app.human_events (run_id);
