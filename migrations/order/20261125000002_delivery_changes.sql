-- While an order waits for payment its owner may change the address or courier. A change
-- runs as a saga (re-quote shipping, re-price the payment, apply); the order names the
-- change in progress so a second one waits and the payment saga holds back until the
-- new price is in place. `delivery_revision` counts applied changes (the payment
-- service's intent revision).
ALTER TABLE orders
    ADD COLUMN delivery_change_id UUID,
    ADD COLUMN delivery_revision INT NOT NULL DEFAULT 0;
