-- Password reset and change (auth's PasswordResetRequested and PasswordChanged). Neither
-- can be turned off: one carries the only way back in, the other tells the owner of a
-- change they may not have made.
INSERT INTO templates (kind, channel, locale, subject, body, html) VALUES
('password_reset', 'email', 'en',
 'Reset your password',
 E'Hi {{ first_name or "there" }},\n\nto choose a new password, open this link:\n\n{{ reset_url }}\n\nThe link works once, until {{ expires_at }}. If you did not ask for it, ignore this message: your password stays as it is.\n',
 E'<p>Hi {{ first_name or "there" }},</p>\n<p><a href="{{ reset_url }}">Choose a new password</a></p>\n<p>The link works once, until {{ expires_at }}. If you did not ask for it, ignore this message: your password stays as it is.</p>\n'),
('password_changed', 'email', 'en',
 'Your password was changed',
 E'Hi {{ first_name or "there" }},\n\nthe password of your account {{ email }} was just changed, and your other sessions were signed out. If this was not you, reset your password now and contact us.\n',
 NULL)
ON CONFLICT DO NOTHING;
