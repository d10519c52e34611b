-- Transactional outbox: rows are written in the same transaction as the state change they
-- announce; the relay publishes them in `seq` order and marks them published.
CREATE TABLE IF NOT EXISTS outbox_events (
    id            UUID PRIMARY KEY,
    seq           BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    topic         TEXT NOT NULL,
    aggregate_id  TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    payload       BYTEA NOT NULL,
    headers       JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);

CREATE INDEX IF NOT EXISTS outbox_events_pending ON outbox_events (seq) WHERE published_at IS NULL;

-- Idempotent inbox: a consumer records each event id in the same transaction as its effect,
-- so a redelivered event finds its row and changes nothing.
CREATE TABLE IF NOT EXISTS inbox_events (
    consumer      TEXT NOT NULL,
    event_id      UUID NOT NULL,
    event_type    TEXT NOT NULL,
    topic         TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset  BIGINT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('processed', 'dead_lettered')),
    error         TEXT,
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
