//! Redis for every service: one client for standalone and cluster, a distributed lock, and
//! delayed tasks, and a Pub/Sub fan-out.

pub mod cache;
mod client;
pub mod fanout;
mod lock;
mod rate_limit;
pub mod tasks;

pub use cache::{CacheLookup, CacheWrite, VersionedCache};
pub use client::{RedisClient, RedisConfig, RedisMode, hash_tagged};
pub use fanout::{Delivery, Fanout, Listener};
pub use lock::Lock;
pub use rate_limit::{RateDecision, RateLimit};
pub use tasks::{
    DeadTask, Enqueued, NewTask, QueueCounts, Revived, Task, TaskError, TaskHandler, TaskQueue,
    TaskWorker, WorkerSettings,
};

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("task encoding: {0}")]
    Encoding(#[from] serde_json::Error),
}
