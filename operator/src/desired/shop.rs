//! What one `Shop` wants: its Microservices (with their configuration), KafkaTopics and
//! SagaPolicy. Secrets with generated material are made by the controller (they are not
//! a pure function of the spec); this module names them and says what they hold.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use toml::{Table, Value};

use super::redis;
use crate::catalog::{self, ServiceInfo};
use crate::crd::microservice::{DatabaseSpec, Mount, PersistentVolume, Route};
use crate::crd::shop::{RedisMode, ServiceOverrides};
use crate::crd::{
    KafkaTopic, KafkaTopicSpec, Microservice, MicroserviceSpec, SagaPolicy, SagaPolicySpec, Shop,
};

/// Where auth finds its signing keys (the mounted Secret).
pub const KEYS_DIR: &str = "/var/run/commerce/keys";
/// Where each search replica keeps its index (its own PersistentVolumeClaim).
pub const SEARCH_INDEX_DIR: &str = "/var/lib/commerce/search-index";
/// Where order finds its saga policy (the mounted ConfigMap).
pub const SAGA_DIR: &str = "/etc/commerce/saga";
pub const SAGA_FILE_NAME: &str = "saga.toml";
/// The pod annotation listing the signing keys, so a rotation rolls auth's pods.
pub const SIGNING_KEYS_ANNOTATION: &str = "commerce.dev/signing-keys";
pub use crate::crd::shop::SHOP_LABEL;

/// The credentials the services present to each other, generated once per shop. Each key
/// is a client id of auth's `service_clients`, or the payment webhook secret.
pub const SERVICE_CLIENTS: &[&str] = &["order", "cart", "notification", "search"];
pub const OFFLINE_WEBHOOK_KEY: &str = "payment-offline-webhook";

#[derive(Debug, Clone, PartialEq)]
pub struct ShopChildren {
    pub microservices: Vec<Microservice>,
    pub topics: Vec<KafkaTopic>,
    /// The SagaPolicy the shop owns (absent when it refers to one managed elsewhere).
    pub saga_policy: Option<SagaPolicy>,
    /// The Redis the operator runs for the shop (absent when `spec.redis.urls` is given).
    pub redis: Option<redis::RedisChildren>,
}

/// What the controller read that the pure functions need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The key ids in the signing-key Secret, sorted.
    pub signing_key_ids: Vec<String>,
    /// The engine of the SagaPolicy the shop refers to (`spec.sagaPolicyRef`), if it exists.
    pub referenced_saga_engine: Option<crate::crd::saga_policy::Engine>,
}

/// The annotation on the order pods naming their saga engine: the order service reloads
/// its policy without a restart except for the engine, so an engine change rolls them.
pub const SAGA_ENGINE_ANNOTATION: &str = "commerce.dev/saga-engine";

/// The saga engine the shop's order service runs on.
pub fn saga_engine(shop: &Shop, observed: &Observed) -> crate::crd::saga_policy::Engine {
    match &shop.spec.saga_policy_ref {
        Some(_) => observed.referenced_saga_engine.unwrap_or_default(),
        None => shop
            .spec
            .saga
            .as_ref()
            .map(|policy| policy.engine)
            .unwrap_or_default(),
    }
}

pub fn name(shop: &Shop) -> String {
    shop.metadata.name.clone().unwrap_or_default()
}

pub fn microservice_name(shop: &str, service: &str) -> String {
    format!("{shop}-{service}")
}

pub fn signing_key_secret_name(shop: &str) -> String {
    format!("{shop}-signing-keys")
}

pub fn service_clients_secret_name(shop: &str) -> String {
    format!("{shop}-service-clients")
}

pub fn saga_policy_name(shop: &Shop) -> String {
    shop.spec
        .saga_policy_ref
        .clone()
        .unwrap_or_else(|| name(shop))
}

pub fn saga_config_map_name(policy: &str) -> String {
    format!("{policy}-saga-policy")
}

pub fn topic_resource_name(shop: &str, topic: &str) -> String {
    format!("{shop}-{topic}")
}

fn owner(shop: &Shop) -> Option<OwnerReference> {
    shop.controller_owner_ref(&())
}

pub fn child_meta(shop: &Shop, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: shop.metadata.namespace.clone(),
        labels: Some(BTreeMap::from([
            (SHOP_LABEL.to_owned(), self::name(shop)),
            (
                "app.kubernetes.io/part-of".to_owned(),
                "commerce".to_owned(),
            ),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "commerce-operator".to_owned(),
            ),
        ])),
        owner_references: owner(shop).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// The services the shop runs, with their overrides.
pub fn enabled_services(shop: &Shop) -> Vec<(&'static ServiceInfo, &ServiceOverrides)> {
    catalog::SERVICES
        .iter()
        .filter_map(|service| {
            let overrides = shop.spec.services.get(service.name)?;
            overrides.enabled.then_some((service, overrides))
        })
        .collect()
}

pub fn desired(shop: &Shop, observed: &Observed) -> Result<ShopChildren, DesiredError> {
    let shop_name = name(shop);
    let mut microservices = Vec::new();
    for (service, overrides) in enabled_services(shop) {
        microservices.push(microservice(shop, service, overrides, observed)?);
    }
    if let Some(temporal) = &shop.spec.temporal
        && shop.spec.services.order.enabled
        && temporal.worker.enabled
    {
        microservices.push(order_worker(shop, temporal, observed)?);
    }
    if let Some(storefront) = &shop.spec.storefront {
        // A static site: its root answers both probes.
        microservices.push(web_microservice(
            shop,
            "storefront",
            WebSpec {
                image: &storefront.image,
                replicas: storefront.replicas,
                port: storefront.port,
                routes: vec![route(shop, &["/"])],
                env: Vec::new(),
                readiness_path: "/",
                liveness_path: "/",
            },
        ));
    }
    if let Some(graphql) = &shop.spec.graphql {
        let env = ["auth", "product", "order"]
            .iter()
            .map(|subgraph| EnvVar {
                name: format!("COMMERCE_SUBGRAPH_{}_URL", subgraph.to_ascii_uppercase()),
                value: Some(format!("{}/graphql", peer_http(shop, subgraph))),
                ..EnvVar::default()
            })
            .collect();
        // Reached only through the REST gateway, which checks tokens first.
        microservices.push(web_microservice(
            shop,
            GRAPHQL,
            WebSpec {
                image: &graphql.image,
                replicas: graphql.replicas,
                port: GRAPHQL_PORT,
                routes: Vec::new(),
                env,
                readiness_path: "/readiness",
                liveness_path: "/healthcheck",
            },
        ));
    }

    let kafka = &shop.spec.kafka;
    let prefix = kafka.topic_prefix.clone().unwrap_or_default();
    let topics = catalog::TOPICS
        .iter()
        .map(|topic| KafkaTopic {
            metadata: child_meta(shop, topic_resource_name(&shop_name, topic.name)),
            spec: KafkaTopicSpec {
                topic_name: Some(format!("{prefix}{}", topic.name)),
                bootstrap_servers: kafka.bootstrap_servers.clone(),
                partitions: if topic.dead_letter {
                    1
                } else {
                    kafka.partitions
                },
                replication_factor: kafka.replication_factor,
                config: kafka.topic_config.clone(),
                deletion_policy: kafka.deletion_policy,
            },
            status: None,
        })
        .collect();

    let saga_policy = shop.spec.saga_policy_ref.is_none().then(|| SagaPolicy {
        metadata: child_meta(shop, shop_name.clone()),
        spec: shop.spec.saga.clone().unwrap_or_default(),
        status: None,
    });

    Ok(ShopChildren {
        microservices,
        topics,
        saga_policy,
        redis: redis::desired(shop, child_meta(shop, redis::redis_name(&shop_name))),
    })
}

/// The `order-worker` target and its port (`[services.order_worker]`).
pub const ORDER_WORKER: &str = "order-worker";
pub const ORDER_WORKER_PORT: i32 = 8091;
/// Every service's `ops_addr` port (probes, `/metrics`): one pod, one service, so one
/// number serves all (the OpenTelemetry Prometheus exporter's customary port).
pub const OPS_PORT: i32 = 9464;

/// The Temporal worker of the order workflows: the order service's configuration (the
/// worker reads `services.order`: peers, saga policy file, Temporal), credentials and
/// database, plus its own address; no routes, no gRPC, no database of its own.
fn order_worker(
    shop: &Shop,
    temporal: &crate::crd::shop::TemporalSettings,
    observed: &Observed,
) -> Result<Microservice, DesiredError> {
    let order = catalog::find("order").expect("order is in the catalogue");
    let mut worker = microservice(shop, order, &temporal.worker, observed)?;
    let shop_name = name(shop);
    let mut config: Table = worker
        .spec
        .config
        .as_deref()
        .unwrap_or_default()
        .parse()
        .expect("the order configuration was just rendered");
    if let Some(Value::Table(services)) = config.get_mut("services") {
        services.insert(
            "order_worker".to_owned(),
            table([
                ("http_addr", text(format!("0.0.0.0:{ORDER_WORKER_PORT}"))),
                ("ops_addr", text(format!("0.0.0.0:{OPS_PORT}"))),
            ]),
        );
    }
    if let Some(Value::Table(kafka)) = config.get_mut("kafka") {
        kafka.insert(
            "client_id".to_owned(),
            text(microservice_name(&shop_name, ORDER_WORKER)),
        );
    }
    let spec = &mut worker.spec;
    worker.metadata = child_meta(shop, microservice_name(&shop_name, ORDER_WORKER));
    spec.target = Some(ORDER_WORKER.to_owned());
    spec.http_port = ORDER_WORKER_PORT;
    spec.grpc_port = None;
    spec.routes = Vec::new();
    spec.config = Some(toml::to_string(&config).expect("a TOML table serialises"));
    // The order service's database: the worker's activities are the order's saga steps.
    spec.database = None;
    spec.env.insert(
        0,
        EnvVar {
            name: format!(
                "{}DATABASE__URL",
                crate::desired::microservice::env_prefix(ORDER_WORKER)
            ),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: crate::cnpg::app_secret_name(
                        &crate::desired::microservice::database_cluster_name(&microservice_name(
                            &shop_name, "order",
                        )),
                    ),
                    key: "uri".to_owned(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
    );
    Ok(worker)
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DesiredError {
    #[error("spec.services.{service}.config is not valid TOML: {message}")]
    ConfigOverride { service: String, message: String },
    #[error("spec.services.{service}.config: {message}")]
    ConfigMerge { service: String, message: String },
}

/// The GraphQL federation gateway's Microservice name suffix and port.
pub const GRAPHQL: &str = "graphql";
pub const GRAPHQL_PORT: i32 = 8090;

/// A component that is not a `commerce` service: its own image and entry point.
struct WebSpec<'a> {
    image: &'a str,
    replicas: i32,
    port: i32,
    routes: Vec<Route>,
    env: Vec<EnvVar>,
    readiness_path: &'a str,
    liveness_path: &'a str,
}

fn web_microservice(shop: &Shop, component: &str, web: WebSpec<'_>) -> Microservice {
    Microservice {
        metadata: child_meta(shop, microservice_name(&name(shop), component)),
        spec: MicroserviceSpec {
            image: web.image.to_owned(),
            image_pull_policy: pull_policy(shop),
            target: None,
            replicas: web.replicas,
            http_port: web.port,
            readiness_path: web.readiness_path.to_owned(),
            liveness_path: web.liveness_path.to_owned(),
            grpc_port: None,
            ops_port: None,
            config: None,
            env: web.env,
            resources: None,
            database: None,
            secret_mounts: Vec::new(),
            config_map_mounts: Vec::new(),
            scratch_dirs: Vec::new(),
            persistent_volume: None,
            routes: web.routes,
            scheduling: shop.spec.scheduling.clone(),
            autoscaling: None,
            pod_annotations: BTreeMap::new(),
        },
        status: None,
    }
}

fn pull_policy(shop: &Shop) -> Option<String> {
    Some(shop.spec.image_pull_policy.as_str().to_owned())
}

fn route(shop: &Shop, prefixes: &[&str]) -> Route {
    Route {
        parent: shop.spec.gateway.clone(),
        hostnames: vec![shop.spec.hostname.clone()],
        path_prefixes: prefixes.iter().map(|prefix| (*prefix).to_owned()).collect(),
    }
}

fn microservice(
    shop: &Shop,
    service: &ServiceInfo,
    overrides: &ServiceOverrides,
    observed: &Observed,
) -> Result<Microservice, DesiredError> {
    let shop_name = name(shop);
    let mut config = base_config(shop, service);
    if let Some(extra) = &overrides.config {
        let extra: Table =
            extra
                .parse()
                .map_err(|error: toml::de::Error| DesiredError::ConfigOverride {
                    service: service.name.to_owned(),
                    message: error.message().to_owned(),
                })?;
        merge(&mut config, extra).map_err(|message| DesiredError::ConfigMerge {
            service: service.name.to_owned(),
            message,
        })?;
    }

    let mut env = secret_env(shop, service);
    env.extend(overrides.env.iter().cloned());

    let mut secret_mounts = Vec::new();
    let mut config_map_mounts = Vec::new();
    let mut scratch_dirs = Vec::new();
    let mut persistent_volume = None;
    let mut pod_annotations = BTreeMap::new();
    let mut routes = Vec::new();
    match service.name {
        "auth" => {
            secret_mounts.push(Mount {
                name: signing_key_secret_name(&shop_name),
                mount_path: KEYS_DIR.to_owned(),
                optional: false,
            });
            pod_annotations.insert(
                SIGNING_KEYS_ANNOTATION.to_owned(),
                observed.signing_key_ids.join(","),
            );
        }
        "order" => {
            config_map_mounts.push(Mount {
                name: saga_config_map_name(&saga_policy_name(shop)),
                mount_path: SAGA_DIR.to_owned(),
                // The SagaPolicy may be applied after the shop; the file appears when it is.
                optional: true,
            });
            let engine = match saga_engine(shop, observed) {
                crate::crd::saga_policy::Engine::Postgres => "postgres",
                crate::crd::saga_policy::Engine::Temporal => "temporal",
            };
            pod_annotations.insert(SAGA_ENGINE_ANNOTATION.to_owned(), engine.to_owned());
        }
        "search" => {
            // Each replica keeps its own index, fed by its own consumer group: the pod's
            // stable name (`<shop>-search-0`, …) names the group, so a restarted replica
            // resumes where its index stands.
            env.push(EnvVar {
                name: "POD_NAME".to_owned(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".to_owned(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
            env.push(EnvVar {
                name: format!(
                    "{}CONSUMER_GROUP",
                    crate::desired::microservice::env_prefix(service.name)
                ),
                value: Some("search-$(POD_NAME)".to_owned()),
                ..EnvVar::default()
            });
            let storage = overrides.storage.clone();
            persistent_volume = Some(PersistentVolume {
                mount_path: SEARCH_INDEX_DIR.to_owned(),
                size: storage
                    .as_ref()
                    .and_then(|storage| storage.size.clone())
                    .unwrap_or_else(|| "1Gi".to_owned()),
                storage_class: storage.and_then(|storage| storage.storage_class),
            });
        }
        "chat" => scratch_dirs.push("/var/lib/commerce/chat-attachments".to_owned()),
        "gateway" => routes.push(route(shop, &["/v1", "/.well-known"])),
        _ => {}
    }

    // Chat keeps attachments on the pod unless the shop names a bucket: one replica, so
    // no reader misses what another pod holds.
    let default_replicas = match service.name {
        "chat" if shop.spec.attachments.is_none() => 1,
        _ => 2,
    };
    Ok(Microservice {
        metadata: child_meta(shop, microservice_name(&shop_name, service.name)),
        spec: MicroserviceSpec {
            image: shop.spec.image.clone(),
            image_pull_policy: pull_policy(shop),
            target: Some(service.name.to_owned()),
            replicas: overrides.replicas.unwrap_or(default_replicas),
            http_port: service.http_port,
            readiness_path: "/readyz".to_owned(),
            liveness_path: "/healthz".to_owned(),
            grpc_port: service.grpc_port,
            ops_port: Some(OPS_PORT),
            config: Some(toml::to_string(&config).expect("a TOML table serialises")),
            env,
            resources: overrides.resources.clone(),
            database: service.database.then(|| DatabaseSpec {
                name: service.name.to_owned(),
                instances: shop.spec.postgres.instances,
                storage_size: shop.spec.postgres.storage_size.clone(),
                storage_class: shop.spec.postgres.storage_class.clone(),
                image_name: shop.spec.postgres.image_name.clone(),
                scheduling: shop.spec.postgres.scheduling.clone(),
            }),
            secret_mounts,
            config_map_mounts,
            scratch_dirs,
            persistent_volume,
            routes,
            autoscaling: overrides.autoscaling.clone(),
            scheduling: overrides
                .scheduling
                .clone()
                .or_else(|| shop.spec.scheduling.clone()),
            pod_annotations,
        },
        status: None,
    })
}

fn secret_ref(secret: &str, key: &str, name: String) -> EnvVar {
    EnvVar {
        name,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Credentials reach the pods from the service-clients Secret, never through the
/// ConfigMap.
fn secret_env(shop: &Shop, service: &ServiceInfo) -> Vec<EnvVar> {
    let secret = service_clients_secret_name(&name(shop));
    let prefix = crate::desired::microservice::env_prefix(service.name);
    let mut env = Vec::new();
    if shop.spec.redis.is_provisioned() {
        env.push(secret_ref(
            &redis::redis_name(&name(shop)),
            redis::PASSWORD_KEY,
            "COMMERCE_REDIS__PASSWORD".to_owned(),
        ));
    }
    env.extend(service_credentials(service, &secret, &prefix));
    if let Some(attachments) = shop
        .spec
        .attachments
        .as_ref()
        .filter(|_| service.name == "chat")
    {
        for (key, setting) in [
            ("access-key-id", "ACCESS_KEY_ID"),
            ("secret-access-key", "SECRET_ACCESS_KEY"),
        ] {
            env.push(secret_ref(
                &attachments.credentials_secret,
                key,
                format!("{prefix}ATTACHMENT_BUCKET__{setting}"),
            ));
        }
    }
    env
}

fn service_credentials(service: &ServiceInfo, secret: &str, prefix: &str) -> Vec<EnvVar> {
    match service.name {
        "auth" => SERVICE_CLIENTS
            .iter()
            .map(|client| {
                secret_ref(
                    secret,
                    client,
                    format!("{prefix}SERVICE_CLIENTS__{}", client.to_ascii_uppercase()),
                )
            })
            .collect(),
        "order" | "cart" | "notification" | "search" => vec![secret_ref(
            secret,
            service.name,
            format!("{prefix}CLIENT_SECRET"),
        )],
        "payment" => vec![secret_ref(
            secret,
            OFFLINE_WEBHOOK_KEY,
            format!("{prefix}OFFLINE__WEBHOOK_SECRET"),
        )],
        _ => Vec::new(),
    }
}

/// The origins the REST gateway answers cross-origin: the shop's own host and those of a
/// storefront served elsewhere, each once.
fn cors_origins(shop: &Shop) -> Vec<String> {
    let mut origins = vec![format!("https://{}", shop.spec.hostname)];
    for origin in &shop.spec.storefront_origins {
        if !origins.contains(origin) {
            origins.push(origin.clone());
        }
    }
    origins
}

fn url(shop: &Shop, service: &str, port: i32) -> String {
    format!("http://{}:{port}", microservice_name(&name(shop), service))
}

fn peer_http(shop: &Shop, service: &str) -> String {
    let info = catalog::find(service).expect("peers name catalogue services");
    url(shop, service, info.http_port)
}

fn peer_grpc(shop: &Shop, service: &str) -> String {
    let info = catalog::find(service).expect("peers name catalogue services");
    url(shop, service, info.grpc_port.unwrap_or(info.http_port))
}

fn table(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Table(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

fn text(value: impl Into<String>) -> Value {
    Value::String(value.into())
}

/// The configuration file of one service: the same keys as `config/commerce.toml`, with
/// in-cluster addresses. Credentials come from the environment (see `secret_env`).
pub fn base_config(shop: &Shop, service: &ServiceInfo) -> Table {
    let shop_name = name(shop);
    let jwks = format!("{}/.well-known/jwks.json", peer_http(shop, "auth"));
    let mut own = Table::new();
    own.insert(
        "http_addr".to_owned(),
        text(format!("0.0.0.0:{}", service.http_port)),
    );
    own.insert("ops_addr".to_owned(), text(format!("0.0.0.0:{OPS_PORT}")));
    if let Some(grpc) = service.grpc_port {
        own.insert("grpc_addr".to_owned(), text(format!("0.0.0.0:{grpc}")));
    }
    let mut peers = Table::new();
    for peer in service.peers {
        let info = catalog::find(peer).expect("peers name catalogue services");
        if service.name == "gateway" {
            continue;
        }
        if *peer == "auth" {
            peers.insert("auth_http".to_owned(), text(peer_http(shop, "auth")));
        }
        if info.grpc_port.is_some() {
            peers.insert(format!("{peer}_grpc"), text(peer_grpc(shop, peer)));
        }
    }
    match service.name {
        "auth" => {
            own.insert(
                "keys".to_owned(),
                table([("dir", text(KEYS_DIR)), ("generate", Value::Boolean(false))]),
            );
            own.insert(
                "client_audiences".to_owned(),
                Value::Table(client_audiences()),
            );
            // Public requests reach auth through the shop's gateway pods, whose addresses
            // are not known in advance; auth's NetworkPolicy admits only pods of the
            // cluster. So any pod address is a trusted proxy; the gateway replaces
            // X-Forwarded-For with the client it saw.
            own.insert(
                "trusted_proxies".to_owned(),
                Value::Array(
                    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]
                        .into_iter()
                        .map(text)
                        .collect(),
                ),
            );
        }
        "product" => {
            own.insert("auth".to_owned(), table([("jwks_url", text(&jwks))]));
        }
        "cart" | "order" | "notification" => {
            own.insert("peers".to_owned(), Value::Table(peers));
            if service.name == "order" {
                own.insert(
                    "saga_file".to_owned(),
                    text(format!("{SAGA_DIR}/{SAGA_FILE_NAME}")),
                );
                if let Some(temporal) = &shop.spec.temporal {
                    own.insert(
                        "temporal".to_owned(),
                        table([
                            ("url", text(&temporal.address)),
                            ("namespace", text(&temporal.namespace)),
                            ("task_queue", text(&temporal.task_queue)),
                        ]),
                    );
                }
            }
            if service.name == "notification" {
                own.insert("jwks_url".to_owned(), text(&jwks));
                own.insert(
                    "verify_email_url".to_owned(),
                    text(format!(
                        "https://{}/v1/auth/verify-email?token={{token}}",
                        shop.spec.hostname
                    )),
                );
                own.insert(
                    "cart_url".to_owned(),
                    text(format!("https://{}/cart", shop.spec.hostname)),
                );
                own.insert(
                    "order_url".to_owned(),
                    text(format!(
                        "https://{}/orders/{{order_id}}",
                        shop.spec.hostname
                    )),
                );
                // The storefront's page, served at the shop's hostname.
                own.insert(
                    "reset_password_url".to_owned(),
                    text(format!(
                        "https://{}/reset-password?token={{token}}",
                        shop.spec.hostname
                    )),
                );
            }
        }
        "payment" | "fulfillment" | "chat" => {
            own.insert("jwks_url".to_owned(), text(&jwks));
            if service.name == "payment" {
                // Written either way, so the generated config shows which it is.
                own.insert(
                    "offline".to_owned(),
                    table([("enabled", Value::Boolean(shop.spec.payments.offline))]),
                );
            }
            if service.name == "chat" {
                own.insert(
                    "attachment_dir".to_owned(),
                    text("/var/lib/commerce/chat-attachments"),
                );
                if let Some(attachments) = &shop.spec.attachments {
                    let mut bucket = Table::new();
                    bucket.insert("bucket".to_owned(), text(&attachments.bucket));
                    bucket.insert("region".to_owned(), text(&attachments.region));
                    if let Some(endpoint) = &attachments.endpoint {
                        bucket.insert("endpoint".to_owned(), text(endpoint));
                    }
                    own.insert("attachment_bucket".to_owned(), Value::Table(bucket));
                }
            }
        }
        "search" => {
            own.insert("jwks_url".to_owned(), text(&jwks));
            own.insert("index_dir".to_owned(), text(SEARCH_INDEX_DIR));
            own.insert("peers".to_owned(), Value::Table(peers));
        }
        "gateway" => {
            own.insert("jwks_url".to_owned(), text(&jwks));
            // Behind the cluster's Gateway the client address is in X-Forwarded-For.
            own.insert("client_ip_header".to_owned(), text("x-forwarded-for"));
            own.insert(
                "cors".to_owned(),
                table([(
                    "allowed_origins",
                    Value::Array(cors_origins(shop).into_iter().map(text).collect()),
                )]),
            );
            let mut upstreams: Table = service
                .peers
                .iter()
                .filter(|peer| shop.spec.services.get(peer).is_some_and(|o| o.enabled))
                .map(|peer| {
                    (
                        (*peer).to_owned(),
                        table([("url", text(peer_http(shop, peer)))]),
                    )
                })
                .collect();
            if shop.spec.graphql.is_some() {
                upstreams.insert(
                    GRAPHQL.to_owned(),
                    table([("url", text(url(shop, GRAPHQL, GRAPHQL_PORT)))]),
                );
            }
            // The route table is the one `config/commerce.toml` defines (one source for
            // both), less the routes to upstreams this shop does not run.
            let routes: Vec<Value> = gateway_routes()
                .into_iter()
                .filter(|route| {
                    route
                        .get("upstream")
                        .and_then(Value::as_str)
                        .is_some_and(|upstream| upstreams.contains_key(upstream))
                })
                .collect();
            own.insert("upstreams".to_owned(), Value::Table(upstreams));
            own.insert("routes".to_owned(), Value::Array(routes));
        }
        _ => {}
    }

    let redis_mode = match shop.spec.redis.mode {
        RedisMode::Standalone => "standalone",
        RedisMode::Cluster => "cluster",
    };
    let mut kafka = Table::new();
    kafka.insert(
        "brokers".to_owned(),
        text(&shop.spec.kafka.bootstrap_servers),
    );
    kafka.insert(
        "client_id".to_owned(),
        text(microservice_name(&shop_name, service.name)),
    );
    if let Some(prefix) = &shop.spec.kafka.topic_prefix {
        kafka.insert("topic_prefix".to_owned(), text(prefix));
    }

    let mut config = Table::new();
    config.insert("shutdown_grace".to_owned(), text("20s"));
    config.insert(
        "telemetry".to_owned(),
        table([
            ("log_format", text("json")),
            (
                "log_level",
                text("info,sqlx=warn,rdkafka=warn,tantivy=error"),
            ),
        ]),
    );
    config.insert("kafka".to_owned(), Value::Table(kafka));
    config.insert(
        "redis".to_owned(),
        table([
            ("mode", text(redis_mode)),
            (
                "urls",
                Value::Array(redis::urls(shop).into_iter().map(text).collect()),
            ),
        ]),
    );
    config.insert(
        "services".to_owned(),
        Value::Table(Table::from_iter([(
            service.name.to_owned(),
            Value::Table(own),
        )])),
    );
    config
}

fn shipped_service_setting(service: &str, key: &str) -> Option<Value> {
    let local: Table = include_str!("../../../config/commerce.toml")
        .parse()
        .expect("config/commerce.toml is valid TOML (its own tests load it)");
    local
        .get("services")
        .and_then(|services| services.get(service))
        .and_then(|section| section.get(key))
        .cloned()
}

/// The REST gateway's routes, from the local configuration compiled in.
pub fn gateway_routes() -> Vec<Value> {
    shipped_service_setting("gateway", "routes")
        .and_then(|routes| routes.as_array().cloned())
        .unwrap_or_default()
}

/// Which services each service client may get tokens for, from the local configuration
/// compiled in (one source for both).
pub fn client_audiences() -> Table {
    shipped_service_setting("auth", "client_audiences")
        .and_then(|audiences| audiences.as_table().cloned())
        .unwrap_or_default()
}

/// Deep-merges `extra` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut Table, extra: Table) -> Result<(), String> {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(more)) => {
                merge(existing, more).map_err(|message| format!("{key}.{message}"))?
            }
            (Some(Value::Table(_)), _) => {
                return Err(format!(
                    "{key} is a table and cannot be replaced by a value"
                ));
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
    Ok(())
}

/// The order service's view of a SagaPolicy: `services.order.saga` keys, snake_case.
pub fn saga_file(spec: &SagaPolicySpec) -> String {
    let step = |policy: &crate::crd::saga_policy::StepPolicy| {
        table([
            ("timeout", text(&policy.timeout)),
            ("attempts", Value::Integer(i64::from(policy.attempts))),
            ("backoff", text(&policy.backoff)),
            ("max_backoff", text(&policy.max_backoff)),
        ])
    };
    let engine = match spec.engine {
        crate::crd::saga_policy::Engine::Postgres => "postgres",
        crate::crd::saga_policy::Engine::Temporal => "temporal",
    };
    let mut file = Table::new();
    file.insert("engine".to_owned(), text(engine));
    file.insert("step".to_owned(), step(&spec.step));
    if !spec.steps.is_empty() {
        file.insert(
            "steps".to_owned(),
            Value::Table(
                spec.steps
                    .iter()
                    .map(|(name, policy)| (name.clone(), step(policy)))
                    .collect(),
            ),
        );
    }
    file.insert("lease".to_owned(), text(&spec.lease));
    file.insert(
        "recovery_interval".to_owned(),
        text(&spec.recovery_interval),
    );
    file.insert("payment_window".to_owned(), text(&spec.payment_window));
    file.insert(
        "reminders".to_owned(),
        Value::Array(
            spec.reminders
                .iter()
                .map(|offset| text(&offset.0))
                .collect(),
        ),
    );
    toml::to_string(&file).expect("a TOML table serialises")
}
