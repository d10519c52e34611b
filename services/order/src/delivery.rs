//! Changing an unpaid order's address or courier, as a saga on the same engine:
//! claim the change under the order's row lock (only while PENDING_PAYMENT, one change at
//! a time) → quote shipping for the new destination and courier → re-price the payment
//! (the old intent cancelled, a new one for the new total) → apply it to the order.
//!
//! A refusal before the payment is re-priced (the order was paid meanwhile, the courier
//! does not serve the country) releases the claim and changes nothing. Once re-priced the
//! change is applied whatever happens; an order that expired or was canceled in between
//! keeps its status and its saga cancelled the new intent. While a change is claimed, the
//! payment saga waits, so an order is never confirmed with the old delivery after it was
//! paid at the new price.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::SagaContext;
use crate::domain::{self, Address, LineItem, OrderStatus, Totals};
use crate::lifecycle::OrderSaga;
use crate::repository as repo;
use commerce_saga::{FailureKind, Step, StepError};

pub const DELIVERY_SAGA: &str = "order_delivery_change";
pub const DELIVERY_STEPS: &[&str] = &[
    "claim_delivery_change",
    "quote_delivery",
    "reprice_payment",
    "apply_delivery_change",
];

/// One change. The saga is stored under `change_id` (an order may change several times).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryChange {
    pub change_id: Uuid,
    pub order_id: Uuid,
    pub address: Address,
    pub courier: String,
    /// Set by the claim: the revision this change becomes, and what it starts from.
    pub revision: Option<i32>,
    #[serde(default)]
    pub items: Vec<LineItem>,
    pub currency: Option<String>,
    pub previous: Option<Totals>,
    /// Set by the quote.
    pub totals: Option<Totals>,
    /// Set by the re-pricing; `None` while it has not run or when the total is unchanged.
    pub client_secret: Option<String>,
    /// Set by the last step: false when the order had left PENDING_PAYMENT meanwhile.
    pub applied: Option<bool>,
}

impl DeliveryChange {
    pub fn new(order_id: Uuid, address: Address, courier: String) -> Self {
        Self {
            change_id: Uuid::now_v7(),
            order_id,
            address,
            courier,
            revision: None,
            items: Vec::new(),
            currency: None,
            previous: None,
            totals: None,
            client_secret: None,
            applied: None,
        }
    }

    fn claimed(&self) -> Result<(i32, &str, Totals), StepError> {
        match (self.revision, self.currency.as_deref(), self.previous) {
            (Some(revision), Some(currency), Some(previous)) => Ok((revision, currency, previous)),
            _ => Err(StepError::Retryable("the change is not claimed yet".into())),
        }
    }
}

pub fn delivery_saga(context: Arc<SagaContext>) -> OrderSaga<DeliveryChange> {
    OrderSaga::new(
        DELIVERY_SAGA,
        DELIVERY_STEPS,
        vec![
            Box::new(ClaimChange(context.clone())),
            Box::new(QuoteDelivery(context.clone())),
            Box::new(RepricePayment(context.clone())),
            Box::new(ApplyChange(context)),
        ],
        // From applying on, the change only goes forward: the payment carries the new price.
        "apply_delivery_change",
    )
}

struct ClaimChange(Arc<SagaContext>);

#[async_trait]
impl Step<DeliveryChange> for ClaimChange {
    fn name(&self) -> &'static str {
        "claim_delivery_change"
    }

    async fn run(&self, data: &mut DeliveryChange) -> Result<(), StepError> {
        let mut tx = self.0.pool.begin().await?;
        let (status, _) = repo::lock_status(&mut tx, data.order_id)
            .await?
            .ok_or_else(|| {
                StepError::rejected(FailureKind::NotFound, format!("order {}", data.order_id))
            })?;
        let (in_progress, revision) = repo::delivery_state(&mut tx, data.order_id)
            .await?
            .unwrap_or((None, 0));
        match in_progress {
            // Claimed before a crash: carry on.
            Some(change) if change == data.change_id => {}
            Some(_) => {
                return Err(StepError::rejected(
                    FailureKind::Conflict,
                    format!(
                        "order {} is already changing its delivery; try again",
                        data.order_id
                    ),
                ));
            }
            None if status != OrderStatus::PendingPayment => {
                return Err(StepError::rejected(
                    FailureKind::Conflict,
                    format!(
                        "order {} is {}; the delivery can only change while it waits for payment",
                        data.order_id,
                        status.as_str()
                    ),
                ));
            }
            None => repo::set_delivery_change(&mut tx, data.order_id, Some(data.change_id)).await?,
        }
        let order = repo::order(&mut tx, data.order_id)
            .await?
            .ok_or_else(|| StepError::Retryable("the order vanished".into()))?;
        tx.commit().await?;
        let (Some(currency), Some(totals)) = (order.currency, order.totals) else {
            return Err(StepError::Retryable("the order is not priced yet".into()));
        };
        data.items = order.items;
        data.currency = Some(currency);
        data.previous = Some(totals);
        data.revision = Some(revision + 1);
        Ok(())
    }

    fn compensable(&self) -> bool {
        true
    }

    async fn compensate(&self, data: &DeliveryChange) -> Result<(), StepError> {
        let mut tx = self.0.pool.begin().await?;
        repo::lock_status(&mut tx, data.order_id).await?;
        if let Some((Some(change), _)) = repo::delivery_state(&mut tx, data.order_id).await?
            && change == data.change_id
        {
            repo::set_delivery_change(&mut tx, data.order_id, None).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

struct QuoteDelivery(Arc<SagaContext>);

#[async_trait]
impl Step<DeliveryChange> for QuoteDelivery {
    fn name(&self) -> &'static str {
        "quote_delivery"
    }

    async fn run(&self, data: &mut DeliveryChange) -> Result<(), StepError> {
        let (_, currency, previous) = data.claimed()?;
        let quote = self
            .0
            .peers
            .shipping_cost(&data.courier, &data.address.country, &data.items)
            .await?;
        if !quote.currency.eq_ignore_ascii_case(currency) {
            return Err(StepError::rejected(
                FailureKind::Conflict,
                format!(
                    "shipping is quoted in {}, the order is in {currency}",
                    quote.currency
                ),
            ));
        }
        data.totals = Some(domain::with_shipping(previous, &quote));
        Ok(())
    }
}

struct RepricePayment(Arc<SagaContext>);

#[async_trait]
impl Step<DeliveryChange> for RepricePayment {
    fn name(&self) -> &'static str {
        "reprice_payment"
    }

    async fn run(&self, data: &mut DeliveryChange) -> Result<(), StepError> {
        let (revision, currency, previous) = data.claimed()?;
        let totals = data
            .totals
            .ok_or_else(|| StepError::Retryable("no shipping quote yet".into()))?;
        if totals.total == previous.total {
            return Ok(());
        }
        let secret = self
            .0
            .peers
            .replace_payment_intent(data.order_id, totals.total, currency, revision)
            .await?;
        data.client_secret = Some(secret);
        Ok(())
    }
}

struct ApplyChange(Arc<SagaContext>);

#[async_trait]
impl Step<DeliveryChange> for ApplyChange {
    fn name(&self) -> &'static str {
        "apply_delivery_change"
    }

    async fn run(&self, data: &mut DeliveryChange) -> Result<(), StepError> {
        let (revision, _, _) = data.claimed()?;
        let totals = data
            .totals
            .ok_or_else(|| StepError::Retryable("no shipping quote yet".into()))?;
        let mut tx = self.0.pool.begin().await?;
        let (status, _) = repo::lock_status(&mut tx, data.order_id)
            .await?
            .ok_or_else(|| StepError::Retryable("the order vanished".into()))?;
        let (in_progress, applied_revision) = repo::delivery_state(&mut tx, data.order_id)
            .await?
            .unwrap_or((None, 0));
        if in_progress != Some(data.change_id) {
            // This step ran before a crash; the revision tells whether it applied.
            data.applied = Some(applied_revision >= revision);
            return Ok(());
        }
        let applied = status == OrderStatus::PendingPayment;
        if applied {
            repo::apply_delivery_change(
                &mut tx,
                data.order_id,
                revision,
                &data.address,
                &data.courier,
                &totals,
                data.client_secret.as_deref(),
                status,
            )
            .await?;
        } else {
            // Expired or canceled meanwhile: that saga cancelled whichever intent was live.
            repo::set_delivery_change(&mut tx, data.order_id, None).await?;
        }
        tx.commit().await?;
        data.applied = Some(applied);
        Ok(())
    }
}
