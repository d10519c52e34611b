//! A distributed lock with an owner token and an expiry (the role `bsm/redislock` has in
//! the Go design). Only the holder's token can refresh or release it, so a holder whose
//! lease ran out cannot release a lock someone else has since taken.

use std::time::Duration;

use rand::Rng;
use redis::Script;

use crate::{RedisClient, RedisError};

const RELEASE: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"#;

const REFRESH: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
"#;

/// A held lock. Dropping it does not release it (that needs I/O); call [`Lock::release`],
/// or let the expiry free it.
#[derive(Debug)]
pub struct Lock {
    client: RedisClient,
    key: String,
    token: String,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_cluster() {
            "RedisClient::Cluster"
        } else {
            "RedisClient::Standalone"
        })
    }
}

impl RedisClient {
    /// Takes `key` for `ttl` if nobody holds it.
    pub async fn try_lock(&self, key: &str, ttl: Duration) -> Result<Option<Lock>, RedisError> {
        let token = uuid::Uuid::new_v4().to_string();
        let mut connection = self.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl)?)
            .query_async(&mut connection)
            .await?;
        Ok(set.map(|_| Lock {
            client: self.clone(),
            key: key.to_owned(),
            token,
        }))
    }

    /// Waits up to `wait` for `key`, retrying with jittered exponential backoff.
    pub async fn lock(
        &self,
        key: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Lock>, RedisError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut backoff = Duration::from_millis(10);
        loop {
            if let Some(lock) = self.try_lock(key, ttl).await? {
                return Ok(Some(lock));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
            let pause = (backoff + Duration::from_millis(jitter)).min(deadline - now);
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

impl Lock {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Extends the lease; `false` means the lock was lost (expired, maybe taken by another).
    pub async fn refresh(&self, ttl: Duration) -> Result<bool, RedisError> {
        let mut connection = self.client.clone();
        let refreshed: i64 = Script::new(REFRESH)
            .key(&self.key)
            .arg(&self.token)
            .arg(ttl_millis(ttl)?)
            .invoke_async(&mut connection)
            .await?;
        Ok(refreshed == 1)
    }

    /// Releases the lock; `false` means it was no longer ours to release.
    pub async fn release(self) -> Result<bool, RedisError> {
        let mut connection = self.client.clone();
        let released: i64 = Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(&mut connection)
            .await?;
        Ok(released == 1)
    }
}

fn ttl_millis(ttl: Duration) -> Result<u64, RedisError> {
    match ttl.as_millis() {
        0 => Err(RedisError::Config(
            "lock ttl must be at least 1 ms".to_owned(),
        )),
        millis => Ok(millis as u64),
    }
}
