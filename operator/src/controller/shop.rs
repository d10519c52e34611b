//! Shop → Secrets (signing keys, service credentials), Microservices, KafkaTopics, a
//! SagaPolicy; then a status rolled up from those children.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Context, Error, apply, delete_if_present, now};
use crate::crd::shop::{RedisState, ServiceState};
use crate::crd::{KafkaTopic, Microservice, SagaPolicy, Shop, ShopStatus, is_true, set_condition};
use crate::desired::redis;
use crate::desired::shop::{
    self as desired, OFFLINE_WEBHOOK_KEY, Observed, SERVICE_CLIENTS, SHOP_LABEL,
    service_clients_secret_name, signing_key_secret_name,
};

/// The annotation on the signing-key Secret naming the rotation its newest key is for.
pub const ROTATION_ANNOTATION: &str = "commerce.dev/signing-key-rotation";
/// Keys kept after a rotation: the new one signs, the previous one still verifies
/// tokens issued before it.
const KEYS_KEPT: usize = 2;

pub async fn reconcile(shop: Arc<Shop>, context: Arc<Context>) -> Result<Action, Error> {
    let (object, shared) = (shop.clone(), context.clone());
    super::reconcile_reported(
        "shop",
        object,
        shared,
        conditions,
        reconcile_inner(shop, context),
    )
    .await
}

fn conditions(shop: &Shop) -> &[Condition] {
    shop.status
        .as_ref()
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default()
}

async fn reconcile_inner(shop: Arc<Shop>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = shop.namespace().ok_or(Error::Missing("namespace"))?;
    let name = shop.name_any();
    let client = &context.client;

    let signing_key_ids = ensure_signing_keys(&context, &shop, &namespace).await?;
    ensure_service_clients(&context, &shop, &namespace).await?;

    let referenced_saga_engine = match &shop.spec.saga_policy_ref {
        Some(policy) => Api::<SagaPolicy>::namespaced(client.clone(), &namespace)
            .get_opt(policy)
            .await?
            .map(|policy| policy.spec.engine),
        None => None,
    };
    let observed = Observed {
        signing_key_ids,
        referenced_saga_engine,
    };
    let children = match desired::desired(&shop, &observed) {
        Ok(children) => children,
        Err(error) => {
            // A spec the operator cannot render: say so on the Shop and wait for an edit.
            let mut status = shop.status.clone().unwrap_or_default();
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                "InvalidSpec",
                error.to_string(),
                shop.metadata.generation,
                now(),
            );
            status.phase = Some("Degraded".to_owned());
            status.observed_generation = shop.metadata.generation;
            context
                .event(
                    shop.as_ref(),
                    EventType::Warning,
                    "InvalidSpec",
                    error.to_string(),
                )
                .await;
            patch_status(&context, &shop, &status).await?;
            return Ok(Action::await_change());
        }
    };

    if let Some(redis) = &children.redis {
        ensure_redis_secret(&context, &shop, &namespace).await?;
        apply(client, &redis.stateful_set).await?;
        apply(client, &redis.service).await?;
        apply(client, &redis.network_policy).await?;
    } else if shop
        .status
        .as_ref()
        .and_then(|status| status.redis.as_ref())
        .is_some_and(|redis| redis.provisioned)
    {
        // The shop now names a Redis of its own: the provisioned one goes (its volume
        // claim stays, as a StatefulSet's always do). The Secret stays with it.
        let redis = redis::redis_name(&name);
        delete_if_present::<StatefulSet>(client, &namespace, &redis).await?;
        delete_if_present::<Service>(client, &namespace, &redis).await?;
        delete_if_present::<NetworkPolicy>(client, &namespace, &redis).await?;
    }
    for microservice in &children.microservices {
        apply(client, microservice).await?;
    }
    for topic in &children.topics {
        apply(client, topic).await?;
    }
    if let Some(policy) = &children.saga_policy {
        apply(client, policy).await?;
    }
    let keep: HashSet<String> = children
        .microservices
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let pruned = prune::<Microservice>(&context, &shop, &keep).await?;
    for gone in &pruned {
        context
            .event(
                shop.as_ref(),
                EventType::Normal,
                "ServiceRemoved",
                format!("Microservice {gone} deleted (its service is disabled)"),
            )
            .await;
    }
    let keep: HashSet<String> = children.topics.iter().map(ResourceExt::name_any).collect();
    prune::<KafkaTopic>(&context, &shop, &keep).await?;
    if children.saga_policy.is_none() {
        // The shop now refers to a policy managed elsewhere; its own one goes.
        let own = Api::<SagaPolicy>::namespaced(client.clone(), &namespace)
            .get_opt(&name)
            .await?;
        if own.is_some_and(|policy| owned_by(&policy, &shop)) {
            delete_if_present::<SagaPolicy>(client, &namespace, &name).await?;
        }
    }

    let status = roll_up(&context, &shop, &children).await?;
    let previous_phase = shop.status.as_ref().and_then(|status| status.phase.clone());
    if previous_phase != status.phase {
        let phase = status.phase.clone().unwrap_or_default();
        let type_ = if phase == "Degraded" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        context
            .event(
                shop.as_ref(),
                type_,
                &phase,
                format!(
                    "{} services ready",
                    status.ready_services.clone().unwrap_or_default()
                ),
            )
            .await;
    }
    patch_status(&context, &shop, &status).await?;
    Ok(Action::requeue(
        if status.phase.as_deref() == Some("Ready") {
            Duration::from_secs(300)
        } else {
            Duration::from_secs(20)
        },
    ))
}

fn owned_by<K: Resource>(object: &K, shop: &Shop) -> bool {
    let uid = shop.meta().uid.as_ref();
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|owner| Some(&owner.uid) == uid)
}

/// Deletes the shop's children of one kind that it no longer wants.
async fn prune<K>(
    context: &Context,
    shop: &Shop,
    keep: &HashSet<String>,
) -> Result<Vec<String>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let namespace = shop.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(context.client.clone(), &namespace);
    let selector = format!("{SHOP_LABEL}={}", shop.name_any());
    let mut pruned = Vec::new();
    for object in api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let name = object.meta().name.clone().unwrap_or_default();
        if owned_by(&object, shop) && !keep.contains(&name) {
            delete_if_present::<K>(&context.client, &namespace, &name).await?;
            pruned.push(name);
        }
    }
    Ok(pruned)
}

async fn patch_status(context: &Context, shop: &Shop, status: &ShopStatus) -> Result<(), Error> {
    let api: Api<Shop> = Api::namespaced(
        context.client.clone(),
        &shop.namespace().unwrap_or_default(),
    );
    api.patch_status(
        &shop.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// The shop's status from its children's: a service is ready when its Microservice is;
/// the shop is Ready when every enabled service is and every topic exists.
async fn roll_up(
    context: &Context,
    shop: &Shop,
    children: &desired::ShopChildren,
) -> Result<ShopStatus, Error> {
    let namespace = shop.namespace().unwrap_or_default();
    let selector = format!("{SHOP_LABEL}={}", shop.name_any());
    let listed = ListParams::default().labels(&selector);
    let microservices: BTreeMap<String, Microservice> =
        Api::<Microservice>::namespaced(context.client.clone(), &namespace)
            .list(&listed)
            .await?
            .items
            .into_iter()
            .map(|microservice| (microservice.name_any(), microservice))
            .collect();
    let topics: BTreeMap<String, KafkaTopic> =
        Api::<KafkaTopic>::namespaced(context.client.clone(), &namespace)
            .list(&listed)
            .await?
            .items
            .into_iter()
            .map(|topic| (topic.name_any(), topic))
            .collect();
    let redis_ready_replicas = match &children.redis {
        Some(_) => Api::<StatefulSet>::namespaced(context.client.clone(), &namespace)
            .get_opt(&redis::redis_name(&shop.name_any()))
            .await?
            .and_then(|set| set.status)
            .and_then(|status| status.ready_replicas)
            .unwrap_or(0),
        None => 0,
    };
    let redis_ready = children.redis.is_none() || redis_ready_replicas > 0;
    let policy_name = desired::saga_policy_name(shop);
    let policy = Api::<SagaPolicy>::namespaced(context.client.clone(), &namespace)
        .get_opt(&policy_name)
        .await?;

    let prefix = format!("{}-", shop.name_any());
    let mut services = Vec::new();
    let mut degraded = Vec::new();
    // Every service that is not ready, with its own Ready reason and message.
    let mut waiting = Vec::new();
    for wanted in &children.microservices {
        let name = wanted.name_any();
        let observed = microservices.get(&name).and_then(|m| m.status.clone());
        let conditions = observed
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or(&[]);
        let service = name.strip_prefix(&prefix).unwrap_or(&name).to_owned();
        if is_true(conditions, "Degraded") {
            degraded.push(service.clone());
        }
        if !is_true(conditions, "Ready") {
            let why = conditions
                .iter()
                .find(|condition| condition.type_ == "Ready")
                .map_or_else(
                    || "no status yet".to_owned(),
                    |ready| format!("{}: {}", ready.reason, ready.message),
                );
            waiting.push(format!("{service} ({why})"));
        }
        services.push(ServiceState {
            name: service,
            ready: is_true(conditions, "Ready"),
            ready_replicas: observed.map_or(0, |s| s.ready_replicas),
        });
    }
    let ready_services = services.iter().filter(|s| s.ready).count();
    let ready_topics = children
        .topics
        .iter()
        .filter(|wanted| {
            topics.get(&wanted.name_any()).is_some_and(|topic| {
                topic
                    .status
                    .as_ref()
                    .is_some_and(|status| is_true(&status.conditions, "Ready"))
            })
        })
        .count();
    let policy_valid = policy
        .as_ref()
        .and_then(|policy| policy.status.as_ref())
        .is_some_and(|status| is_true(&status.conditions, "Valid"));

    let mut status = shop.status.clone().unwrap_or_default();
    let generation = shop.metadata.generation;
    let time = now();
    let all_ready =
        ready_services == services.len() && ready_topics == children.topics.len() && redis_ready;
    set_condition(
        &mut status.conditions,
        "ServicesReady",
        ready_services == services.len(),
        if ready_services == services.len() {
            "AllReady"
        } else {
            "Waiting"
        },
        format!("{ready_services}/{} services ready", services.len()),
        generation,
        time.clone(),
    );
    set_condition(
        &mut status.conditions,
        "TopicsReady",
        ready_topics == children.topics.len(),
        if ready_topics == children.topics.len() {
            "AllReady"
        } else {
            "Waiting"
        },
        format!("{ready_topics}/{} topics ready", children.topics.len()),
        generation,
        time.clone(),
    );
    set_condition(
        &mut status.conditions,
        "SagaPolicyValid",
        policy_valid,
        if policy.is_none() {
            "NotFound"
        } else if policy_valid {
            "Valid"
        } else {
            "Invalid"
        },
        format!("SagaPolicy {policy_name}"),
        generation,
        time.clone(),
    );
    let phase = if !degraded.is_empty() {
        "Degraded"
    } else if all_ready && policy_valid {
        "Ready"
    } else {
        "Progressing"
    };
    let mut not_ready = Vec::new();
    if !waiting.is_empty() {
        not_ready.push(format!("services not ready: {}", waiting.join("; ")));
    }
    if ready_topics < children.topics.len() {
        not_ready.push(format!(
            "{ready_topics}/{} topics ready",
            children.topics.len()
        ));
    }
    if !policy_valid {
        not_ready.push(format!("SagaPolicy {policy_name} is not valid"));
    }
    if !redis_ready {
        not_ready.push("the provisioned Redis is not ready".to_owned());
    }
    set_condition(
        &mut status.conditions,
        "Ready",
        phase == "Ready",
        phase,
        not_ready.join("; "),
        generation,
        time.clone(),
    );
    set_condition(
        &mut status.conditions,
        "Degraded",
        !degraded.is_empty(),
        if degraded.is_empty() {
            "AsExpected"
        } else {
            "ServicesDegraded"
        },
        if degraded.is_empty() {
            String::new()
        } else {
            format!("degraded: {}", degraded.join(", "))
        },
        generation,
        time,
    );
    status.phase = Some(phase.to_owned());
    status.ready_services = Some(format!("{ready_services}/{}", services.len()));
    status.services = services;
    status.observed_generation = generation;
    status.signing_key_rotation = shop.spec.signing_key.rotation.clone();
    status.redis = Some(RedisState {
        provisioned: children.redis.is_some(),
        urls: redis::urls(shop),
        ready_replicas: redis_ready_replicas,
    });
    Ok(status)
}

/// The signing-key Secret: created once with one key; on a new `spec.signingKey.rotation`
/// value a key is added and only the newest two are kept. Otherwise never written.
/// Returns the key ids it holds.
async fn ensure_signing_keys(
    context: &Context,
    shop: &Shop,
    namespace: &str,
) -> Result<Vec<String>, Error> {
    let api: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    let name = signing_key_secret_name(&shop.name_any());
    let rotation = shop.spec.signing_key.rotation.clone().unwrap_or_default();
    match api.get_opt(&name).await? {
        None => {
            let kid = crate::keys::new_key_id(k8s_openapi::jiff::Timestamp::now());
            let mut secret = Secret {
                metadata: desired::child_meta(shop, name.clone()),
                type_: Some("Opaque".to_owned()),
                data: Some(BTreeMap::from([(format!("{kid}.pem"), new_key().await?)])),
                ..Secret::default()
            };
            secret
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(ROTATION_ANNOTATION.to_owned(), rotation);
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {
                    context
                        .event(
                            shop,
                            EventType::Normal,
                            "SigningKeyCreated",
                            format!("Secret {name} holds key {kid}"),
                        )
                        .await;
                    Ok(vec![kid])
                }
                // Created meanwhile: take what is there on the next pass.
                Err(kube::Error::Api(response)) if response.code == 409 => {
                    Err(Error::Kube(kube::Error::Api(response)))
                }
                Err(error) => Err(error.into()),
            }
        }
        Some(mut secret) => {
            let current = secret
                .annotations()
                .get(ROTATION_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            let data = secret.data.get_or_insert_default();
            if current != rotation {
                let kid = crate::keys::new_key_id(k8s_openapi::jiff::Timestamp::now());
                data.insert(format!("{kid}.pem"), new_key().await?);
                let mut names: Vec<String> = data.keys().cloned().collect();
                names.sort();
                let drop = names.len().saturating_sub(KEYS_KEPT);
                for old in &names[..drop] {
                    data.remove(old);
                }
                secret
                    .metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(ROTATION_ANNOTATION.to_owned(), rotation);
                // Replace carries the resourceVersion read above: a concurrent writer
                // makes this fail instead of losing its change.
                api.replace(&name, &PostParams::default(), &secret).await?;
                context
                    .event(
                        shop,
                        EventType::Normal,
                        "SigningKeyRotated",
                        format!("Secret {name}: new key {kid}"),
                    )
                    .await;
            }
            let mut ids: Vec<String> = secret
                .data
                .iter()
                .flatten()
                .filter_map(|(file, _)| file.strip_suffix(".pem").map(str::to_owned))
                .collect();
            ids.sort();
            Ok(ids)
        }
    }
}

async fn new_key() -> Result<ByteString, Error> {
    // RSA generation takes a while; keep it off the runtime's threads.
    let pem = tokio::task::spawn_blocking(crate::keys::generate_pem)
        .await
        .map_err(crate::keys::KeyError::from)??;
    Ok(ByteString(pem.into_bytes()))
}

/// The provisioned Redis's password and configuration file: made once; a missing
/// configuration is rebuilt from the password it keeps.
async fn ensure_redis_secret(context: &Context, shop: &Shop, namespace: &str) -> Result<(), Error> {
    let name = redis::redis_name(&shop.name_any());
    ensure_secret(context, shop, namespace, &name, |existing| {
        if existing.contains_key(redis::PASSWORD_KEY) && existing.contains_key(redis::CONFIG_KEY) {
            return BTreeMap::new();
        }
        let password = existing
            .get(redis::PASSWORD_KEY)
            .cloned()
            .unwrap_or_else(random_secret);
        let config = redis::server_config(&String::from_utf8_lossy(&password.0));
        BTreeMap::from([
            (redis::PASSWORD_KEY.to_owned(), password),
            (
                redis::CONFIG_KEY.to_owned(),
                ByteString(config.into_bytes()),
            ),
        ])
    })
    .await
}

fn random_secret() -> ByteString {
    let bytes: [u8; 32] = rand::random();
    ByteString(hex::encode(bytes).into_bytes())
}

/// The service credentials: every missing key is generated; existing ones are never
/// changed (services hold them).
async fn ensure_service_clients(
    context: &Context,
    shop: &Shop,
    namespace: &str,
) -> Result<(), Error> {
    let name = service_clients_secret_name(&shop.name_any());
    ensure_secret(context, shop, namespace, &name, |existing| {
        SERVICE_CLIENTS
            .iter()
            .copied()
            .chain([OFFLINE_WEBHOOK_KEY])
            .filter(|key| !existing.contains_key(*key))
            .map(|key| (key.to_owned(), random_secret()))
            .collect()
    })
    .await
}

/// The shop's generated Secret `name`: created with what `missing` returns for an empty
/// one, or given what `missing` returns for the data it holds (nothing, once complete).
/// Written with the `resourceVersion` read, so two writers cannot both generate.
async fn ensure_secret(
    context: &Context,
    shop: &Shop,
    namespace: &str,
    name: &str,
    missing: impl FnOnce(&BTreeMap<String, ByteString>) -> BTreeMap<String, ByteString>,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    match api.get_opt(name).await? {
        None => {
            let secret = Secret {
                metadata: desired::child_meta(shop, name.to_owned()),
                type_: Some("Opaque".to_owned()),
                data: Some(missing(&BTreeMap::new())),
                ..Secret::default()
            };
            api.create(&PostParams::default(), &secret).await?;
        }
        Some(secret) => {
            let added = missing(secret.data.as_ref().unwrap_or(&BTreeMap::new()));
            if !added.is_empty() {
                api.patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({
                        "metadata": { "resourceVersion": secret.metadata.resource_version },
                        "data": added,
                    })),
                )
                .await?;
            }
        }
    }
    Ok(())
}

pub fn error_policy(shop: Arc<Shop>, error: &Error, context: Arc<Context>) -> Action {
    super::error_policy(shop, error, "shop", &context)
}
