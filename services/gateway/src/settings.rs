//! `services.gateway`: the upstreams and the route table are configuration, not code.

use std::collections::BTreeMap;
use std::time::Duration;

use commerce_access::Role;
use commerce_runtime::ConfigError;
use serde::Deserialize;

use crate::domain::{Access, BreakerSettings, LimitBy, Route, RouteLimit, RouteTable};

#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySettings {
    /// The auth service's key set; fetched on first use and again on an unknown `kid`.
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// Largest request body passed on, in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit: u64,
    /// A header a trusted load balancer in front sets to the client's address (e.g.
    /// `x-forwarded-for`, whose first entry is used). Unset: the peer address, since a
    /// client could write any value into such a header itself.
    #[serde(default)]
    pub client_ip_header: Option<String>,
    /// Prefix of the gateway's Redis keys (rate-limit counters).
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    #[serde(default)]
    pub cors: CorsSettings,
    #[serde(default)]
    pub security_headers: SecurityHeaders,
    pub upstreams: BTreeMap<String, UpstreamSettings>,
    pub routes: Vec<RouteSettings>,
}

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}

fn default_redis_prefix() -> String {
    "gateway".to_owned()
}

fn default_body_limit() -> u64 {
    1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
pub struct CorsSettings {
    /// Origins the storefront is served from; empty allows none (same-origin only).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_cors_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for CorsSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_age: default_cors_max_age(),
        }
    }
}

fn default_cors_max_age() -> Duration {
    Duration::from_secs(600)
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecurityHeaders {
    #[serde(default = "default_hsts")]
    pub strict_transport_security: String,
    #[serde(default = "default_csp")]
    pub content_security_policy: String,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self {
            strict_transport_security: default_hsts(),
            content_security_policy: default_csp(),
        }
    }
}

fn default_hsts() -> String {
    "max-age=63072000; includeSubDomains".to_owned()
}

/// Only what the storefront itself serves: no inline scripts, no third-party assets.
fn default_csp() -> String {
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
        .to_owned()
}

#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamSettings {
    /// `http://host:port`; the request's path and query are appended.
    pub url: String,
    /// Until the upstream's response headers arrive; streamed bodies (SSE) are not cut.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Extra attempts for idempotent methods after a connection failure, a timeout or a
    /// 502/503/504.
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    #[serde(default)]
    pub breaker: BreakerConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_retries() -> u32 {
    2
}

fn default_retry_backoff() -> Duration {
    Duration::from_millis(50)
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct BreakerConfig {
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_open_for", with = "humantime_serde")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: default_failure_threshold(),
            open_for: default_open_for(),
        }
    }
}

fn default_failure_threshold() -> u32 {
    5
}

fn default_open_for() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessSetting {
    Public,
    Authenticated,
    /// Never served through the gateway (service-to-service endpoints).
    Internal,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RouteSettings {
    /// Defaults to the prefix (and methods, when listed).
    #[serde(default)]
    pub name: Option<String>,
    pub prefix: String,
    pub upstream: String,
    /// Empty: every method.
    #[serde(default)]
    pub methods: Vec<String>,
    pub access: AccessSetting,
    /// Narrows `authenticated` to these roles.
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitSettings>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RateLimitSettings {
    pub requests: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    #[serde(default = "default_limit_by")]
    pub by: LimitBy,
}

fn default_limit_by() -> LimitBy {
    LimitBy::User
}

impl GatewaySettings {
    /// The route table, checked against the upstreams; errors name the key at fault.
    pub fn route_table(&self) -> Result<RouteTable, ConfigError> {
        let key = |index: usize, field: &str| format!("services.gateway.routes[{index}].{field}");
        for (name, upstream) in &self.upstreams {
            let url_key = format!("services.gateway.upstreams.{name}.url");
            let uri: http::Uri = upstream
                .url
                .parse()
                .map_err(|error| ConfigError::new(&url_key, format!("not a URL: {error}")))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(ConfigError::new(url_key, "must be an http://host:port URL"));
            }
            if upstream.breaker.failure_threshold == 0 {
                return Err(ConfigError::new(
                    format!("services.gateway.upstreams.{name}.breaker.failure_threshold"),
                    "must be at least 1",
                ));
            }
        }
        let mut routes = Vec::with_capacity(self.routes.len());
        for (index, route) in self.routes.iter().enumerate() {
            if !route.prefix.starts_with('/') {
                return Err(ConfigError::new(
                    key(index, "prefix"),
                    "must start with `/`",
                ));
            }
            if !self.upstreams.contains_key(&route.upstream) {
                return Err(ConfigError::new(
                    key(index, "upstream"),
                    format!(
                        "`{}` is not among services.gateway.upstreams",
                        route.upstream
                    ),
                ));
            }
            let methods = route
                .methods
                .iter()
                .map(|method| {
                    method
                        .to_ascii_uppercase()
                        .parse::<http::Method>()
                        .map_err(|_| {
                            ConfigError::new(
                                key(index, "methods"),
                                format!("`{method}` is not an HTTP method"),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let access = match (route.access, route.roles.is_empty()) {
                (AccessSetting::Public, true) => Access::Public,
                (AccessSetting::Public, false) => {
                    return Err(ConfigError::new(
                        key(index, "roles"),
                        "roles need `access = \"authenticated\"`",
                    ));
                }
                (AccessSetting::Authenticated, true) => Access::Authenticated,
                (AccessSetting::Authenticated, false) => Access::Roles(route.roles.clone()),
                (AccessSetting::Internal, true) => Access::Internal,
                (AccessSetting::Internal, false) => {
                    return Err(ConfigError::new(
                        key(index, "roles"),
                        "an internal route is served to nobody; roles mean nothing there",
                    ));
                }
            };
            let rate_limit = match route.rate_limit {
                Some(limit) if limit.requests == 0 || limit.window.is_zero() => {
                    return Err(ConfigError::new(
                        key(index, "rate_limit"),
                        "requests and window must be above zero",
                    ));
                }
                Some(limit) => Some(RouteLimit {
                    requests: limit.requests,
                    window: limit.window,
                    by: limit.by,
                }),
                None => None,
            };
            let name = route.name.clone().unwrap_or_else(|| {
                if route.methods.is_empty() {
                    route.prefix.clone()
                } else {
                    format!("{} {}", route.methods.join(","), route.prefix)
                }
            });
            routes.push(Route {
                name,
                prefix: route.prefix.clone(),
                methods,
                upstream: route.upstream.clone(),
                access,
                rate_limit,
            });
        }
        Ok(RouteTable::new(routes))
    }
}

impl From<BreakerConfig> for BreakerSettings {
    fn from(config: BreakerConfig) -> Self {
        Self {
            failure_threshold: config.failure_threshold,
            open_for: config.open_for,
        }
    }
}
