//! `GET /v1/notifications/stream`: a user's notifications as Server-Sent Events, on
//! whichever instance holds the connection.
//!
//! The stream listens to the user's Redis channel (through the process's one fan-out
//! connection) BEFORE it reads the database, so nothing committed in between is lost. A
//! client resuming with `Last-Event-ID` (the per-user sequence number) first gets what it
//! missed from the database; a gap in the live feed (a lagging stream, a Redis reconnect)
//! is filled the same way. Events carry the sequence as their id and are sent once each.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use commerce_redis::{Delivery, Fanout, Listener};
use futures::Stream;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::delivery::push_channel;
use crate::repository::{self as repo, NotificationView};

#[derive(Clone)]
pub struct StreamHub {
    pub pool: PgPool,
    pub fanout: Fanout,
    pub prefix: String,
    pub heartbeat: Duration,
    pub shutdown: CancellationToken,
}

/// How many recently sent sequence numbers a stream remembers to send each event once.
const REMEMBERED: usize = 512;
const REPLAY_PAGE: i64 = 200;

struct Cursor {
    /// The highest sequence number sent (or the one the client said it had).
    high: i64,
    recent: VecDeque<i64>,
}

impl Cursor {
    fn fresh(&mut self, seq: i64) -> bool {
        if self.recent.contains(&seq) {
            return false;
        }
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back(seq);
        self.high = self.high.max(seq);
        true
    }
}

fn event(view: &NotificationView) -> Event {
    Event::default()
        .id(view.seq.to_string())
        .event("notification")
        .json_data(view)
        .unwrap_or_else(|_| Event::default().comment("unencodable notification"))
}

impl StreamHub {
    /// Opens a stream for `user_id`. Fails (before any byte is sent) when Redis is down.
    pub async fn open(
        &self,
        user_id: Uuid,
        last_event_id: Option<i64>,
        expires_in: Duration,
    ) -> Result<
        Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>,
        commerce_redis::RedisError,
    > {
        let listener = self
            .fanout
            .subscribe(&push_channel(&self.prefix, user_id))
            .await?;
        let (sender, receiver) = mpsc::channel::<Event>(32);
        let hub = self.clone();
        metrics::gauge!("notification_open_streams").increment(1.0);
        tokio::spawn(async move {
            let reason = hub
                .feed(user_id, last_event_id, listener, &sender, expires_in)
                .await;
            tracing::debug!(%user_id, reason, "notification stream closed");
            metrics::gauge!("notification_open_streams").decrement(1.0);
        });
        let events = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|event| (Ok(event), receiver))
        });
        Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(self.heartbeat)))
    }

    async fn feed(
        &self,
        user_id: Uuid,
        last_event_id: Option<i64>,
        mut listener: Listener,
        sender: &mpsc::Sender<Event>,
        expires_in: Duration,
    ) -> &'static str {
        let mut cursor = Cursor {
            high: 0,
            recent: VecDeque::new(),
        };
        match last_event_id {
            Some(seen) => {
                cursor.high = seen;
                if self.catch_up(user_id, &mut cursor, sender).await.is_err() {
                    return "client gone or database unavailable";
                }
            }
            None => match repo::latest_seq(&self.pool, user_id).await {
                Ok(latest) => cursor.high = latest,
                Err(_) => return "database unavailable",
            },
        }
        let unread = repo::unread_count(&self.pool, user_id).await.unwrap_or(0);
        let greeting = Event::default()
            .event("unread")
            .data(serde_json::json!({ "unread": unread }).to_string());
        if sender.send(greeting).await.is_err() {
            return "client gone";
        }
        // Tokens expire: the stream ends with the token, and the client reconnects with a
        // fresh one (and its Last-Event-ID).
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        loop {
            let delivery = tokio::select! {
                _ = self.shutdown.cancelled() => return "shutting down",
                _ = sender.closed() => return "client gone",
                _ = &mut expiry => return "token expired",
                delivery = listener.next() => delivery,
            };
            match delivery {
                None => return "fan-out stopped",
                Some(Delivery::Gap) => {
                    if self.catch_up(user_id, &mut cursor, sender).await.is_err() {
                        return "client gone or database unavailable";
                    }
                }
                Some(Delivery::Message(payload)) => {
                    let Ok(view) = serde_json::from_slice::<NotificationView>(&payload) else {
                        continue;
                    };
                    if cursor.fresh(view.seq) && sender.send(event(&view)).await.is_err() {
                        return "client gone";
                    }
                }
            }
        }
    }

    /// Sends every in-app notification after the cursor, oldest first.
    async fn catch_up(
        &self,
        user_id: Uuid,
        cursor: &mut Cursor,
        sender: &mpsc::Sender<Event>,
    ) -> Result<(), ()> {
        loop {
            let page = repo::after(&self.pool, user_id, cursor.high, REPLAY_PAGE)
                .await
                .map_err(|_| ())?;
            let full = page.len() as i64 == REPLAY_PAGE;
            for view in &page {
                cursor.high = cursor.high.max(view.seq);
                if cursor.fresh(view.seq) {
                    sender.send(event(view)).await.map_err(|_| ())?;
                }
            }
            if !full {
                return Ok(());
            }
        }
    }
}
