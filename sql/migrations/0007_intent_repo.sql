-- Intents on a repository: the path of the user's git repository, the ref they named, and the
-- commit that ref resolved to when the intent was created. A run's workspace is always rebuilt
-- from that commit, so a moving branch never changes what a run (or its re-execution) sees.
ALTER TABLE app.intents
    ADD COLUMN repo       text,
    ADD COLUMN ref        text,
    ADD COLUMN commit_sha text,
    ADD CONSTRAINT intents_repo_commit_check
        CHECK ((repo IS NULL) = (commit_sha IS NULL) AND (repo IS NOT NULL OR ref IS NULL));
