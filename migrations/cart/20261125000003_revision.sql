-- Moves on every change to a cart or its lines; orders cache entries of cart state.
ALTER TABLE carts ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
