//! The proxy: admission (route, token, rate limit), then the call to the upstream with a
//! timeout, retries for idempotent methods and the upstream's circuit breaker. Bodies
//! stream through in both directions; only a body that may be sent twice is held.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use commerce_access::{AccessError, Claims, TokenVerifier};
use commerce_redis::{RateDecision, RateLimit, RedisClient};
use commerce_runtime::{ApiError, ConfigError};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::domain::{
    Access, Admission, Breaker, LimitBy, Route, RouteLimit, RouteTable, is_idempotent,
};
use crate::local_limit::LocalLimits;
use crate::settings::{GatewaySettings, UpstreamSettings};

/// One upstream service: where it is, how long to wait, and its breaker.
pub struct Upstream {
    name: String,
    base: Uri,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    breaker: Mutex<Breaker>,
    client: Client<HttpConnector, Body>,
}

impl Upstream {
    fn new(name: &str, settings: &UpstreamSettings) -> Result<Self, ConfigError> {
        let base: Uri = settings.url.parse().map_err(|error| {
            ConfigError::new(
                format!("services.gateway.upstreams.{name}.url"),
                format!("not a URL: {error}"),
            )
        })?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let upstream = Self {
            name: name.to_owned(),
            base,
            timeout: settings.timeout,
            retries: settings.retries,
            retry_backoff: settings.retry_backoff,
            breaker: Mutex::new(Breaker::new(settings.breaker.into())),
            client,
        };
        upstream.publish_state();
        Ok(upstream)
    }

    fn uri_for(&self, path_and_query: &str) -> Result<Uri, ApiError> {
        let base = self.base.to_string();
        format!("{}{path_and_query}", base.trim_end_matches('/'))
            .parse()
            .map_err(|_| ApiError::invalid("path", "the request path cannot be forwarded"))
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // The breaker holds no invariant a panic could break half-way; keep serving.
        self.breaker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn admit(&self) -> Admission {
        let admission = self.breaker().admit(Instant::now());
        self.publish_state();
        admission
    }

    fn record(&self, success: bool) {
        {
            let mut breaker = self.breaker();
            if success {
                breaker.record_success();
            } else {
                breaker.record_failure(Instant::now());
            }
        }
        self.publish_state();
    }

    fn publish_state(&self) {
        let state = self.breaker().state();
        metrics::gauge!("gateway_breaker_state", "upstream" => self.name.clone())
            .set(state.level());
    }
}

/// One call admitted by the breaker. A half-open probe that ends without an outcome (the
/// client went away while it ran) frees the probe slot when dropped.
struct Attempt<'a> {
    upstream: &'a Upstream,
    probe: bool,
    settled: bool,
}

impl Attempt<'_> {
    fn settle(mut self, success: bool) {
        self.settled = true;
        self.upstream.record(success);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.upstream.breaker().release_probe();
        }
    }
}

/// What the gateway needs to answer a request.
pub struct Gateway {
    table: RouteTable,
    upstreams: HashMap<String, Upstream>,
    verifier: TokenVerifier,
    redis: RedisClient,
    redis_prefix: String,
    /// Takes over the rate limits while Redis cannot be reached.
    local_limits: LocalLimits,
    /// Until when Redis is left alone after it failed: requests meanwhile are limited
    /// locally without waiting on it.
    redis_away_until: Mutex<Option<Instant>>,
    body_limit: u64,
    client_ip_header: Option<HeaderName>,
}

/// `RateLimit-*` values to put on the answer.
struct RateHeaders {
    limit: u64,
    remaining: u64,
    reset: Duration,
    window: Duration,
}

impl RateHeaders {
    fn apply(&self, headers: &mut HeaderMap) {
        let reset = self.reset.as_secs_f64().ceil() as u64;
        headers.insert("ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(reset));
        if let Ok(policy) = HeaderValue::from_str(&format!(
            "{};w={}",
            self.limit,
            self.window.as_secs().max(1)
        )) {
            headers.insert("ratelimit-policy", policy);
        }
    }
}

impl Gateway {
    pub fn new(settings: &GatewaySettings, redis: RedisClient) -> Result<Self, ConfigError> {
        let table = settings.route_table()?;
        let upstreams = settings
            .upstreams
            .iter()
            .map(|(name, upstream)| Ok((name.clone(), Upstream::new(name, upstream)?)))
            .collect::<Result<HashMap<_, _>, ConfigError>>()?;
        let client_ip_header = settings
            .client_ip_header
            .as_deref()
            .map(|name| {
                HeaderName::try_from(name).map_err(|_| {
                    ConfigError::new("services.gateway.client_ip_header", "is not a header name")
                })
            })
            .transpose()?;
        let verifier = TokenVerifier::for_users(
            &settings.jwks_url,
            &settings.issuer,
            commerce_access::RevokedSessions::new(redis.clone()),
        );
        Ok(Self {
            local_limits: LocalLimits::new(table.routes()),
            redis_away_until: Mutex::new(None),
            table,
            upstreams,
            verifier,
            redis,
            redis_prefix: settings.redis_prefix.clone(),
            body_limit: settings.body_limit,
            client_ip_header,
        })
    }

    /// Answers one request: always a response, errors as the JSON error body.
    pub async fn handle(&self, request: Request<Body>, peer: SocketAddr) -> Response {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let found = self.table.find(&method, &path);
        let Some(route) = found.filter(|route| route.access != Access::Internal) else {
            // An internal route answers as if nothing were there.
            let error = if found.is_none() && self.table.has_path(&path) {
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed on {path}"),
                )
            } else {
                ApiError::not_found(format!("no route for {path}"))
            };
            metrics::counter!("gateway_unrouted_total", "status" => error.status.as_u16().to_string())
                .increment(1);
            return error.into_response();
        };
        let span = tracing::Span::current();
        span.record("http.route", route.name.as_str());
        span.record("otel.name", format!("{method} {}", route.name));
        let response = match self.admit_and_forward(route, request, peer).await {
            Ok(response) => response,
            Err(error) => error,
        };
        let labels = [
            ("route", route.name.clone()),
            ("upstream", route.upstream.clone()),
            ("method", method.to_string()),
            ("status", response.status().as_u16().to_string()),
        ];
        metrics::counter!("gateway_requests_total", &labels).increment(1);
        metrics::histogram!("gateway_request_duration_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        response
    }

    async fn admit_and_forward(
        &self,
        route: &Route,
        request: Request<Body>,
        peer: SocketAddr,
    ) -> Result<Response, Response> {
        let claims = self
            .authorize(route, request.headers())
            .await
            .map_err(IntoResponse::into_response)?;
        let client_ip = self.client_ip(request.headers(), peer);
        let rate = self.rate_limit(route, claims.as_ref(), client_ip).await?;
        let mut response = self
            .forward(route, request, client_ip)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Some(rate) = rate {
            rate.apply(response.headers_mut());
        }
        Ok(response)
    }

    /// Checks the bearer token against the route's access rule.
    async fn authorize(
        &self,
        route: &Route,
        headers: &HeaderMap,
    ) -> Result<Option<Claims>, ApiError> {
        let sent = headers.contains_key(header::AUTHORIZATION);
        if route.access == Access::Public && !sent {
            return Ok(None);
        }
        let token = commerce_access::bearer_token(headers)
            .map_err(|error| ApiError::unauthenticated(error.to_string()))?;
        let claims = match self.verifier.verify(token).await {
            Ok(claims) => claims,
            Err(AccessError::KeySet(cause)) => {
                tracing::warn!(%cause, "signing keys unavailable");
                return Err(ApiError::unavailable(5, "cannot check tokens right now"));
            }
            Err(error) => return Err(ApiError::unauthenticated(error.to_string())),
        };
        if let Access::Roles(roles) = &route.access
            && !roles.contains(&claims.role)
        {
            let names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
            return Err(ApiError::forbidden(format!(
                "requires role {}",
                names.join(" or ")
            )));
        }
        Ok(Some(claims))
    }

    fn client_ip(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        self.client_ip_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .and_then(|first| first.trim().parse().ok())
            .unwrap_or(peer.ip())
    }

    /// Counts the request against the route's limit, shared by every gateway replica
    /// through Redis. While Redis cannot be reached this instance keeps the limit on its
    /// own (logged and counted): an outage of Redis must neither close the shop nor open
    /// it to unlimited logins.
    async fn rate_limit(
        &self,
        route: &Route,
        claims: Option<&Claims>,
        client_ip: IpAddr,
    ) -> Result<Option<RateHeaders>, Response> {
        let Some(limit) = route.rate_limit else {
            return Ok(None);
        };
        let subject = match (limit.by, claims) {
            (LimitBy::User, Some(claims)) => format!("sub:{}", claims.sub),
            _ => format!("ip:{client_ip}"),
        };
        let scope = format!("{}:{}", self.redis_prefix, route.name);
        let shared = match self.shared_hit(&scope, &subject, limit, &route.name).await {
            Some(decision) => decision,
            None => {
                metrics::counter!("gateway_rate_limit_local_total", "route" => route.name.clone())
                    .increment(1);
                return match self.local_limits.hit(&route.name, &subject) {
                    None => Ok(None),
                    Some(retry_after) => Err(too_many_requests(retry_after)),
                };
            }
        };
        match shared {
            RateDecision::Allowed {
                remaining,
                resets_after,
            } => Ok(Some(RateHeaders {
                limit: limit.requests,
                remaining,
                reset: resets_after,
                window: limit.window,
            })),
            RateDecision::Limited { retry_after } => {
                let mut response = too_many_requests(retry_after);
                RateHeaders {
                    limit: limit.requests,
                    remaining: 0,
                    reset: retry_after,
                    window: limit.window,
                }
                .apply(response.headers_mut());
                Err(response)
            }
        }
    }

    /// The request counted in Redis, or `None` while Redis is away: it failed or was slow
    /// within the last [`REDIS_RETRY_AFTER`] (a request then does not wait on it at all).
    async fn shared_hit(
        &self,
        scope: &str,
        subject: &str,
        limit: RouteLimit,
        route: &str,
    ) -> Option<RateDecision> {
        let away_until = *self.redis_away_until.lock().expect("redis state");
        if away_until.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        let hit = self.redis.hit(
            scope,
            subject,
            RateLimit {
                max: limit.requests,
                window: limit.window,
            },
        );
        let failure = match tokio::time::timeout(REDIS_LIMIT_TIMEOUT, hit).await {
            Ok(Ok(decision)) => {
                if away_until.is_some() {
                    tracing::info!(route, "Redis is back: rate limits are shared again");
                    *self.redis_away_until.lock().expect("redis state") = None;
                }
                return Some(decision);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {REDIS_LIMIT_TIMEOUT:?}"),
        };
        tracing::warn!(
            error = %failure,
            route,
            "Redis unavailable: this instance keeps the rate limits itself for {REDIS_RETRY_AFTER:?}"
        );
        *self.redis_away_until.lock().expect("redis state") =
            Some(Instant::now() + REDIS_RETRY_AFTER);
        None
    }

    async fn forward(
        &self,
        route: &Route,
        mut request: Request<Body>,
        client_ip: IpAddr,
    ) -> Result<Response, ApiError> {
        let upstream = self
            .upstreams
            .get(&route.upstream)
            .ok_or_else(|| ApiError::internal(format!("no upstream `{}`", route.upstream)))?;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is over {} bytes", self.body_limit),
            )
        };
        let declared_length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared_length.is_some_and(|length| length > self.body_limit) {
            return Err(too_large());
        }
        let upgrade = wants_upgrade(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |value| value.as_str());
        let uri = upstream.uri_for(path_and_query)?;
        let headers = self.upstream_headers(&parts.headers, upgrade, client_ip);
        let limit = usize::try_from(self.body_limit).unwrap_or(usize::MAX);
        // Held bodies can be sent again; all others stream and get one attempt.
        let replayable = !upgrade && upstream.retries > 0 && is_idempotent(&parts.method);
        let (held, mut streamed): (Option<Bytes>, Option<Body>) = if replayable {
            let collected = Limited::new(body, limit).collect().await.map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    ApiError::invalid("body", "the request body could not be read")
                }
            })?;
            (Some(collected.to_bytes()), None)
        } else {
            (None, Some(Body::new(Limited::new(body, limit))))
        };
        let attempts = if replayable { upstream.retries + 1 } else { 1 };
        let mut last_failure = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(upstream.retry_backoff * 2u32.pow(attempt - 1)).await;
            }
            let admission = upstream.admit();
            if let Admission::Refused { retry_after } = admission {
                count_attempt(upstream, "refused");
                return Err(ApiError {
                    retry_after: Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "upstream_unavailable",
                        format!("the {} service is unavailable", upstream.name),
                    )
                });
            }
            let call = Attempt {
                upstream,
                probe: admission == Admission::Probe,
                settled: false,
            };
            let body = match (&held, streamed.take()) {
                (Some(bytes), _) => Body::from(bytes.clone()),
                (None, Some(body)) => body,
                (None, None) => Body::empty(),
            };
            let mut outgoing = Request::new(body);
            *outgoing.method_mut() = parts.method.clone();
            *outgoing.uri_mut() = uri.clone();
            *outgoing.headers_mut() = headers.clone();
            let result =
                tokio::time::timeout(upstream.timeout, upstream.client.request(outgoing)).await;
            match result {
                Ok(Ok(mut response)) => {
                    let status = response.status();
                    let unavailable = matches!(
                        status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    );
                    call.settle(!unavailable);
                    if unavailable {
                        count_attempt(upstream, "unavailable");
                        if attempt + 1 < attempts {
                            continue;
                        }
                    } else {
                        count_attempt(upstream, "answered");
                    }
                    if let Some(client_upgrade) = client_upgrade
                        && status == StatusCode::SWITCHING_PROTOCOLS
                    {
                        let upstream_upgrade = hyper::upgrade::on(&mut response);
                        tokio::spawn(tunnel(
                            upstream.name.clone(),
                            client_upgrade,
                            upstream_upgrade,
                        ));
                    }
                    return Ok(downstream_response(response));
                }
                Ok(Err(error)) => {
                    if is_length_limit(&error) {
                        drop(call);
                        return Err(too_large());
                    }
                    call.settle(false);
                    count_attempt(upstream, "unreachable");
                    tracing::warn!(upstream = %upstream.name, error = %error_chain(&error), attempt, "upstream call failed");
                    last_failure = Some(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_unreachable",
                        format!("the {} service cannot be reached", upstream.name),
                    ));
                }
                Err(_elapsed) => {
                    call.settle(false);
                    count_attempt(upstream, "timeout");
                    tracing::warn!(upstream = %upstream.name, timeout = ?upstream.timeout, attempt, "upstream call timed out");
                    last_failure = Some(ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream_timeout",
                        format!(
                            "the {} service did not answer within {:?}",
                            upstream.name, upstream.timeout
                        ),
                    ));
                }
            }
        }
        Err(last_failure.unwrap_or_else(|| ApiError::internal("no attempt was made")))
    }

    /// The request's headers as the upstream gets them: hop-by-hop headers dropped (but an
    /// upgrade's own), the client's address and the original host added, and the trace
    /// continued from the gateway's span.
    fn upstream_headers(
        &self,
        incoming: &HeaderMap,
        upgrade: bool,
        client_ip: IpAddr,
    ) -> HeaderMap {
        let mut headers = strip_hop_by_hop(incoming);
        headers.remove(header::HOST);
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(protocol) = incoming.get(header::UPGRADE) {
                headers.insert(header::UPGRADE, protocol.clone());
            }
        }
        // Without a trusted load balancer in front, whatever the client wrote into
        // X-Forwarded-For is replaced: services read its first entry as the client.
        let forwarded_for = match (&self.client_ip_header, incoming.get("x-forwarded-for")) {
            (Some(_), Some(previous)) => previous
                .to_str()
                .map(|previous| format!("{previous}, {client_ip}"))
                .unwrap_or_else(|_| client_ip.to_string()),
            _ => client_ip.to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
            headers.insert("x-forwarded-for", value);
        }
        if let Some(host) = incoming.get(header::HOST) {
            headers.insert("x-forwarded-host", host.clone());
        }
        if !headers.contains_key("x-forwarded-proto") || self.client_ip_header.is_none() {
            headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        }
        commerce_runtime::telemetry::inject_current_into_headers(&mut headers);
        headers
    }
}

fn count_attempt(upstream: &Upstream, outcome: &'static str) {
    metrics::counter!("gateway_upstream_attempts_total", "upstream" => upstream.name.clone(), "outcome" => outcome)
        .increment(1);
}

/// Joins the client's and the upstream's upgraded connections until either side closes.
async fn tunnel(
    upstream: String,
    client: hyper::upgrade::OnUpgrade,
    server: hyper::upgrade::OnUpgrade,
) {
    match tokio::try_join!(client, server) {
        Ok((client, server)) => {
            let open = metrics::gauge!("gateway_open_tunnels", "upstream" => upstream.clone());
            open.increment(1.0);
            let result =
                tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(server))
                    .await;
            open.decrement(1.0);
            if let Err(error) = result {
                tracing::debug!(%upstream, %error, "tunnel closed with an error");
            }
        }
        Err(error) => tracing::warn!(%upstream, %error, "upgrade did not complete"),
    }
}

fn downstream_response(response: Response<hyper::body::Incoming>) -> Response {
    let (mut parts, body) = response.into_parts();
    if parts.status != StatusCode::SWITCHING_PROTOCOLS {
        parts.headers = strip_hop_by_hop(&parts.headers);
    }
    Response::from_parts(parts, Body::new(body))
}

/// Whether the client asks to switch protocols (WebSocket).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// 429 with `Retry-After` in whole seconds, at least one.
fn too_many_requests(retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::too_many_requests(seconds).into_response()
}

/// How long a rate-limit check waits on Redis before this instance limits on its own.
const REDIS_LIMIT_TIMEOUT: Duration = Duration::from_millis(250);
/// After Redis failed, how long requests are limited locally before Redis is tried again.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(5);

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers meant for one connection only (RFC 9110 section 7.6.1), including those the
/// `Connection` header names.
fn strip_hop_by_hop(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect();
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if HOP_BY_HOP.contains(name) || named.iter().any(|token| token == name.as_str()) {
            continue;
        }
        kept.append(name.clone(), value.clone());
    }
    kept
}

fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = error.source();
    }
    false
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        current = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        let kept = strip_hop_by_hop(&headers);
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(kept[header::AUTHORIZATION], "Bearer t");
        assert_eq!(kept.get_all("x-multi").iter().count(), 2);
    }

    #[test]
    fn an_upgrade_needs_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!wants_upgrade(&headers));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(wants_upgrade(&headers));
    }
}
