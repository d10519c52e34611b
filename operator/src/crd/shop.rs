//! `Shop`: a whole shop. The operator turns it into one `Microservice` per enabled service,
//! the `KafkaTopic`s they need, a `SagaPolicy`, the signing-key and service-client
//! Secrets and the Gateway API routes, and rolls their status up.

// Several printer columns share `type_ = "string"`; clippy reads the derive's
// attribute list as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::kafka_topic::DeletionPolicy;
use super::microservice::{Autoscaling, GatewayParent, Scheduling};
use super::saga_policy::SagaPolicySpec;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "commerce.dev",
    version = "v1alpha1",
    kind = "Shop",
    namespaced,
    status = "ShopStatus",
    shortname = "shop",
    category = "commerce",
    derive = "PartialEq",
    doc = "A commerce shop: its services, infrastructure settings and saga policy.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.readyServices"),
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.hostname"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("!(has(self.spec.saga) && has(self.spec.sagaPolicyRef))").message("set spec.saga or spec.sagaPolicyRef, not both")
)]
#[serde(rename_all = "camelCase")]
pub struct ShopSpec {
    /// The `commerce` image every service runs, `registry/commerce:tag`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Kubernetes image pull policy for every service.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// The public host name of the storefront and the `/v1` API.
    #[schemars(
        length(min = 1),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub hostname: String,
    /// The Gateway (Traefik, or any Gateway API implementation) the routes attach to.
    pub gateway: GatewayParent,
    /// Per-service settings by service name; every service is enabled unless it says
    /// otherwise.
    #[serde(default)]
    #[schemars(schema_with = "services_schema")]
    pub services: ShopServices,
    /// Origins of a storefront served elsewhere (Cloudflare Pages: `terraform output
    /// storefront_origins`), added to the REST gateway's CORS list beside
    /// `https://<hostname>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(
        r"^https://[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?$"
    )))]
    pub storefront_origins: Vec<String>,
    /// Chat attachments in an S3 (or S3-compatible) bucket, shared by every chat replica.
    /// Without it each chat pod keeps them in its own scratch directory, which suits one
    /// replica only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<AttachmentBucketSpec>,
    /// The storefront's static site, served at `/` of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storefront: Option<Storefront>,
    /// The GraphQL federation gateway (Hive Gateway, `graphql/Dockerfile`) behind the
    /// REST gateway's `/graphql`; without it that route is not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphql: Option<GraphqlGateway>,
    #[serde(default)]
    pub postgres: PostgresSettings,
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    /// The shop's own saga policy (a `SagaPolicy` named after the shop is made from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saga: Option<SagaPolicySpec>,
    /// Or the name of a `SagaPolicy` in this namespace managed separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saga_policy_ref: Option<String>,
    /// The Temporal server the order saga's `temporal` engine (SagaPolicy `spec.engine`)
    /// runs on. With it the order service is pointed at it and the shop runs an
    /// `order-worker` Deployment polling its task queue; without it the `temporal` engine
    /// has nowhere to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal: Option<TemporalSettings>,
    #[serde(default)]
    pub signing_key: SigningKeySettings,
    /// What the payment service offers beyond the providers it has credentials for.
    #[serde(default)]
    pub payments: PaymentOptions,
    /// Placement of every service's pods (the stateless pool, spot nodes); a service's
    /// own `scheduling` replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOptions {
    /// The offline gateway: customers settle their own payments with a "pay" button and
    /// no money moves. For demos and staging only; off unless set.
    #[serde(default)]
    pub offline: bool,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Where the order workflows run, and their worker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemporalSettings {
    /// The Temporal frontend's gRPC URL, e.g. `http://temporal-frontend.temporal:7233`.
    #[schemars(length(min = 1))]
    pub address: String,
    #[serde(default = "default_temporal_namespace")]
    pub namespace: String,
    #[serde(default = "default_task_queue")]
    pub task_queue: String,
    /// The `order-worker` Deployment: replicas, resources, scheduling, env, extra TOML.
    #[serde(default)]
    pub worker: ServiceOverrides,
}

fn default_temporal_namespace() -> String {
    "default".to_owned()
}

fn default_task_queue() -> String {
    "commerce-orders".to_owned()
}

/// One entry per service of the `commerce` binary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShopServices {
    #[serde(default)]
    pub auth: ServiceOverrides,
    #[serde(default)]
    pub product: ServiceOverrides,
    #[serde(default)]
    pub cart: ServiceOverrides,
    #[serde(default)]
    pub order: ServiceOverrides,
    #[serde(default)]
    pub payment: ServiceOverrides,
    #[serde(default)]
    pub fulfillment: ServiceOverrides,
    #[serde(default)]
    pub notification: ServiceOverrides,
    #[serde(default)]
    pub chat: ServiceOverrides,
    #[serde(default)]
    pub search: ServiceOverrides,
    #[serde(default)]
    pub gateway: ServiceOverrides,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentBucketSpec {
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    #[serde(default = "bucket_region")]
    pub region: String,
    /// An S3-compatible server's URL; AWS's own endpoint when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^https?://"))]
    pub endpoint: Option<String>,
    /// A Secret in the shop's namespace with the keys `access-key-id` and
    /// `secret-access-key`.
    #[schemars(length(min = 1))]
    pub credentials_secret: String,
}

fn bucket_region() -> String {
    "us-east-1".to_owned()
}

/// The label on everything a shop owns, and on its pods: the shop's name.
pub const SHOP_LABEL: &str = "commerce.dev/shop";

/// One schema for every service's overrides, keyed by name: a property per service would
/// inline the same schema ten times (a structural schema has no references), which made
/// the CRD too big for `kubectl apply`.
fn services_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = crate::catalog::SERVICES
        .iter()
        .map(|service| service.name)
        .collect();
    let quoted: Vec<String> = names.iter().map(|name| format!("'{name}'")).collect();
    schemars::json_schema!({
        "type": "object",
        // Bounds the rule's cost for the API server; any name past the ten is unknown,
        // which the rule names.
        "maxProperties": 4 * names.len(),
        "additionalProperties": generator.subschema_for::<ServiceOverrides>(),
        "x-kubernetes-validations": [{
            "rule": format!("self.all(name, name in [{}])", quoted.join(", ")),
            "message": format!("services are named {}", names.join(", "))
        }]
    })
}

impl ShopServices {
    pub fn get(&self, name: &str) -> Option<&ServiceOverrides> {
        Some(match name {
            "auth" => &self.auth,
            "product" => &self.product,
            "cart" => &self.cart,
            "order" => &self.order,
            "payment" => &self.payment,
            "fulfillment" => &self.fulfillment,
            "notification" => &self.notification,
            "chat" => &self.chat,
            "search" => &self.search,
            "gateway" => &self.gateway,
            _ => return None,
        })
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOverrides {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Fixed replica count (ignored while `autoscaling` is set). Default 2; chat 1 unless
    /// `spec.attachments` names a bucket the replicas share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Extra environment, e.g. `COMMERCE_SERVICES__PAYMENT__STRIPE__SECRET_KEY` from a Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
    /// TOML merged over the generated configuration of this service (`[services.<name>]`
    /// keys and any other section), e.g. SMTP settings for notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The volume each replica keeps, for the services that keep one (search's index,
    /// 1Gi of the cluster's default class unless set here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<ServiceStorage>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStorage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(Mi|Gi|Ti)$"))]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

fn enabled() -> bool {
    true
}

impl Default for ServiceOverrides {
    fn default() -> Self {
        Self {
            enabled: true,
            replicas: None,
            resources: None,
            autoscaling: None,
            env: Vec::new(),
            scheduling: None,
            config: None,
            storage: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storefront {
    /// An image serving the built storefront over HTTP.
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default = "storefront_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    #[serde(default = "storefront_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphqlGateway {
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default = "storefront_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
}

fn storefront_port() -> i32 {
    8080
}
fn storefront_replicas() -> i32 {
    2
}

/// Each service's own PostgreSQL, as a CloudNativePG `Cluster`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSettings {
    /// Instances per service database (1 primary + standbys).
    #[serde(default = "postgres_instances")]
    #[schemars(range(min = 1, max = 9))]
    pub instances: i32,
    /// Volume size per instance.
    #[serde(default = "postgres_storage")]
    #[schemars(pattern(r"^[0-9]+(Mi|Gi|Ti)$"))]
    pub storage_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// The PostgreSQL operand image; CloudNativePG's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// Where the database instances run (the stateful node pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
}

fn postgres_instances() -> i32 {
    1
}
fn postgres_storage() -> String {
    "1Gi".to_owned()
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            instances: postgres_instances(),
            storage_size: postgres_storage(),
            storage_class: None,
            image_name: None,
            scheduling: None,
        }
    }
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    #[default]
    Standalone,
    Cluster,
}

/// The shop's Redis: one the cluster already runs (`urls`), or, when `urls` is empty, one
/// the operator runs for the shop (`provisioned`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.urls) > 0 || self.mode == 'standalone'").message("a provisioned Redis is standalone: list the cluster's urls, or set mode standalone"))]
pub struct RedisSettings {
    #[serde(default)]
    pub mode: RedisMode,
    /// `redis://host:port` (for a cluster, any number of its nodes).
    #[serde(default)]
    pub urls: Vec<String>,
    /// The Redis the operator runs when `urls` is empty: one instance (a StatefulSet with
    /// a volume and append-only persistence), a generated password, reachable from the
    /// shop's pods only.
    #[serde(default)]
    pub provisioned: ProvisionedRedis,
}

impl RedisSettings {
    /// Whether the operator runs this shop's Redis.
    pub fn is_provisioned(&self) -> bool {
        self.urls.is_empty()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionedRedis {
    #[serde(default = "redis_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default = "redis_storage")]
    #[schemars(pattern(r"^[0-9]+(Mi|Gi|Ti)$"))]
    pub storage_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn redis_image() -> String {
    "redis:8.2".to_owned()
}
fn redis_storage() -> String {
    "1Gi".to_owned()
}

impl Default for ProvisionedRedis {
    fn default() -> Self {
        Self {
            image: redis_image(),
            storage_size: redis_storage(),
            storage_class: None,
            resources: None,
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// Put in front of every topic name, so shops can share a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[A-Za-z0-9._-]*$"))]
    pub topic_prefix: Option<String>,
    /// Partitions of each event topic (dead-letter topics have one).
    #[serde(default = "event_partitions")]
    #[schemars(range(min = 1, max = 1000))]
    pub partitions: i32,
    #[serde(default = "replication_factor")]
    #[schemars(range(min = 1, max = 10))]
    pub replication_factor: i32,
    /// Topic configuration for every topic (`retention.ms`, `min.insync.replicas`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topic_config: BTreeMap<String, String>,
    /// What happens to the topics when the shop is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn event_partitions() -> i32 {
    3
}
fn replication_factor() -> i32 {
    3
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeySettings {
    /// Change this value to add a new signing key (the previous one keeps verifying
    /// tokens it signed until the next rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShopStatus {
    /// Pending, Progressing, Ready or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Ready services over enabled services, e.g. `9/10`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_services: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The `spec.signingKey.rotation` value the signing-key Secret holds a key for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_rotation: Option<String>,
    /// The Redis the shop's services use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisState>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisState {
    /// Whether the operator runs it (`spec.redis.urls` is empty).
    pub provisioned: bool,
    /// What the services connect to.
    pub urls: Vec<String>,
    /// Ready instances of a provisioned Redis.
    #[serde(default)]
    pub ready_replicas: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceState {
    pub name: String,
    pub ready: bool,
    #[serde(default)]
    pub ready_replicas: i32,
}
