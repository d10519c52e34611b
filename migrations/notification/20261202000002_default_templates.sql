-- The shop's default texts (English). Admins replace or add templates per kind, channel and
-- locale through /v1/admin/notification-templates; a locale without its own template falls
-- back to its language, then to English.
INSERT INTO templates (kind, channel, locale, subject, body, html) VALUES
('email_verification', 'email', 'en',
 'Confirm your e-mail address',
 E'Hi {{ first_name or "there" }},\n\nplease confirm your e-mail address by opening this link:\n\n{{ verification_url }}\n\nThe link works until {{ expires_at }}. If you did not sign up, ignore this message.\n',
 E'<p>Hi {{ first_name or "there" }},</p>\n<p>please confirm your e-mail address:</p>\n<p><a href="{{ verification_url }}">Confirm my e-mail address</a></p>\n<p>The link works until {{ expires_at }}. If you did not sign up, ignore this message.</p>\n'),

('payment_reminder', 'email', 'en',
 'Your order is waiting for payment',
 E'Your order {{ order_id }} ({{ total }}) is still waiting for payment. Pay before {{ payment_due_at }} or it will expire.\n',
 E'<p>Your order <b>{{ order_id }}</b> ({{ total }}) is still waiting for payment.</p>\n<p>Pay before {{ payment_due_at }} or it will expire.</p>\n'),
('payment_reminder', 'sms', 'en', '',
 'Order {{ order_id[:8] }}: {{ total }} is still unpaid. Pay before {{ payment_due_at }}.', NULL),
('payment_reminder', 'push', 'en', 'Payment pending',
 'Order {{ order_id[:8] }} ({{ total }}) expires at {{ payment_due_at }}.', NULL),

('order_confirmed', 'email', 'en',
 'Order confirmed',
 E'Thank you! Your order {{ order_id }} is confirmed.\n\nTotal: {{ total }}\nShipping with: {{ courier }}\n',
 E'<p>Thank you! Your order <b>{{ order_id }}</b> is confirmed.</p>\n<p>Total: {{ total }}<br>Shipping with: {{ courier }}</p>\n'),
('order_confirmed', 'sms', 'en', '',
 'Order {{ order_id[:8] }} confirmed, total {{ total }}.', NULL),
('order_confirmed', 'push', 'en', 'Order confirmed',
 'Order {{ order_id[:8] }} is confirmed ({{ total }}).', NULL),

('order_expired', 'email', 'en',
 'Your order expired',
 E'Your order {{ order_id }} expired because it was not paid in time. Nothing was charged.\n', NULL),
('order_expired', 'push', 'en', 'Order expired',
 'Order {{ order_id[:8] }} expired: it was not paid in time.', NULL),

('order_canceled', 'email', 'en',
 'Your order was canceled',
 E'Your order {{ order_id }} was canceled{% if reason %} ({{ reason }}){% endif %}. Anything you paid is refunded.\n', NULL),
('order_canceled', 'push', 'en', 'Order canceled',
 'Order {{ order_id[:8] }} was canceled.', NULL),

('fulfillment_created', 'email', 'en',
 'Your order is being prepared',
 E'Your order {{ order_id }} is being prepared for {{ courier }}. Tracking number: {{ tracking_id }}{% if estimated_delivery %}, expected {{ estimated_delivery }}{% endif %}.\n', NULL),
('fulfillment_created', 'push', 'en', 'Preparing your order',
 'Order {{ order_id[:8] }} is being prepared (tracking {{ tracking_id }}).', NULL),

('fulfillment_shipped', 'email', 'en',
 'Your order is on its way',
 E'Your order {{ order_id }} has shipped. Tracking number: {{ tracking_id }}.\n', NULL),
('fulfillment_shipped', 'sms', 'en', '',
 'Order {{ order_id[:8] }} shipped. Tracking: {{ tracking_id }}', NULL),
('fulfillment_shipped', 'push', 'en', 'Order shipped',
 'Order {{ order_id[:8] }} is on its way (tracking {{ tracking_id }}).', NULL),

('fulfillment_delivered', 'email', 'en',
 'Your order was delivered',
 E'Your order {{ order_id }} was delivered. Enjoy!\n', NULL),
('fulfillment_delivered', 'push', 'en', 'Order delivered',
 'Order {{ order_id[:8] }} was delivered.', NULL),

('payment_refunded', 'email', 'en',
 'Refund issued',
 E'We refunded {{ amount }} for order {{ order_id }}{% if full == "true" %} (the full payment){% endif %}.\n', NULL),
('payment_refunded', 'push', 'en', 'Refund issued',
 '{{ amount }} refunded for order {{ order_id[:8] }}.', NULL),

-- Indonesian for the most common messages.
('order_confirmed', 'push', 'id', 'Pesanan dikonfirmasi',
 'Pesanan {{ order_id[:8] }} telah dikonfirmasi ({{ total }}).', NULL),
('fulfillment_shipped', 'push', 'id', 'Pesanan dikirim',
 'Pesanan {{ order_id[:8] }} sedang dalam perjalanan (resi {{ tracking_id }}).', NULL);
