//! Chat use cases. Every change is committed to PostgreSQL first, then announced on Redis
//! Pub/Sub — the conversation's channel for what its members see, a user's channel for
//! "you joined / left" — so clients on any instance receive it.

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use commerce_redis::{Fanout, RedisClient, hash_tagged};
use commerce_runtime::ApiError;
use sha2::Digest;
use sqlx::PgPool;
use uuid::Uuid;

use crate::attachments::{self, AttachmentStore};
use crate::domain::{self, Caller, ChatMessage, Kind, ParticipantRole, Refusal, ServerFrame};
use crate::repository::{self as repo, Conversation, Participant};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] commerce_redis::RedisError),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Storage(#[from] crate::attachments::StoreError),
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> Self {
        match error {
            ChatError::Invalid { field, message } => ApiError::invalid(field, message),
            ChatError::NotFound(_) => ApiError::not_found(error.to_string()),
            ChatError::Refused(_) => ApiError::forbidden(error.to_string()),
            ChatError::Conflict(message) => ApiError::conflict(message),
            ChatError::TooLarge(limit) => ApiError {
                field: Some("body".into()),
                ..ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the file is larger than {limit} bytes"),
                )
            },
            ChatError::Database(_) | ChatError::Redis(_) | ChatError::Storage(_) => {
                ApiError::storage(&error)
            }
        }
    }
}

/// A non-member is told the conversation does not exist, so ids reveal nothing.
fn hidden(refusal: Refusal) -> ChatError {
    match refusal {
        Refusal::NotParticipant => ChatError::NotFound("conversation"),
        other => other.into(),
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ChatError {
    ChatError::Invalid {
        field,
        message: message.into(),
    }
}

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub user_id: Uuid,
    /// Admin or support.
    pub staff: bool,
    pub support: bool,
}

#[derive(Clone)]
pub struct ChatService {
    pool: PgPool,
    redis: RedisClient,
    prefix: String,
    store: Arc<dyn AttachmentStore>,
    /// The largest attachment accepted, in bytes.
    pub max_attachment_bytes: usize,
    /// How long a connection counts as online without a refresh.
    pub presence_ttl: std::time::Duration,
}

/// A conversation with who is in it and who of them is online.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub participants: Vec<ParticipantView>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantView {
    #[serde(flatten)]
    pub participant: Participant,
    pub online: bool,
}

impl ChatService {
    pub fn new(
        pool: PgPool,
        redis: RedisClient,
        prefix: &str,
        store: Arc<dyn AttachmentStore>,
        max_attachment_bytes: usize,
    ) -> Self {
        Self {
            pool,
            redis,
            prefix: prefix.to_owned(),
            store,
            max_attachment_bytes,
            presence_ttl: std::time::Duration::from_secs(60),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn conversation_channel(&self, conversation_id: Uuid) -> String {
        hash_tagged(&self.prefix, &conversation_id.to_string(), "chat")
    }

    pub fn user_channel(&self, user_id: Uuid) -> String {
        hash_tagged(&self.prefix, &user_id.to_string(), "user")
    }

    fn presence_key(&self, user_id: Uuid) -> String {
        hash_tagged(&self.prefix, &user_id.to_string(), "connections")
    }

    async fn publish(&self, channel: &str, frame: &ServerFrame) -> Result<(), ChatError> {
        let payload = serde_json::to_vec(frame).expect("frames serialise");
        Fanout::publish(&self.redis, channel, &payload).await?;
        Ok(())
    }

    /// Publishes after a commit; a failure is logged, not returned — the change is stored
    /// and clients catch up from history.
    async fn announce(&self, channel: &str, frame: &ServerFrame) {
        if let Err(error) = self.publish(channel, frame).await {
            metrics::counter!("chat_publish_failures_total").increment(1);
            tracing::warn!(%error, channel, "announcing a chat change failed");
        }
    }

    /// Tells each user's connections to start following the conversation.
    async fn announce_joined(&self, users: &[Uuid], conversation_id: Uuid) {
        for user in users {
            self.announce(
                &self.user_channel(*user),
                &ServerFrame::Joined { conversation_id },
            )
            .await;
        }
    }

    async fn load(
        &self,
        conversation_id: Uuid,
        actor: Actor,
    ) -> Result<(Conversation, Option<domain::Membership>), ChatError> {
        let mut connection = self.pool.acquire().await?;
        let conversation = repo::conversation(&mut connection, conversation_id)
            .await?
            .ok_or(ChatError::NotFound("conversation"))?;
        let membership = repo::membership(&mut connection, conversation_id, actor.user_id).await?;
        Ok((conversation, membership))
    }

    /// The conversation if the actor may read it.
    pub async fn readable(
        &self,
        conversation_id: Uuid,
        actor: Actor,
    ) -> Result<Conversation, ChatError> {
        let (conversation, membership) = self.load(conversation_id, actor).await?;
        domain::may_read(
            conversation.kind,
            &Caller {
                membership: membership.as_ref(),
                staff: actor.staff,
            },
        )
        .map_err(hidden)?;
        Ok(conversation)
    }

    /// The conversation if the actor may write in it (neither banned nor muted).
    async fn writable(
        &self,
        conversation_id: Uuid,
        actor: Actor,
    ) -> Result<Conversation, ChatError> {
        let (conversation, membership) = self.load(conversation_id, actor).await?;
        let caller = Caller {
            membership: membership.as_ref(),
            staff: actor.staff,
        };
        domain::may_read(conversation.kind, &caller).map_err(hidden)?;
        domain::may_send(&caller, Utc::now())?;
        Ok(conversation)
    }

    async fn moderated(
        &self,
        conversation_id: Uuid,
        actor: Actor,
    ) -> Result<Conversation, ChatError> {
        let conversation = self.readable(conversation_id, actor).await?;
        let (_, membership) = self.load(conversation_id, actor).await?;
        domain::may_moderate(&Caller {
            membership: membership.as_ref(),
            staff: actor.staff,
        })?;
        Ok(conversation)
    }

    /// The customer's open support conversation, made (with the first free agent
    /// assigned) when there is none.
    #[tracing::instrument(skip_all, fields(customer = %actor.user_id))]
    pub async fn open_support(&self, actor: Actor) -> Result<ConversationDetail, ChatError> {
        if actor.staff {
            return Err(invalid(
                "role",
                "support conversations are opened by customers",
            ));
        }
        let mut tx = self.pool.begin().await?;
        if let Some(existing) = repo::open_support_of(&mut tx, actor.user_id).await? {
            drop(tx);
            return self.detail(existing.id, actor).await;
        }
        let id = Uuid::now_v7();
        repo::insert_conversation(&mut tx, id, Kind::Support, "Support", actor.user_id).await?;
        repo::add_participant(&mut tx, id, actor.user_id, ParticipantRole::Customer).await?;
        let agents = repo::all_agents(&self.pool).await?;
        let online = self.online_among(&agents).await?;
        let agent = repo::pick_agent(&mut tx, &online).await?;
        if let Some(agent) = agent {
            repo::add_participant(&mut tx, id, agent, ParticipantRole::Agent).await?;
        }
        match tx.commit().await {
            Ok(()) => {}
            // A second request of the same customer raced this one: answer theirs.
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                let mut connection = self.pool.acquire().await?;
                let existing = repo::open_support_of(&mut connection, actor.user_id)
                    .await?
                    .ok_or(ChatError::NotFound("conversation"))?;
                return self.detail(existing.id, actor).await;
            }
            Err(error) => return Err(error.into()),
        }
        metrics::counter!("chat_support_conversations_total", "assigned" => agent.is_some().to_string())
            .increment(1);
        let joined: Vec<Uuid> = [Some(actor.user_id), agent].into_iter().flatten().collect();
        self.announce_joined(&joined, id).await;
        self.detail(id, actor).await
    }

    /// A group (anyone; the creator owns it) or a channel (staff only).
    pub async fn create(
        &self,
        actor: Actor,
        kind: Kind,
        title: &str,
        members: &[Uuid],
    ) -> Result<ConversationDetail, ChatError> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > 100 {
            return Err(invalid("title", "must be 1 to 100 characters"));
        }
        match kind {
            Kind::Support => {
                return Err(invalid("kind", "use POST /v1/chat/support for support"));
            }
            Kind::Channel if !actor.staff => {
                return Err(Refusal::NotModerator.into());
            }
            _ => {}
        }
        if members.len() > 100 {
            return Err(invalid("members", "at most 100 at once"));
        }
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        repo::insert_conversation(&mut tx, id, kind, title, actor.user_id).await?;
        repo::add_participant(&mut tx, id, actor.user_id, ParticipantRole::Owner).await?;
        // The others are invited, not added: they join when they accept.
        let mut invited = Vec::new();
        for member in members.iter().filter(|member| **member != actor.user_id) {
            if repo::invite(&mut tx, id, *member, actor.user_id).await? {
                invited.push(*member);
            }
        }
        tx.commit().await?;
        self.announce_joined(&[actor.user_id], id).await;
        self.announce_invited(&invited, id).await;
        self.detail(id, actor).await
    }

    async fn announce_invited(&self, users: &[Uuid], conversation_id: Uuid) {
        for user in users {
            self.announce(
                &self.user_channel(*user),
                &ServerFrame::Invited { conversation_id },
            )
            .await;
        }
    }

    /// The actor's open invitations.
    pub async fn invitations(&self, actor: Actor) -> Result<Vec<repo::Invitation>, ChatError> {
        Ok(repo::invitations_of(&self.pool, actor.user_id).await?)
    }

    /// Declines an invitation.
    pub async fn decline(&self, conversation_id: Uuid, actor: Actor) -> Result<(), ChatError> {
        let mut connection = self.pool.acquire().await?;
        if repo::take_invitation(&mut connection, conversation_id, actor.user_id).await? {
            Ok(())
        } else {
            Err(ChatError::NotFound("invitation"))
        }
    }

    /// Joins a channel (anyone), a group the actor was invited to (accepting), or a support
    /// conversation (support staff, as its agent).
    pub async fn join(
        &self,
        conversation_id: Uuid,
        actor: Actor,
    ) -> Result<ConversationDetail, ChatError> {
        let mut tx = self.pool.begin().await?;
        let conversation = repo::conversation(&mut tx, conversation_id)
            .await?
            .ok_or(ChatError::NotFound("conversation"))?;
        let invited = repo::take_invitation(&mut tx, conversation_id, actor.user_id).await?;
        let role = match conversation.kind {
            Kind::Channel => ParticipantRole::Member,
            Kind::Support if actor.staff => ParticipantRole::Agent,
            Kind::Support => return Err(ChatError::NotFound("conversation")),
            Kind::Group if invited => ParticipantRole::Member,
            Kind::Group => {
                // Already in it: joining again changes nothing.
                return match repo::membership(&mut tx, conversation_id, actor.user_id).await? {
                    Some(membership) if !membership.banned => {
                        drop(tx);
                        self.detail(conversation_id, actor).await
                    }
                    _ => Err(Refusal::NotParticipant.into()),
                };
            }
        };
        if let Some(membership) = repo::membership(&mut tx, conversation_id, actor.user_id).await?
            && membership.banned
        {
            return Err(Refusal::Banned.into());
        }
        let added = repo::add_participant(&mut tx, conversation_id, actor.user_id, role).await?;
        tx.commit().await?;
        if added {
            self.announce_joined(&[actor.user_id], conversation_id)
                .await;
        }
        self.detail(conversation_id, actor).await
    }

    /// Invites someone to a group or channel (its owner, or staff); they join when they
    /// accept. To a support conversation staff add another agent, who must work support.
    pub async fn add(
        &self,
        conversation_id: Uuid,
        actor: Actor,
        user_id: Uuid,
    ) -> Result<ConversationDetail, ChatError> {
        let conversation = self.moderated(conversation_id, actor).await?;
        let mut connection = self.pool.acquire().await?;
        match conversation.kind {
            Kind::Support => {
                if !repo::is_agent(&mut connection, user_id).await? {
                    return Err(invalid(
                        "userId",
                        "only support staff can be added as agents",
                    ));
                }
                if repo::add_participant(
                    &mut connection,
                    conversation_id,
                    user_id,
                    ParticipantRole::Agent,
                )
                .await?
                {
                    self.announce_joined(&[user_id], conversation_id).await;
                }
            }
            Kind::Group | Kind::Channel => {
                if repo::invite(&mut connection, conversation_id, user_id, actor.user_id).await? {
                    self.announce_invited(&[user_id], conversation_id).await;
                }
            }
        }
        self.detail(conversation_id, actor).await
    }

    pub async fn detail(
        &self,
        conversation_id: Uuid,
        actor: Actor,
    ) -> Result<ConversationDetail, ChatError> {
        let conversation = self.readable(conversation_id, actor).await?;
        let participants = repo::participants(&self.pool, conversation_id).await?;
        let ids: Vec<Uuid> = participants.iter().map(|p| p.user_id).collect();
        let online = self.online_among(&ids).await?;
        Ok(ConversationDetail {
            conversation,
            participants: participants
                .into_iter()
                .map(|participant| ParticipantView {
                    online: online.contains(&participant.user_id),
                    participant,
                })
                .collect(),
        })
    }

    pub async fn mine(&self, actor: Actor) -> Result<Vec<serde_json::Value>, ChatError> {
        Ok(repo::conversations_of(&self.pool, actor.user_id)
            .await?
            .into_iter()
            .map(|(conversation, last_read)| {
                let mut value = serde_json::to_value(&conversation).unwrap_or_default();
                value["unread"] = (conversation.last_seq - last_read).max(0).into();
                value
            })
            .collect())
    }

    /// Stores a message, then announces it. A repeated client id answers the stored one.
    #[tracing::instrument(skip_all, fields(conversation = %conversation_id, sender = %actor.user_id))]
    pub async fn send(
        &self,
        conversation_id: Uuid,
        actor: Actor,
        client_id: &str,
        body: &str,
        attachments: &[Uuid],
    ) -> Result<ChatMessage, ChatError> {
        if client_id.is_empty() || client_id.len() > 64 {
            return Err(invalid("clientId", "must be 1 to 64 characters"));
        }
        let body = domain::message_body(body).map_err(|message| invalid("body", message))?;
        let mut attachments = attachments.to_vec();
        attachments.sort();
        attachments.dedup();
        if attachments.len() > 10 {
            return Err(invalid("attachments", "at most 10 per message"));
        }
        let mut tx = self.pool.begin().await?;
        let conversation = repo::conversation(&mut tx, conversation_id)
            .await?
            .ok_or(ChatError::NotFound("conversation"))?;
        let membership = repo::membership(&mut tx, conversation_id, actor.user_id).await?;
        let caller = Caller {
            membership: membership.as_ref(),
            staff: actor.staff,
        };
        domain::may_read(conversation.kind, &caller).map_err(hidden)?;
        domain::may_send(&caller, Utc::now())?;
        if conversation.status != "open" {
            return Err(ChatError::Conflict("the conversation is closed".into()));
        }
        // A resend of a stored message answers it; its attachments are already taken.
        if !attachments.is_empty()
            && repo::sendable_attachments(&mut tx, conversation_id, actor.user_id, &attachments)
                .await?
                != attachments.len()
            && !repo::message_exists(&mut tx, conversation_id, actor.user_id, client_id).await?
        {
            return Err(invalid(
                "attachments",
                "each must be one you uploaded to this conversation and have not sent",
            ));
        }
        let (message, created) = repo::insert_message(
            &mut tx,
            conversation_id,
            actor.user_id,
            client_id,
            body,
            &attachments,
        )
        .await?;
        tx.commit().await?;
        if created {
            metrics::counter!("chat_messages_total", "kind" => conversation.kind.as_str())
                .increment(1);
            self.announce(
                &self.conversation_channel(conversation_id),
                &ServerFrame::Message {
                    message: message.clone(),
                },
            )
            .await;
        }
        Ok(message)
    }

    pub async fn history(
        &self,
        conversation_id: Uuid,
        actor: Actor,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ChatMessage>, ChatError> {
        if !(1..=200).contains(&limit) {
            return Err(invalid("limit", "must be between 1 and 200"));
        }
        self.readable(conversation_id, actor).await?;
        Ok(repo::history(&self.pool, conversation_id, before, limit).await?)
    }

    pub async fn search(
        &self,
        conversation_id: Uuid,
        actor: Actor,
        query: &str,
    ) -> Result<Vec<ChatMessage>, ChatError> {
        let query = query.trim();
        if query.is_empty() || query.len() > 200 {
            return Err(invalid("q", "must be 1 to 200 characters"));
        }
        self.readable(conversation_id, actor).await?;
        Ok(repo::search(&self.pool, conversation_id, query, 50).await?)
    }

    /// The sender, the owner or staff delete a message; its text is gone for everyone.
    pub async fn delete_message(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        actor: Actor,
    ) -> Result<(), ChatError> {
        self.readable(conversation_id, actor).await?;
        let message = repo::message(&self.pool, conversation_id, message_id)
            .await?
            .ok_or(ChatError::NotFound("message"))?;
        if message.sender_id != actor.user_id {
            self.moderated(conversation_id, actor).await?;
        }
        repo::delete_message(&self.pool, conversation_id, message_id, actor.user_id).await?;
        self.announce(
            &self.conversation_channel(conversation_id),
            &ServerFrame::Deleted {
                conversation_id,
                message_id,
            },
        )
        .await;
        Ok(())
    }

    pub async fn mute(
        &self,
        conversation_id: Uuid,
        actor: Actor,
        user_id: Uuid,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), ChatError> {
        self.moderated(conversation_id, actor).await?;
        if !repo::set_muted(&self.pool, conversation_id, user_id, until).await? {
            return Err(ChatError::NotFound("participant"));
        }
        Ok(())
    }

    pub async fn ban(
        &self,
        conversation_id: Uuid,
        actor: Actor,
        user_id: Uuid,
        banned: bool,
    ) -> Result<(), ChatError> {
        self.moderated(conversation_id, actor).await?;
        if user_id == actor.user_id {
            return Err(invalid("userId", "you cannot ban yourself"));
        }
        if !repo::set_banned(&self.pool, conversation_id, user_id, banned).await? {
            return Err(ChatError::NotFound("participant"));
        }
        let frame = if banned {
            ServerFrame::Left { conversation_id }
        } else {
            ServerFrame::Joined { conversation_id }
        };
        self.announce(&self.user_channel(user_id), &frame).await;
        Ok(())
    }

    pub async fn mark_read(
        &self,
        conversation_id: Uuid,
        actor: Actor,
        seq: i64,
    ) -> Result<(), ChatError> {
        self.readable(conversation_id, actor).await?;
        repo::mark_read(&self.pool, conversation_id, actor.user_id, seq).await?;
        self.announce(
            &self.conversation_channel(conversation_id),
            &ServerFrame::Read {
                conversation_id,
                user_id: actor.user_id,
                seq,
            },
        )
        .await;
        Ok(())
    }

    pub async fn typing(&self, conversation_id: Uuid, actor: Actor) -> Result<(), ChatError> {
        self.writable(conversation_id, actor).await?;
        self.publish(
            &self.conversation_channel(conversation_id),
            &ServerFrame::Typing {
                conversation_id,
                user_id: actor.user_id,
                expires_in_ms: domain::TYPING_TTL.as_millis() as u64,
            },
        )
        .await
    }

    /// Records a connection as live until now + TTL; answers whether the user just came
    /// online (no other live connection).
    pub async fn connection_alive(
        &self,
        user_id: Uuid,
        connection: Uuid,
    ) -> Result<bool, ChatError> {
        let key = self.presence_key(user_id);
        let now = Utc::now().timestamp_millis();
        let until = now + self.presence_ttl.as_millis() as i64;
        let mut redis = self.redis.clone();
        let (_, _, others, _): (i64, i64, i64, i64) = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now)
            .cmd("ZADD")
            .arg(&key)
            .arg(until)
            .arg(connection.to_string())
            .cmd("ZCOUNT")
            .arg(&key)
            .arg(now)
            .arg("+inf")
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(self.presence_ttl.as_millis() as i64)
            .query_async(&mut redis)
            .await
            .map_err(commerce_redis::RedisError::from)?;
        Ok(others == 1)
    }

    /// Drops a connection; answers whether the user is now offline.
    pub async fn connection_closed(
        &self,
        user_id: Uuid,
        connection: Uuid,
    ) -> Result<bool, ChatError> {
        let key = self.presence_key(user_id);
        let now = Utc::now().timestamp_millis();
        let mut redis = self.redis.clone();
        let (_, left): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("ZREM")
            .arg(&key)
            .arg(connection.to_string())
            .cmd("ZCOUNT")
            .arg(&key)
            .arg(now)
            .arg("+inf")
            .query_async(&mut redis)
            .await
            .map_err(commerce_redis::RedisError::from)?;
        Ok(left == 0)
    }

    /// Which of `users` have a live connection on any instance. The keys live on different
    /// cluster slots, so no pipeline: the queries go out together on the multiplexed
    /// connection instead of one round trip each.
    pub async fn online_among(&self, users: &[Uuid]) -> Result<Vec<Uuid>, ChatError> {
        let now = Utc::now().timestamp_millis();
        let counts = futures::future::try_join_all(users.iter().map(|user| {
            let mut redis = self.redis.clone();
            let key = self.presence_key(*user);
            async move {
                redis::cmd("ZCOUNT")
                    .arg(key)
                    .arg(now)
                    .arg("+inf")
                    .query_async::<i64>(&mut redis)
                    .await
            }
        }))
        .await
        .map_err(commerce_redis::RedisError::from)?;
        Ok(users
            .iter()
            .zip(counts)
            .filter(|(_, count)| *count > 0)
            .map(|(user, _)| *user)
            .collect())
    }

    /// Tells everyone who shares a conversation with the user that they came or went.
    pub async fn announce_presence(&self, user_id: Uuid, online: bool) -> Result<(), ChatError> {
        for (conversation, _) in repo::conversations_of(&self.pool, user_id).await? {
            self.announce(
                &self.conversation_channel(conversation.id),
                &ServerFrame::Presence { user_id, online },
            )
            .await;
        }
        Ok(())
    }

    pub async fn conversation_ids(&self, user_id: Uuid) -> Result<Vec<Uuid>, ChatError> {
        Ok(repo::conversations_of(&self.pool, user_id)
            .await?
            .into_iter()
            .map(|(conversation, _)| conversation.id)
            .collect())
    }

    pub async fn note_agent(&self, actor: Actor) -> Result<(), ChatError> {
        if actor.support {
            repo::note_agent(&self.pool, actor.user_id).await?;
        }
        Ok(())
    }

    /// Stores a file for the conversation (a participant who may write); it is sent by
    /// naming it in a message.
    #[tracing::instrument(skip_all, fields(conversation = %conversation_id, uploader = %actor.user_id))]
    pub async fn upload(
        &self,
        conversation_id: Uuid,
        actor: Actor,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<repo::Attachment, ChatError> {
        self.writable(conversation_id, actor).await?;
        let file_name = attachments::clean_file_name(file_name)
            .map_err(|message| invalid("fileName", message))?;
        if bytes.is_empty() {
            return Err(invalid("body", "the file is empty"));
        }
        if bytes.len() > self.max_attachment_bytes {
            return Err(ChatError::TooLarge(self.max_attachment_bytes));
        }
        let content_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        attachments::check_content(&content_type, bytes)
            .map_err(|message| invalid("Content-Type", message))?;
        let id = Uuid::now_v7();
        let attachment = repo::Attachment {
            id,
            conversation_id,
            uploader_id: actor.user_id,
            file_name,
            content_type,
            size_bytes: bytes.len() as i64,
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            storage_key: id.to_string(),
            message_id: None,
            created_at: Utc::now(),
        };
        // The bytes first: a row never points at nothing.
        self.store.put(&attachment.storage_key, bytes).await?;
        repo::insert_attachment(&self.pool, &attachment).await?;
        metrics::counter!("chat_attachments_total").increment(1);
        Ok(attachment)
    }

    /// An attachment's metadata and bytes, for anyone who may read the conversation.
    pub async fn download(
        &self,
        conversation_id: Uuid,
        attachment_id: Uuid,
        actor: Actor,
    ) -> Result<(repo::Attachment, Vec<u8>), ChatError> {
        self.readable(conversation_id, actor).await?;
        let attachment = repo::attachment(&self.pool, conversation_id, attachment_id)
            .await?
            .ok_or(ChatError::NotFound("attachment"))?;
        // Until it is sent, only its uploader sees it.
        if attachment.message_id.is_none() && attachment.uploader_id != actor.user_id {
            return Err(ChatError::NotFound("attachment"));
        }
        let bytes = self
            .store
            .get(&attachment.storage_key)
            .await?
            .ok_or(ChatError::NotFound("attachment"))?;
        Ok((attachment, bytes))
    }
}
