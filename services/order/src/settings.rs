//! `services.order` in the configuration: what the service and its Temporal worker read,
//! checked at start-up, with the saga policy file applied.

use std::time::Duration;

use commerce_runtime::BoxError;
use commerce_saga::ServicePolicy;
use serde::Deserialize;

use crate::policy::OrderPolicy;

/// `services.order` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderSettings {
    pub peers: PeerSettings,
    /// This service's client secret for service tokens (client id `order`).
    pub client_secret: commerce_runtime::Secret,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default)]
    pub saga: OrderPolicy,
    /// A file holding the saga policy (the same keys as `saga`), read at start and
    /// watched: a SagaPolicy resource's ConfigMap in Kubernetes. It wins over `saga`.
    #[serde(default)]
    pub saga_file: Option<std::path::PathBuf>,
    #[serde(default = "default_saga_reload_interval", with = "humantime_serde")]
    pub saga_reload_interval: Duration,
    /// How long a request waits for a saga that another request or process drives.
    #[serde(default = "default_request_wait", with = "humantime_serde")]
    pub request_wait: Duration,
    /// Namespace of this service's Redis keys (idempotency locks, the task queue).
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// Test hooks only: abort the process at these saga points (`commerce_saga::Failpoints`).
    #[serde(default)]
    pub failpoints: Vec<String>,
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
    /// The Temporal server, when `saga.engine` is `temporal`.
    #[serde(default)]
    pub temporal: TemporalSettings,
}

fn default_consumer_group() -> String {
    "order".to_owned()
}

impl OrderSettings {
    /// The Redis queue of the order's reminders and expiries (`commerce tasks`).
    pub fn task_queue(&self) -> String {
        format!("{}-tasks", self.redis_prefix)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeerSettings {
    /// The auth service's HTTP base URL (JWKS, service tokens).
    pub auth_http: String,
    pub cart_grpc: String,
    pub product_grpc: String,
    pub fulfillment_grpc: String,
    pub payment_grpc: String,
}

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}
fn default_request_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_redis_prefix() -> String {
    "order".to_owned()
}

#[derive(Debug, thiserror::Error)]
#[error("services.order.{key}: {message}")]
struct SettingError {
    key: String,
    message: String,
}

fn default_saga_reload_interval() -> Duration {
    Duration::from_secs(2)
}

/// `services.order`, checked, with the saga policy file (when there is one) applied; the
/// file's text, to notice changes; and every saga step name, for the policy's keys.
pub(crate) fn load_settings(
    config: &commerce_runtime::Config,
) -> Result<(OrderSettings, Option<String>, Vec<&'static str>), BoxError> {
    let mut settings: OrderSettings = config.service_section("order")?;
    let step_names: Vec<&str> = [
        crate::placement::STEP_NAMES,
        crate::lifecycle::PAYMENT_STEPS,
        crate::lifecycle::EXPIRY_STEPS,
        crate::lifecycle::CANCEL_STEPS,
        crate::delivery::DELIVERY_STEPS,
    ]
    .concat();
    ServicePolicy::validate(&settings.saga, &step_names).map_err(|(key, message)| {
        SettingError {
            key: format!("saga.{key}"),
            message,
        }
    })?;
    // The policy file, when there is one, replaces `saga` from the start.
    let mut policy_file_text = None;
    if let Some(path) = &settings.saga_file {
        let file_error = |message: String| SettingError {
            key: "saga_file".to_owned(),
            message,
        };
        if let Some(text) =
            commerce_saga::reload::read(path).map_err(|error| file_error(error.to_string()))?
        {
            settings.saga = commerce_saga::reload::parse(path, &text, &step_names)
                .map_err(|error| file_error(error.to_string()))?;
            policy_file_text = Some(text);
        }
    }
    if !settings.failpoints.is_empty() {
        tracing::warn!(failpoints = ?settings.failpoints, "saga failpoints are set: this process aborts at them");
    }
    Ok((settings, policy_file_text, step_names))
}

/// Where the Temporal server is and which task queue the order worker polls
/// (`services.order.temporal`).
#[derive(Debug, Clone, Deserialize)]
pub struct TemporalSettings {
    #[serde(default = "default_url")]
    pub url: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default = "default_task_queue")]
    pub task_queue: String,
    /// How long an order's next workflow task waits for the worker that ran its last one
    /// (which has its state cached) before any worker may take it: after a worker dies,
    /// its workflows stall this long.
    #[serde(default = "default_sticky_timeout", with = "humantime_serde")]
    pub sticky_timeout: Duration,
    /// Workflow-task polls the worker keeps open at once. Each order's steps run inside
    /// its workflow tasks (local activities), so this bounds how many orders move at once;
    /// the SDK's default of 5 held 32 shoppers to 4.5 orders/s.
    #[serde(default = "default_workflow_task_pollers")]
    pub workflow_task_pollers: usize,
}

impl Default for TemporalSettings {
    fn default() -> Self {
        Self {
            url: default_url(),
            namespace: default_namespace(),
            task_queue: default_task_queue(),
            sticky_timeout: default_sticky_timeout(),
            workflow_task_pollers: default_workflow_task_pollers(),
        }
    }
}

fn default_workflow_task_pollers() -> usize {
    20
}

fn default_url() -> String {
    "http://127.0.0.1:7233".to_owned()
}
fn default_namespace() -> String {
    "default".to_owned()
}
fn default_task_queue() -> String {
    "commerce-orders".to_owned()
}
fn default_sticky_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A client of the Temporal server the settings name; a bad URL is named by its key.
pub async fn connect_temporal(
    settings: &TemporalSettings,
) -> Result<temporalio_client::Client, BoxError> {
    commerce_saga::temporal::connect(&settings.url, &settings.namespace)
        .await
        .map_err(|error| match error {
            commerce_saga::temporal::ConnectError::Url { .. } => SettingError {
                key: "temporal.url".to_owned(),
                message: error.to_string(),
            }
            .into(),
            unreachable => unreachable.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_temporal_url_is_named_by_its_key() {
        let Err(error) = connect_temporal(&TemporalSettings {
            url: "not a url".to_owned(),
            ..TemporalSettings::default()
        })
        .await
        else {
            panic!("a bad URL is refused");
        };
        assert!(
            error
                .to_string()
                .starts_with("services.order.temporal.url: `not a url`"),
            "{error}"
        );
    }
}
