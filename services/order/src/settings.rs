//! `services.order` in the configuration: what the service and its Temporal worker read,
//! checked at start-up, with the saga policy file applied.

use std::time::Duration;

use commerce_runtime::BoxError;
use serde::Deserialize;

use crate::saga::SagaPolicy;

/// `services.order` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderSettings {
    pub peers: PeerSettings,
    /// This service's client secret for service tokens (client id `order`).
    pub client_secret: commerce_runtime::Secret,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default)]
    pub saga: SagaPolicy,
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
    /// Test hooks only: abort the process at these saga points (see `saga::Failpoints`).
    #[serde(default)]
    pub failpoints: Vec<String>,
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
    /// The Temporal server, when `saga.engine` is `temporal`.
    #[serde(default)]
    pub temporal: crate::saga::temporal::TemporalSettings,
}

fn default_consumer_group() -> String {
    "order".to_owned()
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
    settings
        .saga
        .validate(&step_names)
        .map_err(|(key, message)| SettingError {
            key: format!("saga.{key}"),
            message,
        })?;
    // The policy file, when there is one, replaces `saga` from the start.
    let mut policy_file_text = None;
    if let Some(path) = &settings.saga_file {
        let file_error = |message: String| SettingError {
            key: "saga_file".to_owned(),
            message,
        };
        if let Some(text) =
            crate::saga::reload::read(path).map_err(|error| file_error(error.to_string()))?
        {
            settings.saga = crate::saga::reload::parse(path, &text, &step_names)
                .map_err(|error| file_error(error.to_string()))?;
            policy_file_text = Some(text);
        }
    }
    if !settings.failpoints.is_empty() {
        tracing::warn!(failpoints = ?settings.failpoints, "saga failpoints are set: this process aborts at them");
    }
    Ok((settings, policy_file_text, step_names))
}
