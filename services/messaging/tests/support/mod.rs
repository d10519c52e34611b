//! What the outbox/inbox tests share: a database with an effects table, topics, a handler
//! that records each event's effect, and queries over what happened.

#![allow(dead_code)] // each test file uses its own part

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use commerce_messaging::{
    ConsumerSettings, EventHandler, HandlerError, KafkaConfig, NewEvent, ReceivedEvent, TopicSpec,
    enqueue, ensure_topics,
};
use commerce_testkit::{TestDatabase, fresh_database, required_env, unique};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub fn shared_broker() -> KafkaConfig {
    KafkaConfig::new(required_env("COMMERCE_TEST_KAFKA_BROKERS"))
}

/// A database with the outbox, the inbox and an `effects` table; held for the test's
/// length (dropped, it is marked finished: `commerce_testkit::TestDatabase`).
pub async fn messaging_database(prefix: &str) -> TestDatabase {
    let database = fresh_database(prefix).await;
    commerce_messaging::MIGRATOR
        .run(&database.pool)
        .await
        .expect("outbox/inbox migration");
    sqlx::query("CREATE TABLE effects (seq BIGSERIAL, event_id UUID NOT NULL, body TEXT NOT NULL)")
        .execute(&database.pool)
        .await
        .expect("effects table");
    database
}

pub async fn topic(kafka: &KafkaConfig, prefix: &str, partitions: i32) -> String {
    let name = unique(prefix);
    ensure_topics(kafka, &[TopicSpec::new(&name, partitions)])
        .await
        .expect("create topic");
    name
}

/// Reads `count` records of `topic` from the beginning.
pub async fn read_topic(
    kafka: &KafkaConfig,
    topic: &str,
    count: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: StreamConsumer = kafka
        .consumer_config(&unique("reader"))
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut records = Vec::new();
    while records.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {count} records arrived on {topic}",
                    records.len()
                )
            })
            .expect("consume");
        records.push(message.detach());
    }
    records
}

pub fn header(message: &rdkafka::message::OwnedMessage, key: &str) -> Option<String> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == key)
            .and_then(|header| header.value)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    })
}

/// Writes `body` as an effect: the handler every test uses.
pub struct RecordEffect {
    pub calls: AtomicUsize,
    fail_type: Option<&'static str>,
}

impl RecordEffect {
    pub fn new(fail_type: Option<&'static str>) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            fail_type,
        })
    }
}

#[async_trait]
impl EventHandler for RecordEffect {
    async fn handle(
        &self,
        connection: &mut PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if Some(event.event_type.as_str()) == self.fail_type {
            return Err(HandlerError::Retryable(
                "the handler refuses this type".into(),
            ));
        }
        sqlx::query("INSERT INTO effects (event_id, body) VALUES ($1, $2)")
            .bind(event.id)
            .bind(String::from_utf8_lossy(&event.payload).into_owned())
            .execute(connection)
            .await?;
        Ok(())
    }
}

pub fn consumer_settings(topic: &str, max_attempts: u32) -> ConsumerSettings {
    ConsumerSettings {
        group: unique("group"),
        topics: vec![topic.to_owned()],
        dead_letter_topic: format!("{topic}.dlq"),
        max_attempts,
        retry_backoff: Duration::from_millis(20),
    }
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

pub async fn enqueue_one(pool: &PgPool, topic: &str, aggregate: &str, body: &str) -> Uuid {
    let mut tx = pool.begin().await.expect("begin");
    let event = NewEvent {
        topic: topic.to_owned(),
        aggregate_id: aggregate.to_owned(),
        event_type: "test.v1.Happened".to_owned(),
        payload: body.as_bytes().to_vec(),
    };
    let id = enqueue(&mut tx, event).await.expect("enqueue");
    tx.commit().await.expect("commit");
    id
}
