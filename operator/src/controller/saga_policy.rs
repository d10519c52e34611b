//! SagaPolicy → the ConfigMap `<name>-saga-policy` holding `saga.toml`, which the order
//! pods mount; the order service notices the new file and switches policy without a
//! restart. An invalid policy is reported (condition `Valid=False`, a Warning Event) and
//! the last good ConfigMap stays in place.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, apply, now};
use crate::catalog::SAGA_STEPS;
use crate::crd::saga_policy::StepPolicy;
use crate::crd::{SagaPolicy, SagaPolicySpec, is_true, set_condition};
use crate::desired::shop::{SAGA_FILE_NAME, saga_config_map_name, saga_file};

pub async fn reconcile(policy: Arc<SagaPolicy>, context: Arc<Context>) -> Result<Action, Error> {
    let (object, shared) = (policy.clone(), context.clone());
    super::measured(
        "sagapolicy",
        object.as_ref(),
        &shared,
        reconcile_inner(policy, context),
    )
    .await
}

/// The ConfigMap a valid policy becomes.
pub fn desired_config_map(policy: &SagaPolicy) -> ConfigMap {
    let name = saga_config_map_name(&policy.name_any());
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: policy.namespace(),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/part-of".to_owned(),
                    "commerce".to_owned(),
                ),
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "commerce-operator".to_owned(),
                ),
            ])),
            owner_references: policy.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            SAGA_FILE_NAME.to_owned(),
            saga_file(&policy.spec),
        )])),
        ..ConfigMap::default()
    }
}

async fn reconcile_inner(policy: Arc<SagaPolicy>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = policy.namespace().ok_or(Error::Missing("namespace"))?;
    let api: Api<SagaPolicy> = Api::namespaced(context.client.clone(), &namespace);
    let mut status = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let was_valid = is_true(&status.conditions, "Valid");
    let first_time = status.observed_generation != generation;

    match validate(&policy.spec) {
        Ok(()) => {
            let config_map = desired_config_map(&policy);
            apply(&context.client, &config_map).await?;
            set_condition(
                &mut status.conditions,
                "Valid",
                true,
                "Valid",
                "",
                generation,
                now(),
            );
            status.config_map = config_map.metadata.name.clone();
            if first_time || !was_valid {
                context
                    .event(
                        policy.as_ref(),
                        EventType::Normal,
                        "Applied",
                        format!(
                            "saga policy written to ConfigMap {}",
                            status.config_map.clone().unwrap_or_default()
                        ),
                    )
                    .await;
            }
        }
        Err((field, message)) => {
            let message = format!("spec.{field}: {message}");
            if first_time || was_valid {
                context
                    .event(policy.as_ref(), EventType::Warning, "Invalid", &message)
                    .await;
            }
            set_condition(
                &mut status.conditions,
                "Valid",
                false,
                "Invalid",
                message,
                generation,
                now(),
            );
        }
    }
    status.observed_generation = generation;
    api.patch_status(
        &policy.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(600)))
}

fn duration(field: &str, text: &str) -> Result<Duration, (String, String)> {
    humantime_serde::re::humantime::parse_duration(text).map_err(|error| {
        (
            field.to_owned(),
            format!("`{text}` is not a duration: {error}"),
        )
    })
}

/// The checks the CRD's schema and CEL rules make, again: API servers without CEL
/// (before Kubernetes 1.25) accept what the rules would refuse, and step names are
/// known only here.
pub fn validate(spec: &SagaPolicySpec) -> Result<(), (String, String)> {
    let check_step = |field: String, step: &StepPolicy| -> Result<Duration, (String, String)> {
        if step.attempts < 1 {
            return Err((format!("{field}.attempts"), "must be at least 1".to_owned()));
        }
        let timeout = duration(&format!("{field}.timeout"), &step.timeout)?;
        if timeout.is_zero() {
            return Err((format!("{field}.timeout"), "must be more than 0".to_owned()));
        }
        let backoff = duration(&format!("{field}.backoff"), &step.backoff)?;
        let max_backoff = duration(&format!("{field}.maxBackoff"), &step.max_backoff)?;
        if max_backoff < backoff {
            return Err((
                format!("{field}.maxBackoff"),
                "must not be less than backoff".to_owned(),
            ));
        }
        Ok(timeout)
    };
    let mut longest = check_step("step".to_owned(), &spec.step)?;
    for (name, step) in &spec.steps {
        if !SAGA_STEPS.contains(&name.as_str()) {
            return Err((
                format!("steps.{name}"),
                format!("is not a step; the steps are {}", SAGA_STEPS.join(", ")),
            ));
        }
        longest = longest.max(check_step(format!("steps.{name}"), step)?);
    }
    let lease = duration("lease", &spec.lease)?;
    if lease <= longest {
        return Err((
            "lease".to_owned(),
            format!("must be longer than the longest step timeout ({longest:?})"),
        ));
    }
    if duration("recoveryInterval", &spec.recovery_interval)?.is_zero() {
        return Err((
            "recoveryInterval".to_owned(),
            "must be more than 0".to_owned(),
        ));
    }
    let window = duration("paymentWindow", &spec.payment_window)?;
    if window.is_zero() {
        return Err(("paymentWindow".to_owned(), "must be more than 0".to_owned()));
    }
    for (index, reminder) in spec.reminders.iter().enumerate() {
        if duration(&format!("reminders[{index}]"), &reminder.0)? >= window {
            return Err((
                format!("reminders[{index}]"),
                format!(
                    "{} is not before the end of the payment window ({})",
                    reminder.0, spec.payment_window
                ),
            ));
        }
    }
    Ok(())
}

pub fn error_policy(policy: Arc<SagaPolicy>, error: &Error, context: Arc<Context>) -> Action {
    super::error_policy(policy, error, "sagapolicy", &context)
}
