-- A checked-out cart is closed by the order made from it (OrderCreated).
ALTER TABLE carts DROP CONSTRAINT carts_status_check;
ALTER TABLE carts ADD CONSTRAINT carts_status_check
    CHECK (status IN ('active', 'merged', 'checked_out', 'abandoned', 'ordered'));
ALTER TABLE carts ADD COLUMN order_id UUID;
