//! KafkaTopic → the topic on the broker: created, grown, configured; never shrunk (Kafka
//! cannot, so the reconciler says so in a condition). With `deletionPolicy: Delete` a
//! finalizer holds the resource until the topic is gone from the broker.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::{Context, Error, FIELD_MANAGER, now};
use crate::crd::{DeletionPolicy, KafkaTopic, KafkaTopicSpec, KafkaTopicStatus, set_condition};
use crate::kafka::{AdminError, Creation, TopicAdmin, TopicState};

pub const FINALIZER: &str = "commerce.dev/kafka-topic";
const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(topic: Arc<KafkaTopic>, context: Arc<Context>) -> Result<Action, Error> {
    let (object, shared) = (topic.clone(), context.clone());
    super::measured(
        "kafkatopic",
        object.as_ref(),
        &shared,
        reconcile_inner(topic, context),
    )
    .await
}

async fn reconcile_inner(topic: Arc<KafkaTopic>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = topic.namespace().ok_or(Error::Missing("namespace"))?;
    let api: Api<KafkaTopic> = Api::namespaced(context.client.clone(), &namespace);
    let name = topic.name_any();
    let topic_name = topic.topic_name();
    let spec = &topic.spec;
    let has_finalizer = topic.finalizers().iter().any(|f| f == FINALIZER);

    if topic.metadata.deletion_timestamp.is_some() {
        if has_finalizer {
            if spec.deletion_policy == DeletionPolicy::Delete {
                context
                    .topics
                    .delete(&spec.bootstrap_servers, &topic_name)
                    .await?;
                tracing::info!(topic = topic_name, "deleted the topic from the broker");
            }
            remove_finalizer(&api, &topic).await?;
        }
        return Ok(Action::await_change());
    }

    // The finalizer exists only to delete the topic; with Retain nothing is left to do
    // on deletion, so the resource may go at once.
    match (spec.deletion_policy, has_finalizer) {
        (DeletionPolicy::Delete, false) => add_finalizer(&api, &topic).await?,
        (DeletionPolicy::Retain, true) => remove_finalizer(&api, &topic).await?,
        _ => {}
    }

    let mut status = topic.status.clone().unwrap_or_default();
    let generation = topic.metadata.generation;
    let outcome = converge(&topic, &context).await;
    let (ready, reason, message, partitions) = match &outcome {
        Ok(Converged::Created(partitions)) => (
            true,
            "Created",
            format!("created with {partitions} partitions"),
            Some(*partitions),
        ),
        Ok(Converged::UpToDate(partitions)) => (true, "UpToDate", String::new(), Some(*partitions)),
        Ok(Converged::Grown { from, to }) => (
            true,
            "PartitionsAdded",
            format!("partitions {from} → {to}"),
            Some(*to),
        ),
        Ok(Converged::Configured(partitions)) => (
            true,
            "ConfigUpdated",
            "topic configuration updated".to_owned(),
            Some(*partitions),
        ),
        Ok(Converged::ShrinkRefused { current }) => (
            false,
            "PartitionShrinkRefused",
            format!(
                "the topic has {current} partitions; Kafka cannot remove partitions, so spec.partitions ({}) must be at least {current}",
                spec.partitions
            ),
            Some(*current),
        ),
        Err(error) => (false, error.reason(), error.to_string(), status.partitions),
    };
    let changed = status.partitions != partitions
        || !status.conditions.iter().any(|c| {
            c.type_ == "Ready"
                && c.reason == reason
                && c.status == if ready { "True" } else { "False" }
        });
    set_condition(
        &mut status.conditions,
        "Ready",
        ready,
        reason,
        message.clone(),
        generation,
        now(),
    );
    status.topic_name = Some(topic_name.clone());
    status.partitions = partitions;
    status.observed_generation = generation;
    // An Event when something happened, not on every periodic check.
    if changed && reason != "UpToDate" {
        let type_ = if ready {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let note = if message.is_empty() {
            format!("topic {topic_name} is up to date")
        } else {
            format!("topic {topic_name}: {message}")
        };
        context.event(topic.as_ref(), type_, reason, note).await;
    }
    patch_status(&api, &name, &status).await?;
    match outcome {
        Ok(_) => Ok(Action::requeue(RESYNC)),
        Err(error) => Err(error),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Converged {
    Created(i32),
    UpToDate(i32),
    Grown { from: i32, to: i32 },
    Configured(i32),
    ShrinkRefused { current: i32 },
}

/// Describes a topic the cluster reported as existing, for up to five seconds until a
/// broker's metadata has it.
async fn once_visible(
    admin: &dyn TopicAdmin,
    spec: &KafkaTopicSpec,
    name: &str,
) -> Result<TopicState, Error> {
    for _ in 0..20 {
        if let Some(state) = admin.describe(&spec.bootstrap_servers, name).await? {
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(AdminError::NotYetVisible {
        topic: name.to_owned(),
    }
    .into())
}

async fn converge(topic: &KafkaTopic, context: &Context) -> Result<Converged, Error> {
    let spec = &topic.spec;
    let name = topic.topic_name();
    let admin = &context.topics;
    let state = match admin.describe(&spec.bootstrap_servers, &name).await? {
        Some(state) => state,
        None => match admin
            .create(
                &spec.bootstrap_servers,
                &name,
                spec.partitions,
                spec.replication_factor,
                &spec.config,
            )
            .await?
        {
            Creation::Created => return Ok(Converged::Created(spec.partitions)),
            // Metadata reaches each broker a moment after the controller commits it: the
            // broker asked first had not heard of the topic yet.
            Creation::AlreadyExisted => once_visible(admin.as_ref(), spec, &name).await?,
        },
    };
    if spec.partitions < state.partitions {
        return Ok(Converged::ShrinkRefused {
            current: state.partitions,
        });
    }
    let mut result = Converged::UpToDate(state.partitions);
    if state.config_differs(&spec.config) {
        admin
            .configure(&spec.bootstrap_servers, &name, &spec.config)
            .await?;
        result = Converged::Configured(state.partitions);
    }
    if spec.partitions > state.partitions {
        admin
            .grow(&spec.bootstrap_servers, &name, spec.partitions)
            .await?;
        result = Converged::Grown {
            from: state.partitions,
            to: spec.partitions,
        };
    }
    Ok(result)
}

async fn patch_status(
    api: &Api<KafkaTopic>,
    name: &str,
    status: &KafkaTopicStatus,
) -> Result<(), Error> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

async fn add_finalizer(api: &Api<KafkaTopic>, topic: &KafkaTopic) -> Result<(), Error> {
    let mut finalizers = topic.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    patch_finalizers(api, topic, finalizers).await
}

async fn remove_finalizer(api: &Api<KafkaTopic>, topic: &KafkaTopic) -> Result<(), Error> {
    let finalizers = topic
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(api, topic, finalizers).await
}

/// Finalizers are a list another controller may also edit: the patch carries the
/// resourceVersion it was computed from, so a concurrent change fails it and the
/// reconcile retries on fresh data.
async fn patch_finalizers(
    api: &Api<KafkaTopic>,
    topic: &KafkaTopic,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let patch = json!({
        "metadata": {
            "resourceVersion": topic.resource_version(),
            "finalizers": finalizers,
        }
    });
    api.patch(
        &topic.name_any(),
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

pub fn error_policy(topic: Arc<KafkaTopic>, error: &Error, context: Arc<Context>) -> Action {
    super::error_policy(topic, error, "kafkatopic", &context)
}
