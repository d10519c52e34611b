-- Someone signed up with the address of an existing account (auth answers as if the
-- sign-up were new, so the answer does not tell who has an account): its owner is told.
INSERT INTO templates (kind, channel, locale, subject, body, html) VALUES
('account_exists', 'email', 'en',
 'Someone tried to sign up with your e-mail address',
 E'Hi {{ first_name or "there" }},\n\nsomeone tried to create an account with {{ email }}, which already has one. If it was you, sign in, or ask for a new confirmation link if you have not confirmed the address yet.\n\nIf it was not you, nothing changed and you need not do anything.\n',
 E'<p>Hi {{ first_name or "there" }},</p>\n<p>someone tried to create an account with {{ email }}, which already has one. If it was you, sign in, or ask for a new confirmation link if you have not confirmed the address yet.</p>\n<p>If it was not you, nothing changed and you need not do anything.</p>\n')
ON CONFLICT DO NOTHING;
