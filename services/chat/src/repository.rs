//! The chat service's tables: conversations, participants, agents, messages.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::domain::{ChatMessage, Kind, Membership, ParticipantRole};

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: Uuid,
    pub kind: Kind,
    pub title: String,
    pub created_by: Uuid,
    pub status: String,
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
}

fn conversation_from(row: &sqlx::postgres::PgRow) -> Conversation {
    Conversation {
        id: row.get("id"),
        kind: Kind::parse(row.get::<&str, _>("kind")).unwrap_or(Kind::Group),
        title: row.get("title"),
        created_by: row.get("created_by"),
        status: row.get("status"),
        last_seq: row.get("last_seq"),
        created_at: row.get("created_at"),
    }
}

const CONVERSATION_COLUMNS: &str = "id, kind, title, created_by, status, last_seq, created_at";

pub async fn insert_conversation(
    connection: &mut PgConnection,
    id: Uuid,
    kind: Kind,
    title: &str,
    created_by: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO conversations (id, kind, title, created_by) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(kind.as_str())
        .bind(title)
        .bind(created_by)
        .execute(connection)
        .await?;
    Ok(())
}

pub async fn conversation(
    connection: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Conversation>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(connection)
    .await?;
    Ok(row.as_ref().map(conversation_from))
}

pub async fn open_support_of(
    connection: &mut PgConnection,
    customer: Uuid,
) -> Result<Option<Conversation>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations
         WHERE created_by = $1 AND kind = 'support' AND status = 'open'"
    ))
    .bind(customer)
    .fetch_optional(connection)
    .await?;
    Ok(row.as_ref().map(conversation_from))
}

/// The user's conversations (not banned from), most recently active first.
pub async fn conversations_of(
    pool: &PgPool,
    user_id: Uuid,
) -> Result<Vec<(Conversation, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.id, c.kind, c.title, c.created_by, c.status, c.last_seq, c.created_at, p.last_read_seq
         FROM conversations c JOIN participants p ON p.conversation_id = c.id
         WHERE p.user_id = $1 AND NOT p.banned
         ORDER BY c.last_seq DESC, c.created_at DESC LIMIT 200",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| (conversation_from(row), row.get("last_read_seq")))
        .collect())
}

pub async fn add_participant(
    connection: &mut PgConnection,
    conversation_id: Uuid,
    user_id: Uuid,
    role: ParticipantRole,
) -> Result<bool, sqlx::Error> {
    let added = sqlx::query(
        "INSERT INTO participants (conversation_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(role.as_str())
    .execute(connection)
    .await?;
    Ok(added.rows_affected() == 1)
}

/// Invites `user_id` unless they are already in the conversation (banned included).
pub async fn invite(
    connection: &mut PgConnection,
    conversation_id: Uuid,
    user_id: Uuid,
    invited_by: Uuid,
) -> Result<bool, sqlx::Error> {
    let invited = sqlx::query(
        "INSERT INTO invitations (conversation_id, user_id, invited_by)
         SELECT $1, $2, $3
         WHERE NOT EXISTS (SELECT 1 FROM participants WHERE conversation_id = $1 AND user_id = $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(invited_by)
    .execute(connection)
    .await?;
    Ok(invited.rows_affected() == 1)
}

/// Removes the user's invitation to the conversation; whether there was one.
pub async fn take_invitation(
    connection: &mut PgConnection,
    conversation_id: Uuid,
    user_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query("DELETE FROM invitations WHERE conversation_id = $1 AND user_id = $2")
        .bind(conversation_id)
        .bind(user_id)
        .execute(connection)
        .await?;
    Ok(taken.rows_affected() == 1)
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    pub conversation_id: Uuid,
    pub kind: String,
    pub title: String,
    pub invited_by: Uuid,
    pub created_at: DateTime<Utc>,
}

/// The user's open invitations, newest first.
pub async fn invitations_of(pool: &PgPool, user_id: Uuid) -> Result<Vec<Invitation>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.conversation_id, c.kind, c.title, i.invited_by, i.created_at
         FROM invitations i JOIN conversations c ON c.id = i.conversation_id
         WHERE i.user_id = $1 ORDER BY i.created_at DESC",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}

/// Whether the user works support (seen with a staff token in the support inbox).
pub async fn is_agent(connection: &mut PgConnection, user_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM agents WHERE user_id = $1)")
        .bind(user_id)
        .fetch_one(connection)
        .await
}

pub async fn membership(
    connection: &mut PgConnection,
    conversation_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Membership>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT role, muted_until, banned FROM participants WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation_id)
    .bind(user_id)
    .fetch_optional(connection)
    .await?;
    Ok(row.map(|row| Membership {
        role: ParticipantRole::parse(row.get::<&str, _>("role")).unwrap_or(ParticipantRole::Member),
        muted_until: row.get("muted_until"),
        banned: row.get("banned"),
    }))
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub user_id: Uuid,
    pub role: ParticipantRole,
    pub last_read_seq: i64,
    pub muted_until: Option<DateTime<Utc>>,
    pub banned: bool,
}

pub async fn participants(
    pool: &PgPool,
    conversation_id: Uuid,
) -> Result<Vec<Participant>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, role, last_read_seq, muted_until, banned FROM participants
         WHERE conversation_id = $1 ORDER BY joined_at",
    )
    .bind(conversation_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| Participant {
            user_id: row.get("user_id"),
            role: ParticipantRole::parse(row.get::<&str, _>("role"))
                .unwrap_or(ParticipantRole::Member),
            last_read_seq: row.get("last_read_seq"),
            muted_until: row.get("muted_until"),
            banned: row.get("banned"),
        })
        .collect())
}

pub async fn set_muted(
    pool: &PgPool,
    conversation_id: Uuid,
    user_id: Uuid,
    until: Option<DateTime<Utc>>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE participants SET muted_until = $3 WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(until)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_banned(
    pool: &PgPool,
    conversation_id: Uuid,
    user_id: Uuid,
    banned: bool,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE participants SET banned = $3 WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(banned)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn mark_read(
    pool: &PgPool,
    conversation_id: Uuid,
    user_id: Uuid,
    seq: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE participants SET last_read_seq = GREATEST(last_read_seq, LEAST($3, c.last_seq))
         FROM conversations c
         WHERE participants.conversation_id = $1 AND participants.user_id = $2 AND c.id = $1",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(seq)
    .execute(pool)
    .await?;
    Ok(())
}

/// Remembers a support agent.
pub async fn note_agent(pool: &PgPool, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO agents (user_id) VALUES ($1) ON CONFLICT (user_id) DO UPDATE SET seen_at = now()",
    )
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The agent to take a new support conversation, among `online` ones if any are: fewest
/// open support conversations, then the longest since their last assignment. Locks the
/// agent's row so two customers arriving at once are spread out.
pub async fn pick_agent(
    connection: &mut PgConnection,
    online: &[Uuid],
) -> Result<Option<Uuid>, sqlx::Error> {
    let agent: Option<Uuid> = sqlx::query_scalar(
        "SELECT a.user_id FROM agents a
         ORDER BY (a.user_id = ANY($1)) DESC,
                  (SELECT count(*) FROM participants p JOIN conversations c ON c.id = p.conversation_id
                    WHERE p.user_id = a.user_id AND p.role = 'agent' AND c.status = 'open'),
                  a.last_assigned_at
         LIMIT 1 FOR UPDATE OF a",
    )
    .bind(online)
    .fetch_optional(&mut *connection)
    .await?;
    if let Some(agent) = agent {
        sqlx::query("UPDATE agents SET last_assigned_at = now() WHERE user_id = $1")
            .bind(agent)
            .execute(connection)
            .await?;
    }
    Ok(agent)
}

pub async fn all_agents(pool: &PgPool) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM agents")
        .fetch_all(pool)
        .await
}

fn message_from(row: &sqlx::postgres::PgRow) -> ChatMessage {
    let deleted: Option<DateTime<Utc>> = row.get("deleted_at");
    ChatMessage {
        id: row.get("id"),
        conversation_id: row.get("conversation_id"),
        seq: row.get("seq"),
        sender_id: row.get("sender_id"),
        client_id: row.get("client_id"),
        body: if deleted.is_some() {
            String::new()
        } else {
            row.get("body")
        },
        created_at: row.get("created_at"),
        deleted: deleted.is_some(),
        attachments: row.get("attachments"),
    }
}

const MESSAGE_COLUMNS: &str =
    "id, conversation_id, seq, sender_id, client_id, body, created_at, deleted_at, attachments";

/// Stores a message with the conversation's next number (taken under its row lock). A
/// repeated (sender, client id) answers the stored message and `false`.
pub async fn insert_message(
    connection: &mut PgConnection,
    conversation_id: Uuid,
    sender_id: Uuid,
    client_id: &str,
    body: &str,
    attachments: &[Uuid],
) -> Result<(ChatMessage, bool), sqlx::Error> {
    if let Some(row) = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE conversation_id = $1 AND sender_id = $2 AND client_id = $3"
    ))
    .bind(conversation_id)
    .bind(sender_id)
    .bind(client_id)
    .fetch_optional(&mut *connection)
    .await?
    {
        return Ok((message_from(&row), false));
    }
    let seq: i64 = sqlx::query_scalar(
        "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
    )
    .bind(conversation_id)
    .fetch_one(&mut *connection)
    .await?;
    let id = Uuid::now_v7();
    let row = sqlx::query(&format!(
        "INSERT INTO messages (id, conversation_id, seq, sender_id, client_id, body, attachments)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {MESSAGE_COLUMNS}"
    ))
    .bind(id)
    .bind(conversation_id)
    .bind(seq)
    .bind(sender_id)
    .bind(client_id)
    .bind(body)
    .bind(attachments)
    .fetch_one(&mut *connection)
    .await?;
    sqlx::query("UPDATE attachments SET message_id = $1 WHERE id = ANY($2)")
        .bind(id)
        .bind(attachments)
        .execute(connection)
        .await?;
    Ok((message_from(&row), true))
}

pub async fn message(
    pool: &PgPool,
    conversation_id: Uuid,
    id: Uuid,
) -> Result<Option<ChatMessage>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND id = $2"
    ))
    .bind(conversation_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(message_from))
}

pub async fn delete_message(
    pool: &PgPool,
    conversation_id: Uuid,
    id: Uuid,
    by: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE messages SET deleted_at = COALESCE(deleted_at, now()), deleted_by = COALESCE(deleted_by, $3)
         WHERE conversation_id = $1 AND id = $2",
    )
    .bind(conversation_id)
    .bind(id)
    .bind(by)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Messages before `before` (a sequence number), newest first.
pub async fn history(
    pool: &PgPool,
    conversation_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ChatMessage>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE conversation_id = $1 AND seq < COALESCE($2, 9223372036854775807)
         ORDER BY seq DESC LIMIT $3"
    ))
    .bind(conversation_id)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(message_from).collect())
}

/// Full-text search in one conversation (every word must match; deleted messages never).
pub async fn search(
    pool: &PgPool,
    conversation_id: Uuid,
    query: &str,
    limit: i64,
) -> Result<Vec<ChatMessage>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE conversation_id = $1 AND deleted_at IS NULL
           AND search @@ websearch_to_tsquery('simple', $2)
         ORDER BY ts_rank(search, websearch_to_tsquery('simple', $2)) DESC, seq DESC LIMIT $3"
    ))
    .bind(conversation_id)
    .bind(query)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(message_from).collect())
}

/// The user ids of a conversation's (unbanned) participants.
pub async fn member_ids(pool: &PgPool, conversation_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM participants WHERE conversation_id = $1 AND NOT banned")
        .bind(conversation_id)
        .fetch_all(pool)
        .await
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub uploader_id: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    #[serde(skip)]
    pub storage_key: String,
    pub message_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert_attachment(pool: &PgPool, attachment: &Attachment) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO attachments (id, conversation_id, uploader_id, file_name, content_type, size_bytes, sha256, storage_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(attachment.id)
    .bind(attachment.conversation_id)
    .bind(attachment.uploader_id)
    .bind(&attachment.file_name)
    .bind(&attachment.content_type)
    .bind(attachment.size_bytes)
    .bind(&attachment.sha256)
    .bind(&attachment.storage_key)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn attachment(
    pool: &PgPool,
    conversation_id: Uuid,
    id: Uuid,
) -> Result<Option<Attachment>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, conversation_id, uploader_id, file_name, content_type, size_bytes, sha256,
                storage_key, message_id, created_at
         FROM attachments WHERE conversation_id = $1 AND id = $2",
    )
    .bind(conversation_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| Attachment {
        id: row.get("id"),
        conversation_id: row.get("conversation_id"),
        uploader_id: row.get("uploader_id"),
        file_name: row.get("file_name"),
        content_type: row.get("content_type"),
        size_bytes: row.get("size_bytes"),
        sha256: row.get("sha256"),
        storage_key: row.get("storage_key"),
        message_id: row.get("message_id"),
        created_at: row.get("created_at"),
    }))
}

/// How many of `ids` the sender uploaded to this conversation and has not sent yet
/// (locked, so one attachment joins one message).
pub async fn sendable_attachments(
    connection: &mut PgConnection,
    conversation_id: Uuid,
    sender_id: Uuid,
    ids: &[Uuid],
) -> Result<usize, sqlx::Error> {
    let found: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM attachments
         WHERE conversation_id = $1 AND uploader_id = $2 AND id = ANY($3) AND message_id IS NULL
         FOR UPDATE",
    )
    .bind(conversation_id)
    .bind(sender_id)
    .bind(ids)
    .fetch_all(connection)
    .await?;
    Ok(found.len())
}

pub async fn message_exists(
    connection: &mut PgConnection,
    conversation_id: Uuid,
    sender_id: Uuid,
    client_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1 AND sender_id = $2 AND client_id = $3)",
    )
    .bind(conversation_id)
    .bind(sender_id)
    .bind(client_id)
    .fetch_one(connection)
    .await
}
