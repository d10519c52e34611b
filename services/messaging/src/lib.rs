//! Asynchronous messaging: protobuf events on Kafka with a transactional outbox on the
//! producing side and an idempotent inbox with dead-lettering on the consuming side.

pub mod health;
pub mod inbox;
mod kafka;
pub mod outbox;

pub use health::ConsumerHealth;
pub use inbox::{
    BoxError, ConsumerSettings, EventHandler, HandlerError, InboxConsumer, Outcome, ReceivedEvent,
    is_type,
};
pub use kafka::{BrokerProbe, KafkaConfig, TopicSpec, ensure_topics, ensure_topics_with_retry};
pub use outbox::{NewEvent, OutboxRelay, RelaySettings, enqueue};
/// The idempotent producer ([`KafkaConfig::producer`]); cheap to clone, and one per process
/// is shared by every relay and dead-letter queue of the services it runs.
pub use rdkafka::producer::FutureProducer as SharedProducer;

/// The outbox and inbox tables. Versioned `1`; services number their own migrations with
/// timestamps, and the runtime applies both sets to a service's database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Header names every record carries.
pub mod headers {
    pub const EVENT_ID: &str = "event-id";
    pub const EVENT_TYPE: &str = "event-type";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const PROTOBUF: &str = "application/x-protobuf";
    pub const TRACEPARENT: &str = "traceparent";
    pub const DLQ_ERROR: &str = "dlq-error";
    pub const DLQ_TOPIC: &str = "dlq-original-topic";
    pub const DLQ_PARTITION: &str = "dlq-original-partition";
    pub const DLQ_OFFSET: &str = "dlq-original-offset";
    pub const DLQ_ATTEMPTS: &str = "dlq-attempts";
    pub const DLQ_CONSUMER: &str = "dlq-consumer";
}

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("topic `{topic}`: {code}")]
    Topic {
        topic: String,
        code: rdkafka::types::RDKafkaErrorCode,
    },
    #[error("the producer dropped a delivery")]
    DeliveryDropped,
    #[error("inbox settings: {0}")]
    Settings(&'static str),
    #[error("broker probe: {0}")]
    Probe(#[from] tokio::task::JoinError),
}
