//! `services.fulfillment` in the configuration: the carrier, the courier list and the worker.

use std::time::Duration;

use crate::carrier::EasyPostSettings;
use serde::Deserialize;

/// `services.fulfillment` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct FulfillmentSettings {
    /// Where the auth service publishes its keys.
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// Weight of a unit whose weight the caller does not send.
    #[serde(default = "default_unit_weight")]
    pub default_unit_weight_g: i64,
    /// Who ships: `{ provider = "local" }` (default) or `{ provider = "easypost", … }`.
    #[serde(default)]
    pub carrier: CarrierSettings,
    /// How often pending shipments are handed to the carrier.
    #[serde(default = "default_worker_interval", with = "humantime_serde")]
    pub worker_interval: Duration,
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum CarrierSettings {
    #[default]
    Local,
    Easypost(Box<EasyPostSettings>),
}

fn default_worker_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_consumer_group() -> String {
    "fulfillment".to_owned()
}

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}
fn default_unit_weight() -> i64 {
    500
}
