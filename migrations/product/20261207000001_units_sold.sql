-- Units sold (deducted, less restocked): what search ranks "best selling" by. It travels on
-- every catalogue event, so search keeps it without reading orders and a rebuilt index
-- has it too. Filled from the reservations already deducted.
ALTER TABLE products ADD COLUMN units_sold BIGINT NOT NULL DEFAULT 0 CHECK (units_sold >= 0);
UPDATE products
SET units_sold = sold.units
FROM (
    SELECT product_id, sum(quantity) AS units
    FROM stock_reservations
    WHERE status = 'deducted'
    GROUP BY product_id
) AS sold
WHERE sold.product_id = products.id;
