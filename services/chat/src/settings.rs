//! `services.chat` in the configuration: attachments, socket limits and Redis fan-out.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// `services.chat` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatSettings {
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default = "default_prefix")]
    pub redis_prefix: String,
    /// Frames waiting for a slow client before it is disconnected.
    #[serde(default = "default_queue")]
    pub outbound_queue: usize,
    #[serde(default = "default_write_timeout", with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Incoming frames per second per connection, and the burst above it.
    #[serde(default = "default_rate")]
    pub frames_per_second: f64,
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// How far a connection's feed may lag before it is told to resync.
    #[serde(default = "default_buffer")]
    pub feed_buffer: usize,
    /// Where attachments are kept (a directory; `scripts/run.sh` uses the state directory).
    #[serde(default = "default_attachment_dir")]
    pub attachment_dir: String,
    /// Attachments in an S3 bucket instead (replicas share it; a Shop on Kubernetes).
    #[serde(default)]
    pub attachment_bucket: Option<AttachmentBucket>,
    /// The largest attachment accepted (the gateway's `body_limit` caps it too).
    #[serde(default = "default_attachment_bytes")]
    pub max_attachment_bytes: usize,
}

/// An S3 (or S3-compatible) bucket for attachments. The credentials come from the
/// environment (`COMMERCE_SERVICES__CHAT__ATTACHMENT_BUCKET__ACCESS_KEY_ID`, `..._SECRET_ACCESS_KEY`),
/// a Secret on Kubernetes.
#[derive(Debug, Clone, Deserialize)]
pub struct AttachmentBucket {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// An S3-compatible server's URL (path-style requests); AWS's own endpoint when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Keys start with this, so a bucket can hold other things too.
    #[serde(default = "default_bucket_prefix")]
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_bucket_prefix() -> String {
    "chat-attachments".into()
}

fn default_attachment_dir() -> String {
    ".state/chat-attachments".into()
}
fn default_attachment_bytes() -> usize {
    1_000_000
}

fn default_issuer() -> String {
    "commerce-auth".into()
}
fn default_prefix() -> String {
    "chat".into()
}
fn default_queue() -> usize {
    256
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_rate() -> f64 {
    5.0
}
fn default_burst() -> u32 {
    20
}
fn default_buffer() -> usize {
    256
}
