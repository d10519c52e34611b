//! Chat rules without I/O: the WebSocket protocol, who may read, write and moderate, and
//! the per-connection rate limit.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The longest message body, in characters.
pub const MAX_BODY_CHARS: usize = 4000;
/// The largest WebSocket frame a client may send.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// How long a typing indicator lasts unless renewed.
pub const TYPING_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Support,
    Group,
    Channel,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Support => "support",
            Kind::Group => "group",
            Kind::Channel => "channel",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Kind::Support, Kind::Group, Kind::Channel]
            .into_iter()
            .find(|kind| kind.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParticipantRole {
    Owner,
    Member,
    Customer,
    Agent,
}

impl ParticipantRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantRole::Owner => "owner",
            ParticipantRole::Member => "member",
            ParticipantRole::Customer => "customer",
            ParticipantRole::Agent => "agent",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Owner, Self::Member, Self::Customer, Self::Agent]
            .into_iter()
            .find(|role| role.as_str() == raw)
    }
}

/// One user's standing in one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub role: ParticipantRole,
    pub muted_until: Option<DateTime<Utc>>,
    pub banned: bool,
}

/// Who is asking: their membership (if any) and whether they are shop staff.
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    pub membership: Option<&'a Membership>,
    pub staff: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("you are not in this conversation")]
    NotParticipant,
    #[error("you were banned from this conversation")]
    Banned,
    #[error("you are muted until {0}")]
    Muted(DateTime<Utc>),
    #[error("only the conversation's owner or shop staff may do this")]
    NotModerator,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotParticipant => "forbidden",
            Refusal::Banned => "banned",
            Refusal::Muted(_) => "muted",
            Refusal::NotModerator => "forbidden",
        }
    }
}

/// Reading: participants who are not banned; staff read support conversations too.
pub fn may_read(kind: Kind, caller: &Caller<'_>) -> Result<(), Refusal> {
    match caller.membership {
        Some(membership) if membership.banned => Err(Refusal::Banned),
        Some(_) => Ok(()),
        None if caller.staff && kind == Kind::Support => Ok(()),
        None => Err(Refusal::NotParticipant),
    }
}

/// Writing: participants who are neither banned nor muted.
pub fn may_send(caller: &Caller<'_>, now: DateTime<Utc>) -> Result<(), Refusal> {
    let membership = caller.membership.ok_or(Refusal::NotParticipant)?;
    if membership.banned {
        return Err(Refusal::Banned);
    }
    match membership.muted_until {
        Some(until) if until > now => Err(Refusal::Muted(until)),
        _ => Ok(()),
    }
}

/// Moderating (delete others' messages, mute, ban, add people): staff, or a group's owner.
pub fn may_moderate(caller: &Caller<'_>) -> Result<(), Refusal> {
    let owner = caller
        .membership
        .is_some_and(|m| m.role == ParticipantRole::Owner && !m.banned);
    if caller.staff || owner {
        Ok(())
    } else {
        Err(Refusal::NotModerator)
    }
}

/// Trims and checks a message body; the error says what is wrong.
pub fn message_body(raw: &str) -> Result<&str, &'static str> {
    let body = raw.trim();
    if body.is_empty() {
        return Err("must not be empty");
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err("is longer than 4000 characters");
    }
    Ok(body)
}

/// A message as every client sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
    pub sender_id: Uuid,
    pub client_id: String,
    /// Empty once deleted.
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub deleted: bool,
    /// Attachment ids (fetch each from the conversation's attachments).
    pub attachments: Vec<Uuid>,
}

/// What a client sends over the WebSocket.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientFrame {
    Send {
        conversation_id: Uuid,
        /// The client's id for this message; acks and retries refer to it.
        client_id: String,
        body: String,
        /// Attachments uploaded to the conversation by the sender, not yet sent.
        #[serde(default)]
        attachments: Vec<Uuid>,
    },
    Typing {
        conversation_id: Uuid,
    },
    Read {
        conversation_id: Uuid,
        seq: i64,
    },
    Ping,
}

/// What the server sends over the WebSocket (and through Redis between instances).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerFrame {
    Ready {
        user_id: Uuid,
        conversations: Vec<Uuid>,
    },
    Ack {
        client_id: String,
        conversation_id: Uuid,
        message_id: Uuid,
        seq: i64,
    },
    Message {
        message: ChatMessage,
    },
    Deleted {
        conversation_id: Uuid,
        message_id: Uuid,
    },
    Typing {
        conversation_id: Uuid,
        user_id: Uuid,
        expires_in_ms: u64,
    },
    Read {
        conversation_id: Uuid,
        user_id: Uuid,
        seq: i64,
    },
    Presence {
        user_id: Uuid,
        online: bool,
    },
    /// The user was added to a conversation (their connections start following it).
    Joined {
        conversation_id: Uuid,
    },
    /// The user was invited to a group or channel; joining it accepts.
    Invited {
        conversation_id: Uuid,
    },
    /// The user was removed or banned (their connections stop following it).
    Left {
        conversation_id: Uuid,
    },
    Error {
        code: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    Pong,
}

impl ServerFrame {
    pub fn error(code: &str, message: impl Into<String>, client_id: Option<String>) -> Self {
        Self::Error {
            code: code.to_owned(),
            message: message.into(),
            client_id,
        }
    }
}

/// A token bucket: `burst` frames at once, refilled at `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_second,
            last: Instant::now(),
        }
    }

    pub fn allow_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(role: ParticipantRole) -> Membership {
        Membership {
            role,
            muted_until: None,
            banned: false,
        }
    }

    #[test]
    fn reading_needs_membership_or_staff_on_support() {
        let customer = member(ParticipantRole::Customer);
        let banned = Membership {
            banned: true,
            ..member(ParticipantRole::Member)
        };
        let someone = |membership, staff| Caller { membership, staff };
        assert!(may_read(Kind::Support, &someone(Some(&customer), false)).is_ok());
        assert!(may_read(Kind::Support, &someone(None, true)).is_ok());
        assert_eq!(
            may_read(Kind::Group, &someone(None, true)),
            Err(Refusal::NotParticipant),
            "staff do not read private groups they are not in"
        );
        assert_eq!(
            may_read(Kind::Support, &someone(None, false)),
            Err(Refusal::NotParticipant)
        );
        assert_eq!(
            may_read(Kind::Group, &someone(Some(&banned), false)),
            Err(Refusal::Banned)
        );
    }

    #[test]
    fn muted_and_banned_members_cannot_send() {
        let now = Utc::now();
        let muted = Membership {
            muted_until: Some(now + chrono::Duration::minutes(5)),
            ..member(ParticipantRole::Member)
        };
        let was_muted = Membership {
            muted_until: Some(now - chrono::Duration::minutes(5)),
            ..member(ParticipantRole::Member)
        };
        let caller = |m| Caller {
            membership: Some(m),
            staff: false,
        };
        assert!(matches!(
            may_send(&caller(&muted), now),
            Err(Refusal::Muted(_))
        ));
        assert!(may_send(&caller(&was_muted), now).is_ok());
        assert_eq!(
            may_send(
                &Caller {
                    membership: None,
                    staff: true
                },
                now
            ),
            Err(Refusal::NotParticipant)
        );
    }

    #[test]
    fn owners_and_staff_moderate() {
        let owner = member(ParticipantRole::Owner);
        let plain = member(ParticipantRole::Member);
        assert!(
            may_moderate(&Caller {
                membership: Some(&owner),
                staff: false
            })
            .is_ok()
        );
        assert!(
            may_moderate(&Caller {
                membership: None,
                staff: true
            })
            .is_ok()
        );
        assert_eq!(
            may_moderate(&Caller {
                membership: Some(&plain),
                staff: false
            }),
            Err(Refusal::NotModerator)
        );
    }

    #[test]
    fn bodies_are_trimmed_and_bounded() {
        assert_eq!(message_body("  hi  "), Ok("hi"));
        assert!(message_body("   ").is_err());
        assert!(message_body(&"é".repeat(4000)).is_ok());
        assert!(message_body(&"é".repeat(4001)).is_err());
    }

    #[test]
    fn frames_have_a_typed_json_shape() {
        let frame: ClientFrame = serde_json::from_str(
            r#"{"type":"send","conversationId":"0199aaaa-0000-7000-8000-000000000000","clientId":"c1","body":"hi"}"#,
        )
        .unwrap();
        assert!(matches!(frame, ClientFrame::Send { ref client_id, .. } if client_id == "c1"));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"shout"}"#).is_err());
        let ack = serde_json::to_value(ServerFrame::Ack {
            client_id: "c1".into(),
            conversation_id: Uuid::nil(),
            message_id: Uuid::nil(),
            seq: 3,
        })
        .unwrap();
        assert_eq!(ack["type"], "ack");
        assert_eq!(ack["seq"], 3);
        assert_eq!(ack["clientId"], "c1");
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(2.0, 3);
        assert!((0..3).all(|_| limiter.allow_at(start)));
        assert!(!limiter.allow_at(start));
        assert!(limiter.allow_at(start + Duration::from_millis(500)));
        assert!(!limiter.allow_at(start + Duration::from_millis(600)));
    }
}
