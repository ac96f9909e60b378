-- Who last set each queue's settings (which live in dbos.queues, for the whole fleet), and when:
-- a worker stores its flags there before its first dequeue.
CREATE TABLE app.queue_settings (
    queue_name text PRIMARY KEY,
    settings   jsonb NOT NULL,
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now()
);
