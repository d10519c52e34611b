//! Fixed-window rate limits in Redis: `INCR` plus an expiry set on the window's first hit,
//! in one script so the counter can never be left without an expiry.

use std::time::Duration;

use redis::Script;

use crate::{RedisClient, RedisError};

const HIT: &str = r#"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
return {count, ttl}
"#;

/// What a hit decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed {
        remaining: u64,
        /// When the window (and with it the count) resets.
        resets_after: Duration,
    },
    /// Over the limit; the window reopens after this long.
    Limited { retry_after: Duration },
}

/// A limit: at most `max` hits per `window`, per key.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub max: u64,
    pub window: Duration,
}

impl RedisClient {
    /// Counts one hit for `subject` under `limit`. `subject` becomes a hash tag, so every
    /// key of one subject stays on one cluster node.
    pub async fn hit(
        &self,
        scope: &str,
        subject: &str,
        limit: RateLimit,
    ) -> Result<RateDecision, RedisError> {
        let key = crate::hash_tagged(&format!("ratelimit:{scope}"), subject, "");
        let (count, ttl_ms): (u64, i64) = Script::new(HIT)
            .key(key)
            .arg(limit.window.as_millis() as u64)
            .invoke_async(&mut self.clone())
            .await?;
        if count > limit.max {
            let retry_after = Duration::from_millis(ttl_ms.max(0) as u64);
            metrics::counter!("rate_limited_total", "scope" => scope.to_owned()).increment(1);
            Ok(RateDecision::Limited { retry_after })
        } else {
            Ok(RateDecision::Allowed {
                remaining: limit.max - count,
                resets_after: Duration::from_millis(ttl_ms.max(0) as u64),
            })
        }
    }

    /// Forgets `subject`'s hits (a successful login clears its failure count).
    pub async fn reset_hits(&self, scope: &str, subject: &str) -> Result<(), RedisError> {
        let key = crate::hash_tagged(&format!("ratelimit:{scope}"), subject, "");
        let _: i64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut self.clone())
            .await?;
        Ok(())
    }
}
