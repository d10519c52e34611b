-- A failed payment attempt on an order that still waits for payment: the customer may pay
-- again, on the order's page, until the window closes.
INSERT INTO templates (kind, channel, locale, subject, body, html) VALUES
('payment_failed', 'email', 'en',
 'Your payment did not go through',
 E'Paying {{ total }} for your order {{ order_id }} did not work{% if reason %} ({{ reason }}){% endif %}. Nothing was charged.\n\nYou can pay again until {{ payment_due_at }}:\n\n{{ pay_url }}\n',
 E'<p>Paying {{ total }} for your order <b>{{ order_id }}</b> did not work{% if reason %} ({{ reason }}){% endif %}. Nothing was charged.</p>\n<p><a href="{{ pay_url }}">Pay again</a> before {{ payment_due_at }}.</p>\n'),
('payment_failed', 'push', 'en', 'Payment failed',
 'Paying order {{ order_id[:8] }} failed. Pay again before {{ payment_due_at }}.', NULL)
ON CONFLICT DO NOTHING;
