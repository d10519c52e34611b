-- Files shared in a conversation. The bytes live in an attachment store (a directory
-- here; an object store would do) under `storage_key`; a message lists the attachments it
-- carries, each at most once.
CREATE TABLE attachments (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    uploader_id     uuid NOT NULL,
    file_name       text NOT NULL,
    content_type    text NOT NULL,
    size_bytes      bigint NOT NULL CHECK (size_bytes > 0),
    sha256          text NOT NULL,
    storage_key     text NOT NULL,
    message_id      uuid REFERENCES messages (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachments_by_conversation ON attachments (conversation_id);

ALTER TABLE messages ADD COLUMN attachments uuid[] NOT NULL DEFAULT '{}';
