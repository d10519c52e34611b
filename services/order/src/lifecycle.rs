//! The order's life after placement, as sagas on the same engine as placement:
//!
//! - payment received (`PaymentSucceeded`): record it → refund it if the order is no
//!   longer waiting for it → deduct the stock → confirm (`OrderConfirmed`) → drop the
//!   payment reminders;
//! - expiry (the delayed task at the end of the payment window): claim the order as
//!   EXPIRED (`OrderExpired`) → cancel the intent → release the stock;
//! - cancel (the owner or staff, before shipping): claim it as CANCELED (`OrderCanceled`)
//!   → cancel the intent → refund if it was paid → give the stock back → drop reminders.
//!
//! Each saga's first step decides under the order's row lock, so whichever of payment,
//! expiry and cancel comes first wins and the others adapt: a payment that arrives for an
//! expired or canceled order is refunded. Every later step is idempotent and retried
//! until it succeeds (the point of no return is the decision itself).

use std::sync::Arc;

use async_trait::async_trait;
use commerce_messaging::outbox;
use commerce_proto::order::v1 as pb;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::SagaContext;
use crate::domain::OrderStatus;
use crate::events::order_event;
use crate::repository as repo;
use commerce_saga::{Failure, FailureKind, SagaDefinition, Step, StepError};

pub const PAYMENT_SAGA: &str = "order_payment";
pub const EXPIRY_SAGA: &str = "order_expiry";
pub const CANCEL_SAGA: &str = "order_cancel";

pub const PAYMENT_STEPS: &[&str] = &[
    "record_payment",
    "refund_unwanted_payment",
    "deduct_stock",
    "confirm_order",
    "cancel_payment_reminders",
];
pub const EXPIRY_STEPS: &[&str] = &[
    "claim_expiry",
    "cancel_expired_intent",
    "release_expired_stock",
];
pub const CANCEL_STEPS: &[&str] = &[
    "claim_cancel",
    "cancel_unpaid_intent",
    "refund_canceled_payment",
    "return_stock",
    "drop_reminders",
];

fn outbox_error(error: commerce_messaging::MessagingError) -> StepError {
    StepError::Retryable(error.into())
}

/// An order saga given as its steps (payment, expiry, cancel, delivery change), only
/// going forward from the step it names.
pub struct OrderSaga<D> {
    saga_type: &'static str,
    steps: Vec<Box<dyn Step<D>>>,
    pivot: usize,
}

impl<D> OrderSaga<D> {
    /// `declared` is the saga's published step list (`PAYMENT_STEPS` …): configuration keys
    /// and the crash tests are taken from it, so the steps must be exactly those, in order.
    pub fn new(
        saga_type: &'static str,
        declared: &[&str],
        steps: Vec<Box<dyn Step<D>>>,
        first_forward_step: &str,
    ) -> Self {
        commerce_saga::assert_declared(saga_type, declared, &steps);
        let pivot = commerce_saga::pivot_at(&steps, first_forward_step);
        Self {
            saga_type,
            steps,
            pivot,
        }
    }
}

#[async_trait]
impl<D> SagaDefinition for OrderSaga<D>
where
    D: Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Data = D;

    fn saga_type(&self) -> &'static str {
        self.saga_type
    }

    fn steps(&self) -> &[Box<dyn Step<D>>] {
        &self.steps
    }

    fn pivot(&self) -> usize {
        self.pivot
    }

    async fn compensated(&self, _data: &D, _failure: &Failure) -> Result<(), StepError> {
        // What there was to undo, the steps' compensations undid.
        Ok(())
    }
}

// ---------------------------------------------------------------- payment received

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentReceived {
    pub order_id: Uuid,
    pub payment_id: String,
    /// Decided by the first step: whether the order takes this payment.
    pub accepted: Option<bool>,
    /// The order's status when the payment came, if it did not take it.
    pub declined_status: Option<OrderStatus>,
}

impl PaymentReceived {
    pub fn new(order_id: Uuid, payment_id: String) -> Self {
        Self {
            order_id,
            payment_id,
            accepted: None,
            declined_status: None,
        }
    }

    fn accepted(&self) -> Result<bool, StepError> {
        self.accepted
            .ok_or_else(|| StepError::Retryable("the payment is not recorded yet".into()))
    }
}

pub fn payment_saga(context: Arc<SagaContext>) -> OrderSaga<PaymentReceived> {
    OrderSaga::new(
        PAYMENT_SAGA,
        PAYMENT_STEPS,
        vec![
            Box::new(RecordPayment(context.clone())),
            Box::new(RefundUnwantedPayment(context.clone())),
            Box::new(DeductStock(context.clone())),
            Box::new(ConfirmOrder(context.clone())),
            Box::new(CancelPaymentReminders(context)),
        ],
        "record_payment",
    )
}

struct RecordPayment(Arc<SagaContext>);

#[async_trait]
impl Step<PaymentReceived> for RecordPayment {
    fn name(&self) -> &'static str {
        "record_payment"
    }

    async fn run(&self, data: &mut PaymentReceived) -> Result<(), StepError> {
        let mut tx = self.0.pool.begin().await?;
        let (status, _) = repo::lock_status(&mut tx, data.order_id)
            .await?
            .ok_or_else(|| {
                StepError::Retryable(
                    format!("order {} is not known here yet", data.order_id).into(),
                )
            })?;
        let accepted = match status {
            // A delivery change is re-pricing the order: take the payment once it is in.
            OrderStatus::PendingPayment
                if matches!(
                    repo::delivery_state(&mut tx, data.order_id).await?,
                    Some((Some(_), _))
                ) =>
            {
                return Err(StepError::Retryable(
                    "the order's delivery is being changed".into(),
                ));
            }
            OrderStatus::PendingPayment => {
                repo::transition(
                    &mut tx,
                    data.order_id,
                    &[OrderStatus::PendingPayment],
                    OrderStatus::Paid,
                    &format!("payment {}", data.payment_id),
                )
                .await?;
                true
            }
            // The intent exists a moment before placement finishes: wait for it.
            OrderStatus::Placing => {
                return Err(StepError::Retryable(
                    "the order is still being placed".into(),
                ));
            }
            OrderStatus::Paid
            | OrderStatus::Confirmed
            | OrderStatus::Shipped
            | OrderStatus::Delivered => true,
            OrderStatus::Expired | OrderStatus::Canceled | OrderStatus::Failed => {
                data.declined_status = Some(status);
                false
            }
        };
        tx.commit().await?;
        data.accepted = Some(accepted);
        Ok(())
    }
}

struct RefundUnwantedPayment(Arc<SagaContext>);

#[async_trait]
impl Step<PaymentReceived> for RefundUnwantedPayment {
    fn name(&self) -> &'static str {
        "refund_unwanted_payment"
    }

    async fn run(&self, data: &mut PaymentReceived) -> Result<(), StepError> {
        if data.accepted()? {
            return Ok(());
        }
        let status = data
            .declined_status
            .map(OrderStatus::as_str)
            .unwrap_or("closed");
        tracing::warn!(order_id = %data.order_id, status, "payment for a closed order: refunding");
        self.0
            .refund_rest(
                data.order_id,
                &format!("the order was {status} when the payment arrived"),
                &format!("unwanted-payment:{}", data.order_id),
            )
            .await
    }
}

struct DeductStock(Arc<SagaContext>);

#[async_trait]
impl Step<PaymentReceived> for DeductStock {
    fn name(&self) -> &'static str {
        "deduct_stock"
    }

    async fn run(&self, data: &mut PaymentReceived) -> Result<(), StepError> {
        if !data.accepted()? {
            return Ok(());
        }
        match self.0.peers.deduct(data.order_id).await {
            Ok(()) => Ok(()),
            Err(StepError::Rejected { message, .. }) => {
                // A cancel that won the race released the reservation: nothing to deduct.
                let mut connection = self.0.pool.acquire().await?;
                match repo::lock_status(&mut connection, data.order_id).await? {
                    Some((OrderStatus::Canceled, _)) => Ok(()),
                    _ => Err(StepError::Retryable(
                        format!("deducting stock: {message}").into(),
                    )),
                }
            }
            Err(error) => Err(error),
        }
    }
}

struct ConfirmOrder(Arc<SagaContext>);

#[async_trait]
impl Step<PaymentReceived> for ConfirmOrder {
    fn name(&self) -> &'static str {
        "confirm_order"
    }

    async fn run(&self, data: &mut PaymentReceived) -> Result<(), StepError> {
        if !data.accepted()? {
            return Ok(());
        }
        let mut tx = self.0.pool.begin().await?;
        if repo::transition(
            &mut tx,
            data.order_id,
            &[OrderStatus::Paid],
            OrderStatus::Confirmed,
            "paid and stock deducted",
        )
        .await?
        {
            let order = repo::order(&mut tx, data.order_id)
                .await?
                .ok_or_else(|| StepError::Retryable("the order vanished".into()))?;
            let message = pb::OrderConfirmed {
                order: Some(crate::events::order_to_proto(&order)),
            };
            outbox::enqueue(&mut tx, order_event(data.order_id, &message))
                .await
                .map_err(outbox_error)?;
        }
        tx.commit().await?;
        Ok(())
    }
}

struct CancelPaymentReminders(Arc<SagaContext>);

#[async_trait]
impl Step<PaymentReceived> for CancelPaymentReminders {
    fn name(&self) -> &'static str {
        "cancel_payment_reminders"
    }

    async fn run(&self, data: &mut PaymentReceived) -> Result<(), StepError> {
        if !data.accepted()? {
            return Ok(());
        }
        self.0.drop_tasks(data.order_id).await
    }
}

// ---------------------------------------------------------------- expiry

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expiry {
    pub order_id: Uuid,
    /// Decided by the first step: whether the order was still unpaid and now expired.
    pub expired: Option<bool>,
}

pub fn expiry_saga(context: Arc<SagaContext>) -> OrderSaga<Expiry> {
    OrderSaga::new(
        EXPIRY_SAGA,
        EXPIRY_STEPS,
        vec![
            Box::new(ClaimExpiry(context.clone())),
            Box::new(CancelExpiredIntent(context.clone())),
            Box::new(ReleaseExpiredStock(context)),
        ],
        "claim_expiry",
    )
}

fn decided(flag: Option<bool>) -> Result<bool, StepError> {
    flag.ok_or_else(|| StepError::Retryable("the first step has not decided yet".into()))
}

struct ClaimExpiry(Arc<SagaContext>);

#[async_trait]
impl Step<Expiry> for ClaimExpiry {
    fn name(&self) -> &'static str {
        "claim_expiry"
    }

    async fn run(&self, data: &mut Expiry) -> Result<(), StepError> {
        if data.expired.is_some() {
            return Ok(());
        }
        let mut tx = self.0.pool.begin().await?;
        let Some((status, owner)) = repo::lock_status(&mut tx, data.order_id).await? else {
            data.expired = Some(false);
            return Ok(());
        };
        // Only this saga expires orders: EXPIRED here means this step ran before a crash.
        if status == OrderStatus::Expired {
            data.expired = Some(true);
            return Ok(());
        }
        let expired = repo::transition(
            &mut tx,
            data.order_id,
            &[OrderStatus::PendingPayment],
            OrderStatus::Expired,
            "payment window closed",
        )
        .await?;
        if expired {
            let message = pb::OrderExpired {
                order_id: data.order_id.to_string(),
                user_id: owner.to_string(),
            };
            outbox::enqueue(&mut tx, order_event(data.order_id, &message))
                .await
                .map_err(outbox_error)?;
        }
        tx.commit().await?;
        data.expired = Some(expired);
        if expired {
            tracing::info!(order_id = %data.order_id, "unpaid order expired");
        }
        Ok(())
    }
}

struct CancelExpiredIntent(Arc<SagaContext>);

#[async_trait]
impl Step<Expiry> for CancelExpiredIntent {
    fn name(&self) -> &'static str {
        "cancel_expired_intent"
    }

    async fn run(&self, data: &mut Expiry) -> Result<(), StepError> {
        if !decided(data.expired)? {
            return Ok(());
        }
        match self.0.peers.cancel_payment_intent(data.order_id).await {
            // Paid at the last moment: the payment saga sees EXPIRED and refunds it.
            Err(StepError::Rejected {
                kind: FailureKind::Conflict,
                ..
            }) => Ok(()),
            other => other,
        }
    }
}

struct ReleaseExpiredStock(Arc<SagaContext>);

#[async_trait]
impl Step<Expiry> for ReleaseExpiredStock {
    fn name(&self) -> &'static str {
        "release_expired_stock"
    }

    async fn run(&self, data: &mut Expiry) -> Result<(), StepError> {
        if !decided(data.expired)? {
            return Ok(());
        }
        self.0.peers.release(data.order_id).await
    }
}

// ---------------------------------------------------------------- cancel

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cancellation {
    pub order_id: Uuid,
    pub reason: String,
    /// The status the order was canceled from (set by the first step).
    pub previous: Option<OrderStatus>,
    /// Whether the payment had been taken (set when canceling the intent).
    pub paid: Option<bool>,
}

pub fn cancel_saga(context: Arc<SagaContext>) -> OrderSaga<Cancellation> {
    OrderSaga::new(
        CANCEL_SAGA,
        CANCEL_STEPS,
        vec![
            Box::new(ClaimCancel(context.clone())),
            Box::new(CancelUnpaidIntent(context.clone())),
            Box::new(RefundCanceledPayment(context.clone())),
            Box::new(ReturnStock(context.clone())),
            Box::new(DropReminders(context)),
        ],
        "cancel_unpaid_intent",
    )
}

/// Statuses an order can be canceled from: before it ships.
pub const CANCELABLE: &[OrderStatus] = &[
    OrderStatus::PendingPayment,
    OrderStatus::Paid,
    OrderStatus::Confirmed,
];

struct ClaimCancel(Arc<SagaContext>);

#[async_trait]
impl Step<Cancellation> for ClaimCancel {
    fn name(&self) -> &'static str {
        "claim_cancel"
    }

    async fn run(&self, data: &mut Cancellation) -> Result<(), StepError> {
        if data.previous.is_some() {
            return Ok(());
        }
        let mut tx = self.0.pool.begin().await?;
        let (status, owner) = repo::lock_status(&mut tx, data.order_id)
            .await?
            .ok_or_else(|| {
                StepError::rejected(FailureKind::NotFound, format!("order {}", data.order_id))
            })?;
        // Only this saga cancels orders: CANCELED here means this step ran before a crash.
        if status == OrderStatus::Canceled {
            data.previous = Some(
                repo::status_before(&mut tx, data.order_id, OrderStatus::Canceled)
                    .await?
                    .unwrap_or(OrderStatus::Canceled),
            );
            return Ok(());
        }
        if !CANCELABLE.contains(&status) {
            return Err(StepError::rejected(
                FailureKind::Conflict,
                format!(
                    "order {} is {}; only orders that have not shipped can be canceled",
                    data.order_id,
                    status.as_str()
                ),
            ));
        }
        repo::transition(
            &mut tx,
            data.order_id,
            CANCELABLE,
            OrderStatus::Canceled,
            &data.reason,
        )
        .await?;
        let message = pb::OrderCanceled {
            order_id: data.order_id.to_string(),
            user_id: owner.to_string(),
            reason: data.reason.clone(),
            previous_status: status.as_str().to_owned(),
        };
        outbox::enqueue(&mut tx, order_event(data.order_id, &message))
            .await
            .map_err(outbox_error)?;
        tx.commit().await?;
        data.previous = Some(status);
        Ok(())
    }
}

struct CancelUnpaidIntent(Arc<SagaContext>);

#[async_trait]
impl Step<Cancellation> for CancelUnpaidIntent {
    fn name(&self) -> &'static str {
        "cancel_unpaid_intent"
    }

    async fn run(&self, data: &mut Cancellation) -> Result<(), StepError> {
        match self.0.peers.cancel_payment_intent(data.order_id).await {
            Ok(()) => data.paid = Some(false),
            // Paid (or refunded already): it is refunded next.
            Err(StepError::Rejected {
                kind: FailureKind::Conflict,
                ..
            }) => data.paid = Some(true),
            Err(error) => return Err(error),
        }
        Ok(())
    }
}

struct RefundCanceledPayment(Arc<SagaContext>);

#[async_trait]
impl Step<Cancellation> for RefundCanceledPayment {
    fn name(&self) -> &'static str {
        "refund_canceled_payment"
    }

    async fn run(&self, data: &mut Cancellation) -> Result<(), StepError> {
        if !decided(data.paid)? {
            return Ok(());
        }
        self.0
            .refund_rest(
                data.order_id,
                &data.reason,
                &format!("cancel:{}", data.order_id),
            )
            .await
    }
}

struct ReturnStock(Arc<SagaContext>);

#[async_trait]
impl Step<Cancellation> for ReturnStock {
    fn name(&self) -> &'static str {
        "return_stock"
    }

    async fn run(&self, data: &mut Cancellation) -> Result<(), StepError> {
        // Reserved stock is released; stock already deducted (a confirmed order, or a
        // payment saga that got there first) is put back.
        match self.0.peers.release(data.order_id).await {
            Err(StepError::Rejected {
                kind: FailureKind::Conflict,
                ..
            }) => self.0.peers.restock(data.order_id).await,
            other => other,
        }
    }
}

struct DropReminders(Arc<SagaContext>);

#[async_trait]
impl Step<Cancellation> for DropReminders {
    fn name(&self) -> &'static str {
        "drop_reminders"
    }

    async fn run(&self, data: &mut Cancellation) -> Result<(), StepError> {
        self.0.drop_tasks(data.order_id).await
    }
}
