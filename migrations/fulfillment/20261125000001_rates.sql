CREATE TABLE couriers (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT true
);

-- A price per courier, destination zone (a country code, or '*' for everywhere else) and
-- weight bracket: the cheapest bracket whose limit holds the parcel applies.
CREATE TABLE shipping_rates (
    courier         TEXT NOT NULL REFERENCES couriers (code),
    zone            TEXT NOT NULL CHECK (zone = '*' OR zone ~ '^[A-Z]{2}$'),
    max_weight_g    BIGINT NOT NULL CHECK (max_weight_g > 0),
    price           NUMERIC(19, 4) NOT NULL CHECK (price >= 0),
    currency        CHAR(3) NOT NULL,
    estimated_days  INTEGER NOT NULL CHECK (estimated_days > 0),
    PRIMARY KEY (courier, zone, max_weight_g)
);

INSERT INTO couriers (code, name) VALUES
    ('standard', 'Standard post'),
    ('express', 'Express courier'),
    ('pickup', 'Pick-up point');

INSERT INTO shipping_rates (courier, zone, max_weight_g, price, currency, estimated_days) VALUES
    ('standard', 'US', 1000, 4.90, 'USD', 5),
    ('standard', 'US', 5000, 8.90, 'USD', 5),
    ('standard', 'US', 20000, 19.90, 'USD', 6),
    ('standard', '*', 1000, 12.00, 'USD', 10),
    ('standard', '*', 5000, 24.00, 'USD', 12),
    ('express', 'US', 1000, 14.90, 'USD', 1),
    ('express', 'US', 5000, 24.90, 'USD', 2),
    ('express', '*', 5000, 49.00, 'USD', 3),
    ('pickup', 'US', 10000, 2.50, 'USD', 3);
