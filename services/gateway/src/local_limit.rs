//! The rate limits one gateway instance keeps on its own while Redis, which shares them
//! across instances, cannot be reached: per route and subject, the same number of
//! requests per window. GCRA (governor) rather than a fixed window: the window's requests
//! may come at once, then one more each `window / requests`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::domain::{Route, RouteLimit};

/// A route's limiter forgets idle subjects once it remembers more than this many.
const PRUNE_ABOVE: usize = 10_000;

pub struct LocalLimits {
    clock: DefaultClock,
    by_route: HashMap<String, DefaultKeyedRateLimiter<String>>,
}

fn quota(limit: &RouteLimit) -> Option<Quota> {
    let requests = NonZeroU32::new(u32::try_from(limit.requests).unwrap_or(u32::MAX))?;
    let period = limit.window / requests.get();
    Some(Quota::with_period(period)?.allow_burst(requests))
}

impl LocalLimits {
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a Route>) -> Self {
        let by_route = routes
            .into_iter()
            .filter_map(|route| {
                let quota = quota(route.rate_limit.as_ref()?)?;
                Some((route.name.clone(), DefaultKeyedRateLimiter::keyed(quota)))
            })
            .collect();
        Self {
            clock: DefaultClock::default(),
            by_route,
        }
    }

    /// Counts one request of `subject` on `route`: `None` when it may pass, or how long
    /// until it may.
    pub fn hit(&self, route: &str, subject: &str) -> Option<Duration> {
        let limiter = self.by_route.get(route)?;
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
        }
        limiter
            .check_key(&subject.to_owned())
            .err()
            .map(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Access, LimitBy};

    fn route(name: &str, requests: u64, window: Duration) -> Route {
        Route {
            name: name.to_owned(),
            prefix: format!("/{name}"),
            methods: Vec::new(),
            upstream: "up".to_owned(),
            access: Access::Public,
            rate_limit: Some(RouteLimit {
                requests,
                window,
                by: LimitBy::Ip,
            }),
        }
    }

    #[test]
    fn each_subject_gets_the_routes_requests_then_waits() {
        let routes = [
            route("login", 3, Duration::from_secs(60)),
            route("search", 100, Duration::from_secs(1)),
        ];
        let limits = LocalLimits::new(&routes);
        for _ in 0..3 {
            assert_eq!(limits.hit("login", "ip:10.0.0.1"), None);
        }
        let wait = limits
            .hit("login", "ip:10.0.0.1")
            .expect("the fourth is limited");
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "one request comes back every 20 s: {wait:?}"
        );
        // Another client, another route: their own budgets.
        assert_eq!(limits.hit("login", "ip:10.0.0.2"), None);
        assert_eq!(limits.hit("search", "ip:10.0.0.1"), None);
        // A route without a limit is never limited.
        assert_eq!(limits.hit("unlimited", "ip:10.0.0.1"), None);
    }
}
