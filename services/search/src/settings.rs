//! `services.search` in the configuration: the index directory, popular queries and the consumer.

use std::path::PathBuf;

use serde::Deserialize;

/// `services.search` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchSettings {
    /// Where the index lives; it survives restarts.
    pub index_dir: PathBuf,
    /// Auth's keys, for the staff's search analytics.
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    #[serde(default = "default_group")]
    pub consumer_group: String,
    /// A query is published among the popular ones once this many different clients
    /// searched it (and it found products).
    #[serde(default = "default_popular_min_clients")]
    pub popular_min_clients: u64,
    /// Where an empty or stale index is rebuilt from. Without it, an index that has to
    /// start over fills from what the event topic still holds.
    pub peers: Option<PeerSettings>,
    /// This service's client secret for service tokens (client id `search`).
    pub client_secret: Option<commerce_runtime::Secret>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeerSettings {
    /// The auth service's HTTP base URL (service tokens).
    pub auth_http: String,
    pub product_grpc: String,
}

fn default_popular_min_clients() -> u64 {
    3
}

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}

fn default_redis_prefix() -> String {
    "search".to_owned()
}
fn default_group() -> String {
    "search".to_owned()
}
