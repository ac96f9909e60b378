-- Idempotent intent creation: a client's Idempotency-Key and the hash of the canonical request
-- it came with. The unique constraint is what makes two racing requests with one key converge
-- on one row (INSERT ... ON CONFLICT); intents created without a key keep both columns NULL.
ALTER TABLE app.intents
    ADD COLUMN idempotency_key text,
    ADD COLUMN request_hash    text,
    ADD CONSTRAINT intents_idempotency_key_key UNIQUE (idempotency_key),
    ADD CONSTRAINT intents_idempotency_hash_check
        CHECK ((idempotency_key IS NULL) = (request_hash IS NULL));
