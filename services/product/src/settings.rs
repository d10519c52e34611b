//! `services.product` in the configuration.

use std::time::Duration;

use serde::Deserialize;

/// `services.product` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ProductSettings {
    pub auth: AuthLink,
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Namespace of this service's Redis keys.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
}

/// Where the auth service publishes its keys.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthLink {
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_redis_prefix() -> String {
    "product".to_owned()
}
fn default_issuer() -> String {
    "commerce-auth".to_owned()
}
