//! The idempotent inbox consumer. Each record is applied in one PostgreSQL transaction that
//! also records its event id in `inbox_events`; the offset is stored for commit only after
//! that transaction. A redelivered record finds its id and changes nothing, which is why
//! stored offsets are committed once a second (and on shutdown and rebalance) rather than
//! one broker write, replicated, per record. A handler may take the records already
//! fetched in batches, one transaction each (see [`EventHandler`]). A record that keeps
//! failing goes to the dead-letter topic after `max_attempts`, and is recorded as such.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use opentelemetry::global;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::health::{ConsumerHealth, InboxContext};
use crate::{KafkaConfig, MessagingError, headers};

/// A record as a handler sees it.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub id: Uuid,
    pub event_type: String,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub headers: HashMap<String, String>,
}

impl ReceivedEvent {
    /// Whether the event carries an `M` (its type is `M`'s full protobuf name).
    pub fn is<M: prost::Name>(&self) -> bool {
        is_type::<M>(&self.event_type)
    }

    /// A UUID the payload carries in `field`; a malformed one will never be applied, so
    /// it is a permanent failure (the event is dead-lettered).
    pub fn uuid(&self, field: &str, raw: &str) -> Result<uuid::Uuid, HandlerError> {
        uuid::Uuid::parse_str(raw).map_err(|_| {
            HandlerError::Permanent(
                format!("{}.{field} `{raw}` is not a UUID", self.event_type).into(),
            )
        })
    }

    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, HandlerError> {
        M::decode(self.payload.as_slice()).map_err(|error| {
            HandlerError::Permanent(format!("{}: {error}", self.event_type).into())
        })
    }
}

/// Whether `event_type` names the protobuf message `M` (`package.Name`).
pub fn is_type<M: prost::Name>(event_type: &str) -> bool {
    event_type
        .strip_prefix(M::PACKAGE)
        .and_then(|rest| rest.strip_prefix('.'))
        == Some(M::NAME)
}

/// A handler's failure: the cause itself, or a sentence.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again (a peer or the database was unavailable): the cause, or a
    /// sentence when there is none (`"...".into()`).
    #[error(transparent)]
    Retryable(BoxError),
    /// Will never succeed (malformed payload): dead-letter at once.
    #[error(transparent)]
    Permanent(BoxError),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Retryable(error.into())
    }
}

/// What a consuming service implements. `connection` is inside the inbox transaction:
/// everything written through it commits or rolls back together with the inbox row.
///
/// A handler whose own store pays per commit (search's index) may take records in
/// batches: those already waiting, up to [`EventHandler::batch_limit`], are applied in one
/// transaction, [`EventHandler::flush`] runs before it commits, and
/// [`EventHandler::discard`] when it does not (each record is then applied alone).
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(
        &self,
        connection: &mut PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError>;

    /// The most records applied in one transaction.
    fn batch_limit(&self) -> usize {
        1
    }

    /// Makes what `handle` did since the last flush durable; runs before the inbox
    /// transaction commits, so a crash in between redelivers rather than loses.
    async fn flush(&self) -> Result<(), HandlerError> {
        Ok(())
    }

    /// Forgets what `handle` did since the last flush: its transaction rolled back.
    async fn discard(&self) {}
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerSettings {
    /// The consumer group, also the inbox's `consumer` column.
    pub group: String,
    pub topics: Vec<String>,
    pub dead_letter_topic: String,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
}

fn default_max_attempts() -> u32 {
    5
}

fn default_retry_backoff() -> Duration {
    Duration::from_millis(200)
}

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    DeadLettered,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

/// How often librdkafka reports the consumer's group state and lag to its [`ConsumerHealth`].
const STATISTICS_INTERVAL: Duration = Duration::from_secs(10);
/// How often the offsets of applied records are committed: a crash redelivers at most this
/// much, which the inbox table turns into no-ops.
const OFFSET_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

pub struct InboxConsumer {
    kafka: KafkaConfig,
    pool: PgPool,
    consumer: StreamConsumer<InboxContext>,
    health: Arc<ConsumerHealth>,
    dead_letters: FutureProducer,
    handler: Arc<dyn EventHandler>,
    settings: ConsumerSettings,
}

impl InboxConsumer {
    pub fn new(
        kafka: &KafkaConfig,
        pool: PgPool,
        settings: ConsumerSettings,
        handler: Arc<dyn EventHandler>,
    ) -> Result<Self, MessagingError> {
        let health = Arc::new(ConsumerHealth::new(settings.group.clone()));
        Self::reporting_to(kafka, kafka.producer()?, pool, settings, handler, health)
    }

    /// A consumer whose group standing goes to `health`, made before the consumer (a
    /// service registers its readiness check at start, the consumer comes once its topics
    /// exist).
    ///
    /// Dead letters go out through `dead_letters`, the process's shared producer.
    pub fn reporting_to(
        kafka: &KafkaConfig,
        dead_letters: FutureProducer,
        pool: PgPool,
        settings: ConsumerSettings,
        handler: Arc<dyn EventHandler>,
        health: Arc<ConsumerHealth>,
    ) -> Result<Self, MessagingError> {
        if settings.max_attempts == 0 {
            return Err(MessagingError::Settings("max_attempts must be at least 1"));
        }
        let consumer: StreamConsumer<InboxContext> = kafka
            .consumer_config(&settings.group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                OFFSET_COMMIT_INTERVAL.as_millis().to_string(),
            )
            .set(
                "statistics.interval.ms",
                STATISTICS_INTERVAL.as_millis().to_string(),
            )
            .create_with_context(InboxContext {
                health: health.clone(),
            })?;
        let topics: Vec<String> = settings
            .topics
            .iter()
            .map(|topic| kafka.topic(topic))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Self {
            kafka: kafka.clone(),
            pool,
            consumer,
            health,
            dead_letters,
            handler,
            settings,
        })
    }

    /// Its standing in the group, for readiness and metrics.
    pub fn health(&self) -> Arc<ConsumerHealth> {
        self.health.clone()
    }

    /// Consumes until `shutdown` is cancelled. The record in hand is finished (or left
    /// uncommitted, to be redelivered) before this returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), MessagingError> {
        tracing::info!(group = %self.settings.group, topics = ?self.settings.topics, "consumer started");
        let mut stream = self.consumer.stream();
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = stream.next() => match next {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        tracing::warn!(group = %self.settings.group, %error, "consume error");
                        tokio::time::sleep(self.settings.retry_backoff).await;
                        continue;
                    }
                    None => break,
                },
            };
            // Records already fetched join this one, up to the handler's batch.
            let mut batch = vec![message];
            while batch.len() < self.handler.batch_limit() {
                match stream.next().now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    Some(Some(Err(error))) => {
                        tracing::warn!(group = %self.settings.group, %error, "consume error");
                        break;
                    }
                    _ => break,
                }
            }
            let started = std::time::Instant::now();
            let outcomes = match self.apply_batch(&batch).await {
                Some(outcomes) => outcomes,
                None => {
                    let mut outcomes = Vec::with_capacity(batch.len());
                    for message in &batch {
                        match self.process(message, &shutdown).await {
                            Some(outcome) => outcomes.push(outcome),
                            None => break,
                        }
                    }
                    outcomes
                }
            };
            metrics::histogram!(
                "inbox_apply_duration_seconds",
                "consumer" => self.settings.group.clone()
            )
            .record(started.elapsed().as_secs_f64());
            for (message, outcome) in batch.iter().zip(&outcomes) {
                metrics::counter!(
                    "inbox_events_total",
                    "consumer" => self.settings.group.clone(),
                    "outcome" => outcome.label()
                )
                .increment(1);
                // Refused when a rebalance took the partition meanwhile: its new owner gets
                // the record again, and the inbox table makes that a no-op.
                if let Err(error) = self.consumer.store_offset_from_message(message) {
                    tracing::warn!(group = %self.settings.group, %error, "storing the offset failed; the record will be redelivered");
                }
            }
            if outcomes.len() < batch.len() {
                break; // shutting down mid-retry: leave the rest for redelivery
            }
        }
        // What was applied since the last interval's commit is not redelivered to whoever
        // takes the partitions next. Nothing stored yet is not an error.
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                tracing::warn!(group = %self.settings.group, %error, "committing offsets at shutdown failed; the records since the last commit are redelivered")
            }
        }
        tracing::info!(group = %self.settings.group, "consumer stopped");
        Ok(())
    }

    /// Applies several records in one transaction, each in its own span; `None` (nothing
    /// applied) when one of them cannot be read or fails, and they are then applied one by
    /// one with retries and dead-lettering.
    async fn apply_batch(&self, batch: &[BorrowedMessage<'_>]) -> Option<Vec<Outcome>> {
        if batch.len() < 2 {
            return None;
        }
        let events: Vec<ReceivedEvent> = batch
            .iter()
            .map(|message| parse(message, &self.kafka).ok())
            .collect::<Option<_>>()?;
        match self.apply(&events).await {
            Ok(outcomes) => Some(outcomes),
            Err(error) => {
                tracing::warn!(group = %self.settings.group, %error, records = batch.len(), "a batch failed; applying its records one by one");
                None
            }
        }
    }

    /// The span a record is applied in, a child of the span that published it.
    fn span(&self, event: &ReceivedEvent) -> tracing::Span {
        let span = tracing::info_span!(
            "kafka.consume",
            otel.name = format!("{} process", event.topic),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.destination.name = %event.topic,
            messaging.consumer.group.name = %self.settings.group,
            messaging.message.id = %event.id,
            event_type = %event.event_type,
        );
        let parent =
            global::get_text_map_propagator(|propagator| propagator.extract(&event.headers));
        let _ = span.set_parent(parent);
        span
    }

    /// Applies one record with retries; `None` when shutdown interrupted it.
    async fn process(
        &self,
        message: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Option<Outcome> {
        let event = match parse(message, &self.kafka) {
            Ok(event) => event,
            Err(reason) => {
                return self
                    .dead_letter_until_done(message, None, &reason, 0, shutdown)
                    .await;
            }
        };
        let span = self.span(&event);
        async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let error = match self.apply(std::slice::from_ref(&event)).await {
                    Ok(outcomes) => return outcomes.into_iter().next(),
                    Err(error) => error,
                };
                let permanent = matches!(error, HandlerError::Permanent(_));
                if permanent || attempt >= self.settings.max_attempts {
                    tracing::error!(%error, attempt, "giving up; dead-lettering");
                    return self
                        .dead_letter_until_done(
                            message,
                            Some(&event),
                            &error.to_string(),
                            attempt,
                            shutdown,
                        )
                        .await;
                }
                let pause = self.settings.retry_backoff * 2u32.saturating_pow(attempt - 1);
                tracing::warn!(%error, attempt, ?pause, "handler failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Applies `events` in one transaction: each one not seen before is recorded and
    /// handled, then the handler flushes and the transaction commits. When anything fails
    /// the handler discards what it did. The records of a batch are handled in spans of
    /// their own; a lone record runs in its caller's.
    async fn apply(&self, events: &[ReceivedEvent]) -> Result<Vec<Outcome>, HandlerError> {
        let applied = async {
            let mut tx = self.pool.begin().await?;
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                let outcome = if self.record(&mut tx, event, "processed", None).await? {
                    let handled = self.handler.handle(&mut tx, event);
                    if events.len() > 1 {
                        handled.instrument(self.span(event)).await?;
                    } else {
                        handled.await?;
                    }
                    Outcome::Applied
                } else {
                    Outcome::Duplicate
                };
                outcomes.push(outcome);
            }
            self.handler.flush().await?;
            tx.commit().await?;
            Ok(outcomes)
        };
        let outcomes = applied.await;
        if outcomes.is_err() {
            self.handler.discard().await;
        }
        outcomes
    }

    /// Inserts the inbox row; `false` when the event was seen before.
    async fn record(
        &self,
        connection: &mut PgConnection,
        event: &ReceivedEvent,
        status: &str,
        error: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO inbox_events
                 (consumer, event_id, event_type, topic, kafka_partition, kafka_offset, status, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (consumer, event_id) DO NOTHING",
        )
        .bind(&self.settings.group)
        .bind(event.id)
        .bind(&event.event_type)
        .bind(&event.topic)
        .bind(event.partition)
        .bind(event.offset)
        .bind(status)
        .bind(error)
        .execute(connection)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Publishes to the dead-letter topic and records it, retrying until it works or
    /// shutdown; a record is never committed without landing somewhere.
    async fn dead_letter_until_done(
        &self,
        message: &BorrowedMessage<'_>,
        event: Option<&ReceivedEvent>,
        reason: &str,
        attempts: u32,
        shutdown: &CancellationToken,
    ) -> Option<Outcome> {
        let mut pause = self.settings.retry_backoff;
        loop {
            match self.dead_letter(message, event, reason, attempts).await {
                Ok(()) => return Some(Outcome::DeadLettered),
                Err(error) => tracing::warn!(%error, "dead-letter failed; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        event: Option<&ReceivedEvent>,
        reason: &str,
        attempts: u32,
    ) -> Result<(), MessagingError> {
        let mut dlq_headers = message
            .headers()
            .map(|headers| headers.detach())
            .unwrap_or_default();
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let attempts = attempts.to_string();
        for (key, value) in [
            (headers::DLQ_ERROR, reason),
            (headers::DLQ_TOPIC, message.topic()),
            (headers::DLQ_PARTITION, partition.as_str()),
            (headers::DLQ_OFFSET, offset.as_str()),
            (headers::DLQ_ATTEMPTS, attempts.as_str()),
            (headers::DLQ_CONSUMER, self.settings.group.as_str()),
        ] {
            dlq_headers = dlq_headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let dead_letter_topic = self.kafka.topic(&self.settings.dead_letter_topic);
        let mut record = FutureRecord::to(&dead_letter_topic).headers(dlq_headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.dead_letters
            .send(record, Duration::from_secs(0))
            .await
            .map_err(|(error, _)| MessagingError::Kafka(error))?;
        if let Some(event) = event {
            let mut connection = self.pool.acquire().await?;
            self.record(&mut connection, event, "dead_lettered", Some(reason))
                .await?;
        }
        metrics::counter!("inbox_dead_lettered_total", "consumer" => self.settings.group.clone())
            .increment(1);
        Ok(())
    }
}

fn parse(message: &BorrowedMessage<'_>, kafka: &KafkaConfig) -> Result<ReceivedEvent, String> {
    let mut headers = HashMap::new();
    if let Some(record_headers) = message.headers() {
        for header in record_headers.iter() {
            if let Some(value) = header
                .value
                .and_then(|value| std::str::from_utf8(value).ok())
            {
                headers.insert(header.key.to_owned(), value.to_owned());
            }
        }
    }
    let id = headers
        .get(headers::EVENT_ID)
        .ok_or_else(|| format!("record has no `{}` header", headers::EVENT_ID))?
        .parse::<Uuid>()
        .map_err(|error| format!("`{}` header is not a UUID: {error}", headers::EVENT_ID))?;
    let event_type = headers
        .get(headers::EVENT_TYPE)
        .cloned()
        .ok_or_else(|| format!("record has no `{}` header", headers::EVENT_TYPE))?;
    Ok(ReceivedEvent {
        id,
        event_type,
        key: message
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned()),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        topic: kafka.logical_topic(message.topic()).to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::is_type;

    #[test]
    fn an_event_type_is_its_messages_full_name() {
        assert!(is_type::<prost_types::Timestamp>(
            "google.protobuf.Timestamp"
        ));
        for other in [
            "google.protobuf.Duration",
            "google.protobufTimestamp",
            "google.protobuf.Timestamp2",
            "other.google.protobuf.Timestamp",
            "Timestamp",
            "",
        ] {
            assert!(!is_type::<prost_types::Timestamp>(other), "{other}");
        }
    }
}
