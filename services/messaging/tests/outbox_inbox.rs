//! The outbox and inbox against the shared Apache Kafka cluster and PostgreSQL.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commerce_messaging::{
    EventHandler, HandlerError, InboxConsumer, KafkaConfig, NewEvent, OutboxRelay, ReceivedEvent,
    RelaySettings, TopicSpec, enqueue, ensure_topics, headers,
};
use commerce_testkit::eventually;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use support::*;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

#[tokio::test]
async fn outbox_publishes_in_order_with_event_and_trace_headers() {
    let kafka = shared_broker();
    let database = messaging_database("outbox").await;
    let pool = database.pool.clone();
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

/// Produces a record straight to the topic, bypassing the outbox (as a redelivery would).
/// An idle relay does not poll: with both its poll interval and its safety-net check an hour
/// away, a row written now is published within seconds, woken by the insert trigger's
/// notification alone.
#[tokio::test]
async fn an_idle_relay_is_woken_by_new_rows_instead_of_polling() {
    let kafka = shared_broker();
    let database = messaging_database("outboxwake").await;
    let pool = database.pool.clone();
    let topic = topic(&kafka, "test.wake", 1).await;
    let hour = Duration::from_secs(3600);
    let relay = OutboxRelay::new(
        "test",
        pool.clone(),
        &kafka,
        RelaySettings {
            poll_interval: hour,
            idle_check: hour,
            ..RelaySettings::default()
        },
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    // Idle: its first look found nothing, and it waits.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for round in 0..3 {
        let id = enqueue_one(&pool, &topic, "order-1", &format!("wake #{round}")).await;
        eventually(
            Duration::from_secs(10),
            &format!("row {round} published after a notification"),
            || async {
                let published: Option<bool> = sqlx::query_scalar(
                    "SELECT published_at IS NOT NULL FROM outbox_events WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&pool)
                .await
                .unwrap();
                (published == Some(true)).then_some(())
            },
        )
        .await;
    }
    let records = read_topic(&kafka, &topic, 3).await;
    assert_eq!(records.len(), 3);
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

async fn produce_raw(
    kafka: &KafkaConfig,
    topic: &str,
    event_id: Option<Uuid>,
    event_type: &str,
    body: &str,
) {
    produce_with(
        &kafka.producer().unwrap(),
        topic,
        event_id,
        event_type,
        body,
    )
    .await;
}

async fn produce_with(
    producer: &rdkafka::producer::FutureProducer,
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
    producer
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
    let database = messaging_database("dedupe").await;
    let pool = database.pool.clone();
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
    let database = messaging_database("dlq").await;
    let pool = database.pool.clone();
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

/// Stages what it handles and makes it "durable" at flush, as search's index does.
struct StagingEffect {
    batch: usize,
    flushes: AtomicUsize,
    discards: AtomicUsize,
    staged: Mutex<Vec<String>>,
    flushed: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl EventHandler for StagingEffect {
    async fn handle(
        &self,
        connection: &mut sqlx::PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        if event.event_type == "test.v1.Poison" {
            return Err(HandlerError::Retryable(
                "the handler refuses this type".into(),
            ));
        }
        let body = String::from_utf8_lossy(&event.payload).into_owned();
        sqlx::query("INSERT INTO effects (event_id, body) VALUES ($1, $2)")
            .bind(event.id)
            .bind(&body)
            .execute(connection)
            .await?;
        self.staged.lock().unwrap().push(body);
        Ok(())
    }

    fn batch_limit(&self) -> usize {
        self.batch
    }

    async fn flush(&self) -> Result<(), HandlerError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        let staged = std::mem::take(&mut *self.staged.lock().unwrap());
        self.flushed.lock().unwrap().extend(staged);
        Ok(())
    }

    async fn discard(&self) {
        self.discards.fetch_add(1, Ordering::SeqCst);
        self.staged.lock().unwrap().clear();
    }
}

#[tokio::test]
async fn a_batching_handler_takes_waiting_records_in_one_transaction_and_a_failed_batch_one_by_one()
{
    let kafka = shared_broker();
    let database = messaging_database("batch").await;
    let pool = database.pool.clone();
    let topic = topic(&kafka, "test.batch", 1).await;
    let settings = consumer_settings(&topic, 3);
    ensure_topics(&kafka, &[TopicSpec::new(&settings.dead_letter_topic, 1)])
        .await
        .unwrap();
    // Everything waits in the topic before the consumer starts.
    let bodies: Vec<String> = (0..60).map(|index| format!("good-{index}")).collect();
    let producer = kafka.producer().unwrap();
    for (index, body) in bodies.iter().enumerate() {
        if index == 30 {
            let poison = Uuid::now_v7();
            produce_with(&producer, &topic, Some(poison), "test.v1.Poison", "poison").await;
        }
        produce_with(
            &producer,
            &topic,
            Some(Uuid::now_v7()),
            "test.v1.Happened",
            body,
        )
        .await;
    }

    let handler = Arc::new(StagingEffect {
        batch: 16,
        flushes: AtomicUsize::new(0),
        discards: AtomicUsize::new(0),
        staged: Mutex::default(),
        flushed: Mutex::default(),
    });
    let shutdown = CancellationToken::new();
    let consumer = InboxConsumer::new(&kafka, pool.clone(), settings, handler.clone()).unwrap();
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(
        Duration::from_secs(30),
        "every good record applied",
        || async { (count(&pool, "SELECT count(*) FROM effects").await == 60).then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the poison dead-lettered",
        || async {
            (count(
                &pool,
                "SELECT count(*) FROM inbox_events WHERE status = 'dead_lettered'",
            )
            .await
                == 1)
                .then_some(())
        },
    )
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    // Each record made durable once, in order; the failed batch's staged work was dropped.
    assert_eq!(*handler.flushed.lock().unwrap(), bodies);
    let flushes = handler.flushes.load(Ordering::SeqCst);
    assert!(
        flushes < bodies.len(),
        "records waiting together share a transaction: {flushes} flushes for {} records",
        bodies.len()
    );
    // The poison's batch, then each of its three attempts alone.
    assert!(handler.discards.load(Ordering::SeqCst) >= 3);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM inbox_events WHERE status = 'processed'"
        )
        .await,
        60
    );
}
