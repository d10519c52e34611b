//! What must hold in a shop whatever happened to it, proven from its databases and topics
//! (never from logs). Each check names the ids that break it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use commerce_runtime::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum InvariantError {
    #[error("the shop's configuration: {0}")]
    Config(#[from] commerce_runtime::ConfigError),
    #[error("services.{service}.database has no url: the checks read every service's database")]
    NoDatabase { service: &'static str },
    #[error("{service}'s database")]
    Database {
        service: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("Kafka, reading consumer group {group}")]
    Kafka {
        group: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("the lag check stopped")]
    Join(#[from] tokio::task::JoinError),
}

/// The services whose databases the checks read.
const SERVICES: [&str; 9] = [
    "auth",
    "product",
    "cart",
    "order",
    "payment",
    "fulfillment",
    "notification",
    "chat",
    "search",
];

/// The shop as the checks see it: every service's database, and its Kafka cluster.
pub struct ShopState {
    pools: BTreeMap<&'static str, PgPool>,
    kafka: commerce_messaging::KafkaConfig,
}

/// Whether the service's database has the outbox and inbox (services without messaging
/// have neither).
async fn has_messaging(service: &'static str, pool: &PgPool) -> Result<bool, InvariantError> {
    sqlx::query_scalar("SELECT to_regclass('outbox_events') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|source| InvariantError::Database { service, source })
}

/// One invariant and the ids that break it (none: it holds).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub invariant: &'static str,
    pub broken_by: Vec<String>,
}

impl Finding {
    pub fn holds(&self) -> bool {
        self.broken_by.is_empty()
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.holds() {
            write!(f, "holds   {}", self.invariant)
        } else {
            let shown: Vec<&str> = self.broken_by.iter().take(20).map(String::as_str).collect();
            write!(
                f,
                "BROKEN  {} ({}): {}{}",
                self.invariant,
                self.broken_by.len(),
                shown.join(", "),
                if self.broken_by.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            )
        }
    }
}

/// Per product, `stock + units sold − units added by staff` when the run started: stock
/// moves only by sales and adjustments, so this never changes.
#[derive(Debug, Clone)]
pub struct Baseline {
    conserved: HashMap<Uuid, i64>,
}

const CONSERVED_STOCK: &str = "
    SELECT p.id,
           p.stock
           + COALESCE((SELECT sum(quantity) FROM stock_reservations r
                        WHERE r.product_id = p.id AND r.status = 'deducted'), 0)::bigint
           - COALESCE((SELECT sum(delta) FROM stock_adjustments a WHERE a.product_id = p.id), 0)::bigint
    FROM products p";

impl ShopState {
    /// Connects to what `config` names (a few connections each).
    pub async fn connect(config: &Config) -> Result<Self, InvariantError> {
        let mut pools = BTreeMap::new();
        for service in SERVICES {
            let database = config
                .endpoints(service)?
                .database
                .ok_or(InvariantError::NoDatabase { service })?;
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect(&database.url)
                .await
                .map_err(|source| InvariantError::Database { service, source })?;
            pools.insert(service, pool);
        }
        Ok(Self {
            pools,
            kafka: config.app.kafka.clone(),
        })
    }

    /// From pools the caller holds (a test's databases), one per service the checks read.
    pub fn from_pools(
        pools: BTreeMap<&'static str, PgPool>,
        kafka: commerce_messaging::KafkaConfig,
    ) -> Self {
        Self { pools, kafka }
    }

    /// The services whose databases the checks read.
    pub fn services() -> &'static [&'static str] {
        &SERVICES
    }

    fn pool(&self, service: &'static str) -> &PgPool {
        &self.pools[service]
    }

    async fn rows<T>(&self, service: &'static str, sql: &str) -> Result<Vec<T>, InvariantError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        sqlx::query_as(sql)
            .fetch_all(self.pool(service))
            .await
            .map_err(|source| InvariantError::Database { service, source })
    }

    async fn ids(&self, service: &'static str, sql: &str) -> Result<Vec<String>, InvariantError> {
        sqlx::query_scalar(sql)
            .fetch_all(self.pool(service))
            .await
            .map_err(|source| InvariantError::Database { service, source })
    }

    /// The stock ledger now, to compare with after a run.
    pub async fn baseline(&self) -> Result<Baseline, InvariantError> {
        let rows: Vec<(Uuid, i64)> = self.rows("product", CONSERVED_STOCK).await?;
        Ok(Baseline {
            conserved: rows.into_iter().collect(),
        })
    }

    /// Every invariant now.
    pub async fn check(&self, baseline: Option<&Baseline>) -> Result<Vec<Finding>, InvariantError> {
        let mut findings = Vec::new();
        let mut finding = |invariant: &'static str, broken_by: Vec<String>| {
            findings.push(Finding {
                invariant,
                broken_by,
            })
        };

        finding(
            "no oversell: stock ≥ 0 and reserved ≤ stock for every product",
            self.ids(
                "product",
                "SELECT id::text FROM products WHERE stock < 0 OR reserved < 0 OR reserved > stock",
            )
            .await?,
        );
        finding(
            "a product's reserved units are its live reservations",
            self.ids(
                "product",
                "SELECT p.id::text FROM products p
                  WHERE p.reserved <> COALESCE((SELECT sum(quantity) FROM stock_reservations r
                                                 WHERE r.product_id = p.id AND r.status = 'reserved'), 0)",
            )
            .await?,
        );
        if let Some(baseline) = baseline {
            let now: Vec<(Uuid, i64)> = self.rows("product", CONSERVED_STOCK).await?;
            finding(
                "stock + units sold − adjustments is unchanged for every product",
                now.into_iter()
                    .filter(|(id, value)| {
                        baseline.conserved.get(id).is_some_and(|was| was != value)
                    })
                    .map(|(id, value)| {
                        format!("{id} (was {}, now {value})", baseline.conserved[&id])
                    })
                    .collect(),
            );
        }

        let orders: HashMap<String, (String, Option<String>)> = self
            .rows::<(String, String, Option<String>)>(
                "order",
                "SELECT id::text, status, payment_id::text FROM orders",
            )
            .await?
            .into_iter()
            .map(|(id, status, payment)| (id, (status, payment)))
            .collect();
        let status_of = |order: &str| orders.get(order).map(|(status, _)| status.as_str());

        let reservations: Vec<(String, String)> = self.rows("product", "SELECT DISTINCT order_id::text, status FROM stock_reservations WHERE status IN ('reserved', 'deducted')").await?;
        finding(
            "no reservation without a live order (reserved: unpaid; deducted: paid)",
            reservations
                .into_iter()
                .filter(|(order, status)| {
                    let live: &[&str] = if status == "reserved" {
                        &["PLACING", "PENDING_PAYMENT"]
                    } else {
                        &["PAID", "CONFIRMED", "SHIPPED", "DELIVERED"]
                    };
                    !status_of(order.as_str())
                        .is_some_and(|order_status| live.contains(&order_status))
                })
                .map(|(order, status)| {
                    format!(
                        "{order} ({status}, order {})",
                        status_of(order.as_str()).unwrap_or("missing")
                    )
                })
                .collect(),
        );
        finding(
            "every order is final or waiting within its payment window",
            self.ids(
                "order",
                "SELECT id::text || ' (' || status || ')' FROM orders
                  WHERE status IN ('PLACING', 'PAID')
                     OR (status = 'PENDING_PAYMENT' AND payment_due_at < now() - interval '60 seconds')",
            )
            .await?,
        );
        finding(
            "every saga finished or is moving (none untouched for a minute)",
            self.ids(
                "order",
                "SELECT id::text || ' (' || saga_type || ' ' || status || ')' FROM saga_states
                  WHERE status IN ('running', 'compensating') AND updated_at < now() - interval '60 seconds'",
            )
            .await?,
        );
        finding(
            "each paid order was confirmed exactly once (one OrderConfirmed), none twice",
            self.ids(
                "order",
                "SELECT o.id::text || ' (' || o.status || ', ' || count(e.id) || ' OrderConfirmed)'
                   FROM orders o
                   LEFT JOIN outbox_events e
                     ON e.aggregate_id = o.id::text AND e.event_type = 'commerce.order.v1.OrderConfirmed'
                  GROUP BY o.id, o.status
                 HAVING count(e.id) > 1
                     OR (o.status IN ('CONFIRMED', 'SHIPPED', 'DELIVERED') AND count(e.id) <> 1)",
            )
            .await?,
        );
        finding(
            "each payment was captured at most once and refunded at most its amount",
            self.ids(
                "payment",
                "SELECT p.id::text FROM payments p
                  WHERE (SELECT count(*) FROM payment_status_history h
                          WHERE h.payment_id = p.id AND h.status = 'succeeded') > 1
                     OR COALESCE((SELECT sum(amount) FROM refunds r
                                   WHERE r.payment_id = p.id AND r.status <> 'failed'), 0) > p.amount",
            )
            .await?,
        );

        let payments: Vec<(String, String, String, Decimal)> = self
            .rows(
                "payment",
                "SELECT id::text, order_id::text, status, amount FROM payments",
            )
            .await?;
        finding(
            "every payment belongs to exactly one order, which names it",
            payments
                .iter()
                .filter(|(payment, order, _, _)| {
                    orders
                        .get(order)
                        .is_none_or(|(_, named)| named.as_deref() != Some(payment.as_str()))
                })
                .map(|(payment, order, _, _)| format!("{payment} (order {order})"))
                .collect(),
        );
        let payment_status: HashMap<&str, &str> = payments
            .iter()
            .map(|(payment, _, status, _)| (payment.as_str(), status.as_str()))
            .collect();
        finding(
            "money follows the order: confirmed orders are paid, dead or canceled ones are not charged",
            orders
                .iter()
                .filter_map(|(order, (status, payment))| {
                    let paid = payment
                        .as_deref()
                        .and_then(|payment| payment_status.get(payment))
                        .copied();
                    let broken = match status.as_str() {
                        "CONFIRMED" | "SHIPPED" | "DELIVERED" => paid != Some("succeeded"),
                        "EXPIRED" | "FAILED" | "CANCELED" => paid == Some("succeeded"),
                        _ => false,
                    };
                    broken
                        .then(|| format!("{order} ({status}, payment {})", paid.unwrap_or("none")))
                })
                .collect(),
        );

        let mut unpublished = Vec::new();
        let mut dead_lettered = Vec::new();
        // Which consumer group read which topic, for the lag check below.
        let mut subscriptions: Vec<(String, String)> = Vec::new();
        for (&service, pool) in &self.pools {
            if !has_messaging(service, pool).await? {
                continue;
            }
            let pending: Vec<String> = sqlx::query_scalar(
                "SELECT id::text FROM outbox_events WHERE published_at IS NULL ORDER BY seq LIMIT 100",
            )
            .fetch_all(pool)
            .await
            .map_err(|source| InvariantError::Database { service, source })?;
            unpublished.extend(pending.into_iter().map(|id| format!("{service}: {id}")));
            let dead: Vec<String> = sqlx::query_scalar(
                "SELECT event_type || ' ' || event_id::text FROM inbox_events WHERE status = 'dead_lettered' LIMIT 100",
            )
            .fetch_all(pool)
            .await
            .map_err(|source| InvariantError::Database { service, source })?;
            dead_lettered.extend(dead.into_iter().map(|event| format!("{service}: {event}")));
            let read: Vec<(String, String)> =
                sqlx::query_as("SELECT DISTINCT consumer, topic FROM inbox_events")
                    .fetch_all(pool)
                    .await
                    .map_err(|source| InvariantError::Database { service, source })?;
            subscriptions.extend(read);
        }
        finding("every outbox row was published", unpublished);
        finding(
            "every consumed event was applied (none dead-lettered)",
            dead_lettered,
        );
        finding(
            "no customer got the same notification twice",
            self.ids(
                "notification",
                "SELECT user_id::text || ' ' || kind || ' ' || (data->>'order_id') FROM notifications
                  WHERE data ? 'order_id'
                  GROUP BY user_id, kind, data->>'order_id', data->>'reminder', data->>'amount'
                 HAVING count(*) > 1",
            )
            .await?,
        );
        finding(
            "every consumer group has caught up (no lag)",
            self.lagging_groups(subscriptions).await?,
        );
        Ok(findings)
    }

    /// Those of `subscriptions` (consumer group, topic; from the inboxes) whose committed
    /// offsets are behind their topics' ends.
    async fn lagging_groups(
        &self,
        subscriptions: Vec<(String, String)>,
    ) -> Result<Vec<String>, InvariantError> {
        let kafka = self.kafka.clone();
        tokio::task::spawn_blocking(move || {
            let mut lagging = Vec::new();
            for (group, topic) in subscriptions {
                let kafka_error = |source| InvariantError::Kafka {
                    group: group.clone(),
                    source,
                };
                let consumer: BaseConsumer = kafka
                    .consumer_config(&group)
                    .create()
                    .map_err(kafka_error)?;
                let timeout = Duration::from_secs(10);
                let metadata = consumer
                    .fetch_metadata(Some(&topic), timeout)
                    .map_err(kafka_error)?;
                let mut partitions = TopicPartitionList::new();
                for found in metadata.topics().iter().filter(|t| t.name() == topic) {
                    for partition in found.partitions() {
                        partitions.add_partition(&topic, partition.id());
                    }
                }
                let committed = consumer
                    .committed_offsets(partitions, timeout)
                    .map_err(kafka_error)?;
                let mut behind = 0;
                for element in committed.elements() {
                    let (low, high) = consumer
                        .fetch_watermarks(&topic, element.partition(), timeout)
                        .map_err(kafka_error)?;
                    let position = match element.offset() {
                        Offset::Offset(offset) => offset,
                        _ => low,
                    };
                    behind += (high - position).max(0);
                }
                if behind > 0 {
                    lagging.push(format!("{group} on {topic}: {behind} behind"));
                }
            }
            Ok(lagging)
        })
        .await?
    }

    /// Checks until every invariant holds or `within` has passed (a shop settles: paid
    /// orders get confirmed, relays and consumers catch up); the last findings.
    pub async fn settle(
        &self,
        baseline: Option<&Baseline>,
        within: Duration,
    ) -> Result<Vec<Finding>, InvariantError> {
        let started = Instant::now();
        loop {
            let findings = self.check(baseline).await?;
            if findings.iter().all(Finding::holds) || started.elapsed() >= within {
                return Ok(findings);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}
