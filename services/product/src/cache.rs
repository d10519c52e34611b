//! Cache-aside for product reads: the generic [`VersionedCache`] protocol (never older than
//! the last committed write; one loader per cold key; cluster-safe), typed for products and
//! ordered by their `revision`.

use std::time::Duration;

use commerce_redis::{CacheLookup, CacheWrite, RedisClient, RedisError, VersionedCache};
use uuid::Uuid;

use crate::domain::Product;

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
    cache: VersionedCache,
}

fn encode(product: &Product) -> Result<String, RedisError> {
    serde_json::to_string(product).map_err(RedisError::Encoding)
}

impl ProductCache {
    pub fn new(redis: RedisClient, prefix: &str, ttl: Duration) -> Self {
        Self {
            cache: VersionedCache::new(redis, prefix, ttl),
        }
    }

    pub async fn read(&self, id: Uuid) -> Result<Lookup, RedisError> {
        Ok(match self.cache.read(&id.to_string()).await? {
            CacheLookup::Hit { revision, body } => {
                let mut product: Product =
                    serde_json::from_str(&body).map_err(RedisError::Encoding)?;
                product.revision = revision;
                Lookup::Hit(Box::new(product))
            }
            CacheLookup::Gone => Lookup::Gone,
            CacheLookup::Miss => Lookup::Miss,
            CacheLookup::Bypass => Lookup::Bypass,
        })
    }

    pub async fn try_fill_lock(&self, id: Uuid) -> Result<bool, RedisError> {
        self.cache.try_fill_lock(&id.to_string()).await
    }

    pub async fn fill(&self, product: &Product) -> Result<bool, RedisError> {
        self.cache
            .fill(&product.id.to_string(), product.revision, &encode(product)?)
            .await
    }

    pub async fn begin_write(&self, id: Uuid) -> Result<(), RedisError> {
        self.cache.begin_write(&id.to_string()).await
    }

    pub async fn end_write(&self, id: Uuid, written: Written<'_>) -> Result<(), RedisError> {
        match written {
            Written::Product(product) => {
                let body = encode(product)?;
                let value = CacheWrite::Value {
                    revision: product.revision,
                    body: &body,
                };
                self.cache.end_write(&id.to_string(), value).await
            }
            Written::Deleted { revision } => {
                self.cache
                    .end_write(&id.to_string(), CacheWrite::Deleted { revision })
                    .await
            }
            Written::Nothing => {
                self.cache
                    .end_write(&id.to_string(), CacheWrite::Nothing)
                    .await
            }
        }
    }
}
