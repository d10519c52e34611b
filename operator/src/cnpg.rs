//! The part of CloudNativePG's `postgresql.cnpg.io/v1` `Cluster` the operator writes:
//! instances, image, storage, and an `initdb` bootstrap of one database and its owner.
//! Field names and shapes follow CloudNativePG 1.30 (`api/v1/cluster_types.go`); the
//! operator only ever applies these fields, so server-side apply leaves the rest to
//! CloudNativePG's defaults. CloudNativePG writes the application credentials to the
//! Secret `<cluster>-app` (keys `uri`, `username`, `password`, `host`, `dbname`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Cluster",
    plural = "clusters",
    namespaced,
    status = "ClusterStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    pub instances: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    pub storage: StorageConfiguration,
    pub bootstrap: BootstrapConfiguration,
    pub affinity: AffinityConfiguration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Instances on different nodes (CloudNativePG's own anti-affinity), on the nodes the
/// selector and tolerations allow.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AffinityConfiguration {
    pub enable_pod_anti_affinity: bool,
    pub topology_key: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub node_selector: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageConfiguration {
    pub size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapConfiguration {
    pub initdb: BootstrapInitDb,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapInitDb {
    pub database: String,
    pub owner: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_instances: Option<i32>,
}

/// The Secret CloudNativePG fills with the application user's credentials.
pub fn app_secret_name(cluster: &str) -> String {
    format!("{cluster}-app")
}
