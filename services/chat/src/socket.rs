//! One WebSocket connection: typed JSON frames in and out.
//!
//! The connection follows the user's channel (joined / left) and the channel of each of
//! their conversations through the process's one Redis fan-out, so a message committed on
//! any instance reaches it. Outgoing frames go through a bounded queue to a writer task:
//! a client that does not read (or whose writes stall) is disconnected rather than
//! allowed to hold memory or delay anyone else; a lagging feed becomes a `resync` error
//! telling the client to reload history. Incoming frames are size- and rate-limited.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use commerce_redis::{Delivery, Fanout};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{self, ClientFrame, RateLimiter, ServerFrame};
use crate::service::{Actor, ChatError, ChatService};

/// Connection limits (`services.chat`).
#[derive(Debug, Clone)]
pub struct SocketLimits {
    pub outbound_queue: usize,
    pub write_timeout: Duration,
    pub frames_per_second: f64,
    pub burst: u32,
}

enum Source {
    User,
    Conversation(Uuid),
}

struct Follower {
    internal: mpsc::Sender<(Source, Delivery)>,
    tasks: HashMap<Uuid, JoinHandle<()>>,
}

impl Follower {
    async fn follow(&mut self, fanout: &Fanout, service: &ChatService, conversation_id: Uuid) {
        if self.tasks.contains_key(&conversation_id) {
            return;
        }
        let channel = service.conversation_channel(conversation_id);
        match fanout.subscribe(&channel).await {
            Ok(listener) => {
                let task = forward(
                    listener,
                    Source::Conversation(conversation_id),
                    self.internal.clone(),
                );
                self.tasks.insert(conversation_id, task);
            }
            Err(error) => tracing::warn!(%error, %conversation_id, "cannot follow a conversation"),
        }
    }

    fn unfollow(&mut self, conversation_id: Uuid) {
        if let Some(task) = self.tasks.remove(&conversation_id) {
            task.abort();
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

fn forward(
    mut listener: commerce_redis::Listener,
    source: Source,
    internal: mpsc::Sender<(Source, Delivery)>,
) -> JoinHandle<()> {
    let conversation = match source {
        Source::User => None,
        Source::Conversation(id) => Some(id),
    };
    tokio::spawn(async move {
        while let Some(delivery) = listener.next().await {
            let source = conversation.map_or(Source::User, Source::Conversation);
            if internal.send((source, delivery)).await.is_err() {
                return;
            }
        }
    })
}

fn text(frame: &ServerFrame) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(frame).expect("frames serialise"),
    ))
}

fn error_frame(error: &ChatError, client_id: Option<String>) -> ServerFrame {
    let code = match error {
        ChatError::Invalid { .. } => "invalid",
        ChatError::NotFound(_) => "not_found",
        ChatError::Refused(refusal) => refusal.code(),
        ChatError::Conflict(_) => "conflict",
        ChatError::TooLarge(_) => "too_large",
        ChatError::Database(_) | ChatError::Redis(_) | ChatError::Storage(_) => "unavailable",
    };
    ServerFrame::error(code, error.to_string(), client_id)
}

/// Runs one connection to its end. No span spans the connection (it may last hours): each
/// frame's work (`send`, `upload`, …) is a trace of its own.
pub async fn run(
    socket: WebSocket,
    service: ChatService,
    fanout: Fanout,
    actor: Actor,
    expires_in: Duration,
    limits: SocketLimits,
    shutdown: CancellationToken,
) {
    let connection_id = Uuid::now_v7();
    metrics::gauge!("chat_open_connections").increment(1.0);
    let (mut sink, mut incoming) = socket.split();
    let (outgoing, mut queue) = mpsc::channel::<Message>(limits.outbound_queue.max(1));
    let write_timeout = limits.write_timeout;
    let writer = tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            let closing = matches!(message, Message::Close(_));
            match tokio::time::timeout(write_timeout, sink.send(message)).await {
                Ok(Ok(())) if !closing => {}
                _ => break,
            }
        }
        let _ = sink.close().await;
    });
    let (internal, mut deliveries) = mpsc::channel::<(Source, Delivery)>(1024);
    let mut follower = Follower {
        internal: internal.clone(),
        tasks: HashMap::new(),
    };
    let outcome: Result<(), &'static str> = async {
        let user_listener = fanout
            .subscribe(&service.user_channel(actor.user_id))
            .await
            .map_err(|_| "redis unavailable")?;
        let _user_task = AbortOnDrop(forward(user_listener, Source::User, internal.clone()));
        let conversations = service
            .conversation_ids(actor.user_id)
            .await
            .map_err(|_| "database unavailable")?;
        for conversation in &conversations {
            follower.follow(&fanout, &service, *conversation).await;
        }
        if service
            .connection_alive(actor.user_id, connection_id)
            .await
            .unwrap_or(false)
        {
            let _ = service.announce_presence(actor.user_id, true).await;
        }
        let ready = ServerFrame::Ready {
            user_id: actor.user_id,
            conversations,
        };
        outgoing.send(text(&ready)).await.map_err(|_| "client gone")?;
        let mut limiter = RateLimiter::new(limits.frames_per_second, limits.burst);
        let mut refresh = tokio::time::interval(service.presence_ttl / 3);
        refresh.tick().await;
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Err("shutting down"),
                _ = &mut expiry => return Err("token expired"),
                _ = refresh.tick() => {
                    let _ = service.connection_alive(actor.user_id, connection_id).await;
                }
                frame = incoming.next() => {
                    let message = match frame {
                        None | Some(Ok(Message::Close(_))) => return Err("client closed"),
                        // The frame-size limit surfaces as a read error (tungstenite's
                        // "Message too long"); anything else there is a protocol error.
                        Some(Err(error)) if error.to_string().contains("too long") => {
                            return Err("frame too large");
                        }
                        Some(Err(_)) => return Err("protocol error"),
                        Some(Ok(message)) => message,
                    };
                    let answer = match message {
                        Message::Text(body) => {
                            if !limiter.allow_at(Instant::now()) {
                                metrics::counter!("chat_rate_limited_total").increment(1);
                                Some(ServerFrame::error("rate_limited", "slow down: too many frames", None))
                            } else {
                                handle(&service, actor, body.as_str()).await
                            }
                        }
                        Message::Binary(_) => Some(ServerFrame::error("invalid", "frames are JSON text", None)),
                        _ => None,
                    };
                    if let Some(answer) = answer {
                        outgoing.send(text(&answer)).await.map_err(|_| "client gone")?;
                    }
                }
                delivery = deliveries.recv() => {
                    let Some((source, delivery)) = delivery else { return Err("feed closed") };
                    let message = match (source, delivery) {
                        (_, Delivery::Message(payload)) => {
                            let Ok(body) = std::str::from_utf8(&payload) else { continue };
                            if let Ok(frame) = serde_json::from_str::<ServerFrame>(body) {
                                match frame {
                                    ServerFrame::Joined { conversation_id } => {
                                        follower.follow(&fanout, &service, conversation_id).await;
                                    }
                                    ServerFrame::Left { conversation_id } => follower.unfollow(conversation_id),
                                    _ => {}
                                }
                            }
                            Message::Text(Utf8Bytes::from(body.to_owned()))
                        }
                        (Source::Conversation(conversation_id), Delivery::Gap) => text(&ServerFrame::error(
                            "resync",
                            format!("messages may have been missed in {conversation_id}; reload its history"),
                            None,
                        )),
                        (Source::User, Delivery::Gap) => text(&ServerFrame::error(
                            "resync",
                            "conversation changes may have been missed; reload the conversation list",
                            None,
                        )),
                    };
                    if outgoing.try_send(message).is_err() {
                        metrics::counter!("chat_slow_consumers_total").increment(1);
                        return Err("slow consumer");
                    }
                }
            }
        }
    }
    .await;
    let reason = outcome.err().unwrap_or("done");
    tracing::debug!(user = %actor.user_id, reason, "chat connection closed");
    let code = match reason {
        "slow consumer" => 1008,
        "frame too large" => 1009,
        "protocol error" => 1002,
        "shutting down" => 1001,
        _ => 1000,
    };
    let _ = outgoing.try_send(Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    })));
    drop(outgoing);
    drop(follower);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    if service
        .connection_closed(actor.user_id, connection_id)
        .await
        .unwrap_or(false)
    {
        let _ = service.announce_presence(actor.user_id, false).await;
    }
    metrics::gauge!("chat_open_connections").decrement(1.0);
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One client frame; the answer for the sender, if any.
async fn handle(service: &ChatService, actor: Actor, body: &str) -> Option<ServerFrame> {
    let frame = match serde_json::from_str::<ClientFrame>(body) {
        Ok(frame) => frame,
        Err(error) => {
            return Some(ServerFrame::error(
                "invalid",
                format!("not a frame: {error}"),
                None,
            ));
        }
    };
    match frame {
        ClientFrame::Send {
            conversation_id,
            client_id,
            body,
            attachments,
        } => match service
            .send(conversation_id, actor, &client_id, &body, &attachments)
            .await
        {
            Ok(message) => Some(ServerFrame::Ack {
                client_id,
                conversation_id,
                message_id: message.id,
                seq: message.seq,
            }),
            Err(error) => Some(error_frame(&error, Some(client_id))),
        },
        ClientFrame::Typing { conversation_id } => service
            .typing(conversation_id, actor)
            .await
            .err()
            .map(|error| error_frame(&error, None)),
        ClientFrame::Read {
            conversation_id,
            seq,
        } => service
            .mark_read(conversation_id, actor, seq)
            .await
            .err()
            .map(|error| error_frame(&error, None)),
        ClientFrame::Ping => Some(ServerFrame::Pong),
    }
}

/// The largest frame a client may send (checked by the upgrade).
pub const MAX_FRAME_BYTES: usize = domain::MAX_FRAME_BYTES;
