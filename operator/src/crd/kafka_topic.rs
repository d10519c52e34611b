//! `KafkaTopic`: one topic, kept in step through the Kafka admin API.

// Several printer columns share `type_ = "string"`; clippy reads the derive's
// attribute list as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "commerce.dev",
    version = "v1alpha1",
    kind = "KafkaTopic",
    namespaced,
    status = "KafkaTopicStatus",
    shortname = "ktopic",
    category = "commerce",
    derive = "PartialEq",
    doc = "A Kafka topic: created, grown and configured through the admin API.",
    printcolumn(name = "Topic", type_ = "string", json_path = ".status.topicName"),
    printcolumn(
        name = "Partitions",
        type_ = "integer",
        json_path = ".status.partitions"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicSpec {
    /// The topic's name on the broker; default: the resource's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), pattern(r"^[A-Za-z0-9._-]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("topicName cannot change"))]
    pub topic_name: Option<String>,
    /// Comma-separated `host:port` list of the cluster.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// May grow; the reconciler refuses to shrink (Kafka cannot).
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: i32,
    #[serde(default = "replication_factor")]
    #[schemars(range(min = 1, max = 10))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("replicationFactor cannot change"))]
    pub replication_factor: i32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn replication_factor() -> i32 {
    1
}

/// What deleting the resource does to the topic.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Leave the topic (and its data) on the broker.
    #[default]
    Retain,
    /// Delete the topic from the broker, then let the resource go.
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl KafkaTopic {
    /// The broker's name for this topic.
    pub fn topic_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
