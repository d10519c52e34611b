//! Cache-aside for product reads, in Redis, that never serves a value older than the last
//! committed write.
//!
//! Per product, three keys share the hash tag `{<id>}` (one cluster slot): the entry (a
//! hash: `rev`, `body`), a writer count, and a fill lock. A writer counts itself in and
//! drops the entry before its transaction, and after commit stores the new state and
//! counts itself out. While any writer is in, readers go to the database and fills are
//! refused; an entry is only ever replaced by a higher revision. A crashed writer's count
//! expires, and since it dropped the entry first, nothing stale is left behind. The fill
//! lock makes one reader load a cold key while the others wait for it (no stampede).

use std::time::Duration;

use commerce_redis::{RedisClient, RedisError};
use redis::Script;
use uuid::Uuid;

use crate::domain::Product;

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

/// What the cache knows about one product.
pub enum Lookup {
    Hit(Box<Product>),
    /// Deleted at a known revision.
    Gone,
    Miss,
    /// A write is in flight: read the database, do not fill.
    Bypass,
}

/// The state a write leaves behind, for `end_write`.
pub enum Written<'a> {
    Product(&'a Product),
    Deleted {
        revision: i64,
    },
    /// Rolled back or failed: leave the entry empty.
    Nothing,
}

#[derive(Clone)]
pub struct ProductCache {
    redis: RedisClient,
    prefix: String,
    ttl: Duration,
}

/// How long a writer's count may outlive a crashed writer.
const WRITER_TTL: Duration = Duration::from_secs(10);
const FILL_LOCK_TTL: Duration = Duration::from_secs(2);

impl ProductCache {
    pub fn new(redis: RedisClient, prefix: &str, ttl: Duration) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            ttl,
        }
    }

    fn keys(&self, id: Uuid) -> [String; 3] {
        let tag = id.to_string();
        [
            commerce_redis::hash_tagged(&self.prefix, &tag, "entry"),
            commerce_redis::hash_tagged(&self.prefix, &tag, "writers"),
            commerce_redis::hash_tagged(&self.prefix, &tag, "fill"),
        ]
    }

    pub async fn read(&self, id: Uuid) -> Result<Lookup, RedisError> {
        let [entry, writers, _] = self.keys(id);
        let answer: Vec<String> = Script::new(READ)
            .key(entry)
            .key(writers)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match answer.first().map(String::as_str) {
            Some("bypass") => Lookup::Bypass,
            Some("hit") => match answer.get(2).map(String::as_str) {
                Some("") | None => Lookup::Gone,
                Some(body) => {
                    let mut product: Product = serde_json::from_str(body)
                        .map_err(|error| RedisError::Encoding(error.to_string()))?;
                    product.revision = answer[1].parse().unwrap_or_default();
                    Lookup::Hit(Box::new(product))
                }
            },
            _ => Lookup::Miss,
        })
    }

    /// `true` when this caller should load the product and fill the cache.
    pub async fn try_fill_lock(&self, id: Uuid) -> Result<bool, RedisError> {
        let [_, _, fill] = self.keys(id);
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

    pub async fn fill(&self, product: &Product) -> Result<bool, RedisError> {
        let [entry, writers, fill] = self.keys(product.id);
        let stored: i64 = Script::new(FILL)
            .key(entry)
            .key(writers)
            .key(fill)
            .arg(product.revision)
            .arg(
                serde_json::to_string(product)
                    .map_err(|error| RedisError::Encoding(error.to_string()))?,
            )
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(stored == 1)
    }

    pub async fn begin_write(&self, id: Uuid) -> Result<(), RedisError> {
        let [entry, writers, _] = self.keys(id);
        let _: i64 = Script::new(BEGIN_WRITE)
            .key(entry)
            .key(writers)
            .arg(WRITER_TTL.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    pub async fn end_write(&self, id: Uuid, written: Written<'_>) -> Result<(), RedisError> {
        let [entry, writers, _] = self.keys(id);
        let (revision, body) = match written {
            Written::Product(product) => (
                product.revision,
                serde_json::to_string(product)
                    .map_err(|error| RedisError::Encoding(error.to_string()))?,
            ),
            Written::Deleted { revision } => (revision, String::new()),
            Written::Nothing => (-1, String::new()),
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
