-- One payment per order; its status moves requires_payment → succeeded | failed |
-- canceled (→ refunded), every move recorded in the history.
CREATE TABLE payments (
    id                  UUID PRIMARY KEY,
    order_id            UUID NOT NULL UNIQUE,
    user_id             UUID NOT NULL,
    gateway             TEXT NOT NULL,
    amount              NUMERIC(19, 4) NOT NULL CHECK (amount > 0),
    currency            CHAR(3) NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('requires_payment', 'succeeded', 'failed', 'canceled', 'refunded')),
    provider_reference  TEXT NOT NULL,
    client_secret       TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE payment_status_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id  UUID NOT NULL REFERENCES payments (id),
    status      TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    changed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX payment_status_history_payment ON payment_status_history (payment_id, id);
