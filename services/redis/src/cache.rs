//! A read-through cache that never serves a value older than the last committed write.
//!
//! Per cached thing (a "tag"), three keys share the hash tag `{<tag>}` (one cluster slot):
//! the entry (a hash: `rev`, `body`), a writer count, and a fill lock. A writer counts
//! itself in and drops the entry before its transaction, and after commit stores the new
//! state (or nothing) and counts itself out. While any writer is in, readers go to the
//! source and fills are refused; an entry is only ever replaced by a higher revision. A
//! crashed writer's count expires, and since it dropped the entry first, nothing stale is
//! left behind. The fill lock makes one reader load a cold key while the others wait.

use std::time::Duration;

use redis::Script;

use crate::{RedisClient, RedisError};

// KEYS: entry, writers. → {"bypass"} | {"hit", rev, body} | {"miss"}
const READ: &str = r#"
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then return {'bypass'} end
local entry = redis.call('HMGET', KEYS[1], 'rev', 'body')
if entry[1] then return {'hit', entry[1], entry[2]} end
return {'miss'}
"#;

// KEYS: entry, writers, fill lock. ARGV: rev, body, ttl_ms. Refused while a writer is in
// or when the entry is already as new.
const FILL: &str = r#"
redis.call('DEL', KEYS[3])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'rev') or '-1')
if current >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'rev', ARGV[1], 'body', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

// KEYS: entry, writers. ARGV: writer_ttl_ms.
const BEGIN_WRITE: &str = r#"
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
"#;

// KEYS: entry, writers. ARGV: rev (or -1 for none), body, ttl_ms.
const END_WRITE: &str = r#"
local rev = tonumber(ARGV[1])
if rev >= 0 then
  local current = tonumber(redis.call('HGET', KEYS[1], 'rev') or '-1')
  if rev > current then
    redis.call('HSET', KEYS[1], 'rev', ARGV[1], 'body', ARGV[2])
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
end
if redis.call('DECR', KEYS[2]) <= 0 then redis.call('DEL', KEYS[2]) end
return 1
"#;

/// What the cache holds for a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup {
    Hit {
        revision: i64,
        body: String,
    },
    /// Deleted at a known revision.
    Gone,
    Miss,
    /// A write is in flight: read the source, do not fill.
    Bypass,
}

/// The state a write leaves behind, for `end_write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheWrite<'a> {
    Value {
        revision: i64,
        body: &'a str,
    },
    Deleted {
        revision: i64,
    },
    /// Rolled back, or the writer would rather not say: leave the entry empty.
    Nothing,
}

#[derive(Clone)]
pub struct VersionedCache {
    redis: RedisClient,
    prefix: String,
    ttl: Duration,
}

/// How long a writer's count may outlive a crashed writer.
const WRITER_TTL: Duration = Duration::from_secs(10);
const FILL_LOCK_TTL: Duration = Duration::from_secs(2);

impl VersionedCache {
    pub fn new(redis: RedisClient, prefix: &str, ttl: Duration) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            ttl,
        }
    }

    fn keys(&self, tag: &str) -> [String; 3] {
        [
            crate::hash_tagged(&self.prefix, tag, "entry"),
            crate::hash_tagged(&self.prefix, tag, "writers"),
            crate::hash_tagged(&self.prefix, tag, "fill"),
        ]
    }

    pub async fn read(&self, tag: &str) -> Result<CacheLookup, RedisError> {
        let [entry, writers, _] = self.keys(tag);
        let answer: Vec<String> = Script::new(READ)
            .key(entry)
            .key(writers)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match answer.first().map(String::as_str) {
            Some("bypass") => CacheLookup::Bypass,
            Some("hit") => match answer.get(2).map(String::as_str) {
                Some("") | None => CacheLookup::Gone,
                Some(body) => CacheLookup::Hit {
                    revision: answer[1].parse().unwrap_or_default(),
                    body: body.to_owned(),
                },
            },
            _ => CacheLookup::Miss,
        })
    }

    /// `true` when this caller should load the value and fill the cache.
    pub async fn try_fill_lock(&self, tag: &str) -> Result<bool, RedisError> {
        let [_, _, fill] = self.keys(tag);
        let taken: Option<String> = redis::cmd("SET")
            .arg(fill)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(FILL_LOCK_TTL.as_millis() as u64)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(taken.is_some())
    }

    /// Stores a value read from the source, unless a writer is in or the entry is newer.
    pub async fn fill(&self, tag: &str, revision: i64, body: &str) -> Result<bool, RedisError> {
        let [entry, writers, fill] = self.keys(tag);
        let stored: i64 = Script::new(FILL)
            .key(entry)
            .key(writers)
            .key(fill)
            .arg(revision)
            .arg(body)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(stored == 1)
    }

    pub async fn begin_write(&self, tag: &str) -> Result<(), RedisError> {
        let [entry, writers, _] = self.keys(tag);
        let _: i64 = Script::new(BEGIN_WRITE)
            .key(entry)
            .key(writers)
            .arg(WRITER_TTL.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    pub async fn end_write(&self, tag: &str, written: CacheWrite<'_>) -> Result<(), RedisError> {
        let [entry, writers, _] = self.keys(tag);
        let (revision, body) = match written {
            CacheWrite::Value { revision, body } => (revision, body),
            CacheWrite::Deleted { revision } => (revision, ""),
            CacheWrite::Nothing => (-1, ""),
        };
        let _: i64 = Script::new(END_WRITE)
            .key(entry)
            .key(writers)
            .arg(revision)
            .arg(body)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }
}
