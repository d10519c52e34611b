-- A refund's message says why (staff give a reason with every refund). Only the shipped
-- texts are replaced: a template an admin rewrote stays as it is.
UPDATE templates
SET body = E'We refunded {{ amount }} for order {{ order_id }}{% if full == "true" %} (the full payment){% endif %}{% if reason %}: {{ reason }}{% endif %}.\n'
WHERE kind = 'payment_refunded' AND channel = 'email' AND locale = 'en'
  AND body = E'We refunded {{ amount }} for order {{ order_id }}{% if full == "true" %} (the full payment){% endif %}.\n';

UPDATE templates
SET body = '{{ amount }} refunded for order {{ order_id[:8] }}{% if reason %}: {{ reason }}{% endif %}.'
WHERE kind = 'payment_refunded' AND channel = 'push' AND locale = 'en'
  AND body = '{{ amount }} refunded for order {{ order_id[:8] }}.';
