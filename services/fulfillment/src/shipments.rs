//! Shipments: a confirmed order becomes a PENDING fulfillment (in the inbox transaction);
//! a worker hands pending ones to the carrier (create, store its id, buy) and records the
//! tracking id (`FulfillmentCreated`); carrier webhooks and staff move them on
//! (`FulfillmentShipped`, `FulfillmentDelivered`).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use commerce_messaging::outbox::{self, NewEvent};
use commerce_proto::fulfillment::v1 as pb;
use commerce_runtime::ApiError;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::carrier::{CarrierError, ShipmentRequest, ShippingProvider, TrackingStatus};
use crate::domain::{Address, FulfillmentStatus};

pub const TOPIC: &str = "commerce.fulfillment.events";

#[derive(Debug, thiserror::Error)]
pub enum ShipmentError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Carrier(#[from] CarrierError),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] commerce_messaging::MessagingError),
}

impl From<ShipmentError> for ApiError {
    fn from(error: ShipmentError) -> Self {
        match error {
            ShipmentError::NotFound(_) => ApiError::not_found(error.to_string()),
            ShipmentError::Conflict(_) => ApiError::conflict(error.to_string()),
            ShipmentError::Carrier(CarrierError::Webhook(_)) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_signature",
                error.to_string(),
            ),
            ShipmentError::Carrier(_) => ApiError::unavailable(2, error.to_string()),
            ShipmentError::Storage(_) | ShipmentError::Outbox(_) => ApiError::storage(&error),
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Fulfillment {
    pub id: Uuid,
    pub order_id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    pub courier: String,
    pub status: String,
    pub carrier: String,
    pub tracking_id: Option<String>,
    pub label_url: Option<String>,
    pub estimated_delivery: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub address: Json<Address>,
    #[serde(skip)]
    pub weight_g: i64,
    #[serde(skip)]
    pub carrier_reference: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, order_id, user_id, courier, status, carrier, tracking_id, label_url,
    estimated_delivery, address, weight_g, carrier_reference, created_at, updated_at";

/// A new shipment for a confirmed order.
pub struct NewFulfillment {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub courier: String,
    pub address: Address,
    pub weight_g: i64,
}

#[derive(Clone)]
pub struct Shipments {
    pool: PgPool,
    carrier: Arc<dyn ShippingProvider>,
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

async fn history(
    connection: &mut PgConnection,
    id: Uuid,
    status: FulfillmentStatus,
    source: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO fulfillment_status_history (fulfillment_id, status, source) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(source)
    .execute(connection)
    .await?;
    Ok(())
}

impl Shipments {
    pub fn new(pool: PgPool, carrier: Arc<dyn ShippingProvider>) -> Self {
        Self { pool, carrier }
    }

    /// Records the shipment to make, inside the caller's (inbox) transaction. Idempotent per order.
    pub async fn accept(
        &self,
        connection: &mut PgConnection,
        new: NewFulfillment,
    ) -> Result<bool, ShipmentError> {
        let id = Uuid::now_v7();
        let inserted = sqlx::query(
            "INSERT INTO fulfillments (id, order_id, user_id, courier, status, address, weight_g, carrier)
             VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $7) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(id)
        .bind(new.order_id)
        .bind(new.user_id)
        .bind(&new.courier)
        .bind(Json(&new.address))
        .bind(new.weight_g)
        .bind(self.carrier.name())
        .execute(&mut *connection)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(false);
        }
        history(
            connection,
            id,
            FulfillmentStatus::Pending,
            "order confirmed",
        )
        .await?;
        Ok(true)
    }

    /// Hands due pending shipments to the carrier; returns how many it finished.
    pub async fn ship_pending(&self) -> Result<usize, ShipmentError> {
        let due: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM fulfillments WHERE status = 'PENDING' AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT 16",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut shipped = 0;
        for id in due {
            match self.ship(id).await {
                Ok(true) => shipped += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(fulfillment = %id, %error, "creating the shipment failed; retrying later");
                    sqlx::query(
                        "UPDATE fulfillments SET attempts = attempts + 1, last_error = $2,
                                next_attempt_at = now() + make_interval(secs => least(300, 2 ^ least(attempts, 8)))
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(error.to_string())
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Ok(shipped)
    }

    async fn ship(&self, id: Uuid) -> Result<bool, ShipmentError> {
        // Claimed for a minute: other workers (other replicas) leave it alone meanwhile,
        // without a lock held across the carrier's HTTP calls.
        let Some(fulfillment) = sqlx::query_as::<_, Fulfillment>(&format!(
            "UPDATE fulfillments SET next_attempt_at = now() + interval '60 seconds'
             WHERE id = $1 AND status = 'PENDING' AND next_attempt_at <= now()
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(false);
        };
        let request = ShipmentRequest {
            reference: fulfillment.id.to_string(),
            courier: fulfillment.courier.clone(),
            to: fulfillment.address.0.clone(),
            weight_g: fulfillment.weight_g,
        };
        let reference = match &fulfillment.carrier_reference {
            Some(reference) => reference.clone(),
            None => {
                let reference = self.carrier.create(&request).await?;
                // Kept even if buying fails, so no retry creates (and buys) a second one.
                sqlx::query("UPDATE fulfillments SET carrier_reference = $2 WHERE id = $1")
                    .bind(id)
                    .bind(&reference)
                    .execute(&self.pool)
                    .await?;
                reference
            }
        };
        let shipment = self.carrier.buy(&request, &reference).await?;
        let eta = shipment
            .estimated_days
            .map(|days| Utc::now() + chrono::Duration::days(days));
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE fulfillments SET status = 'IN_PROGRESS', carrier_reference = $2, tracking_id = $3,
                    label_url = $4, estimated_delivery = $5, last_error = NULL, updated_at = now()
             WHERE id = $1 AND status = 'PENDING'",
        )
        .bind(id)
        .bind(&shipment.reference)
        .bind(&shipment.tracking_id)
        .bind(&shipment.label_url)
        .bind(eta)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        history(
            &mut tx,
            id,
            FulfillmentStatus::InProgress,
            self.carrier.name(),
        )
        .await?;
        let event = pb::FulfillmentCreated {
            fulfillment_id: id.to_string(),
            order_id: fulfillment.order_id.to_string(),
            user_id: fulfillment.user_id.to_string(),
            courier: fulfillment.courier.clone(),
            tracking_id: shipment.tracking_id.clone(),
            estimated_delivery: eta.map(timestamp),
        };
        outbox::enqueue(
            &mut tx,
            NewEvent::of(TOPIC, fulfillment.order_id.to_string(), &event),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(fulfillment = %id, tracking = %shipment.tracking_id, "shipment created");
        Ok(true)
    }

    /// Moves a fulfillment forward (SHIPPED or DELIVERED); `false` when it was there already.
    async fn advance(
        &self,
        connection: &mut PgConnection,
        fulfillment: &Fulfillment,
        to: FulfillmentStatus,
        source: &str,
    ) -> Result<bool, ShipmentError> {
        let current =
            FulfillmentStatus::parse(&fulfillment.status).unwrap_or(FulfillmentStatus::Pending);
        if !current.advances_to(to) {
            if current == FulfillmentStatus::Pending {
                return Err(ShipmentError::Conflict(format!(
                    "the shipment of order {} is not with the carrier yet",
                    fulfillment.order_id
                )));
            }
            return Ok(false);
        }
        sqlx::query("UPDATE fulfillments SET status = $2, updated_at = now() WHERE id = $1")
            .bind(fulfillment.id)
            .bind(to.as_str())
            .execute(&mut *connection)
            .await?;
        history(connection, fulfillment.id, to, source).await?;
        let tracking_id = fulfillment.tracking_id.clone().unwrap_or_default();
        let key = fulfillment.order_id.to_string();
        let event = match to {
            FulfillmentStatus::Delivered => NewEvent::of(
                TOPIC,
                key,
                &pb::FulfillmentDelivered {
                    fulfillment_id: fulfillment.id.to_string(),
                    order_id: fulfillment.order_id.to_string(),
                    user_id: fulfillment.user_id.to_string(),
                    tracking_id,
                },
            ),
            _ => NewEvent::of(
                TOPIC,
                key,
                &pb::FulfillmentShipped {
                    fulfillment_id: fulfillment.id.to_string(),
                    order_id: fulfillment.order_id.to_string(),
                    user_id: fulfillment.user_id.to_string(),
                    tracking_id,
                },
            ),
        };
        outbox::enqueue(connection, event).await?;
        Ok(true)
    }

    async fn lock_by_order(
        connection: &mut PgConnection,
        order_id: Uuid,
    ) -> Result<Option<Fulfillment>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM fulfillments WHERE order_id = $1 FOR UPDATE"
        ))
        .bind(order_id)
        .fetch_optional(connection)
        .await
    }

    /// A status report from staff.
    pub async fn report(
        &self,
        order_id: Uuid,
        to: FulfillmentStatus,
        actor: &str,
    ) -> Result<Fulfillment, ShipmentError> {
        let mut tx = self.pool.begin().await?;
        let fulfillment = Self::lock_by_order(&mut tx, order_id)
            .await?
            .ok_or_else(|| ShipmentError::NotFound(format!("fulfillment of order {order_id}")))?;
        self.advance(&mut tx, &fulfillment, to, actor).await?;
        tx.commit().await?;
        self.by_order(order_id).await
    }

    /// A carrier's tracking webhook: authenticated, applied once per event.
    pub async fn webhook(
        &self,
        carrier: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<&'static str, ShipmentError> {
        if carrier != self.carrier.name() {
            return Err(ShipmentError::NotFound(format!("carrier `{carrier}`")));
        }
        let update = self.carrier.verify_webhook(headers, body)?;
        let mut tx = self.pool.begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO carrier_events (carrier, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(carrier)
        .bind(&update.event_id)
        .execute(&mut *tx)
        .await?;
        if fresh.rows_affected() == 0 {
            return Ok("duplicate");
        }
        let to = match update.status {
            TrackingStatus::Shipped => FulfillmentStatus::Shipped,
            TrackingStatus::Delivered => FulfillmentStatus::Delivered,
            TrackingStatus::Other => {
                tx.commit().await?;
                return Ok("ignored");
            }
        };
        let fulfillment: Option<Fulfillment> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM fulfillments WHERE carrier = $1 AND tracking_id = $2 FOR UPDATE"
        ))
        .bind(carrier)
        .bind(&update.tracking_id)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match fulfillment {
            Some(fulfillment) => {
                match self
                    .advance(
                        &mut tx,
                        &fulfillment,
                        to,
                        &format!("{carrier}: {}", update.carrier_status),
                    )
                    .await?
                {
                    true => "applied",
                    false => "ignored",
                }
            }
            None => "ignored",
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub async fn by_order(&self, order_id: Uuid) -> Result<Fulfillment, ShipmentError> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM fulfillments WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| ShipmentError::NotFound(format!("fulfillment of order {order_id}")))
    }

    /// Ships pending fulfillments until `shutdown`, every `interval`.
    pub async fn run_worker(
        self,
        interval: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<(), ShipmentError> {
        loop {
            if let Err(error) = self.ship_pending().await {
                tracing::warn!(%error, "shipment worker pass failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
