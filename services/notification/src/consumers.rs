//! The shop's events that notify someone, each turned into a kind and its template data.

use std::collections::BTreeMap;

use commerce_messaging::{EventHandler, HandlerError, ReceivedEvent};
use commerce_proto::order::v1 as order;
use commerce_proto::{auth::v1 as auth, cart::v1 as cart, fulfillment::v1 as fulfillment};
use commerce_proto::{common::v1::Money, payment::v1 as payment};
use uuid::Uuid;

use crate::domain;
use crate::repository::{self as repo, Contact};
use crate::service::{self, NotificationError, NotifyRequest};

pub const TOPICS: [&str; 5] = [
    "commerce.auth.events",
    "commerce.cart.events",
    "commerce.order.events",
    "commerce.fulfillment.events",
    "commerce.payment.events",
];
pub const DEAD_LETTER_TOPIC: &str = "commerce.notification.dlq";

/// Builds the links e-mailed: with single-use tokens (`{token}` is where the token goes),
/// to an order's page (`{order_id}`) and to the cart.
#[derive(Clone)]
pub struct Links {
    pub verify_email: String,
    pub reset_password: String,
    pub order: String,
    pub cart: String,
}

pub struct ShopEvents {
    pub links: Links,
    /// Asked whether an abandoned cart still is; without it, none is mailed.
    pub carts: Option<crate::peers::Carts>,
}

/// The cart's lines as the recovery e-mail lists them, one per line.
fn cart_lines(items: &[cart::CheckoutItem]) -> String {
    items
        .iter()
        .map(|item| {
            format!(
                "{} × {}, {} each",
                item.quantity,
                item.name,
                money(item.unit_price.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn when(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn money(amount: Option<&Money>) -> String {
    amount
        .map(|m| domain::money(&m.amount, &m.currency))
        .unwrap_or_default()
}

fn data<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

/// Everything but RFC 3986's unreserved characters is encoded.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Auth's events name the account's address and first name: kept for later mail.
async fn learn_email(
    connection: &mut sqlx::PgConnection,
    user_id: Uuid,
    email: &str,
    first_name: &str,
) -> Result<(), HandlerError> {
    repo::learn_contact(
        connection,
        user_id,
        &Contact {
            email: Some(email),
            first_name: Some(first_name),
            fallback_phone: None,
        },
    )
    .await?;
    Ok(())
}

/// A percent-encoded token in the configured link.
fn link(template: &str, token: &str) -> String {
    template.replace(
        "{token}",
        &percent_encoding::utf8_percent_encode(token, COMPONENT).to_string(),
    )
}

#[async_trait::async_trait]
impl EventHandler for ShopEvents {
    async fn handle(
        &self,
        connection: &mut sqlx::PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        // One arm per message the service turns into a notification.
        let (user_id, kind, data) = match () {
            _ if event.is::<auth::UserRegistered>()
                || event.is::<auth::EmailVerificationRequested>() =>
            {
                // Both carry the same fields.
                let message: auth::UserRegistered = event.decode()?;
                let user_id = event.uuid("user_id", &message.user_id)?;
                learn_email(connection, user_id, &message.email, &message.first_name).await?;
                let data = data([
                    (
                        "verification_url",
                        link(&self.links.verify_email, &message.verification_token),
                    ),
                    ("expires_at", when(message.verification_expires_at.as_ref())),
                ]);
                (user_id, "email_verification", data)
            }
            _ if event.is::<auth::PasswordResetRequested>() => {
                let message: auth::PasswordResetRequested = event.decode()?;
                let user_id = event.uuid("user_id", &message.user_id)?;
                learn_email(connection, user_id, &message.email, &message.first_name).await?;
                let data = data([
                    (
                        "reset_url",
                        link(&self.links.reset_password, &message.reset_token),
                    ),
                    ("expires_at", when(message.reset_expires_at.as_ref())),
                ]);
                (user_id, "password_reset", data)
            }
            _ if event.is::<auth::PasswordChanged>() => {
                let message: auth::PasswordChanged = event.decode()?;
                (
                    event.uuid("user_id", &message.user_id)?,
                    "password_changed",
                    data([("email", message.email)]),
                )
            }
            _ if event.is::<auth::RegistrationAttempted>() => {
                let message: auth::RegistrationAttempted = event.decode()?;
                let user_id = event.uuid("user_id", &message.user_id)?;
                learn_email(connection, user_id, &message.email, &message.first_name).await?;
                (user_id, "account_exists", data([("email", message.email)]))
            }
            _ if event.is::<order::PaymentReminderDue>() => {
                let message: order::PaymentReminderDue = event.decode()?;
                let data = data([
                    ("order_id", message.order_id.clone()),
                    ("reminder", message.reminder.to_string()),
                    ("total", money(message.total.as_ref())),
                    ("payment_due_at", when(message.payment_due_at.as_ref())),
                ]);
                (
                    event.uuid("user_id", &message.user_id)?,
                    "payment_reminder",
                    data,
                )
            }
            _ if event.is::<cart::CartAbandoned>() => {
                let message: cart::CartAbandoned = event.decode()?;
                // A guest's cart has nobody to write to.
                if message.user_id.is_empty() {
                    return Ok(());
                }
                let user_id = event.uuid("user_id", &message.user_id)?;
                let cart_id = event.uuid("cart_id", &message.cart_id)?;
                let Some(carts) = &self.carts else {
                    tracing::debug!(%cart_id, "no cart peer configured; no recovery e-mail");
                    return Ok(());
                };
                // Asked now, not taken from the event: a cart ordered, emptied or changed
                // since is not mailed, and the prices are today's.
                let Some(now) = carts
                    .abandoned(cart_id)
                    .await
                    .map_err(|error| HandlerError::Retryable(error.into()))?
                else {
                    return Ok(());
                };
                let data = data([
                    ("items", cart_lines(&now.items)),
                    (
                        "item_count",
                        now.items
                            .iter()
                            .map(|item| item.quantity)
                            .sum::<i64>()
                            .to_string(),
                    ),
                    ("subtotal", money(now.subtotal.as_ref())),
                    ("cart_url", self.links.cart.clone()),
                ]);
                (user_id, "cart_abandoned", data)
            }
            _ if event.is::<order::PaymentAttemptFailed>() => {
                let message: order::PaymentAttemptFailed = event.decode()?;
                let order_id = event.uuid("order_id", &message.order_id)?;
                let data = data([
                    ("order_id", message.order_id.clone()),
                    ("reason", message.reason.clone()),
                    ("total", money(message.total.as_ref())),
                    ("payment_due_at", when(message.payment_due_at.as_ref())),
                    (
                        "pay_url",
                        self.links
                            .order
                            .replace("{order_id}", &order_id.to_string()),
                    ),
                ]);
                (
                    event.uuid("user_id", &message.user_id)?,
                    "payment_failed",
                    data,
                )
            }
            _ if event.is::<order::OrderConfirmed>() => {
                let message: order::OrderConfirmed = event.decode()?;
                let placed = message.order.unwrap_or_default();
                let user_id = event.uuid("user_id", &placed.user_id)?;
                let phone = placed
                    .shipping_address
                    .as_ref()
                    .map(|address| address.phone.as_str())
                    .filter(|phone| domain::valid_phone(phone));
                if phone.is_some() {
                    repo::learn_contact(
                        connection,
                        user_id,
                        &Contact {
                            fallback_phone: phone,
                            ..Contact::default()
                        },
                    )
                    .await?;
                }
                let data = data([
                    ("order_id", placed.id.clone()),
                    ("total", money(placed.total.as_ref())),
                    ("courier", placed.courier.clone()),
                ]);
                (user_id, "order_confirmed", data)
            }
            _ if event.is::<order::OrderExpired>() => {
                let message: order::OrderExpired = event.decode()?;
                let data = data([("order_id", message.order_id.clone())]);
                (
                    event.uuid("user_id", &message.user_id)?,
                    "order_expired",
                    data,
                )
            }
            _ if event.is::<order::OrderCanceled>() => {
                let message: order::OrderCanceled = event.decode()?;
                let data = data([
                    ("order_id", message.order_id.clone()),
                    ("reason", message.reason.clone()),
                ]);
                (
                    event.uuid("user_id", &message.user_id)?,
                    "order_canceled",
                    data,
                )
            }
            _ if event.is::<fulfillment::FulfillmentCreated>() => {
                let message: fulfillment::FulfillmentCreated = event.decode()?;
                let data = data([
                    ("order_id", message.order_id.clone()),
                    ("courier", message.courier.clone()),
                    ("tracking_id", message.tracking_id.clone()),
                    (
                        "estimated_delivery",
                        when(message.estimated_delivery.as_ref()),
                    ),
                ]);
                (
                    event.uuid("user_id", &message.user_id)?,
                    "fulfillment_created",
                    data,
                )
            }
            _ if event.is::<fulfillment::FulfillmentShipped>() => {
                let message: fulfillment::FulfillmentShipped = event.decode()?;
                let data = data([
                    ("order_id", message.order_id.clone()),
                    ("tracking_id", message.tracking_id.clone()),
                ]);
                (
                    event.uuid("user_id", &message.user_id)?,
                    "fulfillment_shipped",
                    data,
                )
            }
            _ if event.is::<fulfillment::FulfillmentDelivered>() => {
                let message: fulfillment::FulfillmentDelivered = event.decode()?;
                let data = data([
                    ("order_id", message.order_id.clone()),
                    ("tracking_id", message.tracking_id.clone()),
                ]);
                (
                    event.uuid("user_id", &message.user_id)?,
                    "fulfillment_delivered",
                    data,
                )
            }
            _ if event.is::<payment::PaymentRefunded>() => {
                let message: payment::PaymentRefunded = event.decode()?;
                let data = data([
                    ("order_id", message.order_id.clone()),
                    ("amount", money(message.amount.as_ref())),
                    ("full", message.full.to_string()),
                    ("reason", message.reason.clone()),
                ]);
                (
                    event.uuid("user_id", &message.user_id)?,
                    "payment_refunded",
                    data,
                )
            }
            _ => return Ok(()),
        };
        let request = NotifyRequest {
            source: format!("event:{}", event.id),
            user_id,
            kind,
            data,
            only: None,
        };
        match service::notify(connection, request).await {
            Ok(_) => Ok(()),
            // An admin may have removed every template of a kind: nothing to send.
            Err(NotificationError::UnknownKind(kind)) => {
                tracing::warn!(%kind, event = %event.id, "no template for this kind; nothing sent");
                Ok(())
            }
            Err(NotificationError::Database(error)) => Err(error.into()),
            Err(error) => Err(HandlerError::Permanent(error.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_encoded_into_the_link() {
        assert_eq!(
            super::link("http://shop/verify?token={token}", "a+b/c=_-"),
            "http://shop/verify?token=a%2Bb%2Fc%3D_-"
        );
    }
}
