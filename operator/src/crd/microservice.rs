//! `Microservice`: one service of a shop. The operator turns it into a ServiceAccount,
//! ConfigMap, Deployment (a StatefulSet when each replica keeps a volume; migrations in an
//! init container), Service, its PostgreSQL
//! (CloudNativePG `Cluster`), HorizontalPodAutoscaler, PodDisruptionBudget and HTTPRoute.

// Several printer columns share `type_ = "string"`; clippy reads the derive's
// attribute list as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "commerce.dev",
    version = "v1alpha1",
    kind = "Microservice",
    namespaced,
    status = "MicroserviceStatus",
    shortname = "msvc",
    category = "commerce",
    derive = "PartialEq",
    doc = "One service of a shop and everything it runs on.",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MicroserviceSpec {
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// The `commerce` service this runs (`commerce serve --target <target>`); without it the
    /// image's own entry point runs (the storefront).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-z][a-z0-9-]*$"))]
    pub target: Option<String>,
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    #[schemars(range(min = 1, max = 65535))]
    pub http_port: i32,
    /// Readiness and liveness probe paths, on the ops port when there is one, else on the
    /// HTTP port.
    #[serde(default = "readiness_path")]
    pub readiness_path: String,
    #[serde(default = "liveness_path")]
    pub liveness_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub grpc_port: Option<i32>,
    /// Where the service serves its probes and `/metrics`, apart from its API: the probes
    /// and Alloy's scrapes (pod annotations, port `ops`) use it, the Service does not
    /// expose it, and the NetworkPolicy opens it to the monitoring namespace only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub ops_port: Option<i32>,
    /// The service's configuration file (TOML), mounted read-only and named by
    /// `COMMERCE_CONFIG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Its own PostgreSQL; the connection URL reaches the pod as
    /// `COMMERCE_SERVICES__<TARGET>__DATABASE__URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,
    /// Secrets mounted as directories (the signing keys for auth).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_mounts: Vec<Mount>,
    /// ConfigMaps mounted as directories (the saga policy for order); optional ones may
    /// appear later, and the kubelet refreshes their files in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_map_mounts: Vec<Mount>,
    /// Writable scratch directories (emptyDir), lost with the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scratch_dirs: Vec<String>,
    /// A volume each replica keeps across restarts and moves (the search index): the
    /// service then runs as a StatefulSet with one PersistentVolumeClaim per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<PersistentVolume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Where the pods may run (node pools, spot nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
    /// Added to the pod template: changing one rolls the pods (new signing keys, say).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

fn one() -> i32 {
    1
}

fn readiness_path() -> String {
    "/readyz".to_owned()
}

fn liveness_path() -> String {
    "/healthz".to_owned()
}

/// Pod placement: copied into the pod spec as written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// A Kubernetes `Affinity`, copied into the pod spec as written; the API server checks
    /// it on the Deployment it lands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::open_object")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Database and owner role name.
    #[schemars(pattern(r"^[a-z][a-z0-9_]*$"))]
    pub name: String,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 9))]
    pub instances: i32,
    #[serde(default = "storage_size")]
    #[schemars(pattern(r"^[0-9]+(Mi|Gi|Ti)$"))]
    pub storage_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// Where the database instances run (the stateful node pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
}

fn storage_size() -> String {
    "1Gi".to_owned()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolume {
    #[schemars(pattern(r"^/"))]
    pub mount_path: String,
    #[serde(default = "storage_size")]
    #[schemars(pattern(r"^[0-9]+(Mi|Gi|Ti)$"))]
    pub size: String,
    /// The cluster's default class when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(pattern(r"^/"))]
    pub mount_path: String,
    #[serde(default)]
    pub optional: bool,
}

/// A Gateway API parent: the Gateway (and listener) routes attach to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParent {
    #[schemars(length(min = 1))]
    pub name: String,
    /// Default: the resource's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The listener, e.g. `websecure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub parent: GatewayParent,
    #[schemars(length(min = 1))]
    pub hostnames: Vec<String>,
    /// Path prefixes sent to this service's HTTP port.
    #[schemars(length(min = 1))]
    pub path_prefixes: Vec<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxReplicas >= self.minReplicas").message("maxReplicas must not be less than minReplicas"))]
pub struct Autoscaling {
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Average CPU use (percent of requests) the autoscaler aims for.
    #[serde(default = "cpu_target")]
    #[schemars(range(min = 10, max = 100))]
    pub target_cpu_utilization: i32,
}

fn cpu_target() -> i32 {
    70
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MicroserviceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub updated_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
