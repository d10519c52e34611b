-- Every webhook delivery we acted on, by the provider's event id: a replay finds its row
-- and changes nothing.
CREATE TABLE webhook_events (
    gateway      TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    payment_id   UUID REFERENCES payments (id),
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, event_id)
);

CREATE UNIQUE INDEX payments_provider_reference ON payments (gateway, provider_reference);

CREATE TABLE refunds (
    id                  UUID PRIMARY KEY,
    payment_id          UUID NOT NULL REFERENCES payments (id),
    amount              NUMERIC(19, 4) NOT NULL CHECK (amount > 0),
    currency            CHAR(3) NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason              TEXT NOT NULL DEFAULT '',
    provider_reference  TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment ON refunds (payment_id);

CREATE TABLE disputes (
    id                  UUID PRIMARY KEY,
    payment_id          UUID NOT NULL REFERENCES payments (id),
    provider_reference  TEXT NOT NULL,
    reason              TEXT NOT NULL DEFAULT '',
    amount              NUMERIC(19, 4),
    status              TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (payment_id, provider_reference)
);

-- Our own idempotency keys: the first answer to an operation with a key is the answer to
-- every repeat of it.
CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    operation   TEXT NOT NULL,
    response    JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE payments ADD COLUMN refunded_amount NUMERIC(19, 4) NOT NULL DEFAULT 0;
CREATE INDEX payments_created ON payments (created_at);
