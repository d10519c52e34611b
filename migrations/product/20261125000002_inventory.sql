-- Catalogue details and soft deletion: a deleted product keeps its row so reservations and
-- history that point at it stay whole.
ALTER TABLE products
    ADD COLUMN attributes JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN images TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN active BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN deleted_at TIMESTAMPTZ;

CREATE INDEX products_price ON products (price_amount) WHERE deleted_at IS NULL;

-- Every price a product has had, newest last.
CREATE TABLE price_history (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id    UUID NOT NULL REFERENCES products (id),
    price_amount  NUMERIC(19, 4) NOT NULL,
    currency      CHAR(3) NOT NULL,
    changed_by    TEXT NOT NULL,
    changed_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX price_history_product ON price_history (product_id, id);

-- Stock held for an order: reserved at placement, deducted after payment, released on
-- expiry or cancel. One row per (order, product); the status makes every call idempotent.
CREATE TABLE stock_reservations (
    order_id    UUID NOT NULL,
    product_id  UUID NOT NULL REFERENCES products (id),
    quantity    BIGINT NOT NULL CHECK (quantity > 0),
    status      TEXT NOT NULL CHECK (status IN ('reserved', 'deducted', 'released')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, product_id)
);

-- Audit trail of manual stock changes.
CREATE TABLE stock_adjustments (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id   UUID NOT NULL REFERENCES products (id),
    delta        BIGINT NOT NULL,
    stock_after  BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX stock_adjustments_product ON stock_adjustments (product_id, id);

-- Bumped by every change, stock included (unlike `version`, which guards admin edits):
-- the cache keeps only the newest revision it has seen.
ALTER TABLE products ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
