//! The engine that places orders and carries them to payment, chosen once at start-up from
//! `services.order.saga.engine`: the built-in PostgreSQL orchestrator, or order workflows
//! on Temporal (`workflow.rs`). Cancel, delivery changes and the payment saga of an order
//! the workflow no longer waits for run on the orchestrator under either engine: they work
//! on the order rows.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::error::OrderError;
use crate::lifecycle::{OrderSaga, PaymentReceived};
use crate::placement::{PlacementData, PlacementSaga};
use crate::workflow_client::TemporalOrders;
use commerce_saga::Failure;
use commerce_saga::postgres::{Orchestrator, Outcome};
use commerce_saga::temporal::SagaEnd;

#[derive(Clone)]
pub enum PlacementEngine {
    /// The placement saga's rows commit with the order; whoever asks drives it.
    Postgres(Arc<Orchestrator<PlacementSaga>>),
    /// One workflow per order: placement, the wait for payment, reminders and expiry.
    Temporal(TemporalOrders),
}

/// How an order's placement ended.
pub enum PlacementEnd {
    Completed(Box<PlacementData>),
    /// Compensated: nothing of the order is left but its FAILED record.
    Compensated(Failure),
}

impl PlacementEngine {
    /// Starts placing the order `tx` has just stored, and commits `tx`.
    pub async fn start(
        &self,
        mut tx: Transaction<'_, Postgres>,
        placement: &PlacementData,
    ) -> Result<(), OrderError> {
        match self {
            Self::Postgres(engine) => {
                engine
                    .create(&mut tx, Uuid::now_v7(), placement.order_id, placement)
                    .await?;
                tx.commit().await?;
            }
            Self::Temporal(temporal) => {
                // The workflow may only start once the order it places is stored.
                tx.commit().await?;
                temporal.start(placement).await?;
            }
        }
        Ok(())
    }

    /// Takes up an order whose first request died before answering. The orchestrator's
    /// saga is stored already (`poll` drives it); a workflow is started if it never was
    /// (its id is the order's, so this never starts a second one).
    pub async fn resume(&self, placement: &PlacementData) -> Result<(), OrderError> {
        match self {
            Self::Postgres(_) => Ok(()),
            Self::Temporal(temporal) => temporal.start(placement).await,
        }
    }

    /// How the order's placement ended, waiting up to `wait` for it; `None` while it still
    /// runs. The orchestrator is driven as far as it goes now (and asked again while
    /// another process holds it); a workflow answers once through its `placed` update.
    pub async fn wait(
        &self,
        order_id: Uuid,
        wait: Duration,
    ) -> Result<Option<PlacementEnd>, OrderError> {
        match self {
            Self::Postgres(engine) => {
                let deadline = tokio::time::Instant::now() + wait;
                let saga_id = engine.saga_of(order_id).await?;
                loop {
                    match engine.drive(saga_id).await? {
                        Outcome::Completed(placement) => {
                            return Ok(Some(PlacementEnd::Completed(Box::new(placement))));
                        }
                        Outcome::Compensated(_, failure) => {
                            return Ok(Some(PlacementEnd::Compensated(failure)));
                        }
                        Outcome::InProgress if tokio::time::Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Outcome::InProgress => return Ok(None),
                    }
                }
            }
            Self::Temporal(temporal) => {
                Ok(match temporal.wait_for_placement(order_id, wait).await? {
                    Some(SagaEnd::Completed { data }) => Some(PlacementEnd::Completed(Box::new(
                        serde_json::from_value(data)?,
                    ))),
                    Some(SagaEnd::Compensated { failure, .. }) => {
                        Some(PlacementEnd::Compensated(failure))
                    }
                    None => None,
                })
            }
        }
    }

    /// A payment arrived for the order. The orchestrator's payment saga is stored inside
    /// the caller's (inbox) transaction and its id returned, to drive once that commits;
    /// on Temporal the order's workflow is signalled (a repeated signal counts once) and
    /// there is nothing to drive.
    pub async fn paid(
        &self,
        payment_saga: &Orchestrator<OrderSaga<PaymentReceived>>,
        connection: &mut PgConnection,
        order_id: Uuid,
        payment_id: String,
    ) -> Result<Option<Uuid>, OrderError> {
        match self {
            Self::Postgres(_) => Ok(Some(
                payment_saga
                    .create_or_get(
                        connection,
                        order_id,
                        &PaymentReceived::new(order_id, payment_id),
                    )
                    .await?,
            )),
            Self::Temporal(temporal) => {
                temporal.paid(order_id, payment_id).await?;
                Ok(None)
            }
        }
    }

    /// The order was canceled (on the orchestrator): a workflow stops waiting for payment.
    pub async fn canceled(&self, order_id: Uuid) -> Result<(), OrderError> {
        match self {
            Self::Postgres(_) => Ok(()),
            Self::Temporal(temporal) => temporal.canceled(order_id).await,
        }
    }
}
