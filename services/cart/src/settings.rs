//! `services.cart` in the configuration.

use std::time::Duration;

use serde::Deserialize;

/// `services.cart` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct CartSettings {
    pub peers: PeerSettings,
    /// This service's client secret for service tokens (client id `cart`).
    pub client_secret: commerce_runtime::Secret,
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// How long a cart with items may sit untouched before `CartAbandoned`.
    #[serde(default = "default_abandon_after", with = "humantime_serde")]
    pub abandon_after: Duration,
    /// Carts untouched this long (and never checked out) are deleted.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    #[serde(default = "default_cleanup_interval", with = "humantime_serde")]
    pub cleanup_interval: Duration,
    /// How long cart state stays cached.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Namespace of this service's Redis keys (task queue, cart state).
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
}

fn default_consumer_group() -> String {
    "cart".to_owned()
}

impl CartSettings {
    /// The Redis queue of the cart's abandonment checks (`commerce tasks`).
    pub fn task_queue(&self) -> String {
        format!("{}-tasks", self.redis_prefix)
    }
}

fn default_abandon_after() -> Duration {
    Duration::from_secs(24 * 60 * 60)
}
fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 60 * 60)
}
fn default_cleanup_interval() -> Duration {
    Duration::from_secs(60 * 60)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(60 * 60)
}
fn default_redis_prefix() -> String {
    "cart".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeerSettings {
    /// The auth service's HTTP base URL (JWKS, service tokens).
    pub auth_http: String,
    pub auth_grpc: String,
    pub product_grpc: String,
    pub payment_grpc: String,
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_issuer() -> String {
    "commerce-auth".to_owned()
}
