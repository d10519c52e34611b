//! Sessions signed out before their access tokens expire. Access tokens are verified
//! locally, so without this a signed-out session's token would keep working until it
//! expired. Auth writes `revoked-session:{sid}` to Redis, living as long as an access
//! token, whenever a session ends early (logout, "sign out everywhere", refresh reuse, a
//! disabled account); every [`crate::TokenVerifier`] given a [`RevokedSessions`] looks it
//! up: one `EXISTS` per request, nothing asked of auth.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commerce_redis::{RedisClient, RedisError};
use uuid::Uuid;

/// A lookup slower than this counts as Redis being away.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failed lookup Redis is left alone this long, so requests do not each wait on it.
const RETRY_AFTER: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct RevokedSessions {
    redis: RedisClient,
    away_until: Arc<Mutex<Option<Instant>>>,
}

fn key(session: Uuid) -> String {
    format!("revoked-session:{session}")
}

impl RevokedSessions {
    pub fn new(redis: RedisClient) -> Self {
        Self {
            redis,
            away_until: Arc::new(Mutex::new(None)),
        }
    }

    /// Marks `sessions` revoked for `ttl` (the access token lifetime: older tokens have
    /// expired anyway). Writing a session again is harmless, so callers may retry.
    pub async fn revoke(&self, sessions: &[Uuid], ttl: Duration) -> Result<(), RedisError> {
        let mut connection = self.redis.clone();
        // One command per key: in a cluster each key has its own slot.
        for session in sessions {
            let _: () = redis::cmd("SET")
                .arg(key(*session))
                .arg(1)
                .arg("EX")
                .arg(ttl.as_secs().max(1))
                .query_async(&mut connection)
                .await?;
        }
        Ok(())
    }

    /// Whether `session` was revoked. When Redis does not answer in time the token is let
    /// through: its signature and expiry were checked, and refusing every signed-in
    /// request while Redis is away would take the shop down. Counted and alerted
    /// (`access_revocation_unchecked_total`, `AccessRevocationsUnchecked`).
    pub async fn is_revoked(&self, session: Uuid) -> bool {
        if self
            .away_until
            .lock()
            .expect("revocation state lock")
            .is_some_and(|until| Instant::now() < until)
        {
            unchecked("redis failed a moment ago");
            return false;
        }
        let mut connection = self.redis.clone();
        let mut exists = redis::cmd("EXISTS");
        exists.arg(key(session));
        let lookup = exists.query_async::<bool>(&mut connection);
        match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(revoked)) => revoked,
            Ok(Err(error)) => {
                self.away(&error.to_string());
                false
            }
            Err(_) => {
                self.away("timed out");
                false
            }
        }
    }

    fn away(&self, cause: &str) {
        *self.away_until.lock().expect("revocation state lock") =
            Some(Instant::now() + RETRY_AFTER);
        unchecked(cause);
    }
}

/// Logged at most once per this interval: every signed-in request fails the same way.
const LOG_EVERY: Duration = Duration::from_secs(10);

fn unchecked(cause: &str) {
    static LAST_LOGGED: Mutex<Option<Instant>> = Mutex::new(None);
    metrics::counter!("access_revocation_unchecked_total").increment(1);
    let mut last = LAST_LOGGED.lock().expect("log throttle lock");
    if last.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
        *last = Some(Instant::now());
        tracing::warn!(
            cause,
            "cannot check session revocations; tokens accepted on their signature"
        );
    }
}
