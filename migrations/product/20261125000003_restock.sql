-- A deducted reservation can be given back to stock when its order is canceled after payment.
ALTER TABLE stock_reservations DROP CONSTRAINT stock_reservations_status_check;
ALTER TABLE stock_reservations ADD CONSTRAINT stock_reservations_status_check
    CHECK (status IN ('reserved', 'deducted', 'released', 'restocked'));
