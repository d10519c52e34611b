-- Nobody is put in a group or channel without saying yes: an invitation waits until the
-- invitee joins (accepting it) or declines.
CREATE TABLE invitations (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL,
    invited_by      uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX invitations_by_user ON invitations (user_id);
