//! Payment-intent use cases.

use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{Charge, Invalid, PaymentStatus};
use crate::gateway::{GatewayError, Gateways};
use crate::repository::{self as repo, Payment};

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct PaymentService {
    pool: PgPool,
    gateways: Arc<Gateways>,
}

impl PaymentService {
    pub fn new(pool: PgPool, gateways: Gateways) -> Self {
        Self {
            pool,
            gateways: Arc::new(gateways),
        }
    }

    /// One intent per order: a repeated call with the same charge and gateway returns it.
    #[tracing::instrument(skip_all, fields(order = %order_id, gateway))]
    pub async fn create_intent(
        &self,
        order_id: Uuid,
        user_id: Uuid,
        charge: Charge,
        gateway: &str,
    ) -> Result<Payment, PaymentError> {
        let gateway_name = gateway.trim().to_lowercase();
        let mut tx = self.pool.begin().await?;
        if let Some(existing) = repo::lock_order(&mut tx, order_id).await? {
            if existing.amount == charge.amount
                && existing.currency == charge.currency
                && existing.gateway == gateway_name
            {
                return Ok(existing);
            }
            return Err(PaymentError::Conflict(format!(
                "order {order_id} already has a payment of {} {} with {}",
                existing.amount, existing.currency, existing.gateway
            )));
        }
        let gateway = self.gateways.get(&gateway_name)?;
        // The order id is the provider-side idempotency key: a crash after the provider
        // answered but before this commit gets the same intent on retry.
        let intent = gateway
            .create_intent(&charge, &order_id.to_string())
            .await?;
        let payment = Payment {
            id: Uuid::now_v7(),
            order_id,
            gateway: gateway_name,
            amount: charge.amount,
            currency: charge.currency,
            status: PaymentStatus::RequiresPayment,
            provider_reference: intent.reference,
            client_secret: intent.client_secret,
        };
        repo::insert(&mut tx, &payment, user_id).await?;
        tx.commit().await?;
        Ok(payment)
    }

    /// Cancels an unpaid intent; `None` when the order never had one.
    #[tracing::instrument(skip_all, fields(order = %order_id))]
    pub async fn cancel_intent(
        &self,
        order_id: Uuid,
    ) -> Result<Option<PaymentStatus>, PaymentError> {
        let mut tx = self.pool.begin().await?;
        let Some(payment) = repo::lock_order(&mut tx, order_id).await? else {
            return Ok(None);
        };
        match payment.status {
            PaymentStatus::Canceled => return Ok(Some(PaymentStatus::Canceled)),
            status if !status.cancellable() => {
                return Err(PaymentError::Conflict(format!(
                    "the payment of order {order_id} is {}; refund it instead",
                    status.as_str()
                )));
            }
            _ => {}
        }
        self.gateways
            .get(&payment.gateway)?
            .cancel_intent(&payment.provider_reference)
            .await?;
        repo::set_status(
            &mut tx,
            payment.id,
            PaymentStatus::Canceled,
            "canceled by the order",
        )
        .await?;
        tx.commit().await?;
        Ok(Some(PaymentStatus::Canceled))
    }
}
