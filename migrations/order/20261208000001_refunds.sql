-- Money given back on an order, one row per refund the payment service made (its id), so
-- the refund endpoint and the PaymentRefunded consumer can both record it, once.
ALTER TABLE orders ADD COLUMN refunded_amount NUMERIC(19, 4) NOT NULL DEFAULT 0;

CREATE TABLE order_refunds (
    refund_id   UUID PRIMARY KEY,
    order_id    UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    amount      NUMERIC(19, 4) NOT NULL CHECK (amount > 0),
    currency    TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX order_refunds_order ON order_refunds (order_id);
