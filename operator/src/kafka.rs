//! Topics through the Kafka admin API. `TopicAdmin` is what the KafkaTopic controller
//! needs; `RdKafkaAdmin` speaks to a real cluster (one admin client per bootstrap list).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{operation} `{topic}`: {code}")]
    Broker {
        operation: &'static str,
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("{operation}: {source}")]
    Client {
        operation: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(
        "create topic `{topic}`: spec.replicationFactor is {wanted} but the cluster has {brokers} broker(s); lower it to at most {brokers} or add brokers"
    )]
    ReplicationFactorTooHigh {
        topic: String,
        wanted: i32,
        brokers: usize,
    },
    #[error(
        "topic `{topic}` exists but no broker asked describes it yet; looking again at the next reconcile"
    )]
    NotYetVisible { topic: String },
    #[error("metadata task: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What creating a topic did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    Created,
    /// The cluster had it already (a repeated reconcile, or one whose describe reached a
    /// broker that had not yet heard of the topic).
    AlreadyExisted,
}

/// A topic as the broker has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicState {
    pub partitions: i32,
    /// Every configuration value the broker reports for the topic.
    pub config: BTreeMap<String, String>,
    /// The keys set on the topic itself rather than inherited from the broker.
    pub overridden: BTreeSet<String>,
}

impl TopicState {
    /// Whether the topic's configuration differs from `wanted`: a wanted value is
    /// missing or different, or the topic overrides a key `wanted` does not name.
    pub fn config_differs(&self, wanted: &BTreeMap<String, String>) -> bool {
        wanted
            .iter()
            .any(|(key, value)| self.config.get(key) != Some(value))
            || self.overridden.iter().any(|key| !wanted.contains_key(key))
    }
}

#[async_trait]
pub trait TopicAdmin: Send + Sync {
    async fn describe(
        &self,
        bootstrap: &str,
        topic: &str,
    ) -> Result<Option<TopicState>, AdminError>;
    async fn create(
        &self,
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        replication: i32,
        config: &BTreeMap<String, String>,
    ) -> Result<Creation, AdminError>;
    async fn grow(&self, bootstrap: &str, topic: &str, partitions: i32) -> Result<(), AdminError>;
    async fn configure(
        &self,
        bootstrap: &str,
        topic: &str,
        config: &BTreeMap<String, String>,
    ) -> Result<(), AdminError>;
    async fn delete(&self, bootstrap: &str, topic: &str) -> Result<(), AdminError>;
}

/// Admin clients by bootstrap list; a shop's topics all share one.
#[derive(Default)]
pub struct RdKafkaAdmin {
    clients: Mutex<HashMap<String, Arc<AdminClient<DefaultClientContext>>>>,
    timeout: Duration,
}

impl RdKafkaAdmin {
    pub fn new(timeout: Duration) -> Self {
        Self {
            clients: Mutex::default(),
            timeout,
        }
    }

    fn client(
        &self,
        bootstrap: &str,
    ) -> Result<Arc<AdminClient<DefaultClientContext>>, AdminError> {
        let mut clients = self.clients.lock().expect("admin client map poisoned");
        if let Some(client) = clients.get(bootstrap) {
            return Ok(client.clone());
        }
        let client: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "commerce-operator")
            .set("log_level", "4")
            .create()
            .map_err(|source| AdminError::Client {
                operation: "connect",
                source,
            })?;
        let client = Arc::new(client);
        clients.insert(bootstrap.to_owned(), client.clone());
        Ok(client)
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new().operation_timeout(Some(self.timeout))
    }

    /// Reads the cluster's metadata (one topic's, or every broker's with `None`) through
    /// `read`. Metadata requests block; they run off the runtime's threads.
    async fn metadata<T: Send + 'static>(
        &self,
        client: &Arc<AdminClient<DefaultClientContext>>,
        topic: Option<&str>,
        read: impl FnOnce(&rdkafka::metadata::Metadata) -> T + Send + 'static,
    ) -> Result<T, AdminError> {
        let (client, timeout) = (client.clone(), self.timeout);
        let topic = topic.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            client
                .inner()
                .fetch_metadata(topic.as_deref(), timeout)
                .map(|metadata| read(&metadata))
        })
        .await?
        .map_err(|source| AdminError::Client {
            operation: "metadata",
            source,
        })
    }
}

fn check(
    operation: &'static str,
    results: Vec<Result<String, (String, RDKafkaErrorCode)>>,
    tolerated: &[RDKafkaErrorCode],
) -> Result<(), AdminError> {
    for result in results {
        if let Err((topic, code)) = result
            && !tolerated.contains(&code)
        {
            return Err(AdminError::Broker {
                operation,
                topic,
                code,
            });
        }
    }
    Ok(())
}

#[async_trait]
impl TopicAdmin for RdKafkaAdmin {
    async fn describe(
        &self,
        bootstrap: &str,
        topic: &str,
    ) -> Result<Option<TopicState>, AdminError> {
        let client = self.client(bootstrap)?;
        let partitions = self
            .metadata(&client, Some(topic), |metadata| {
                metadata
                    .topics()
                    .first()
                    .and_then(|topic| match topic.error() {
                        None => Some(topic.partitions().len() as i32),
                        Some(_) => None,
                    })
            })
            .await?;
        let Some(partitions) = partitions.filter(|count| *count > 0) else {
            return Ok(None);
        };
        let described = client
            .describe_configs([&ResourceSpecifier::Topic(topic)], &self.options())
            .await
            .map_err(|source| AdminError::Client {
                operation: "describe configs",
                source,
            })?;
        let mut config = BTreeMap::new();
        let mut overridden = BTreeSet::new();
        for resource in described {
            let resource = resource.map_err(|code| AdminError::Broker {
                operation: "describe configs",
                topic: topic.to_owned(),
                code,
            })?;
            for entry in resource.entries {
                if matches!(entry.source, rdkafka::admin::ConfigSource::DynamicTopic) {
                    overridden.insert(entry.name.clone());
                }
                if let Some(value) = entry.value {
                    config.insert(entry.name, value);
                }
            }
        }
        Ok(Some(TopicState {
            partitions,
            config,
            overridden,
        }))
    }

    async fn create(
        &self,
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        replication: i32,
        config: &BTreeMap<String, String>,
    ) -> Result<Creation, AdminError> {
        let client = self.client(bootstrap)?;
        let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
        for (key, value) in config {
            new_topic = new_topic.set(key, value);
        }
        let results = client
            .create_topics([&new_topic], &self.options())
            .await
            .map_err(|source| AdminError::Client {
                operation: "create topic",
                source,
            })?;
        let refused = results.iter().any(|result| {
            matches!(result, Err((_, code)) if *code == RDKafkaErrorCode::InvalidReplicationFactor)
        });
        if refused {
            let brokers = self
                .metadata(&client, None, |metadata| metadata.brokers().len())
                .await?;
            return Err(AdminError::ReplicationFactorTooHigh {
                topic: topic.to_owned(),
                wanted: replication,
                brokers,
            });
        }
        let existed = results.iter().any(|result| {
            matches!(result, Err((_, code)) if *code == RDKafkaErrorCode::TopicAlreadyExists)
        });
        check(
            "create topic",
            results,
            &[RDKafkaErrorCode::TopicAlreadyExists],
        )?;
        Ok(if existed {
            Creation::AlreadyExisted
        } else {
            Creation::Created
        })
    }

    async fn grow(&self, bootstrap: &str, topic: &str, partitions: i32) -> Result<(), AdminError> {
        let client = self.client(bootstrap)?;
        let results = client
            .create_partitions(
                [&NewPartitions::new(topic, partitions as usize)],
                &self.options(),
            )
            .await
            .map_err(|source| AdminError::Client {
                operation: "add partitions",
                source,
            })?;
        check("add partitions", results, &[])
    }

    async fn configure(
        &self,
        bootstrap: &str,
        topic: &str,
        config: &BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        let client = self.client(bootstrap)?;
        // AlterConfigs replaces the topic's whole dynamic configuration: what the spec
        // says is what the topic has.
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
        for (key, value) in config {
            alter = alter.set(key, value);
        }
        let results = client
            .alter_configs([&alter], &self.options())
            .await
            .map_err(|source| AdminError::Client {
                operation: "alter configs",
                source,
            })?;
        for result in results {
            result.map_err(|(_, code)| AdminError::Broker {
                operation: "alter configs",
                topic: topic.to_owned(),
                code,
            })?;
        }
        Ok(())
    }

    async fn delete(&self, bootstrap: &str, topic: &str) -> Result<(), AdminError> {
        let client = self.client(bootstrap)?;
        let results = client
            .delete_topics(&[topic], &self.options())
            .await
            .map_err(|source| AdminError::Client {
                operation: "delete topic",
                source,
            })?;
        check(
            "delete topic",
            results,
            &[RDKafkaErrorCode::UnknownTopicOrPartition],
        )
    }
}
