-- A cart left alone with items in it (cart's `abandon_after`), once per idle spell, with
-- the cart as it is now and a link back to it. Not mandatory: opt-outs are honoured.
INSERT INTO templates (kind, channel, locale, subject, body, html) VALUES
('cart_abandoned', 'email', 'en',
 'You left something in your cart',
 E'Your cart is waiting for you:\n\n{{ items }}\n\nSubtotal: {{ subtotal }}\n\n{{ cart_url }}\n',
 E'<p>Your cart is waiting for you:</p>\n<p style="white-space: pre-line">{{ items }}</p>\n<p>Subtotal: {{ subtotal }}</p>\n<p><a href="{{ cart_url }}">Back to my cart</a></p>\n'),
('cart_abandoned', 'push', 'en', 'Your cart is waiting',
 '{{ item_count }} item(s) in your cart, {{ subtotal }}.', NULL)
ON CONFLICT DO NOTHING;
