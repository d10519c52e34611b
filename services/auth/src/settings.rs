//! `services.auth` in the configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use commerce_redis::RateLimit;
use serde::Deserialize;

use crate::domain::SERVICES;
use crate::keys::KeySettings;

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LimitSetting {
    pub max: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl From<LimitSetting> for RateLimit {
    fn from(setting: LimitSetting) -> Self {
        RateLimit {
            max: setting.max,
            window: setting.window,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Limits {
    #[serde(default = "Limits::login_per_email")]
    pub login_per_email: LimitSetting,
    #[serde(default = "Limits::login_per_ip")]
    pub login_per_ip: LimitSetting,
    #[serde(default = "Limits::resend_per_user")]
    pub resend_per_user: LimitSetting,
    #[serde(default = "Limits::resend_per_ip")]
    pub resend_per_ip: LimitSetting,
    #[serde(default = "Limits::register_per_ip")]
    pub register_per_ip: LimitSetting,
}

impl Limits {
    fn login_per_email() -> LimitSetting {
        LimitSetting {
            max: 10,
            window: Duration::from_secs(15 * 60),
        }
    }
    fn login_per_ip() -> LimitSetting {
        LimitSetting {
            max: 60,
            window: Duration::from_secs(60),
        }
    }
    fn resend_per_user() -> LimitSetting {
        LimitSetting {
            max: 3,
            window: Duration::from_secs(60 * 60),
        }
    }
    fn resend_per_ip() -> LimitSetting {
        LimitSetting {
            max: 20,
            window: Duration::from_secs(60 * 60),
        }
    }
    fn register_per_ip() -> LimitSetting {
        LimitSetting {
            max: 30,
            window: Duration::from_secs(60 * 60),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            login_per_email: Self::login_per_email(),
            login_per_ip: Self::login_per_ip(),
            resend_per_user: Self::resend_per_user(),
            resend_per_ip: Self::resend_per_ip(),
            register_per_ip: Self::register_per_ip(),
        }
    }
}

/// `services.auth` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub keys: KeySettings,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// Audience of user access tokens.
    #[serde(default = "default_audience")]
    pub audience: String,
    #[serde(default = "default_access_ttl", with = "humantime_serde")]
    pub access_ttl: Duration,
    #[serde(default = "default_refresh_ttl", with = "humantime_serde")]
    pub refresh_ttl: Duration,
    #[serde(default = "default_verification_ttl", with = "humantime_serde")]
    pub verification_ttl: Duration,
    /// How long an e-mailed password-reset link works.
    #[serde(default = "default_password_reset_ttl", with = "humantime_serde")]
    pub password_reset_ttl: Duration,
    #[serde(default = "default_service_token_ttl", with = "humantime_serde")]
    pub service_token_ttl: Duration,
    /// Service id → secret, for `POST /v1/auth/service-token`.
    #[serde(default)]
    pub service_clients: BTreeMap<String, commerce_runtime::Secret>,
    /// Service id → the services it may get a token for. A client not listed gets none.
    #[serde(default)]
    pub client_audiences: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub limits: Limits,
    /// Peers (CIDRs) whose `X-Forwarded-For` names the client: the gateway's addresses.
    /// From anyone else the header is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Namespace of this service's Redis keys, so shops (or tests) can share a Redis.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
}

fn default_redis_prefix() -> String {
    "auth".to_owned()
}

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}
fn default_audience() -> String {
    "commerce".to_owned()
}
fn default_access_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_refresh_ttl() -> Duration {
    Duration::from_secs(14 * 24 * 60 * 60)
}
fn default_password_reset_ttl() -> Duration {
    Duration::from_secs(60 * 60)
}
fn default_verification_ttl() -> Duration {
    Duration::from_secs(24 * 60 * 60)
}
fn default_service_token_ttl() -> Duration {
    Duration::from_secs(5 * 60)
}

impl AuthSettings {
    /// Returns the key (under `services.auth`) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let minutes = |d: Duration| d.as_secs() / 60;
        if !(1..=60).contains(&minutes(self.access_ttl)) {
            return Err(("access_ttl", "must be between 1m and 60m".to_owned()));
        }
        if self.refresh_ttl < Duration::from_secs(60 * 60) {
            return Err(("refresh_ttl", "must be at least 1h".to_owned()));
        }
        if self.verification_ttl < Duration::from_secs(60) {
            return Err(("verification_ttl", "must be at least 1m".to_owned()));
        }
        if !(Duration::from_secs(5 * 60)..=Duration::from_secs(24 * 60 * 60))
            .contains(&self.password_reset_ttl)
        {
            return Err((
                "password_reset_ttl",
                "must be between 5m and 24h".to_owned(),
            ));
        }
        for (client, audiences) in &self.client_audiences {
            if let Some(unknown) = audiences.iter().find(|a| !SERVICES.contains(&a.as_str())) {
                return Err((
                    "client_audiences",
                    format!("`{client}` lists `{unknown}`, which is not a service"),
                ));
            }
        }
        Ok(())
    }
}
