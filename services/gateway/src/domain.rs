//! The gateway's decisions, free of I/O: which route a request takes, who may use it, and
//! each upstream's circuit breaker.

use std::time::{Duration, Instant};

use http::Method;

/// Who may call a route. Services check again; the edge refuses early and uniformly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone. A bearer token that is sent must still be valid.
    Public,
    /// Any valid user or service token.
    Authenticated,
    /// A valid token whose role is one of these.
    Roles(Vec<commerce_access::Role>),
    /// Service-to-service only: never served at the edge, answered 404 as if unrouted.
    Internal,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    /// The caller's user (or service) id; the client address when anonymous.
    User,
    /// The client address.
    Ip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteLimit {
    pub requests: u64,
    pub window: Duration,
    pub by: LimitBy,
}

/// One entry of the route table: requests whose path is `prefix` or lies below it (whole
/// segments) and whose method is listed go to `upstream`.
#[derive(Debug, Clone)]
pub struct Route {
    /// Names the route in metrics, logs and rate-limit keys.
    pub name: String,
    pub prefix: String,
    /// Empty means every method.
    pub methods: Vec<Method>,
    pub upstream: String,
    pub access: Access,
    pub rate_limit: Option<RouteLimit>,
}

impl Route {
    fn matches(&self, method: &Method, path: &str) -> bool {
        let below = path
            .strip_prefix(self.prefix.trim_end_matches('/'))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        below && (self.methods.is_empty() || self.methods.contains(method))
    }
}

/// The route table. The longest matching prefix wins; among equal prefixes, a route that
/// lists methods wins over one that takes every method.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|route| {
            (
                std::cmp::Reverse(route.prefix.trim_end_matches('/').len()),
                route.methods.is_empty(),
            )
        });
        Self { routes }
    }

    /// The first route that takes the request; `Access::Internal` ones included (the
    /// caller refuses them), so they shadow broader public prefixes.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.matches(method, path))
    }

    /// Whether some public route takes `path` with another method (405 rather than 404).
    pub fn has_path(&self, path: &str) -> bool {
        self.routes.iter().any(|route| {
            route.access != Access::Internal
                && path
                    .strip_prefix(route.prefix.trim_end_matches('/'))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Methods safe to send twice: only these are retried.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses before letting a probe through.
    pub open_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// For the `gateway_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn level(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

/// Whether a call may go to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// This call is the half-open probe: its outcome decides the breaker's state.
    Probe,
    /// Refused without calling; the breaker may admit a probe after this long.
    Refused {
        retry_after: Duration,
    },
}

/// A circuit breaker: closed until `failure_threshold` consecutive failures, then open for
/// `open_for`, then half-open with one probe at a time; the probe's success closes it, its
/// failure opens it again.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            probe_in_flight: false,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open => {
                let opened_at = self.opened_at.unwrap_or(now);
                let elapsed = now.saturating_duration_since(opened_at);
                if elapsed >= self.settings.open_for {
                    self.state = BreakerState::HalfOpen;
                    self.probe_in_flight = true;
                    Admission::Probe
                } else {
                    Admission::Refused {
                        retry_after: self.settings.open_for - elapsed,
                    }
                }
            }
            BreakerState::HalfOpen if self.probe_in_flight => Admission::Refused {
                retry_after: Duration::from_secs(1),
            },
            BreakerState::HalfOpen => {
                self.probe_in_flight = true;
                Admission::Probe
            }
        }
    }

    pub fn record_success(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive_failures = 0;
        self.opened_at = None;
        self.probe_in_flight = false;
    }

    pub fn record_failure(&mut self, now: Instant) {
        self.probe_in_flight = false;
        match self.state {
            BreakerState::HalfOpen => self.open(now),
            BreakerState::Closed => {
                self.consecutive_failures += 1;
                if self.consecutive_failures >= self.settings.failure_threshold {
                    self.open(now);
                }
            }
            // Calls admitted before the breaker opened may still fail; the open period
            // stays as it was.
            BreakerState::Open => {}
        }
    }

    /// A probe that ended without an outcome (the client went away) frees its slot.
    pub fn release_probe(&mut self) {
        self.probe_in_flight = false;
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.consecutive_failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, prefix: &str, methods: &[Method]) -> Route {
        Route {
            name: name.into(),
            prefix: prefix.into(),
            methods: methods.to_vec(),
            upstream: name.into(),
            access: Access::Public,
            rate_limit: None,
        }
    }

    #[test]
    fn the_longest_prefix_on_whole_segments_wins() {
        let table = RouteTable::new(vec![
            route("v1", "/v1", &[]),
            route("products", "/v1/products", &[]),
            route("product-writes", "/v1/products", &[Method::POST]),
            route("admin-users", "/v1/admin/users/", &[]),
        ]);
        let name = |method: Method, path: &str| table.find(&method, path).map(|r| r.name.clone());
        assert_eq!(
            name(Method::GET, "/v1/products").as_deref(),
            Some("products")
        );
        assert_eq!(
            name(Method::GET, "/v1/products/42").as_deref(),
            Some("products")
        );
        assert_eq!(
            name(Method::POST, "/v1/products").as_deref(),
            Some("product-writes")
        );
        // Not a whole segment: falls back to the shorter prefix.
        assert_eq!(name(Method::GET, "/v1/productsx").as_deref(), Some("v1"));
        assert_eq!(
            name(Method::POST, "/v1/admin/users/7/disable").as_deref(),
            Some("admin-users")
        );
        assert_eq!(name(Method::GET, "/v2/products"), None);
        assert!(!table.has_path("/v2"));
    }

    #[test]
    fn a_method_list_narrows_a_route() {
        let table = RouteTable::new(vec![route("search", "/v1/search", &[Method::GET])]);
        assert!(table.find(&Method::GET, "/v1/search").is_some());
        assert!(table.find(&Method::DELETE, "/v1/search").is_none());
        assert!(table.has_path("/v1/search/popular"));
    }

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
        })
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_only() {
        let mut breaker = breaker();
        let now = Instant::now();
        breaker.record_failure(now);
        breaker.record_failure(now);
        breaker.record_success();
        breaker.record_failure(now);
        breaker.record_failure(now);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.admit(now), Admission::Allowed);
        breaker.record_failure(now);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(
            breaker.admit(now + Duration::from_secs(4)),
            Admission::Refused {
                retry_after: Duration::from_secs(6)
            }
        );
    }

    #[test]
    fn half_open_lets_one_probe_through_and_follows_its_outcome() {
        let mut breaker = breaker();
        let opened = Instant::now();
        for _ in 0..3 {
            breaker.record_failure(opened);
        }
        let later = opened + Duration::from_secs(10);
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(matches!(breaker.admit(later), Admission::Refused { .. }));
        // The probe fails: open again, for a full period from now.
        breaker.record_failure(later);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(matches!(
            breaker.admit(later + Duration::from_secs(9)),
            Admission::Refused { .. }
        ));
        let again = later + Duration::from_secs(10);
        assert_eq!(breaker.admit(again), Admission::Probe);
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.admit(again), Admission::Allowed);
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let mut breaker = breaker();
        let opened = Instant::now();
        for _ in 0..3 {
            breaker.record_failure(opened);
        }
        let later = opened + Duration::from_secs(11);
        assert_eq!(breaker.admit(later), Admission::Probe);
        breaker.release_probe();
        assert_eq!(breaker.admit(later), Admission::Probe);
    }

    #[test]
    fn only_idempotent_methods_are_retried() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}
