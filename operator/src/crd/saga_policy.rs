//! `SagaPolicy`: how the order service runs its sagas. The operator renders it into a
//! ConfigMap the order pods mount; the service reloads the file without a restart.

// Several printer columns share `type_ = "string"`; clippy reads the derive's
// attribute list as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Durations are written as Go and humantime both read them: `90s`, `1h30m`, `250ms`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "commerce.dev",
    version = "v1alpha1",
    kind = "SagaPolicy",
    namespaced,
    status = "SagaPolicyStatus",
    shortname = "sagapol",
    category = "commerce",
    derive = "PartialEq",
    doc = "The order saga's engine, step timeouts and retries, payment window and reminders.",
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(name = "Window", type_ = "string", json_path = ".spec.paymentWindow"),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.reminders) || self.reminders.all(r, duration(r) < duration(self.paymentWindow))").message("every reminder must come before the end of the payment window"))]
#[x_kube(validation = Rule::new("duration(self.lease) > duration(self.step.timeout)").message("lease must be longer than the step timeout"))]
pub struct SagaPolicySpec {
    #[serde(default)]
    pub engine: Engine,
    /// The policy of every step without its own entry in `steps`.
    #[serde(default)]
    pub step: StepPolicy,
    /// Per-step policies by step name (`reserve_stock`, `create_payment_intent`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, StepPolicy>,
    /// How long a process owns a saga before another may resume it.
    #[serde(default = "lease")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub lease: String,
    #[serde(default = "recovery_interval")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub recovery_interval: String,
    /// How long a placed order waits for payment before it expires.
    #[serde(default = "payment_window")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub payment_window: String,
    /// When, after placement, an unpaid order's owner is reminded.
    #[serde(default = "reminders")]
    #[schemars(length(max = 10))]
    pub reminders: Vec<Duration>,
}

/// A duration such as `4h` or `1h30m`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Duration(#[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))] pub String);

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The built-in orchestrator on the order service's own database.
    #[default]
    Postgres,
    /// Temporal workflows.
    Temporal,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.maxBackoff) >= duration(self.backoff)").message("maxBackoff must not be less than backoff"))]
pub struct StepPolicy {
    /// One attempt's limit.
    #[serde(default = "step_timeout")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: String,
    #[serde(default = "attempts")]
    #[schemars(range(min = 1, max = 100))]
    pub attempts: i32,
    /// Pause after the first failed attempt; doubles up to `maxBackoff`.
    #[serde(default = "backoff")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub backoff: String,
    #[serde(default = "max_backoff")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub max_backoff: String,
}

fn step_timeout() -> String {
    "10s".to_owned()
}
fn attempts() -> i32 {
    3
}
fn backoff() -> String {
    "200ms".to_owned()
}
fn max_backoff() -> String {
    "5s".to_owned()
}
fn lease() -> String {
    "60s".to_owned()
}
fn recovery_interval() -> String {
    "5s".to_owned()
}
fn payment_window() -> String {
    "24h".to_owned()
}
fn reminders() -> Vec<Duration> {
    ["4h", "12h", "22h"]
        .into_iter()
        .map(|offset| Duration(offset.to_owned()))
        .collect()
}

impl Default for StepPolicy {
    fn default() -> Self {
        Self {
            timeout: step_timeout(),
            attempts: attempts(),
            backoff: backoff(),
            max_backoff: max_backoff(),
        }
    }
}

impl Default for SagaPolicySpec {
    fn default() -> Self {
        Self {
            engine: Engine::default(),
            step: StepPolicy::default(),
            steps: BTreeMap::new(),
            lease: lease(),
            recovery_interval: recovery_interval(),
            payment_window: payment_window(),
            reminders: reminders(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SagaPolicyStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The ConfigMap the order service reads the policy from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
