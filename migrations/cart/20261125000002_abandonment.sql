-- When CartAbandoned was last published for the cart's current contents; cleared by any
-- change, so a cart is announced once per idle spell.
ALTER TABLE carts ADD COLUMN abandoned_at TIMESTAMPTZ;
CREATE INDEX carts_idle ON carts (updated_at) WHERE status IN ('active', 'merged');
