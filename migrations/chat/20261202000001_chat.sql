-- Conversations: one-to-one support (a customer and the support team), groups, and
-- channels (staff-made, anyone may join). `last_seq` numbers each conversation's
-- messages under the row's lock, so the order is the commit order.
CREATE TABLE conversations (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('support', 'group', 'channel')),
    title       text NOT NULL DEFAULT '',
    created_by  uuid NOT NULL,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    last_seq    bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- A customer has at most one open support conversation.
CREATE UNIQUE INDEX conversations_open_support
    ON conversations (created_by) WHERE kind = 'support' AND status = 'open';

CREATE TABLE participants (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL,
    role            text NOT NULL CHECK (role IN ('owner', 'member', 'customer', 'agent')),
    last_read_seq   bigint NOT NULL DEFAULT 0,
    muted_until     timestamptz,
    banned          boolean NOT NULL DEFAULT false,
    joined_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX participants_by_user ON participants (user_id);

-- Support staff who can be assigned conversations, with when they last took one (the
-- least loaded, then longest waiting, agent is chosen).
CREATE TABLE agents (
    user_id          uuid PRIMARY KEY,
    last_assigned_at timestamptz NOT NULL DEFAULT '-infinity',
    seen_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             bigint NOT NULL,
    sender_id       uuid NOT NULL,
    -- The sender's own id for the message: a resend after a lost ack is the same message.
    client_id       text NOT NULL,
    body            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    deleted_by      uuid,
    search          tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_id)
);
CREATE INDEX messages_search ON messages USING gin (search);
