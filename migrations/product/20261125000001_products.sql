-- The catalogue. `version` is the optimistic-lock counter; `reserved` is stock held by
-- unpaid orders, so available = stock - reserved.
CREATE TABLE products (
    id           UUID PRIMARY KEY,
    sku          TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    category     TEXT NOT NULL,
    price_amount NUMERIC(19, 4) NOT NULL CHECK (price_amount >= 0),
    currency     CHAR(3) NOT NULL,
    stock        BIGINT NOT NULL CHECK (stock >= 0),
    reserved     BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= stock),
    version      BIGINT NOT NULL DEFAULT 1,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX products_category ON products (category);
CREATE INDEX products_created ON products (created_at DESC, id);
