-- Who is notified: contact details learnt from auth's events (or asked of auth), the
-- channels each user turned off, and a per-user sequence that orders their stream. The
-- sequence is bumped under this row's lock, so numbers follow commit order per user and a
-- stream resumed with `Last-Event-ID` misses nothing.
CREATE TABLE recipients (
    user_id       uuid PRIMARY KEY,
    email         text,
    first_name    text NOT NULL DEFAULT '',
    phone         text,
    locale        text NOT NULL DEFAULT 'en',
    email_enabled boolean NOT NULL DEFAULT true,
    sms_enabled   boolean NOT NULL DEFAULT true,
    push_enabled  boolean NOT NULL DEFAULT true,
    last_seq      bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One template per kind, channel and locale, rendered with MiniJinja. `html` is the
-- e-mail's HTML part (auto-escaped); `subject` is the e-mail subject or the push title.
CREATE TABLE templates (
    kind       text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,63}$'),
    channel    text NOT NULL CHECK (channel IN ('email', 'sms', 'push')),
    locale     text NOT NULL CHECK (locale ~ '^[a-z]{2}(-[A-Z]{2})?$'),
    subject    text NOT NULL DEFAULT '',
    body       text NOT NULL,
    html       text,
    version    integer NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, channel, locale)
);

-- One notification per cause (`source`: the event or the Send request), whatever the
-- redeliveries. `in_app` ones are the user's history and stream.
CREATE TABLE notifications (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL,
    seq        bigint NOT NULL,
    kind       text NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL,
    data       jsonb NOT NULL DEFAULT '{}',
    in_app     boolean NOT NULL,
    source     text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz,
    UNIQUE (user_id, seq)
);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE in_app AND read_at IS NULL;

-- Each channel of a notification, with what was rendered for it and how sending went.
CREATE TABLE deliveries (
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel IN ('email', 'sms', 'push')),
    status          text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    destination     text,
    subject         text NOT NULL DEFAULT '',
    body            text NOT NULL,
    html            text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    provider        text,
    provider_id     text,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (notification_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';

-- Wakes every instance's delivery worker at commit (a poll is the backstop).
CREATE FUNCTION notify_deliveries_due() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('notification_deliveries', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER deliveries_due_notify
    AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION notify_deliveries_due();
