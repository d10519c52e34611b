//! Microservice → ServiceAccount, ConfigMap, Deployment or StatefulSet, Service, CloudNativePG Cluster,
//! HPA, PDB, HTTPRoutes. Optional children the spec no longer asks for are deleted,
//! except the database: dropping `spec.database` never deletes data (delete the
//! `<name>-db` Cluster by hand when that is meant).

use std::sync::Arc;
use std::time::Duration;

use gateway_api::httproutes::HttpRoute;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, apply, apply_kind_missing, delete_if_present, kind_missing, now};
use crate::crd::{Microservice, MicroserviceStatus, is_true, set_condition};
use crate::desired::microservice::{MicroserviceChildren, desired};

pub async fn reconcile(
    microservice: Arc<Microservice>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let (object, shared) = (microservice.clone(), context.clone());
    super::reconcile_reported(
        "microservice",
        object,
        shared,
        conditions,
        reconcile_inner(microservice, context),
    )
    .await
}

fn conditions(microservice: &Microservice) -> &[Condition] {
    microservice
        .status
        .as_ref()
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default()
}

/// Problems that leave the service running but not as specified.
#[derive(Debug, Default)]
struct Degradations(Vec<String>);

async fn reconcile_inner(
    microservice: Arc<Microservice>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = microservice
        .namespace()
        .ok_or(Error::Missing("namespace"))?;
    let name = microservice.name_any();
    let client = &context.client;
    let children = desired(&microservice);
    let mut degraded = Degradations::default();

    apply(client, &children.service_account).await?;
    match &children.config_map {
        Some(config_map) => {
            apply(client, config_map).await?;
        }
        None => {
            delete_if_present::<ConfigMap>(client, &namespace, &format!("{name}-config")).await?;
        }
    }
    if let Some(database) = &children.database {
        // Without CloudNativePG the Cluster kind is not served: the service cannot get
        // its database, which the status says; the rest is still applied.
        if let Err(error) = apply(client, database).await {
            if apply_kind_missing(&error) {
                degraded.0.push(
                    "CloudNativePG is not installed (postgresql.cnpg.io/v1 Cluster is not served)"
                        .to_owned(),
                );
            } else {
                return Err(error);
            }
        }
    }
    // One of the two runs the pods; the other kind is removed (the spec gained or lost
    // its persistent volume).
    let rollout = match (&children.deployment, &children.stateful_set) {
        (Some(deployment), _) => {
            let applied = apply(client, deployment).await?;
            delete_if_present::<StatefulSet>(client, &namespace, &name).await?;
            Rollout::of_deployment(&applied, microservice.spec.replicas)
        }
        (None, Some(stateful_set)) => {
            let applied = apply(client, stateful_set).await?;
            delete_if_present::<Deployment>(client, &namespace, &name).await?;
            Rollout::of_stateful_set(&applied, microservice.spec.replicas)
        }
        (None, None) => return Err(Error::Missing("a Deployment or StatefulSet")),
    };
    apply(client, &children.service).await?;
    apply(client, &children.network_policy).await?;
    match &children.autoscaler {
        Some(autoscaler) => {
            apply(client, autoscaler).await?;
        }
        None => {
            delete_if_present::<HorizontalPodAutoscaler>(client, &namespace, &name).await?;
        }
    }
    match &children.disruption_budget {
        Some(budget) => {
            apply(client, budget).await?;
        }
        None => {
            delete_if_present::<PodDisruptionBudget>(client, &namespace, &name).await?;
        }
    }
    prune_and_apply_routes(&context, &microservice, &children, &mut degraded).await?;

    let status = status(&microservice, &rollout, &degraded);
    let previous = microservice.status.clone().unwrap_or_default();
    announce(&context, &microservice, &previous, &status).await;
    let api: Api<Microservice> = Api::namespaced(client.clone(), &namespace);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    // Deployment changes arrive through the watch on owned objects; the periodic resync
    // repairs drift in children nobody watches (HTTPRoutes, Clusters).
    let ready = is_true(&status.conditions, "Ready");
    Ok(Action::requeue(if ready {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(30)
    }))
}

async fn prune_and_apply_routes(
    context: &Context,
    microservice: &Microservice,
    children: &MicroserviceChildren,
    degraded: &mut Degradations,
) -> Result<(), Error> {
    let namespace = microservice.namespace().unwrap_or_default();
    let api: Api<HttpRoute> = Api::namespaced(context.client.clone(), &namespace);
    let selector = format!("app.kubernetes.io/instance={}", microservice.name_any());
    let existing = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(error) if kind_missing(&error) => {
            if !children.routes.is_empty() {
                degraded.0.push(
                    "the Gateway API is not installed (gateway.networking.k8s.io/v1 HTTPRoute is not served)"
                        .to_owned(),
                );
            }
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    let uid = microservice.uid();
    for route in existing {
        let owned = route
            .owner_references()
            .iter()
            .any(|owner| Some(&owner.uid) == uid.as_ref());
        let wanted = children
            .routes
            .iter()
            .any(|desired| desired.metadata.name == route.metadata.name);
        if owned && !wanted {
            delete_if_present::<HttpRoute>(&context.client, &namespace, &route.name_any()).await?;
        }
    }
    for route in &children.routes {
        apply(&context.client, route).await?;
    }
    Ok(())
}

/// Where the pods' rollout stands, read from the Deployment's or the StatefulSet's status.
struct Rollout {
    wanted: i32,
    replicas: i32,
    ready: i32,
    updated: i32,
    /// Every replica runs the newest template and the controller has seen it.
    rolled_out: bool,
    /// Why the rollout cannot go on, when the controller says so.
    stalled: Option<String>,
}

impl Rollout {
    fn of_deployment(deployment: &Deployment, replicas: i32) -> Self {
        let observed = deployment.status.clone().unwrap_or_default();
        let wanted = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .unwrap_or(replicas);
        let (count, ready, updated) = (
            observed.replicas.unwrap_or(0),
            observed.ready_replicas.unwrap_or(0),
            observed.updated_replicas.unwrap_or(0),
        );
        let stalled = observed.conditions.iter().flatten().find(|condition| {
            (condition.type_ == "Progressing"
                && condition.status == "False"
                && condition.reason.as_deref() == Some("ProgressDeadlineExceeded"))
                || (condition.type_ == "ReplicaFailure" && condition.status == "True")
        });
        Self {
            wanted,
            replicas: count,
            ready,
            updated,
            rolled_out: observed.observed_generation >= deployment.metadata.generation
                && updated >= wanted
                && ready >= wanted
                && count == updated,
            stalled: stalled.map(|condition| {
                format!(
                    "deployment: {}",
                    condition.message.clone().unwrap_or_default()
                )
            }),
        }
    }

    fn of_stateful_set(stateful_set: &StatefulSet, replicas: i32) -> Self {
        let observed = stateful_set.status.clone().unwrap_or_default();
        let wanted = stateful_set
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .unwrap_or(replicas);
        let (ready, updated) = (
            observed.ready_replicas.unwrap_or(0),
            observed.updated_replicas.unwrap_or(0),
        );
        Self {
            wanted,
            replicas: observed.replicas,
            ready,
            updated,
            rolled_out: observed.observed_generation >= stateful_set.metadata.generation
                && updated >= wanted
                && ready >= wanted
                && observed.current_revision == observed.update_revision,
            stalled: None,
        }
    }
}

/// The status the rollout and the apply problems add up to.
fn status(
    microservice: &Microservice,
    rollout: &Rollout,
    degraded: &Degradations,
) -> MicroserviceStatus {
    let mut status = microservice.status.clone().unwrap_or_default();
    let generation = microservice.metadata.generation;
    let wanted = rollout.wanted;
    status.replicas = rollout.replicas;
    status.ready_replicas = rollout.ready;
    status.updated_replicas = rollout.updated;
    status.observed_generation = generation;
    let rolled_out = rollout.rolled_out;
    let stalled = rollout.stalled.as_ref();

    let time = now();
    let mut problems = degraded.0.clone();
    if let Some(stalled) = stalled {
        problems.push(stalled.clone());
    }
    set_condition(
        &mut status.conditions,
        "Degraded",
        !problems.is_empty(),
        if problems.is_empty() {
            "AsExpected"
        } else if stalled.is_some() {
            "RolloutStalled"
        } else {
            "DependencyMissing"
        },
        problems.join("; "),
        generation,
        time.clone(),
    );
    set_condition(
        &mut status.conditions,
        "Progressing",
        !rolled_out && stalled.is_none(),
        if rolled_out {
            "RolledOut"
        } else {
            "RollingOut"
        },
        format!(
            "{}/{} replicas updated, {} ready",
            status.updated_replicas, wanted, status.ready_replicas
        ),
        generation,
        time.clone(),
    );
    let ready = rolled_out && problems.is_empty();
    set_condition(
        &mut status.conditions,
        "Ready",
        ready,
        if ready {
            "Available"
        } else if !problems.is_empty() {
            "Degraded"
        } else {
            "RollingOut"
        },
        format!("{}/{} replicas ready", status.ready_replicas, wanted),
        generation,
        time,
    );
    status
}

/// Events when readiness or degradation changes, not on every resync.
async fn announce(
    context: &Context,
    microservice: &Microservice,
    previous: &MicroserviceStatus,
    next: &MicroserviceStatus,
) {
    let was_ready = is_true(&previous.conditions, "Ready");
    let is_ready = is_true(&next.conditions, "Ready");
    let was_degraded = is_true(&previous.conditions, "Degraded");
    let degraded = next
        .conditions
        .iter()
        .find(|condition| condition.type_ == "Degraded" && condition.status == "True");
    if let Some(condition) = degraded
        && !was_degraded
    {
        context
            .event(
                microservice,
                EventType::Warning,
                &condition.reason,
                condition.message.clone(),
            )
            .await;
    }
    if is_ready && !was_ready {
        context
            .event(
                microservice,
                EventType::Normal,
                "Ready",
                format!("{} replicas ready", next.ready_replicas),
            )
            .await;
    }
    if microservice.meta().generation != previous.observed_generation {
        context
            .event(
                microservice,
                EventType::Normal,
                "Applied",
                format!(
                    "generation {} applied",
                    microservice.meta().generation.unwrap_or_default()
                ),
            )
            .await;
    }
}

pub fn error_policy(
    microservice: Arc<Microservice>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    super::error_policy(microservice, error, "microservice", &context)
}
