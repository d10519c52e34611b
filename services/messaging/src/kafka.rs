//! Broker settings and the clients built from them: the idempotent producer, consumers,
//! the admin client for topics, and a readiness probe.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaResult;
use rdkafka::producer::{BaseProducer, FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::MessagingError;

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap servers, `host:port`.
    pub brokers: String,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// How long the producer keeps retrying one record before reporting it failed.
    #[serde(default = "default_delivery_timeout", with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Extra librdkafka properties, applied last (`"socket.keepalive.enable" = "true"`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Put in front of every topic name, so several shops (or test runs) can share one
    /// cluster: `staging.` makes `commerce.product.events` into `staging.commerce.product.events`.
    #[serde(default)]
    pub topic_prefix: String,
}

fn default_client_id() -> String {
    "commerce".to_owned()
}

fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: default_client_id(),
            delivery_timeout: default_delivery_timeout(),
            properties: BTreeMap::new(),
            topic_prefix: String::new(),
        }
    }

    /// The broker's name for a logical topic.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// The logical name of a broker topic.
    pub fn logical_topic<'a>(&self, name: &'a str) -> &'a str {
        name.strip_prefix(self.topic_prefix.as_str())
            .unwrap_or(name)
    }

    /// Returns the offending key (relative to the `kafka` section) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.brokers.trim().is_empty() {
            return Err(("brokers", "must list at least one host:port".to_owned()));
        }
        if let Some(bad) = self.brokers.split(',').map(str::trim).find(|broker| {
            broker
                .rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        }) {
            return Err(("brokers", format!("`{bad}` is not host:port")));
        }
        if self
            .topic_prefix
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'))
        {
            return Err((
                "topic_prefix",
                "may hold only letters, digits, '.', '_' and '-'".to_owned(),
            ));
        }
        if self.delivery_timeout < Duration::from_secs(1) {
            return Err(("delivery_timeout", "must be at least 1s".to_owned()));
        }
        Ok(())
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("log_level", "4");
        config
    }

    fn finish(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// The idempotent producer: acks from all in-sync replicas, no duplicates or reordering
    /// from the producer's own retries.
    pub fn producer(&self) -> Result<FutureProducer, MessagingError> {
        let mut config = self.base();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            );
        Ok(self.finish(config).create()?)
    }

    /// A consumer in `group` that commits offsets only when told to. The group is
    /// namespaced like topics: shops sharing a cluster never share a consumer group.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", self.topic(group))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "3000")
            .set("topic.metadata.refresh.interval.ms", "5000")
            // An empty fetch is held this long by the broker: it bounds how late a new record
            // is seen (librdkafka's 500 ms default made search freshness ~0.5 s).
            .set("fetch.wait.max.ms", "100")
            .set("enable.partition.eof", "false");
        self.finish(config)
    }

    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>, MessagingError> {
        Ok(self.finish(self.base()).create()?)
    }
}

/// A topic the platform needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Copies of each partition; [`TopicSpec::BROKER_DEFAULT`] leaves it to the cluster's
    /// `default.replication.factor` (3 on the test cluster and in the manifests, 1 on
    /// the single broker of `make run`), so one setting of the cluster decides.
    pub replication: i32,
}

impl TopicSpec {
    pub const BROKER_DEFAULT: i32 = -1;

    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication: Self::BROKER_DEFAULT,
        }
    }
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(
    config: &KafkaConfig,
    topics: &[TopicSpec],
) -> Result<(), MessagingError> {
    let admin = config.admin()?;
    let names: Vec<String> = topics
        .iter()
        .map(|topic| config.topic(&topic.name))
        .collect();
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .zip(&names)
        .map(|(topic, name)| {
            NewTopic::new(
                name,
                topic.partitions,
                TopicReplication::Fixed(topic.replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(MessagingError::Topic { topic, code }),
        }
    }
    Ok(())
}

/// Creates `topics`, retrying with backoff while the broker is unreachable, until done or
/// `shutdown`. Services call it at start so a broker that comes up later is no failure.
pub async fn ensure_topics_with_retry(
    config: &KafkaConfig,
    topics: &[TopicSpec],
    shutdown: &tokio_util::sync::CancellationToken,
) {
    let mut pause = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        // An attempt against an unreachable broker can take the admin timeout; shutdown
        // does not wait for it.
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            attempt = ensure_topics(config, topics) => attempt,
        };
        match attempt {
            Ok(()) => return,
            Err(error) => tracing::warn!(%error, "cannot create topics yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// Answers whether the broker is reachable, reusing one client across checks. A failed
/// metadata request within [`BrokerProbe::GRACE`] of an answered one still counts as
/// reachable: right after a broker of a cluster goes away the client may send the request
/// to it and time out, while the others serve everything (a rolling restart must not make
/// every service unready).
#[derive(Clone)]
pub struct BrokerProbe {
    fetch_metadata: Arc<dyn Fn(Duration) -> KafkaResult<()> + Send + Sync>,
    last_answered: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    grace: Duration,
}

impl BrokerProbe {
    /// How long after an answered request a failed one is forgiven.
    pub const GRACE: Duration = Duration::from_secs(10);

    fn asking(fetch_metadata: Arc<dyn Fn(Duration) -> KafkaResult<()> + Send + Sync>) -> Self {
        Self {
            fetch_metadata,
            last_answered: Arc::default(),
            grace: Self::GRACE,
        }
    }

    /// A probe with a client of its own.
    pub fn new(config: &KafkaConfig) -> Result<Self, MessagingError> {
        let client: BaseProducer = config.finish(config.base()).create()?;
        Ok(Self::asking(Arc::new(move |timeout| {
            client.client().fetch_metadata(None, timeout).map(|_| ())
        })))
    }

    /// A probe asking through the process's shared producer.
    pub fn sharing(producer: &FutureProducer) -> Self {
        let producer = producer.clone();
        Self::asking(Arc::new(move |timeout| {
            producer.client().fetch_metadata(None, timeout).map(|_| ())
        }))
    }

    pub async fn check(&self) -> Result<(), MessagingError> {
        let fetch_metadata = self.fetch_metadata.clone();
        let answer =
            tokio::task::spawn_blocking(move || fetch_metadata(Duration::from_secs(2))).await?;
        let mut last_answered = self
            .last_answered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match answer {
            Ok(()) => {
                *last_answered = Some(std::time::Instant::now());
                Ok(())
            }
            Err(error) if last_answered.is_some_and(|at| at.elapsed() < self.grace) => {
                tracing::debug!(%error, "a metadata request failed soon after one was answered; still reachable");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;

    #[tokio::test]
    async fn a_failed_probe_soon_after_an_answered_one_is_forgiven_and_a_later_one_is_not() {
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut probe = BrokerProbe::asking(Arc::new({
            let failing = failing.clone();
            move |_| {
                if failing.load(std::sync::atomic::Ordering::SeqCst) {
                    Err(KafkaError::MetadataFetch(
                        RDKafkaErrorCode::OperationTimedOut,
                    ))
                } else {
                    Ok(())
                }
            }
        }));
        probe.grace = Duration::from_millis(300);
        assert!(probe.check().await.is_err(), "never answered: unreachable");
        failing.store(false, std::sync::atomic::Ordering::SeqCst);
        probe.check().await.unwrap();
        failing.store(true, std::sync::atomic::Ordering::SeqCst);
        probe
            .check()
            .await
            .expect("one failure right after an answer is forgiven");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(
            probe.check().await.is_err(),
            "failing past the grace: unreachable"
        );
    }

    #[test]
    fn broker_lists_are_validated() {
        assert!(
            KafkaConfig::new("127.0.0.1:9092,localhost:9093")
                .validate()
                .is_ok()
        );
        assert_eq!(KafkaConfig::new(" ").validate().unwrap_err().0, "brokers");
        let error = KafkaConfig::new("127.0.0.1").validate().unwrap_err();
        assert!(error.1.contains("127.0.0.1"), "{error:?}");
        let mut config = KafkaConfig::new("a:1");
        config.delivery_timeout = Duration::from_millis(10);
        assert_eq!(config.validate().unwrap_err().0, "delivery_timeout");
    }

    #[tokio::test]
    async fn creating_topics_gives_way_to_shutdown_while_the_broker_is_unreachable() {
        // Nothing listens on port 9 (discard) here: every attempt fails or hangs.
        let config = KafkaConfig::new("127.0.0.1:9");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        });
        let topics = [TopicSpec::new("commerce.test.events", 1)];
        let returned = tokio::time::timeout(
            Duration::from_secs(5),
            ensure_topics_with_retry(&config, &topics, &shutdown),
        )
        .await;
        assert!(returned.is_ok(), "still creating topics 5 s after shutdown");
    }
}
