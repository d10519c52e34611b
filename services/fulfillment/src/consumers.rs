//! What fulfillment consumes: order events, where a confirmed order becomes a shipment to make.

use commerce_messaging::{EventHandler, HandlerError, ReceivedEvent};

use crate::domain::Address;
use crate::shipments::{NewFulfillment, Shipments};

use crate::domain::ParcelLine;

pub const ORDER_TOPIC: &str = "commerce.order.events";
pub const DEAD_LETTER_TOPIC: &str = "commerce.fulfillment.dlq";

/// Order events: a confirmed order becomes a shipment to make.
pub(crate) struct OrderEvents {
    pub(crate) shipments: Shipments,
    pub(crate) default_unit_weight_g: i64,
}

#[async_trait::async_trait]
impl EventHandler for OrderEvents {
    async fn handle(
        &self,
        connection: &mut sqlx::PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        if !event.is::<commerce_proto::order::v1::OrderConfirmed>() {
            return Ok(());
        }
        let confirmed: commerce_proto::order::v1::OrderConfirmed = event.decode()?;
        let order = confirmed
            .order
            .ok_or_else(|| HandlerError::Permanent("OrderConfirmed without an order".into()))?;
        let lines: Vec<ParcelLine> = order
            .items
            .iter()
            .map(|item| ParcelLine {
                quantity: item.quantity,
                unit_weight_g: None,
            })
            .collect();
        let weight_g = crate::domain::parcel_weight(&lines, self.default_unit_weight_g)
            .map_err(|invalid| HandlerError::Permanent(invalid.into()))?;
        let address = order.shipping_address.unwrap_or_default();
        let new = NewFulfillment {
            order_id: event.uuid("order.id", &order.id)?,
            user_id: event.uuid("order.user_id", &order.user_id)?,
            courier: order.courier,
            address: Address {
                recipient: address.recipient,
                line1: address.line1,
                line2: address.line2,
                city: address.city,
                region: address.region,
                postal_code: address.postal_code,
                country: address.country,
                phone: address.phone,
            },
            weight_g,
        };
        self.shipments
            .accept(connection, new)
            .await
            .map_err(|error| HandlerError::Retryable(error.into()))?;
        Ok(())
    }
}
