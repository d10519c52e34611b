//! The order placement saga (ARCHITECTURE section 3): get the checkout session → reserve
//! stock → quote shipping → set the final prices → create the payment intent → complete
//! the checkout session (the point of no return: the session is used and its promo code
//! redeemed) → wait for payment (PENDING_PAYMENT, `OrderCreated`) → schedule reminders and
//! expiry. Every peer call is idempotent per order id, so any step can run again after a
//! crash; reserving stock and creating the intent are compensated by releasing and
//! canceling them.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commerce_messaging::outbox;
use commerce_proto::order::v1 as pb;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::SagaContext;
use crate::domain::{self, CheckoutSnapshot, LineItem, ShippingQuote, Totals};
use crate::events;
use crate::repository as repo;
use commerce_saga::{Failure, FailureKind, SagaDefinition, Step, StepError};

pub const SAGA_TYPE: &str = "order_placement";

/// What the placement saga knows, stored with it after every step.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementData {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub checkout_session_id: Uuid,
    pub placed_at: DateTime<Utc>,
    pub checkout: Option<CheckoutSnapshot>,
    #[serde(default)]
    pub reserved: Vec<LineItem>,
    pub shipping: Option<ShippingQuote>,
    pub totals: Option<Totals>,
    pub payment: Option<PaymentRef>,
    pub payment_due_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRef {
    pub payment_id: Uuid,
    pub client_secret: String,
}

impl PlacementData {
    pub fn new(order_id: Uuid, user_id: Uuid, checkout_session_id: Uuid) -> Self {
        Self {
            order_id,
            user_id,
            checkout_session_id,
            placed_at: Utc::now(),
            checkout: None,
            reserved: Vec::new(),
            shipping: None,
            totals: None,
            payment: None,
            payment_due_at: None,
        }
    }

    fn checkout(&self) -> Result<&CheckoutSnapshot, StepError> {
        self.checkout
            .as_ref()
            .ok_or_else(|| StepError::Retryable("the checkout session is not loaded yet".into()))
    }
}

pub struct PlacementSaga {
    steps: Vec<Box<dyn Step<PlacementData>>>,
    pivot: usize,
    context: Arc<SagaContext>,
}

/// The step names, in order; `services.order.saga.steps` keys are checked against them.
pub const STEP_NAMES: &[&str] = &[
    "get_checkout_session",
    "reserve_stock",
    "quote_shipping",
    "price_order",
    "create_payment_intent",
    "complete_checkout_session",
    "await_payment",
    "schedule_payment_reminders",
];

impl PlacementSaga {
    pub fn new(context: Arc<SagaContext>) -> Self {
        let steps: Vec<Box<dyn Step<PlacementData>>> = vec![
            Box::new(GetCheckoutSession(context.clone())),
            Box::new(ReserveStock(context.clone())),
            Box::new(QuoteShipping(context.clone())),
            Box::new(PriceOrder(context.clone())),
            Box::new(CreatePaymentIntent(context.clone())),
            Box::new(CompleteCheckoutSession(context.clone())),
            Box::new(AwaitPayment(context.clone())),
            Box::new(SchedulePaymentReminders(context.clone())),
        ];
        commerce_saga::assert_declared(SAGA_TYPE, STEP_NAMES, &steps);
        // After complete_checkout_session the session is used: only forward from there.
        let pivot = commerce_saga::pivot_at(&steps, "await_payment");
        Self {
            steps,
            pivot,
            context,
        }
    }
}

#[async_trait]
impl SagaDefinition for PlacementSaga {
    type Data = PlacementData;

    fn saga_type(&self) -> &'static str {
        SAGA_TYPE
    }

    fn steps(&self) -> &[Box<dyn Step<PlacementData>>] {
        &self.steps
    }

    fn pivot(&self) -> usize {
        self.pivot
    }

    async fn compensated(&self, data: &PlacementData, failure: &Failure) -> Result<(), StepError> {
        let mut tx = self.context.pool.begin().await?;
        repo::mark_failed(&mut tx, data.order_id, &failure.message).await?;
        tx.commit().await?;
        Ok(())
    }
}

struct GetCheckoutSession(Arc<SagaContext>);

#[async_trait]
impl Step<PlacementData> for GetCheckoutSession {
    fn name(&self) -> &'static str {
        "get_checkout_session"
    }

    async fn run(&self, data: &mut PlacementData) -> Result<(), StepError> {
        let session = self
            .0
            .peers
            .checkout_session(data.checkout_session_id)
            .await?;
        // Another user's session is reported exactly like a missing one.
        if session.user_id != data.user_id {
            return Err(StepError::rejected(
                FailureKind::NotFound,
                format!("checkout session {} not found", data.checkout_session_id),
            ));
        }
        if session.status == "completed" && session.order_id != Some(data.order_id) {
            return Err(StepError::rejected(
                FailureKind::Conflict,
                format!(
                    "checkout session {} was already used by another order",
                    data.checkout_session_id
                ),
            ));
        }
        if session.snapshot.items.is_empty() {
            return Err(StepError::rejected(
                FailureKind::Invalid,
                "checkout session has no items",
            ));
        }
        data.checkout = Some(session.snapshot);
        Ok(())
    }
}

struct ReserveStock(Arc<SagaContext>);

#[async_trait]
impl Step<PlacementData> for ReserveStock {
    fn name(&self) -> &'static str {
        "reserve_stock"
    }

    async fn run(&self, data: &mut PlacementData) -> Result<(), StepError> {
        let items = &data.checkout()?.items;
        data.reserved = self.0.peers.reserve(data.order_id, items).await?;
        Ok(())
    }

    fn compensable(&self) -> bool {
        true
    }

    async fn compensate(&self, data: &PlacementData) -> Result<(), StepError> {
        self.0.peers.release(data.order_id).await
    }
}

struct QuoteShipping(Arc<SagaContext>);

#[async_trait]
impl Step<PlacementData> for QuoteShipping {
    fn name(&self) -> &'static str {
        "quote_shipping"
    }

    async fn run(&self, data: &mut PlacementData) -> Result<(), StepError> {
        let checkout = data.checkout()?;
        let quote = self
            .0
            .peers
            .shipping_cost(&checkout.courier, &checkout.address.country, &data.reserved)
            .await?;
        data.shipping = Some(quote);
        Ok(())
    }
}

struct PriceOrder(Arc<SagaContext>);

#[async_trait]
impl Step<PlacementData> for PriceOrder {
    fn name(&self) -> &'static str {
        "price_order"
    }

    async fn run(&self, data: &mut PlacementData) -> Result<(), StepError> {
        let checkout = data.checkout()?;
        let shipping = data
            .shipping
            .as_ref()
            .ok_or_else(|| StepError::Retryable("no shipping quote yet".into()))?;
        let totals = domain::final_totals(&data.reserved, checkout, shipping)
            .map_err(|error| StepError::rejected(FailureKind::Conflict, error.to_string()))?;
        let mut tx = self.0.pool.begin().await?;
        repo::save_priced(&mut tx, data.order_id, checkout, &data.reserved, &totals).await?;
        tx.commit().await?;
        data.totals = Some(totals);
        Ok(())
    }
}

struct CreatePaymentIntent(Arc<SagaContext>);

#[async_trait]
impl Step<PlacementData> for CreatePaymentIntent {
    fn name(&self) -> &'static str {
        "create_payment_intent"
    }

    async fn run(&self, data: &mut PlacementData) -> Result<(), StepError> {
        let checkout = data.checkout()?;
        let totals = data
            .totals
            .ok_or_else(|| StepError::Retryable("the order is not priced yet".into()))?;
        let intent = self
            .0
            .peers
            .create_payment_intent(
                data.order_id,
                data.user_id,
                totals.total,
                &checkout.currency,
                &checkout.payment_gateway,
            )
            .await?;
        data.payment = Some(PaymentRef {
            payment_id: intent.payment_id,
            client_secret: intent.client_secret,
        });
        Ok(())
    }

    fn compensable(&self) -> bool {
        true
    }

    async fn compensate(&self, data: &PlacementData) -> Result<(), StepError> {
        self.0.peers.cancel_payment_intent(data.order_id).await
    }
}

struct CompleteCheckoutSession(Arc<SagaContext>);

#[async_trait]
impl Step<PlacementData> for CompleteCheckoutSession {
    fn name(&self) -> &'static str {
        "complete_checkout_session"
    }

    async fn run(&self, data: &mut PlacementData) -> Result<(), StepError> {
        self.0
            .peers
            .complete_checkout_session(data.checkout_session_id, data.order_id)
            .await
    }
}

struct AwaitPayment(Arc<SagaContext>);

#[async_trait]
impl Step<PlacementData> for AwaitPayment {
    fn name(&self) -> &'static str {
        "await_payment"
    }

    async fn run(&self, data: &mut PlacementData) -> Result<(), StepError> {
        let payment = data
            .payment
            .as_ref()
            .ok_or_else(|| StepError::Retryable("no payment intent yet".into()))?;
        let window = chrono::Duration::from_std(self.0.policy.current().payment_window)
            .map_err(|error| StepError::Retryable(error.into()))?;
        let due_at = data.placed_at + window;
        let mut tx = self.0.pool.begin().await?;
        if repo::mark_pending_payment(
            &mut tx,
            data.order_id,
            payment.payment_id,
            &payment.client_secret,
            due_at,
        )
        .await?
        {
            let order = repo::order(&mut tx, data.order_id)
                .await?
                .ok_or_else(|| StepError::Retryable("the order vanished".into()))?;
            let event = pb::OrderCreated {
                order: Some(events::order_to_proto(&order)),
            };
            outbox::enqueue(&mut tx, events::order_event(data.order_id, &event))
                .await
                .map_err(|error| StepError::Retryable(error.into()))?;
        }
        tx.commit().await?;
        data.payment_due_at = Some(due_at);
        Ok(())
    }
}

struct SchedulePaymentReminders(Arc<SagaContext>);

#[async_trait]
impl Step<PlacementData> for SchedulePaymentReminders {
    fn name(&self) -> &'static str {
        "schedule_payment_reminders"
    }

    async fn run(&self, data: &mut PlacementData) -> Result<(), StepError> {
        let due_at = data
            .payment_due_at
            .ok_or_else(|| StepError::Retryable("no payment deadline yet".into()))?;
        let redis = |error: commerce_redis::RedisError| StepError::Retryable(error.into());
        let times = domain::reminder_times(
            data.placed_at,
            due_at,
            &self.0.policy.current().reminder_offsets(),
        );
        // Task ids make a repeated run schedule nothing twice.
        for (index, at) in times.into_iter().enumerate() {
            let reminder = index as i32 + 1;
            self.0
                .queue
                .enqueue(events::reminder_task(data.order_id, reminder, at))
                .await
                .map_err(redis)?;
        }
        self.0
            .queue
            .enqueue(events::expiry_task(data.order_id, due_at))
            .await
            .map_err(redis)?;
        Ok(())
    }
}
