//! The transactional outbox. [`enqueue`] writes an event in the caller's transaction; the
//! [`OutboxRelay`] publishes pending rows in insertion order with the idempotent producer
//! and marks them published.
//!
//! Ordering: one relay at a time works on a service's outbox (a PostgreSQL advisory lock
//! held for the batch), rows go to the producer in `seq` order, the record key is the
//! aggregate id (one aggregate, one partition), and only the unbroken prefix of delivered
//! rows is marked published. A failed batch is retried from its first undelivered row, so
//! a consumer may see a record again — which the inbox makes harmless — but never sees an
//! aggregate's later event marked done while an earlier one is still pending.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::global;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::{MessagingError, headers};

/// An event to publish once the surrounding transaction commits.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub topic: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// `message` as the event, its type the message's full protobuf name.
    pub fn of<M: prost::Message + prost::Name>(
        topic: impl Into<String>,
        aggregate_id: impl Into<String>,
        message: &M,
    ) -> Self {
        Self::protobuf(topic, aggregate_id, M::full_name(), message)
    }

    /// A protobuf payload; `event_type` is the message's full protobuf name.
    pub fn protobuf(
        topic: impl Into<String>,
        aggregate_id: impl Into<String>,
        event_type: impl Into<String>,
        message: &impl prost::Message,
    ) -> Self {
        Self {
            topic: topic.into(),
            aggregate_id: aggregate_id.into(),
            event_type: event_type.into(),
            payload: message.encode_to_vec(),
        }
    }
}

/// Writes `event` to the outbox inside the caller's transaction and returns its event id.
/// The current trace context is stored with it, so the trace continues through Kafka.
pub async fn enqueue(
    connection: &mut PgConnection,
    event: NewEvent,
) -> Result<Uuid, MessagingError> {
    let id = Uuid::now_v7();
    let mut trace: HashMap<String, String> = HashMap::new();
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut trace));
    sqlx::query(
        "INSERT INTO outbox_events (id, topic, aggregate_id, event_type, payload, headers)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(&event.topic)
    .bind(&event.aggregate_id)
    .bind(&event.event_type)
    .bind(&event.payload)
    .bind(sqlx::types::Json(&trace))
    .execute(connection)
    .await?;
    Ok(id)
}

#[derive(Debug, Clone, Deserialize)]
pub struct RelaySettings {
    #[serde(default = "default_batch_size")]
    pub batch_size: i64,
    /// How often an idle relay looks for new rows when it cannot listen for them (its
    /// listening connection is down).
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a listening relay waits for a notification before it looks anyway: a
    /// safety net, since a notification sent while the listener reconnects is lost.
    #[serde(default = "default_idle_check", with = "humantime_serde")]
    pub idle_check: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

fn default_batch_size() -> i64 {
    256
}

fn default_poll_interval() -> Duration {
    Duration::from_millis(100)
}

fn default_idle_check() -> Duration {
    Duration::from_secs(10)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            poll_interval: default_poll_interval(),
            idle_check: default_idle_check(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// What the outbox insert trigger notifies (`migrations/2_outbox_notify.sql`).
const NOTIFY_CHANNEL: &str = "outbox_events";

/// The advisory-lock key that makes one relay per database the publisher.
const RELAY_LOCK: i64 = 0x636f_6d6d_6f75_7462;

#[derive(sqlx::FromRow)]
struct PendingRow {
    id: Uuid,
    topic: String,
    aggregate_id: String,
    event_type: String,
    payload: Vec<u8>,
    headers: sqlx::types::Json<HashMap<String, String>>,
}

pub struct OutboxRelay {
    pool: PgPool,
    producer: FutureProducer,
    settings: RelaySettings,
    service: String,
    topic_prefix: String,
}

impl OutboxRelay {
    /// A relay with a producer of its own.
    pub fn new(
        service: impl Into<String>,
        pool: PgPool,
        kafka: &crate::KafkaConfig,
        settings: RelaySettings,
    ) -> Result<Self, MessagingError> {
        Ok(Self::sharing(
            kafka.producer()?,
            service,
            pool,
            kafka,
            settings,
        ))
    }

    /// A relay that publishes through `producer`, shared with the process's other relays
    /// and dead-letter queues.
    pub fn sharing(
        producer: FutureProducer,
        service: impl Into<String>,
        pool: PgPool,
        kafka: &crate::KafkaConfig,
        settings: RelaySettings,
    ) -> Self {
        Self {
            pool,
            producer,
            settings,
            service: service.into(),
            topic_prefix: kafka.topic_prefix.clone(),
        }
    }

    /// Publishes until `shutdown` is cancelled; broker or database errors back off and retry.
    /// Idle, it waits for the `outbox_events` notification the insert trigger sends at
    /// commit (`migrations/2_outbox_notify.sql`), looking anyway every `idle_check`; while
    /// it cannot listen it polls every `poll_interval`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), MessagingError> {
        let mut backoff = self.settings.poll_interval;
        let mut listener = self.listen().await;
        tracing::info!(service = %self.service, listening = listener.is_some(), "outbox relay started");
        while !shutdown.is_cancelled() {
            let pause = match self.publish_batch().await {
                Ok(0) => None,
                Ok(_) => {
                    backoff = self.settings.poll_interval;
                    continue;
                }
                Err(error) => {
                    metrics::counter!("outbox_relay_errors_total", "service" => self.service.clone())
                        .increment(1);
                    tracing::warn!(service = %self.service, %error, ?backoff, "outbox batch failed; backing off");
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                    Some(pause)
                }
            };
            match (pause, listener.as_mut()) {
                (None, Some(listening)) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        notified = listening.recv() => {
                            if let Err(error) = notified {
                                tracing::warn!(service = %self.service, %error, "outbox listener lost; polling until it is back");
                                listener = None;
                            }
                        }
                        _ = tokio::time::sleep(self.settings.idle_check) => {}
                    }
                }
                (pause, _) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause.unwrap_or(self.settings.poll_interval)) => {}
                    }
                    if listener.is_none() {
                        listener = self.listen().await;
                    }
                }
            }
        }
        tracing::info!(service = %self.service, "outbox relay stopped");
        Ok(())
    }

    /// A connection listening for new outbox rows; None (the relay polls) when the
    /// database cannot give one now.
    async fn listen(&self) -> Option<PgListener> {
        let listening = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listening.await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(service = %self.service, %error, "cannot listen for outbox rows; polling");
                None
            }
        }
    }

    /// Publishes one batch; returns how many rows were marked published.
    pub async fn publish_batch(&self) -> Result<usize, MessagingError> {
        let mut tx = self.pool.begin().await?;
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !leader {
            return Ok(0);
        }
        let rows: Vec<PendingRow> = sqlx::query_as(
            "SELECT id, topic, aggregate_id, event_type, payload, headers
             FROM outbox_events WHERE published_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(self.settings.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let span =
            tracing::info_span!("outbox.publish", service = %self.service, rows = rows.len());
        let (delivered, failure) = self.send_in_order(&rows).instrument(span).await;

        let published: Vec<Uuid> = rows[..delivered].iter().map(|row| row.id).collect();
        sqlx::query("UPDATE outbox_events SET published_at = now() WHERE id = ANY($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await?;
        if let Some(error) = &failure {
            sqlx::query(
                "UPDATE outbox_events SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
            )
            .bind(rows[delivered].id)
            .bind(error.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        metrics::counter!("outbox_published_total", "service" => self.service.clone())
            .increment(delivered as u64);
        match failure {
            Some(error) => Err(error),
            None => Ok(delivered),
        }
    }

    /// Hands every row to the producer in order, then waits for the acks. Returns the
    /// length of the delivered prefix and the first failure.
    async fn send_in_order(&self, rows: &[PendingRow]) -> (usize, Option<MessagingError>) {
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            let event_id = row.id.to_string();
            let mut record_headers = OwnedHeaders::new_with_capacity(4 + row.headers.len())
                .insert(Header {
                    key: headers::EVENT_ID,
                    value: Some(event_id.as_str()),
                })
                .insert(Header {
                    key: headers::EVENT_TYPE,
                    value: Some(row.event_type.as_str()),
                })
                .insert(Header {
                    key: headers::CONTENT_TYPE,
                    value: Some(headers::PROTOBUF),
                });
            for (key, value) in row.headers.iter() {
                record_headers = record_headers.insert(Header {
                    key: key.as_str(),
                    value: Some(value.as_str()),
                });
            }
            let topic = format!("{}{}", self.topic_prefix, row.topic);
            let record = FutureRecord::to(&topic)
                .key(row.aggregate_id.as_bytes())
                .payload(&row.payload)
                .headers(record_headers);
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((error, _)) => {
                    // The local queue is full or the producer failed: stop here, keep order.
                    let (prefix, failure) = await_prefix(deliveries).await;
                    return (
                        prefix,
                        Some(failure.unwrap_or(MessagingError::Kafka(error))),
                    );
                }
            }
        }
        await_prefix(deliveries).await
    }
}

async fn await_prefix(
    deliveries: Vec<rdkafka::producer::DeliveryFuture>,
) -> (usize, Option<MessagingError>) {
    let mut prefix = 0;
    let mut failure = None;
    for delivery in deliveries {
        let outcome = match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((error, _))) => Err(MessagingError::Kafka(error)),
            Err(_) => Err(MessagingError::DeliveryDropped),
        };
        // Every future is awaited so none is left behind, but only the unbroken prefix counts.
        match outcome {
            Ok(()) if failure.is_none() => prefix += 1,
            Ok(()) => {}
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    (prefix, failure)
}
