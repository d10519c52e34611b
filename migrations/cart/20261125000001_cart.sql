-- One active cart per user, or per guest device until the guest logs in.
CREATE TABLE carts (
    id          UUID PRIMARY KEY,
    user_id     UUID,
    guest_id    UUID,
    status      TEXT NOT NULL CHECK (status IN ('active', 'merged', 'checked_out', 'abandoned')),
    promo_code  TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((user_id IS NULL) <> (guest_id IS NULL))
);
CREATE UNIQUE INDEX carts_active_user ON carts (user_id) WHERE status = 'active' AND user_id IS NOT NULL;
CREATE UNIQUE INDEX carts_active_guest ON carts (guest_id) WHERE status = 'active' AND guest_id IS NOT NULL;

CREATE TABLE cart_items (
    cart_id     UUID NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    product_id  UUID NOT NULL,
    quantity    BIGINT NOT NULL CHECK (quantity > 0 AND quantity <= 999),
    added_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (cart_id, product_id)
);

CREATE TABLE promo_codes (
    code                TEXT PRIMARY KEY,
    kind                TEXT NOT NULL CHECK (kind IN ('percent', 'fixed')),
    value               NUMERIC(19, 4) NOT NULL CHECK (value > 0),
    currency            CHAR(3),
    min_subtotal        NUMERIC(19, 4) NOT NULL DEFAULT 0,
    starts_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    ends_at             TIMESTAMPTZ,
    max_uses            INTEGER,
    max_uses_per_user   INTEGER,
    uses                INTEGER NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (kind <> 'percent' OR value <= 100),
    CHECK (kind <> 'fixed' OR currency IS NOT NULL)
);

CREATE TABLE promo_redemptions (
    code        TEXT NOT NULL REFERENCES promo_codes (code),
    user_id     UUID NOT NULL,
    order_id    UUID NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (code, order_id)
);
CREATE INDEX promo_redemptions_user ON promo_redemptions (code, user_id);

-- A frozen copy of what the customer agreed to pay for, valid for a while.
CREATE TABLE checkout_sessions (
    id                UUID PRIMARY KEY,
    user_id           UUID NOT NULL,
    cart_id           UUID NOT NULL REFERENCES carts (id),
    items             JSONB NOT NULL,
    subtotal          NUMERIC(19, 4) NOT NULL,
    discount          NUMERIC(19, 4) NOT NULL,
    currency          CHAR(3) NOT NULL,
    promo_code        TEXT,
    shipping_address  JSONB NOT NULL,
    courier           TEXT NOT NULL,
    payment_gateway   TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('open', 'completed')),
    order_id          UUID,
    expires_at        TIMESTAMPTZ NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX checkout_sessions_user ON checkout_sessions (user_id, created_at DESC);
