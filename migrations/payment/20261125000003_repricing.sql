-- An unpaid payment can be re-priced (the order's delivery changed): its intent is
-- replaced by a new one opened under the next revision. Retired intents stay resolvable,
-- so a late provider event about one still finds its payment.
ALTER TABLE payments ADD COLUMN revision INT NOT NULL DEFAULT 0;

CREATE TABLE retired_intents (
    gateway             TEXT NOT NULL,
    provider_reference  TEXT NOT NULL,
    payment_id          UUID NOT NULL REFERENCES payments (id),
    amount              NUMERIC(19, 4) NOT NULL,
    revision            INT NOT NULL,
    retired_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, provider_reference)
);
