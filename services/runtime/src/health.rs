//! Readiness: each service lists what it depends on; `/readyz` and the gRPC health service
//! report ready only while every dependency answers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

/// One dependency a service needs to do its work.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &str;
    async fn check(&self) -> Result<(), String>;
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<CheckResult>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs every check concurrently, each bounded by a timeout.
pub async fn evaluate(checks: &[Arc<dyn ReadinessCheck>]) -> Readiness {
    let results = futures::future::join_all(checks.iter().map(|check| async move {
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, check.check())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CHECK_TIMEOUT:?}")));
        CheckResult {
            name: check.name().to_owned(),
            ok: outcome.is_ok(),
            error: outcome.err(),
        }
    }))
    .await;
    Readiness {
        ready: results.iter().all(|result| result.ok),
        checks: results,
    }
}

/// The service's PostgreSQL database.
pub struct PostgresCheck(pub sqlx::PgPool);

#[async_trait]
impl ReadinessCheck for PostgresCheck {
    fn name(&self) -> &str {
        "postgres"
    }

    async fn check(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(&self.0)
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
}

/// Redis, standalone or cluster.
pub struct RedisCheck(pub commerce_redis::RedisClient);

#[async_trait]
impl ReadinessCheck for RedisCheck {
    fn name(&self) -> &str {
        "redis"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|error| error.to_string())
    }
}

/// The Kafka cluster: some broker answers a metadata request.
pub struct KafkaCheck(pub commerce_messaging::BrokerProbe);

#[async_trait]
impl ReadinessCheck for KafkaCheck {
    fn name(&self) -> &str {
        "kafka"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|error| error.to_string())
    }
}

/// An inbox consumer's membership of its consumer group. A member may hold no partitions
/// (more members than partitions) and still be fine; one that has not been a steady member
/// for longer than a rebalance can take (the session timeout, twice over, and a margin)
/// consumes nothing, and says so.
pub struct ConsumerCheck(pub Arc<commerce_messaging::ConsumerHealth>);

/// How long a consumer may be joining or rebalancing before it counts as stuck.
pub const CONSUMER_STUCK_AFTER: Duration = Duration::from_secs(60);

#[async_trait]
impl ReadinessCheck for ConsumerCheck {
    fn name(&self) -> &str {
        self.0.group()
    }

    async fn check(&self) -> Result<(), String> {
        self.0.check(CONSUMER_STUCK_AFTER)
    }
}
