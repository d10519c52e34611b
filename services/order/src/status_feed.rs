//! Committed order status changes as they happen, from PostgreSQL's `order_status`
//! channel (a trigger NOTIFYs at commit; see the migration). One listener per process
//! fans out to every subscriber through a broadcast channel.

use serde::Deserialize;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::OrderStatus;

pub const CHANNEL: &str = "order_status";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct StatusChange {
    pub id: Uuid,
    pub status: OrderStatus,
}

#[derive(Clone)]
pub struct StatusFeed {
    sender: broadcast::Sender<StatusChange>,
}

impl StatusFeed {
    pub fn new() -> Self {
        // Subscribers that fall this far behind skip ahead (and re-read the order).
        let (sender, _) = broadcast::channel(1024);
        Self { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StatusChange> {
        self.sender.subscribe()
    }

    /// Listens until shutdown. sqlx's listener reconnects by itself after a lost
    /// connection; changes made meanwhile are not replayed, which subscribers cover by
    /// reading the order when they start.
    pub async fn run(self, pool: PgPool, shutdown: CancellationToken) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        loop {
            let notification = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                notification = listener.recv() => notification,
            };
            match notification {
                Ok(notification) => match serde_json::from_str(notification.payload()) {
                    Ok(change) => {
                        // No subscriber is not an error.
                        let _ = self.sender.send(change);
                    }
                    Err(error) => tracing::warn!(%error, "unreadable order status notification"),
                },
                Err(error) => {
                    tracing::warn!(%error, "order status listener lost its connection; reconnecting");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }
}

impl Default for StatusFeed {
    fn default() -> Self {
        Self::new()
    }
}
