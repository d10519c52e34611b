//! The controllers: each watches its kind (and the children it owns), applies what the
//! pure `desired` functions return with server-side apply under one field manager, and
//! writes status, conditions and Events. Errors back off per object.

pub mod kafka_topic;
pub mod microservice;
pub mod saga_policy;
pub mod shop;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::set_condition;
use crate::kafka::TopicAdmin;

/// The one field manager every apply uses.
pub const FIELD_MANAGER: &str = "commerce-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {}", server_message(.0))]
    Kube(#[from] kube::Error),
    /// The server refused one child: says which (`apps/v1 Deployment demo-cart`) and why.
    #[error("applying {object}: {}", server_message(.source))]
    Apply {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("kafka admin: {0}")]
    Kafka(#[from] crate::kafka::AdminError),
    #[error("{0}")]
    Desired(#[from] crate::desired::shop::DesiredError),
    #[error("resource has no {0}")]
    Missing(&'static str),
    #[error("signing key: {0}")]
    Key(#[from] crate::keys::KeyError),
}

impl Error {
    /// A short CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "ApiError",
            Error::Apply { source, .. } if kind_missing(source) => "KindNotServed",
            Error::Apply { .. } => "ApplyFailed",
            Error::Kafka(crate::kafka::AdminError::ReplicationFactorTooHigh { .. }) => {
                "ReplicationFactorTooHigh"
            }
            Error::Kafka(_) => "KafkaError",
            Error::Desired(_) => "InvalidSpec",
            Error::Missing(_) => "InvalidResource",
            Error::Key(_) => "SigningKeyError",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub topics: Arc<dyn TopicAdmin>,
    /// Consecutive failed reconciles per object, for its backoff.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, topics: Arc<dyn TopicAdmin>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            topics,
            failures: std::sync::Mutex::default(),
        }
    }

    /// Records an Event on `object`; failing to record one is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: impl Into<String>,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.into()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "could not record an event");
        }
    }
}

/// The server's own words for an API error (`Deployment.apps "x" is invalid: ...`), not
/// the whole response.
fn server_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(response) => response.message.clone(),
        other => other.to_string(),
    }
}

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Server-side apply of one object under the operator's field manager. `force` takes
/// fields another manager set (a human's `kubectl edit` of a managed field is undone, as
/// the resource's spec says otherwise).
pub async fn apply<K>(client: &Client, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let mut object = object.clone();
    // Apply wants apiVersion and kind in the body; typed objects carry them through
    // `Resource`, but k8s-openapi types serialise them only through their own impls.
    object.meta_mut().managed_fields = None;
    object.meta_mut().resource_version = None;
    api.patch(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(|source| Error::Apply {
        object: format!(
            "{} {} {}",
            K::api_version(&()),
            K::kind(&()),
            object.name_any()
        ),
        source,
    })
}

/// A reconcile, measured (see `measured`), whose failure is also written on the object
/// (see `report_failure`). `conditions` reads the object's current conditions.
pub async fn reconcile_reported<K, F>(
    controller: &'static str,
    object: Arc<K>,
    context: Arc<Context>,
    conditions: fn(&K) -> &[Condition],
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
    F: Future<Output = Result<Action, Error>>,
{
    let result = measured(controller, object.as_ref(), &context, reconcile).await;
    if let Err(error) = &result {
        report_failure(&context, object.as_ref(), conditions(&object), error).await;
    }
    result
}

/// A reconcile that failed, written where the object's readers look: `Degraded=True` and
/// `Ready=False` with the error in the conditions, and a Warning Event. `conditions` are
/// the object's current ones, kept otherwise.
pub async fn report_failure<K>(
    context: &Context,
    object: &K,
    conditions: &[Condition],
    error: &Error,
) where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let mut conditions = conditions.to_vec();
    let (generation, time, message) = (object.meta().generation, now(), error.to_string());
    set_condition(
        &mut conditions,
        "Degraded",
        true,
        error.reason(),
        &message,
        generation,
        time.clone(),
    );
    set_condition(
        &mut conditions,
        "Ready",
        false,
        "Degraded",
        &message,
        generation,
        time,
    );
    let api: Api<K> = Api::namespaced(
        context.client.clone(),
        &object.meta().namespace.clone().unwrap_or_default(),
    );
    let patch = serde_json::json!({ "status": { "conditions": conditions } });
    if let Err(error) = api
        .patch_status(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(%error, name = object.name_any(), "could not write the failure into status");
    }
    context
        .event(object, EventType::Warning, error.reason(), message)
        .await;
}

/// Deletes one object if it exists.
pub async fn delete_if_present<K>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Whether an API error says the kind is not served (its CRD is not installed).
pub fn kind_missing(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(response) if response.code == 404)
}

/// Whether applying a child failed because its kind is not served.
pub fn apply_kind_missing(error: &Error) -> bool {
    matches!(error, Error::Apply { source, .. } if kind_missing(source))
}

/// The pause before retrying an object that failed `failures` times in a row: 5 s,
/// doubling, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let doubled = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_secs(doubled.min(300))
}

fn object_key<K: ResourceExt>(controller: &str, object: &K) -> String {
    format!(
        "{controller}/{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Backoff per object: each consecutive failure waits longer (see `backoff`), with up to
/// 10% jitter so a burst of failures does not retry in step; a success resets it.
pub fn error_policy<K: ResourceExt>(
    object: Arc<K>,
    error: &Error,
    controller: &str,
    context: &Context,
) -> Action {
    let failures = {
        let mut failures = context.failures.lock().expect("failure counts poisoned");
        let count = failures
            .entry(object_key(controller, object.as_ref()))
            .or_insert(0);
        *count += 1;
        *count
    };
    let delay = backoff(failures);
    tracing::warn!(
        controller,
        name = object.name_any(),
        namespace = object.namespace().unwrap_or_default(),
        failures,
        retry_in = ?delay,
        %error,
        "reconcile failed"
    );
    metrics::counter!("operator_reconcile_errors_total", "controller" => controller.to_owned(), "reason" => error.reason()).increment(1);
    let jitter = rand::random_range(0..=delay.as_millis() as u64 / 10);
    Action::requeue(delay + Duration::from_millis(jitter))
}

/// Times a reconcile and counts its outcome; a success clears the object's backoff.
pub async fn measured<K, F, T>(
    controller: &'static str,
    object: &K,
    context: &Context,
    future: F,
) -> Result<T, Error>
where
    K: ResourceExt,
    F: Future<Output = Result<T, Error>>,
{
    let key = object_key(controller, object);
    let started = Instant::now();
    let result = future.await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    if result.is_ok() {
        context
            .failures
            .lock()
            .expect("failure counts poisoned")
            .remove(&key);
    }
    metrics::counter!("operator_reconciles_total", "controller" => controller, "result" => outcome)
        .increment(1);
    metrics::histogram!("operator_reconcile_duration_seconds", "controller" => controller)
        .record(started.elapsed().as_secs_f64());
    result
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let delays: Vec<u64> = [1, 2, 3, 4, 7, 8, 40]
            .map(|n| backoff(n).as_secs())
            .to_vec();
        assert_eq!(delays, [5, 10, 20, 40, 300, 300, 300]);
        assert_eq!(backoff(6), Duration::from_secs(160));
    }
}
