//! What the cart service reacts to: order events from Kafka (through the inbox) and its
//! own delayed abandonment checks from the Redis queue.

use commerce_messaging::{EventHandler, HandlerError, ReceivedEvent};
use uuid::Uuid;

use crate::service::CartService;

/// The order stream this service consumes, and its dead-letter topic.
pub const ORDER_TOPIC: &str = "commerce.order.events";
pub const DEAD_LETTER_TOPIC: &str = "commerce.cart.dlq";

/// Order events: an order made from a checkout session closes the cart it came from.
pub struct OrderEvents;

#[async_trait::async_trait]
impl EventHandler for OrderEvents {
    async fn handle(
        &self,
        connection: &mut sqlx::PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        if !event.is::<commerce_proto::order::v1::OrderCreated>() {
            return Ok(());
        }
        let created: commerce_proto::order::v1::OrderCreated = event.decode()?;
        let order = created
            .order
            .ok_or_else(|| HandlerError::Permanent("OrderCreated without an order".into()))?;
        let session = event.uuid("order.checkout_session_id", &order.checkout_session_id)?;
        let order_id = event.uuid("order.id", &order.id)?;
        if crate::repository::close_for_order(connection, session, order_id).await? {
            tracing::info!(%order_id, checkout_session_id = %session, "cart closed by its order");
        }
        Ok(())
    }
}

/// The delayed task that announces an idle cart.
pub struct AbandonCheck {
    pub carts: CartService,
}

impl commerce_redis::TaskHandler for AbandonCheck {
    fn handle<'a>(
        &'a self,
        task: &'a commerce_redis::Task,
    ) -> futures::future::BoxFuture<'a, Result<(), commerce_redis::TaskError>> {
        Box::pin(async move {
            let cart_id = task
                .payload
                .get("cartId")
                .and_then(|value| value.as_str())
                .and_then(|value| Uuid::parse_str(value).ok())
                .ok_or_else(|| commerce_redis::TaskError("task has no cartId".to_owned()))?;
            self.carts
                .announce_if_idle(cart_id)
                .await
                .map(|_| ())
                .map_err(|error| commerce_redis::TaskError(error.to_string()))
        })
    }
}
