//! Placing orders (idempotently, through the placement saga), reading them, and what the
//! delayed tasks do: payment reminders and expiry.

use std::sync::Arc;
use std::time::Duration;

use commerce_redis::RedisClient;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::delivery::DeliveryChange;
use crate::domain::{Address, HistoryEntry, Order, OrderRefund, OrderStatus};
use crate::engine::{PlacementEnd, PlacementEngine};
use crate::error::OrderError;
use crate::lifecycle::{Cancellation, Expiry, OrderSaga, PaymentReceived};
use crate::peers::Peers;
use crate::placement::PlacementData;
use crate::repository as repo;
use commerce_saga::postgres::{Orchestrator, Outcome};
use commerce_saga::{Failure, FailureKind, StepError};

/// What `POST /v1/orders` answers.
#[derive(Debug)]
pub enum PlaceOrderAnswer {
    /// The answer an earlier request with the same key got.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    PlacedOrder(Box<PlacedOrder>),
    /// The saga compensated: nothing of the order is left but its FAILED record.
    Failed {
        order_id: Uuid,
        failure: Failure,
    },
}

#[derive(Debug, Clone)]
pub struct PlacedOrder {
    pub order: Order,
    pub client_secret: String,
}

/// Who is asking: a customer sees their own orders, staff see all.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub user_id: Uuid,
    pub staff: bool,
}

/// The placement engine the shop chose, and the orchestrators of the sagas that work on
/// the order rows under either engine (sharing the saga tables).
#[derive(Clone)]
pub struct Engines {
    pub placement: PlacementEngine,
    pub payment: Arc<Orchestrator<OrderSaga<PaymentReceived>>>,
    pub expiry: Arc<Orchestrator<OrderSaga<Expiry>>>,
    pub cancel: Arc<Orchestrator<OrderSaga<Cancellation>>>,
    pub delivery: Arc<Orchestrator<OrderSaga<DeliveryChange>>>,
}

impl Engines {
    /// The live saga policy; every orchestrator (and the workflows) reads the same one.
    pub fn policy(&self) -> std::sync::Arc<commerce_saga::SagaPolicy> {
        self.payment.policy()
    }
}

#[derive(Clone)]
pub struct OrderService {
    pool: PgPool,
    redis: RedisClient,
    redis_prefix: String,
    engines: Engines,
    /// Staff refunds go straight to the payment service (no saga: one call, made safe to
    /// retry by its idempotency key).
    peers: Peers,
    /// How long a request waits for a saga another process is driving, or for a
    /// concurrent request with the same key.
    wait: Duration,
}

const MAX_KEY_LENGTH: usize = 255;

/// An `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn check_key(key: &str) -> Result<(), OrderError> {
    if key.is_empty()
        || key.len() > MAX_KEY_LENGTH
        || !key.bytes().all(|byte| byte.is_ascii_graphic())
    {
        return Err(OrderError::Invalid {
            field: "Idempotency-Key",
            message: format!("must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"),
        });
    }
    Ok(())
}

impl OrderService {
    pub fn new(
        pool: PgPool,
        redis: RedisClient,
        redis_prefix: String,
        engines: Engines,
        peers: Peers,
        wait: Duration,
    ) -> Self {
        Self {
            pool,
            redis,
            redis_prefix,
            engines,
            peers,
            wait,
        }
    }

    /// Places an order from a checkout session. The same user and key always get the
    /// same answer; a concurrent request with the key waits for the first.
    pub async fn place(
        &self,
        user_id: Uuid,
        key: &str,
        checkout_session_id: Uuid,
    ) -> Result<PlaceOrderAnswer, OrderError> {
        check_key(key)?;
        let lock_key =
            commerce_redis::hash_tagged(&self.redis_prefix, &format!("{user_id}:{key}"), "placing");
        let lease = self.engines.policy().lease;
        let Some(lock) = self.redis.lock(&lock_key, lease, self.wait).await? else {
            return Err(OrderError::Busy(
                "a request with this Idempotency-Key is still being processed".to_owned(),
            ));
        };
        let answer = self.place_locked(user_id, key, checkout_session_id).await;
        if let Err(error) = lock.release().await {
            tracing::warn!(%error, "releasing the idempotency lock failed; it expires by itself");
        }
        answer
    }

    async fn place_locked(
        &self,
        user_id: Uuid,
        key: &str,
        checkout_session_id: Uuid,
    ) -> Result<PlaceOrderAnswer, OrderError> {
        if let Some(record) = repo::idempotency_record(&self.pool, user_id, key).await? {
            if record.checkout_session_id != checkout_session_id {
                return Err(OrderError::Invalid {
                    field: "Idempotency-Key",
                    message: "was already used for another checkout session".to_owned(),
                });
            }
            if let Some((status, body)) = record.response {
                return Ok(PlaceOrderAnswer::Replay { status, body });
            }
            // The first request did not live to answer (its process died): the saga is
            // resumed, here or by the recovery loop, and its outcome is the answer.
            self.engines
                .placement
                .resume(&PlacementData::new(
                    record.order_id,
                    user_id,
                    checkout_session_id,
                ))
                .await?;
            return self.outcome(record.order_id).await;
        }
        if let Some(existing) =
            repo::live_order_for_session(&self.pool, checkout_session_id).await?
        {
            return Err(OrderError::Conflict(format!(
                "checkout session {checkout_session_id} is already used by order {existing}"
            )));
        }
        let order_id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        if !repo::insert_order(&mut tx, order_id, user_id, checkout_session_id).await? {
            return Err(OrderError::Conflict(format!(
                "checkout session {checkout_session_id} is already used by another order"
            )));
        }
        repo::insert_idempotency_key(&mut tx, user_id, key, checkout_session_id, order_id).await?;
        let placement = PlacementData::new(order_id, user_id, checkout_session_id);
        self.engines.placement.start(tx, &placement).await?;
        tracing::info!(%order_id, %checkout_session_id, "placing order");
        self.outcome(order_id).await
    }

    /// Waits for the order's placement to end (driving it, on the orchestrator).
    async fn outcome(&self, order_id: Uuid) -> Result<PlaceOrderAnswer, OrderError> {
        match self.engines.placement.wait(order_id, self.wait).await? {
            Some(PlacementEnd::Completed(placement)) => self.placed(order_id, *placement).await,
            Some(PlacementEnd::Compensated(failure)) => {
                Ok(PlaceOrderAnswer::Failed { order_id, failure })
            }
            None => Err(OrderError::Busy(format!(
                "order {order_id} is still being placed; retry with the same Idempotency-Key"
            ))),
        }
    }

    /// The answer for an order whose placement completed.
    async fn placed(
        &self,
        order_id: Uuid,
        placement: PlacementData,
    ) -> Result<PlaceOrderAnswer, OrderError> {
        let order = repo::order(&mut *self.pool.acquire().await?, order_id)
            .await?
            .ok_or_else(|| OrderError::NotFound(format!("order {order_id}")))?;
        let client_secret = placement
            .payment
            .map(|payment| payment.client_secret)
            .unwrap_or_default();
        Ok(PlaceOrderAnswer::PlacedOrder(Box::new(PlacedOrder {
            order,
            client_secret,
        })))
    }

    /// Keeps the answer for replays of the same key.
    pub async fn store_answer(
        &self,
        user_id: Uuid,
        key: &str,
        status: u16,
        body: &serde_json::Value,
    ) -> Result<(), OrderError> {
        repo::store_response(&self.pool, user_id, key, status, body).await?;
        Ok(())
    }

    pub async fn order(&self, viewer: Viewer, id: Uuid) -> Result<Order, OrderError> {
        match repo::order(&mut *self.pool.acquire().await?, id).await? {
            // Somebody else's order is reported exactly like a missing one.
            Some(order) if viewer.staff || order.user_id == viewer.user_id => Ok(order),
            _ => Err(OrderError::NotFound(format!("order {id}"))),
        }
    }

    /// The order's history, for whoever may see the order.
    pub async fn history(
        &self,
        viewer: Viewer,
        id: Uuid,
    ) -> Result<(Order, Vec<HistoryEntry>), OrderError> {
        let order = self.order(viewer, id).await?;
        let history = repo::history(&self.pool, id).await?;
        Ok((order, history))
    }

    /// An admin refunds `amount` of a paid order (everything left when `None`). The
    /// payment service refuses more than was taken less earlier refunds; the same `key` on
    /// the same order answers with the first refund. A refund that succeeded at once is
    /// on the order when this returns; one the provider settles later arrives as
    /// `PaymentRefunded`, which records it the same way (once per refund id).
    #[tracing::instrument(skip_all, fields(order = %order_id))]
    pub async fn refund(
        &self,
        order_id: Uuid,
        amount: Option<Decimal>,
        reason: &str,
        key: &str,
    ) -> Result<OrderRefund, OrderError> {
        check_key(key)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(OrderError::Invalid {
                field: "reason",
                message: "must be 1 to 500 characters".to_owned(),
            });
        }
        if let Some(amount) = amount
            && (amount <= Decimal::ZERO || amount.normalize().scale() > 2)
        {
            return Err(OrderError::Invalid {
                field: "amount",
                message: "must be a positive amount with at most two decimals".to_owned(),
            });
        }
        let order = repo::order(&mut *self.pool.acquire().await?, order_id)
            .await?
            .ok_or_else(|| OrderError::NotFound(format!("order {order_id}")))?;
        let currency = match (&order.currency, order.status) {
            (Some(currency), status) if status.paid() => currency.clone(),
            (_, status) => {
                return Err(OrderError::Conflict(format!(
                    "order {order_id} is {}; only a paid order is refunded",
                    status.as_str()
                )));
            }
        };
        // Keys are the payment service's across all orders: scope this one to the order.
        let payment_key = format!("staff-refund:{order_id}:{key}");
        let refund = self
            .peers
            .refund(
                order_id,
                amount.map(|amount| (amount, currency.as_str())),
                reason,
                &payment_key,
            )
            .await
            .map_err(|error| match error {
                // The amount is the only input of ours the payment service judges.
                StepError::Rejected {
                    kind: FailureKind::Invalid,
                    message,
                } => OrderError::Invalid {
                    field: "amount",
                    message: message
                        .strip_prefix("amount: ")
                        .unwrap_or(&message)
                        .to_owned(),
                },
                other => other.into(),
            })?;
        if refund.status == "succeeded" {
            let mut tx = self.pool.begin().await?;
            repo::record_refund(
                &mut tx,
                order_id,
                refund.refund_id,
                refund.amount,
                &refund.currency,
                reason,
            )
            .await?;
            tx.commit().await?;
        }
        tracing::info!(refund = %refund.refund_id, amount = %refund.amount, status = %refund.status, "staff refund");
        Ok(refund)
    }

    /// For other services: any order.
    pub async fn order_by_id(&self, id: Uuid) -> Result<Order, OrderError> {
        repo::order(&mut *self.pool.acquire().await?, id)
            .await?
            .ok_or_else(|| OrderError::NotFound(format!("order {id}")))
    }

    /// Newest first. Staff may ask for one customer's (`user`) or everybody's orders.
    pub async fn orders(
        &self,
        viewer: Viewer,
        user: Option<Uuid>,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Order>, OrderError> {
        if !(1..=100).contains(&limit) {
            return Err(OrderError::Invalid {
                field: "limit",
                message: "must be between 1 and 100".to_owned(),
            });
        }
        let scope = match (viewer.staff, user) {
            (true, user) => user,
            (false, Some(user)) if user != viewer.user_id => {
                return Err(OrderError::Invalid {
                    field: "userId",
                    message: "only staff may list another customer's orders".to_owned(),
                });
            }
            (false, _) => Some(viewer.user_id),
        };
        Ok(repo::orders(&self.pool, scope, before, limit).await?)
    }

    /// Payment reminder number `reminder`: published once, and only while the order
    /// still waits for payment. `true` when it was published now.
    pub async fn remind(&self, order_id: Uuid, reminder: i32) -> Result<bool, OrderError> {
        crate::events::publish_reminder(&self.pool, order_id, reminder).await
    }

    /// The payment window closed: the expiry saga expires the order if it is still unpaid
    /// (stock released, intent canceled, `OrderExpired`). `true` when it expired it.
    pub async fn expire(&self, order_id: Uuid) -> Result<bool, OrderError> {
        let mut tx = self.pool.begin().await?;
        let saga = self
            .engines
            .expiry
            .create_or_get(
                &mut tx,
                order_id,
                &Expiry {
                    order_id,
                    expired: None,
                },
            )
            .await?;
        tx.commit().await?;
        match self.engines.expiry.drive(saga).await? {
            Outcome::Completed(expiry) => Ok(expiry.expired.unwrap_or(false)),
            Outcome::Compensated(_, failure) => Err(OrderError::Conflict(failure.message)),
            Outcome::InProgress => Err(OrderError::Busy(format!(
                "the expiry of order {order_id} is still running"
            ))),
        }
    }

    /// Cancels an order that has not shipped: the cancel saga returns its stock, cancels
    /// or refunds its payment and publishes `OrderCanceled`.
    pub async fn cancel(
        &self,
        viewer: Viewer,
        order_id: Uuid,
        reason: &str,
    ) -> Result<Order, OrderError> {
        self.order(viewer, order_id).await?;
        let mut tx = self.pool.begin().await?;
        let saga = self
            .engines
            .cancel
            .create_or_get(
                &mut tx,
                order_id,
                &Cancellation {
                    order_id,
                    reason: reason.to_owned(),
                    previous: None,
                    paid: None,
                },
            )
            .await?;
        tx.commit().await?;
        match self
            .finish(&self.engines.cancel, saga, "being canceled", order_id)
            .await?
        {
            Outcome::Compensated(_, failure) => {
                // A refusal is not kept: an order refused while still being placed can be
                // canceled once it waits for payment.
                self.engines.cancel.forget(saga).await?;
                Err(OrderError::refusal(failure))
            }
            _ => {
                self.engines.placement.canceled(order_id).await?;
                self.order(viewer, order_id).await
            }
        }
    }

    /// Changes an unpaid order's shipping address and/or courier: shipping is quoted
    /// again and the payment re-priced. Asking for what the order already has changes
    /// nothing (so a retried request is harmless).
    pub async fn change_delivery(
        &self,
        viewer: Viewer,
        order_id: Uuid,
        address: Option<Address>,
        courier: Option<String>,
    ) -> Result<Order, OrderError> {
        if address.is_none() && courier.is_none() {
            return Err(OrderError::Invalid {
                field: "address",
                message: "give a new address, a courier, or both".to_owned(),
            });
        }
        let address = address
            .map(|address| address.normalized())
            .transpose()
            .map_err(|(field, message)| OrderError::Invalid { field, message })?;
        let courier = courier.map(|courier| courier.trim().to_lowercase());
        if courier.as_deref() == Some("") {
            return Err(OrderError::Invalid {
                field: "courier",
                message: "must not be empty".to_owned(),
            });
        }
        let mut order = self.order(viewer, order_id).await?;
        // A change still running (e.g. cut off by a restart) goes first.
        let running = {
            let mut connection = self.pool.acquire().await?;
            repo::delivery_state(&mut connection, order_id).await?
        };
        if let Some((Some(running), _)) = running {
            self.finish(
                &self.engines.delivery,
                running,
                "changing its delivery",
                order_id,
            )
            .await?;
            order = self.order(viewer, order_id).await?;
        }
        let address = address.or_else(|| order.shipping_address.clone());
        let courier = courier.or_else(|| order.courier.clone());
        let (Some(address), Some(courier)) = (address, courier) else {
            return Err(OrderError::Conflict(format!(
                "order {order_id} has no delivery to change yet"
            )));
        };
        if order.shipping_address.as_ref() == Some(&address)
            && order.courier.as_deref() == Some(courier.as_str())
        {
            return Ok(order);
        }
        if order.status != OrderStatus::PendingPayment {
            return Err(OrderError::Conflict(format!(
                "order {order_id} is {}; the delivery can only change while it waits for payment",
                order.status.as_str()
            )));
        }
        let change = DeliveryChange::new(order_id, address, courier);
        let mut tx = self.pool.begin().await?;
        self.engines
            .delivery
            .create(&mut tx, change.change_id, change.change_id, &change)
            .await?;
        tx.commit().await?;
        match self
            .finish(
                &self.engines.delivery,
                change.change_id,
                "changing its delivery",
                order_id,
            )
            .await?
        {
            Outcome::Completed(done) if done.applied == Some(false) => {
                let current = self.order(viewer, order_id).await?;
                Err(OrderError::Conflict(format!(
                    "order {order_id} became {} while its delivery was changing",
                    current.status.as_str()
                )))
            }
            Outcome::Compensated(_, failure) => Err(OrderError::refusal(failure)),
            _ => self.order(viewer, order_id).await,
        }
    }

    /// Drives a saga until it ends, waiting for another process that holds it; `Busy`
    /// when it is still running after the request's wait.
    async fn finish<S: commerce_saga::SagaDefinition>(
        &self,
        engine: &Orchestrator<S>,
        saga: Uuid,
        doing: &str,
        order_id: Uuid,
    ) -> Result<Outcome<S::Data>, OrderError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            match engine.drive(saga).await? {
                Outcome::InProgress if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Outcome::InProgress => {
                    return Err(OrderError::Busy(format!(
                        "order {order_id} is still {doing}"
                    )));
                }
                ended => return Ok(ended),
            }
        }
    }

    /// A payment arrived for the order (`PlacementEngine::paid`): the id of a payment
    /// saga to drive once the caller's transaction commits, if there is one.
    pub async fn payment_received(
        &self,
        connection: &mut sqlx::PgConnection,
        order_id: Uuid,
        payment_id: String,
    ) -> Result<Option<Uuid>, OrderError> {
        self.engines
            .placement
            .paid(&self.engines.payment, connection, order_id, payment_id)
            .await
    }

    pub fn engines(&self) -> &Engines {
        &self.engines
    }
}
