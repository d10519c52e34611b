//! What the order service reacts to: payment and fulfillment events from Kafka (through
//! the inbox), and its own delayed tasks from the Redis queue (reminders, expiry).

use commerce_messaging::{EventHandler, HandlerError, ReceivedEvent};
use commerce_proto::fulfillment::v1 as fulfillment_pb;
use commerce_proto::payment::v1 as payment_pb;
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::domain::OrderStatus;
use crate::service::OrderService;

/// Payment events: a payment starts the order's payment saga; a failed attempt is noted
/// and, while the order waits for payment, the customer is told (`PaymentAttemptFailed`);
/// a refund joins the order's refunded total and history.
/// Fulfillment events: the order follows its shipment (SHIPPED, DELIVERED).
pub struct PeerEvents {
    pub orders: OrderService,
}

#[async_trait::async_trait]
impl EventHandler for PeerEvents {
    async fn handle(
        &self,
        connection: &mut sqlx::PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        match () {
            _ if event.is::<payment_pb::PaymentSucceeded>() => {
                let paid: payment_pb::PaymentSucceeded = event.decode()?;
                let order_id = event.uuid("order_id", &paid.order_id)?;
                let saga = self
                    .orders
                    .payment_received(connection, order_id, paid.payment_id)
                    .await
                    .map_err(|error| HandlerError::Retryable(error.into()))?;
                // Driven once the inbox transaction commits; recovery if this gives up.
                if let Some(saga) = saga {
                    tokio::spawn(self.orders.engines().payment.clone().kick(saga));
                }
            }
            _ if event.is::<fulfillment_pb::FulfillmentCreated>() => {
                let created: fulfillment_pb::FulfillmentCreated = event.decode()?;
                crate::repository::note(
                    connection,
                    event.uuid("order_id", &created.order_id)?,
                    &format!(
                        "shipment created: {} tracking {}",
                        created.courier, created.tracking_id
                    ),
                )
                .await?;
            }
            _ if event.is::<fulfillment_pb::FulfillmentShipped>() => {
                let shipped: fulfillment_pb::FulfillmentShipped = event.decode()?;
                crate::repository::transition(
                    connection,
                    event.uuid("order_id", &shipped.order_id)?,
                    &[OrderStatus::Confirmed],
                    OrderStatus::Shipped,
                    &format!("tracking {}", shipped.tracking_id),
                )
                .await?;
            }
            _ if event.is::<fulfillment_pb::FulfillmentDelivered>() => {
                let delivered: fulfillment_pb::FulfillmentDelivered = event.decode()?;
                crate::repository::transition(
                    connection,
                    event.uuid("order_id", &delivered.order_id)?,
                    &[OrderStatus::Confirmed, OrderStatus::Shipped],
                    OrderStatus::Delivered,
                    &format!("tracking {}", delivered.tracking_id),
                )
                .await?;
            }
            _ if event.is::<payment_pb::PaymentFailed>() => {
                let failed: payment_pb::PaymentFailed = event.decode()?;
                let order_id = event.uuid("order_id", &failed.order_id)?;
                crate::events::payment_attempt_failed(connection, order_id, &failed.reason)
                    .await
                    .map_err(|error| HandlerError::Retryable(error.into()))?;
            }
            _ if event.is::<payment_pb::PaymentRefunded>() => {
                let refunded: payment_pb::PaymentRefunded = event.decode()?;
                let amount = refunded.amount.unwrap_or_default();
                let value = amount.amount.parse().map_err(|_| {
                    HandlerError::Permanent(
                        format!(
                            "PaymentRefunded.amount `{}` is not a decimal",
                            amount.amount
                        )
                        .into(),
                    )
                })?;
                crate::repository::record_refund(
                    connection,
                    event.uuid("order_id", &refunded.order_id)?,
                    event.uuid("refund_id", &refunded.refund_id)?,
                    value,
                    &amount.currency,
                    &refunded.reason,
                )
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn order_id_of(task: &commerce_redis::Task) -> Result<Uuid, commerce_redis::TaskError> {
    task.payload
        .get("orderId")
        .and_then(|value| value.as_str())
        .and_then(|value| Uuid::parse_str(value).ok())
        .ok_or_else(|| commerce_redis::TaskError("task has no orderId".to_owned()))
}

pub struct ReminderTask {
    pub orders: OrderService,
}

impl commerce_redis::TaskHandler for ReminderTask {
    fn handle<'a>(
        &'a self,
        task: &'a commerce_redis::Task,
    ) -> BoxFuture<'a, Result<(), commerce_redis::TaskError>> {
        Box::pin(async move {
            let order_id = order_id_of(task)?;
            let reminder = task
                .payload
                .get("reminder")
                .and_then(|value| value.as_i64())
                .ok_or_else(|| commerce_redis::TaskError("task has no reminder".to_owned()))?;
            self.orders
                .remind(order_id, reminder as i32)
                .await
                .map(|_| ())
                .map_err(|error| commerce_redis::TaskError(error.to_string()))
        })
    }
}

pub struct ExpiryTask {
    pub orders: OrderService,
}

impl commerce_redis::TaskHandler for ExpiryTask {
    fn handle<'a>(
        &'a self,
        task: &'a commerce_redis::Task,
    ) -> BoxFuture<'a, Result<(), commerce_redis::TaskError>> {
        Box::pin(async move {
            self.orders
                .expire(order_id_of(task)?)
                .await
                .map(|_| ())
                .map_err(|error| commerce_redis::TaskError(error.to_string()))
        })
    }
}
