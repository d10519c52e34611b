-- An order is created PLACING by POST /v1/orders and moved by its placement saga to
-- PENDING_PAYMENT, or to FAILED once every completed step has been compensated.
CREATE TABLE orders (
    id                     UUID PRIMARY KEY,
    user_id                UUID NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN (
                               'PLACING', 'PENDING_PAYMENT', 'FAILED', 'PAID', 'CONFIRMED',
                               'SHIPPED', 'DELIVERED', 'EXPIRED', 'CANCELED')),
    checkout_session_id    UUID NOT NULL,
    currency               CHAR(3),
    subtotal               NUMERIC(19, 4),
    discount               NUMERIC(19, 4),
    shipping               NUMERIC(19, 4),
    total                  NUMERIC(19, 4),
    promo_code             TEXT,
    shipping_address       JSONB,
    courier                TEXT,
    payment_gateway        TEXT,
    payment_id             UUID,
    payment_client_secret  TEXT,
    payment_due_at         TIMESTAMPTZ,
    reminders_sent         INT NOT NULL DEFAULT 0,
    failure_reason         TEXT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- A checkout session becomes at most one live order; a failed attempt frees it again.
CREATE UNIQUE INDEX orders_live_session ON orders (checkout_session_id) WHERE status <> 'FAILED';
-- Ids are UUIDv7, so id order is placement order: pages are keyed by id.
CREATE INDEX orders_user ON orders (user_id, id DESC);

CREATE TABLE order_items (
    order_id    UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id  UUID NOT NULL,
    sku         TEXT NOT NULL,
    name        TEXT NOT NULL,
    quantity    BIGINT NOT NULL CHECK (quantity > 0),
    unit_price  NUMERIC(19, 4) NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE order_status_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status      TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    changed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX order_status_history_order ON order_status_history (order_id, id);

-- The PostgreSQL saga engine. `step` is the next step to run while `running`, and the
-- number of steps still to compensate while `compensating`. The lease names the process
-- driving the saga; an expired lease lets another process (or a restarted one) resume it.
CREATE TABLE saga_states (
    id               UUID PRIMARY KEY,
    saga_type        TEXT NOT NULL,
    order_id         UUID NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('running', 'compensating', 'completed', 'compensated')),
    step             INT NOT NULL DEFAULT 0,
    data             JSONB NOT NULL,
    failure          JSONB,
    lease_owner      UUID,
    lease_until      TIMESTAMPTZ,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    UNIQUE (saga_type, order_id)
);
CREATE INDEX saga_states_unfinished ON saga_states (next_attempt_at)
    WHERE status IN ('running', 'compensating');

-- The step log: every attempt of every step and compensation.
CREATE TABLE saga_steps (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id      UUID NOT NULL REFERENCES saga_states (id) ON DELETE CASCADE,
    step_index   INT NOT NULL,
    step_name    TEXT NOT NULL,
    phase        TEXT NOT NULL CHECK (phase IN ('forward', 'compensate')),
    attempt      INT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('succeeded', 'retrying', 'failed')),
    error        TEXT,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX saga_steps_saga ON saga_steps (saga_id, id);

-- POST /v1/orders answers once per (user, Idempotency-Key); a replay gets the stored answer.
CREATE TABLE idempotency_keys (
    user_id              UUID NOT NULL,
    key                  TEXT NOT NULL,
    checkout_session_id  UUID NOT NULL,
    order_id             UUID NOT NULL,
    status_code          INT,
    response             JSONB,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
