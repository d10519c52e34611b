-- The saga engine is its own crate (services/saga) and knows nothing of orders: a saga
-- belongs to a subject, here always an order.
ALTER TABLE saga_states RENAME COLUMN order_id TO subject_id;
