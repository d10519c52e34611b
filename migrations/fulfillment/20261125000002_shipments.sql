-- One fulfillment per confirmed order: PENDING until the carrier accepts the shipment,
-- IN_PROGRESS with a tracking id, then SHIPPED and DELIVERED as the carrier (or staff) reports.
CREATE TABLE fulfillments (
    id                 UUID PRIMARY KEY,
    order_id           UUID NOT NULL UNIQUE,
    user_id            UUID NOT NULL,
    courier            TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('PENDING', 'IN_PROGRESS', 'SHIPPED', 'DELIVERED')),
    address            JSONB NOT NULL,
    weight_g           BIGINT NOT NULL CHECK (weight_g > 0),
    carrier            TEXT NOT NULL,
    carrier_reference  TEXT,
    tracking_id        TEXT,
    label_url          TEXT,
    estimated_delivery TIMESTAMPTZ,
    attempts           INT NOT NULL DEFAULT 0,
    last_error         TEXT,
    next_attempt_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX fulfillments_pending ON fulfillments (next_attempt_at) WHERE status = 'PENDING';
CREATE UNIQUE INDEX fulfillments_tracking ON fulfillments (carrier, tracking_id);

CREATE TABLE fulfillment_status_history (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fulfillment_id  UUID NOT NULL REFERENCES fulfillments (id),
    status          TEXT NOT NULL,
    source          TEXT NOT NULL,
    changed_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Carrier webhook deliveries acted on, by the carrier's event id.
CREATE TABLE carrier_events (
    carrier      TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (carrier, event_id)
);
