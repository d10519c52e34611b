//! The outbox relay's publish rate and Kafka's own producer benchmark
//! (`org.apache.kafka.tools.ProducerPerformance` from kafka-tools) on the same brokers,
//! topic layout and record size, both with `acks=all` and idempotence. Shared by the relay
//! benchmark and the placement benchmark, which measures both again under load.

use std::process::Command;
use std::time::Instant;

use commerce_messaging::{KafkaConfig, OutboxRelay, RelaySettings, TopicSpec, ensure_topics};
use commerce_testkit::{fresh_database, required_env, unique};

/// A typical event: an order's protobuf with a few items is a few hundred bytes.
pub const RECORD_SIZE: usize = 256;
pub const PARTITIONS: i32 = 3;

/// Records per second: (ProducerPerformance, the outbox relay), each sending `records`
/// to a topic of its own on `brokers`.
pub async fn relay_and_native_rates(brokers: &str, records: usize) -> (f64, f64) {
    let kafka = KafkaConfig::new(brokers);
    let native_topic = unique("bench.native");
    let relay_topic = unique("bench.relay");
    ensure_topics(
        &kafka,
        &[
            TopicSpec::new(&native_topic, PARTITIONS),
            TopicSpec::new(&relay_topic, PARTITIONS),
        ],
    )
    .await
    .expect("create the benchmark topics");
    let native = {
        let brokers = brokers.to_owned();
        tokio::task::spawn_blocking(move || native_rate(&brokers, &native_topic, records))
            .await
            .expect("ProducerPerformance ran")
    };

    let database = fresh_database("benchrelay").await;
    commerce_messaging::MIGRATOR
        .run(&database.pool)
        .await
        .expect("outbox migration");
    // The rows are written first: this measures publishing, not enqueueing.
    sqlx::query(
        "INSERT INTO outbox_events (id, topic, aggregate_id, event_type, payload)
         SELECT gen_random_uuid(), $1, 'order-' || (n % 1000), 'bench.v1.Happened', $2
         FROM generate_series(1, $3) AS n",
    )
    .bind(&relay_topic)
    .bind(vec![7u8; RECORD_SIZE])
    .bind(records as i64)
    .execute(&database.pool)
    .await
    .expect("fill the outbox");
    let relay = OutboxRelay::new(
        "bench",
        database.pool.clone(),
        &kafka,
        RelaySettings::default(),
    )
    .unwrap();
    let started = Instant::now();
    let mut published = 0;
    while published < records {
        published += relay.publish_batch().await.expect("publish a batch");
    }
    (native, records as f64 / started.elapsed().as_secs_f64())
}

/// Kafka's producer benchmark; its rate in records per second.
fn native_rate(brokers: &str, topic: &str, records: usize) -> f64 {
    let libs = required_env("COMMERCE_KAFKA_LIBS");
    let output = Command::new("java")
        .args(["-Xmx512m", "-cp", &format!("{libs}/*")])
        .arg("org.apache.kafka.tools.ProducerPerformance")
        .args(["--topic", topic])
        .args(["--num-records", &records.to_string()])
        .args(["--record-size", &RECORD_SIZE.to_string()])
        .args(["--throughput", "-1"])
        .arg("--producer-props")
        .arg(format!("bootstrap.servers={brokers}"))
        .args(["acks=all", "enable.idempotence=true", "linger.ms=5"])
        .output()
        .expect("run ProducerPerformance (scripts/kafka.sh install fetched kafka-tools)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ProducerPerformance failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The last line: "50000 records sent, 41806.0 records/sec (10.21 MB/sec), …".
    let summary = stdout
        .lines()
        .rev()
        .find(|line| line.contains("records sent"))
        .unwrap_or_else(|| panic!("no summary in: {stdout}"));
    summary
        .split(", ")
        .nth(1)
        .and_then(|part| part.split_whitespace().next())
        .and_then(|rate| rate.parse().ok())
        .unwrap_or_else(|| panic!("no rate in `{summary}`"))
}
