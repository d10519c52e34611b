//! The outbox and inbox against a real Kafka-protocol broker and PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use commerce_messaging::{
    ConsumerSettings, EventHandler, HandlerError, InboxConsumer, KafkaConfig, NewEvent,
    OutboxRelay, ReceivedEvent, RelaySettings, TopicSpec, enqueue, ensure_topics, headers,
};
use commerce_testkit::{PrivateBroker, eventually, fresh_database, required_env, unique};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

fn shared_broker() -> KafkaConfig {
    KafkaConfig::new(required_env("COMMERCE_TEST_KAFKA_BROKERS"))
}

async fn messaging_database(prefix: &str) -> PgPool {
    let database = fresh_database(prefix).await;
    commerce_messaging::MIGRATOR
        .run(&database.pool)
        .await
        .expect("outbox/inbox migration");
    sqlx::query("CREATE TABLE effects (seq BIGSERIAL, event_id UUID NOT NULL, body TEXT NOT NULL)")
        .execute(&database.pool)
        .await
        .expect("effects table");
    database.pool
}

async fn topic(kafka: &KafkaConfig, prefix: &str, partitions: i32) -> String {
    let name = unique(prefix);
    ensure_topics(kafka, &[TopicSpec::new(&name, partitions)])
        .await
        .expect("create topic");
    name
}

/// Reads `count` records of `topic` from the beginning.
async fn read_topic(
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

fn header(message: &rdkafka::message::OwnedMessage, key: &str) -> Option<String> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == key)
            .and_then(|header| header.value)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    })
}

/// Writes `body` as an effect: the handler every test uses.
struct RecordEffect {
    calls: AtomicUsize,
    fail_type: Option<&'static str>,
}

impl RecordEffect {
    fn new(fail_type: Option<&'static str>) -> Arc<Self> {
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
                "the handler refuses this type".to_owned(),
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

fn consumer_settings(topic: &str, max_attempts: u32) -> ConsumerSettings {
    ConsumerSettings {
        group: unique("group"),
        topics: vec![topic.to_owned()],
        dead_letter_topic: format!("{topic}.dlq"),
        max_attempts,
        retry_backoff: Duration::from_millis(20),
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

async fn enqueue_one(pool: &PgPool, topic: &str, aggregate: &str, body: &str) -> Uuid {
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

#[tokio::test]
async fn outbox_publishes_in_order_with_event_and_trace_headers() {
    let kafka = shared_broker();
    let pool = messaging_database("outbox").await;
    let topic = topic(&kafka, "test.outbox", 3).await;

    // A tracer, so the enqueueing span has a trace id to carry.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);
    let span = tracing::info_span!("place-order");
    let trace_id = span.context().span().span_context().trace_id().to_string();

    let mut expected: HashMap<String, Vec<(Uuid, String)>> = HashMap::new();
    async {
        for index in 0..30 {
            let aggregate = format!("order-{}", index % 3);
            let body = format!("{aggregate}#{index}");
            let id = enqueue_one(&pool, &topic, &aggregate, &body).await;
            expected.entry(aggregate).or_default().push((id, body));
        }
    }
    .instrument(span)
    .await;
    // Rows written but rolled back must never be published.
    let mut tx = pool.begin().await.unwrap();
    enqueue(
        &mut tx,
        NewEvent {
            topic: topic.clone(),
            aggregate_id: "order-0".into(),
            event_type: "test.v1.RolledBack".into(),
            payload: b"never".to_vec(),
        },
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    let relay = OutboxRelay::new("test", pool.clone(), &kafka, RelaySettings::default()).unwrap();
    let mut published = 0;
    while published < 30 {
        let batch = relay.publish_batch().await.expect("publish");
        assert!(
            batch > 0,
            "relay found nothing with {published} of 30 published"
        );
        published += batch;
    }
    assert_eq!(relay.publish_batch().await.unwrap(), 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
        )
        .await,
        0
    );

    let records = read_topic(&kafka, &topic, 30).await;
    let mut seen: HashMap<String, Vec<(Uuid, String)>> = HashMap::new();
    for record in &records {
        let key = String::from_utf8(record.key().unwrap().to_vec()).unwrap();
        let id: Uuid = header(record, headers::EVENT_ID).unwrap().parse().unwrap();
        assert_eq!(
            header(record, headers::EVENT_TYPE).as_deref(),
            Some("test.v1.Happened")
        );
        assert_eq!(
            header(record, headers::CONTENT_TYPE).as_deref(),
            Some(headers::PROTOBUF)
        );
        let traceparent = header(record, headers::TRACEPARENT).expect("traceparent header");
        assert!(
            traceparent.contains(&trace_id),
            "{traceparent} does not carry {trace_id}"
        );
        let body = String::from_utf8(record.payload().unwrap().to_vec()).unwrap();
        assert!(body.starts_with(&key), "{body} was keyed {key}");
        seen.entry(key).or_default().push((id, body));
    }
    // Each aggregate's events arrive in the order they were written.
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn broker_killed_mid_stream_loses_nothing_and_applies_nothing_twice() {
    let mut broker = PrivateBroker::start();
    let mut kafka = KafkaConfig::new(broker.brokers());
    kafka.delivery_timeout = Duration::from_secs(60);
    let pool = messaging_database("restart").await;
    let topic = topic(&kafka, "test.restart", 2).await;
    let shutdown = CancellationToken::new();

    let relay = OutboxRelay::new(
        "test",
        pool.clone(),
        &kafka,
        RelaySettings {
            poll_interval: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
            ..RelaySettings::default()
        },
    )
    .unwrap();
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));
    let handler = RecordEffect::new(None);
    let consumer =
        InboxConsumer::new(&kafka, pool.clone(), consumer_settings(&topic, 50), handler).unwrap();
    let consumer_task = tokio::spawn(consumer.run(shutdown.clone()));

    const TOTAL: usize = 150;
    for index in 0..TOTAL {
        if index == 60 {
            // Let some records flow first, so the kill lands mid-stream.
            eventually(Duration::from_secs(30), "first effects", || async {
                (count(&pool, "SELECT count(*) FROM effects").await > 10).then_some(())
            })
            .await;
            broker.kill();
        }
        if index == 100 {
            broker.restart();
        }
        enqueue_one(
            &pool,
            &topic,
            &format!("agg-{}", index % 7),
            &format!("event-{index}"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    eventually(
        Duration::from_secs(120),
        "every effect after the restart",
        || async {
            (count(&pool, "SELECT count(*) FROM effects").await >= TOTAL as i64).then_some(())
        },
    )
    .await;
    // A moment for any duplicate delivery to show up, then check exactly-once effects.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM effects").await,
        TOTAL as i64
    );
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT body) FROM effects").await,
        TOTAL as i64
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM inbox_events WHERE status = 'processed'"
        )
        .await,
        TOTAL as i64
    );

    shutdown.cancel();
    relay_task.await.unwrap().unwrap();
    consumer_task.await.unwrap().unwrap();
}

/// Produces a record straight to the topic, bypassing the outbox (as a redelivery would).
async fn produce_raw(
    kafka: &KafkaConfig,
    topic: &str,
    event_id: Option<Uuid>,
    event_type: &str,
    body: &str,
) {
    let id = event_id.map(|id| id.to_string());
    let mut record_headers = OwnedHeaders::new().insert(Header {
        key: headers::EVENT_TYPE,
        value: Some(event_type),
    });
    if let Some(id) = &id {
        record_headers = record_headers.insert(Header {
            key: headers::EVENT_ID,
            value: Some(id.as_str()),
        });
    }
    kafka
        .producer()
        .unwrap()
        .send(
            FutureRecord::to(topic)
                .key("k")
                .payload(body)
                .headers(record_headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)
        .expect("produce");
}

#[tokio::test]
async fn redelivered_events_change_nothing() {
    let kafka = shared_broker();
    let pool = messaging_database("dedupe").await;
    let topic = topic(&kafka, "test.dedupe", 1).await;
    let repeated = Uuid::now_v7();
    for _ in 0..3 {
        produce_raw(
            &kafka,
            &topic,
            Some(repeated),
            "test.v1.Happened",
            "repeated",
        )
        .await;
    }
    let sentinel = Uuid::now_v7();
    produce_raw(
        &kafka,
        &topic,
        Some(sentinel),
        "test.v1.Happened",
        "sentinel",
    )
    .await;

    let handler = RecordEffect::new(None);
    let settings = consumer_settings(&topic, 3);
    let shutdown = CancellationToken::new();
    let consumer =
        InboxConsumer::new(&kafka, pool.clone(), settings.clone(), handler.clone()).unwrap();
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(Duration::from_secs(30), "the sentinel's effect", || async {
        (count(
            &pool,
            "SELECT count(*) FROM effects WHERE body = 'sentinel'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM effects WHERE body = 'repeated'"
        )
        .await,
        1
    );
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        2,
        "duplicates must not reach the handler"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();

    // A new consumer of the same group (a restart) sees the same ids again: still nothing.
    produce_raw(
        &kafka,
        &topic,
        Some(repeated),
        "test.v1.Happened",
        "repeated",
    )
    .await;
    let final_sentinel = Uuid::now_v7();
    produce_raw(
        &kafka,
        &topic,
        Some(final_sentinel),
        "test.v1.Happened",
        "final",
    )
    .await;
    let shutdown = CancellationToken::new();
    let consumer = InboxConsumer::new(&kafka, pool.clone(), settings, handler.clone()).unwrap();
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(Duration::from_secs(30), "the final sentinel", || async {
        (count(&pool, "SELECT count(*) FROM effects WHERE body = 'final'").await == 1).then_some(())
    })
    .await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM effects WHERE body = 'repeated'"
        )
        .await,
        1
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM effects").await, 3);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn failing_events_go_to_the_dead_letter_topic_and_the_stream_moves_on() {
    let kafka = shared_broker();
    let pool = messaging_database("dlq").await;
    let topic = topic(&kafka, "test.dlq", 1).await;
    let settings = consumer_settings(&topic, 3);
    ensure_topics(&kafka, &[TopicSpec::new(&settings.dead_letter_topic, 1)])
        .await
        .unwrap();

    let poison = Uuid::now_v7();
    produce_raw(&kafka, &topic, Some(poison), "test.v1.Poison", "poison").await;
    produce_raw(&kafka, &topic, None, "test.v1.Happened", "no-id").await;
    let good = Uuid::now_v7();
    produce_raw(&kafka, &topic, Some(good), "test.v1.Happened", "good").await;

    let handler = RecordEffect::new(Some("test.v1.Poison"));
    let shutdown = CancellationToken::new();
    let consumer =
        InboxConsumer::new(&kafka, pool.clone(), settings.clone(), handler.clone()).unwrap();
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(
        Duration::from_secs(30),
        "the good event after the poison",
        || async {
            (count(&pool, "SELECT count(*) FROM effects WHERE body = 'good'").await == 1)
                .then_some(())
        },
    )
    .await;
    // Three attempts at the poison, one at the good event; the id-less record never reaches it.
    assert_eq!(handler.calls.load(Ordering::SeqCst), 4);
    assert_eq!(count(&pool, "SELECT count(*) FROM effects").await, 1);
    let status: String = sqlx::query_scalar("SELECT status FROM inbox_events WHERE event_id = $1")
        .bind(poison)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "dead_lettered");

    let dead = read_topic(&kafka, &settings.dead_letter_topic, 2).await;
    let bodies: Vec<_> = dead
        .iter()
        .map(|record| String::from_utf8(record.payload().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(bodies, ["poison", "no-id"]);
    assert_eq!(
        header(&dead[0], headers::DLQ_ATTEMPTS).as_deref(),
        Some("3")
    );
    assert_eq!(
        header(&dead[0], headers::EVENT_ID),
        Some(poison.to_string())
    );
    assert_eq!(header(&dead[0], headers::DLQ_TOPIC), Some(topic.clone()));
    assert!(
        header(&dead[0], headers::DLQ_ERROR)
            .unwrap()
            .contains("refuses")
    );
    assert!(
        header(&dead[1], headers::DLQ_ERROR)
            .unwrap()
            .contains(headers::EVENT_ID)
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
