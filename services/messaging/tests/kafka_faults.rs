//! Broker faults under traffic, on a private three-node Apache Kafka cluster (replication
//! factor 3, `min.insync.replicas` 2): the outbox relay publishes and the inbox consumer
//! applies while nodes die and come back. After each fault the same three properties
//! hold: nothing lost, nothing applied twice, each aggregate's events applied in order.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use commerce_messaging::{
    BrokerProbe, InboxConsumer, KafkaConfig, OutboxRelay, RelaySettings, TopicSpec, ensure_topics,
};
use commerce_testkit::{PrivateKafka, eventually, unique};
use sqlx::PgPool;
use support::*;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const AGGREGATES: usize = 7;

/// A relay and a consumer on one topic of a private cluster, and a writer that enqueues an
/// event every few milliseconds until told to stop.
struct Traffic {
    kafka: PrivateKafka,
    config: KafkaConfig,
    pool: PgPool,
    /// Held for the test's length: dropped, it is marked finished (`commerce_testkit`).
    _database: commerce_testkit::TestDatabase,
    topic: String,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<Result<(), commerce_messaging::MessagingError>>>,
    enqueued: Arc<AtomicUsize>,
    writer: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Traffic {
    async fn start(prefix: &str) -> Self {
        let kafka = PrivateKafka::start(3);
        let mut config = KafkaConfig::new(kafka.brokers());
        config.delivery_timeout = Duration::from_secs(15);
        let database = messaging_database(prefix).await;
        let pool = database.pool.clone();
        let topic = unique(&format!("test.{prefix}"));
        ensure_topics(&config, &[TopicSpec::new(&topic, 3)])
            .await
            .expect("create the topic");
        let shutdown = CancellationToken::new();
        let relay = OutboxRelay::new(
            "test",
            pool.clone(),
            &config,
            RelaySettings {
                poll_interval: Duration::from_millis(20),
                max_backoff: Duration::from_secs(1),
                ..RelaySettings::default()
            },
        )
        .unwrap();
        let consumer = InboxConsumer::new(
            &config,
            pool.clone(),
            consumer_settings(&topic, 50),
            RecordEffect::new(None),
        )
        .unwrap();
        let tasks = vec![
            tokio::spawn(relay.run(shutdown.clone())),
            tokio::spawn(consumer.run(shutdown.clone())),
        ];
        let mut traffic = Self {
            kafka,
            config,
            pool,
            _database: database,
            topic,
            shutdown,
            tasks,
            enqueued: Arc::default(),
            writer: None,
        };
        traffic.start_writing();
        traffic
    }

    fn start_writing(&mut self) {
        let stop = CancellationToken::new();
        let (pool, topic, enqueued, until) = (
            self.pool.clone(),
            self.topic.clone(),
            self.enqueued.clone(),
            stop.clone(),
        );
        let writer = tokio::spawn(async move {
            while !until.is_cancelled() {
                let index = enqueued.load(Ordering::SeqCst);
                let aggregate = format!("agg-{}", index % AGGREGATES);
                enqueue_one(&pool, &topic, &aggregate, &format!("{aggregate}#{index}")).await;
                enqueued.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        self.writer = Some((stop, writer));
    }

    async fn stop_writing(&mut self) -> usize {
        if let Some((stop, writer)) = self.writer.take() {
            stop.cancel();
            writer.await.unwrap();
        }
        self.enqueued.load(Ordering::SeqCst)
    }

    async fn applied(&self) -> i64 {
        count(&self.pool, "SELECT count(*) FROM effects").await
    }

    async fn unpublished(&self) -> i64 {
        count(
            &self.pool,
            "SELECT count(*) FROM outbox_events WHERE published_at IS NULL",
        )
        .await
    }

    /// Waits until `more` effects beyond the current count have been applied.
    async fn wait_for_progress(&self, more: i64, within: Duration) {
        let target = self.applied().await + more;
        eventually(within, "the consumer to apply more events", || async {
            (self.applied().await >= target).then_some(())
        })
        .await;
    }

    /// Every partition of the topic: (leader, in-sync replicas).
    fn partitions(&self) -> Vec<(i32, Vec<i32>)> {
        self.kafka
            .partitions(Some(&self.topic))
            .into_iter()
            .map(|partition| (partition.leader, partition.in_sync))
            .collect()
    }

    /// Stops the writer, waits for every event to be applied, and checks the three
    /// properties: nothing lost, nothing applied twice, each aggregate in order.
    async fn finish(mut self) {
        let total = self.stop_writing().await as i64;
        eventually(
            Duration::from_secs(120),
            "every enqueued event applied",
            || async { (self.applied().await >= total).then_some(()) },
        )
        .await;
        // A moment for a duplicate delivery to show up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(self.applied().await, total, "each event applied once");
        assert_eq!(
            count(&self.pool, "SELECT count(DISTINCT body) FROM effects").await,
            total
        );
        assert_eq!(self.unpublished().await, 0);
        let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM effects ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .unwrap();
        let mut last: HashMap<String, usize> = HashMap::new();
        for body in bodies {
            let (aggregate, index) = body.split_once('#').expect("aggregate#index");
            let index: usize = index.parse().unwrap();
            if let Some(previous) = last.insert(aggregate.to_owned(), index) {
                assert!(
                    previous < index,
                    "{aggregate}: event {index} applied after {previous}"
                );
            }
        }
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            task.await.unwrap().unwrap();
        }
    }
}

#[tokio::test]
async fn a_partition_leader_killed_under_traffic_loses_nothing_and_catches_up() {
    let mut traffic = Traffic::start("leader-kill").await;
    traffic.wait_for_progress(30, Duration::from_secs(60)).await;

    let (killed_broker, _) = traffic.partitions()[0];
    let killed = traffic.kafka.node_of_broker(killed_broker);
    traffic.kafka.kill(killed);
    // The controller fences the dead broker (broker.session.timeout.ms): another
    // replica leads, and with two in sync the cluster keeps taking writes.
    eventually(
        Duration::from_secs(60),
        "the killed broker fenced: leading nothing, in no ISR",
        || async {
            traffic
                .partitions()
                .iter()
                .all(|(leader, isr)| *leader != killed_broker && !isr.contains(&killed_broker))
                .then_some(())
        },
    )
    .await;
    traffic.wait_for_progress(50, Duration::from_secs(60)).await;

    traffic.kafka.start_node(killed);
    traffic.kafka.wait_fully_replicated().await;
    traffic.wait_for_progress(20, Duration::from_secs(60)).await;
    traffic.finish().await;
}

#[tokio::test]
async fn a_rolling_restart_under_traffic_loses_nothing_and_readiness_stays_true() {
    let mut traffic = Traffic::start("rolling").await;
    let probe = BrokerProbe::new(&traffic.config).unwrap();
    traffic.wait_for_progress(20, Duration::from_secs(60)).await;
    for node in 0..3 {
        traffic.kafka.stop(node);
        // One node of three away: writes still reach two in-sync copies, so the shop is
        // ready and says so, and events keep flowing.
        probe
            .check()
            .await
            .expect("ready while one broker restarts");
        traffic.wait_for_progress(20, Duration::from_secs(60)).await;
        traffic.kafka.start_node(node);
        // The next node goes only once this one is back in sync, as a rolling restart of
        // a StatefulSet waits for readiness.
        traffic.kafka.wait_fully_replicated().await;
    }
    traffic.finish().await;
}

#[tokio::test]
async fn two_of_three_brokers_down_keeps_events_in_the_outbox_until_one_returns() {
    let mut traffic = Traffic::start("two-down").await;
    traffic.wait_for_progress(20, Duration::from_secs(60)).await;
    traffic.kafka.kill(1);
    traffic.kafka.kill(2);
    // No majority of controllers and fewer than min.insync.replicas copies: acks=all
    // cannot be met, so nothing new is published and the outbox keeps what is written.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let applied_while_down = traffic.applied().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        traffic.unpublished().await > 0,
        "the outbox holds events while the cluster cannot take them"
    );
    assert!(
        traffic.applied().await <= applied_while_down + 1,
        "events kept being applied with two of three brokers down"
    );

    traffic.kafka.start_node(1);
    traffic
        .wait_for_progress(50, Duration::from_secs(120))
        .await;
    traffic.kafka.start_node(2);
    traffic.kafka.wait_fully_replicated().await;
    traffic.finish().await;
}
