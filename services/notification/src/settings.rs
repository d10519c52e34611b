//! `services.notification` in the configuration: SMTP, SMS, peers, links and the delivery worker.

use std::time::Duration;

use serde::Deserialize;

use crate::email::SmtpSettings;
use crate::sms::SmsSettings;

/// `services.notification` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationSettings {
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default = "default_group")]
    pub consumer_group: String,
    /// Prefix of the Redis channels pushes travel on.
    #[serde(default = "default_prefix")]
    pub redis_prefix: String,
    /// Without it, e-mail deliveries fail (logged) and nothing else changes.
    pub smtp: Option<SmtpSettings>,
    #[serde(default)]
    pub sms: SmsSettings,
    /// The e-mail verification link, `{token}` where the token goes.
    #[serde(default = "default_verify_link")]
    pub verify_email_url: String,
    /// The password-reset link: the storefront's page that asks for the new password,
    /// `{token}` where the token goes.
    #[serde(default = "default_reset_link")]
    pub reset_password_url: String,
    /// The storefront's page of an order, where the customer pays; `{order_id}` where
    /// the order's id goes (a failed payment's e-mail links there).
    #[serde(default = "default_order_link")]
    pub order_url: String,
    /// The storefront's cart page (the cart recovery e-mail links there).
    #[serde(default = "default_cart_link")]
    pub cart_url: String,
    /// SSE keep-alive comment interval.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Attempts per delivery before it is marked failed.
    #[serde(default = "default_attempts")]
    pub max_attempts: i32,
    /// How often the worker looks for due retries when nothing wakes it.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How far a stream may fall behind before it re-reads the database.
    #[serde(default = "default_stream_buffer")]
    pub stream_buffer: usize,
    /// Asks auth for addresses it has not seen in an event: `{ auth_http, auth_grpc }`
    /// with `client_secret` (auth's `service_clients.notification`); and cart, with
    /// `cart_grpc`, whether an abandoned cart still is before mailing its owner.
    pub peers: Option<Peers>,
    pub client_secret: Option<commerce_runtime::Secret>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Peers {
    pub auth_http: String,
    pub auth_grpc: String,
    /// Without it, no cart recovery e-mail is sent.
    pub cart_grpc: Option<String>,
}

fn default_issuer() -> String {
    "commerce-auth".into()
}
fn default_group() -> String {
    "notification".into()
}
fn default_prefix() -> String {
    "notification".into()
}
fn default_verify_link() -> String {
    "http://localhost:8080/v1/auth/verify-email?token={token}".into()
}
fn default_cart_link() -> String {
    "http://localhost:5173/cart".to_owned()
}

fn default_order_link() -> String {
    "http://localhost:5173/orders/{order_id}".to_owned()
}

fn default_reset_link() -> String {
    "http://localhost:5173/reset-password?token={token}".into()
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(15)
}
fn default_attempts() -> i32 {
    8
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_stream_buffer() -> usize {
    256
}
