//! Everything the order service says and hears: the topic it publishes on and each event
//! type there, the topics it consumes, an order as protobuf, and its delayed tasks on the
//! Redis queue (payment reminders and the end of the payment window). Sagas, consumers
//! and the Temporal workflow all take these from here.

use chrono::{DateTime, Utc};
use commerce_messaging::outbox::{self, NewEvent};
use commerce_proto::common::v1::Money;
use commerce_proto::order::v1 as pb;
use commerce_redis::NewTask;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::Order;
use crate::error::OrderError;
use crate::repository as repo;

/// Where every order event goes, keyed by the order's id.
pub const TOPIC: &str = "commerce.order.events";

/// What this service consumes (`PaymentSucceeded`, `PaymentFailed`, `FulfillmentCreated`,
/// `FulfillmentShipped`, `FulfillmentDelivered`; `consumers.rs`), and where events it
/// cannot handle go.
pub const PAYMENT_TOPIC: &str = "commerce.payment.events";
pub const FULFILLMENT_TOPIC: &str = "commerce.fulfillment.events";
pub const DEAD_LETTER_TOPIC: &str = "commerce.order.dlq";

/// Delayed tasks (postgres saga engine; the Temporal workflow uses timers instead).
pub const REMINDER_TASK: &str = "order.payment_reminder";
pub const EXPIRY_TASK: &str = "order.payment_expiry";

/// An event about `order_id` on the order topic, its type the message's name: the service
/// publishes `OrderCreated`, `OrderConfirmed`, `OrderCanceled`, `OrderExpired`,
/// `PaymentReminderDue` and `PaymentAttemptFailed` (`proto/commerce/order/v1/order.proto`).
pub fn order_event<M: prost::Message + prost::Name>(order_id: Uuid, message: &M) -> NewEvent {
    NewEvent::of(TOPIC, order_id.to_string(), message)
}

/// Payment reminder number `reminder`, due at `at`; its id makes scheduling it twice a
/// no-op.
pub fn reminder_task(order_id: Uuid, reminder: i32, at: DateTime<Utc>) -> NewTask {
    NewTask::new(
        REMINDER_TASK,
        serde_json::json!({"orderId": order_id, "reminder": reminder}),
    )
    .id(reminder_task_id(order_id, reminder))
    .run_at(at.into())
}

/// The end of the order's payment window, at `at`.
pub fn expiry_task(order_id: Uuid, at: DateTime<Utc>) -> NewTask {
    NewTask::new(EXPIRY_TASK, serde_json::json!({"orderId": order_id}))
        .id(expiry_task_id(order_id))
        .run_at(at.into())
}

pub fn reminder_task_id(order_id: Uuid, reminder: i32) -> String {
    format!("reminder:{order_id}:{reminder}")
}

pub fn expiry_task_id(order_id: Uuid) -> String {
    format!("expiry:{order_id}")
}

/// Notes a failed payment attempt on the order and, while the order still waits for
/// payment, publishes `PaymentAttemptFailed` (the customer is told to pay again before
/// the window closes); in the caller's transaction (the inbox's). `true` when published.
pub async fn payment_attempt_failed(
    connection: &mut sqlx::PgConnection,
    order_id: Uuid,
    reason: &str,
) -> Result<bool, OrderError> {
    repo::note(
        &mut *connection,
        order_id,
        &format!("payment attempt failed: {reason}"),
    )
    .await?;
    let Some(order) = repo::order(&mut *connection, order_id).await? else {
        return Ok(false);
    };
    if order.status != crate::domain::OrderStatus::PendingPayment {
        return Ok(false);
    }
    let event = pb::PaymentAttemptFailed {
        order_id: order_id.to_string(),
        user_id: order.user_id.to_string(),
        reason: reason.to_owned(),
        total: total_money(&order),
        payment_due_at: order.payment_due_at.map(timestamp),
    };
    outbox::enqueue(&mut *connection, order_event(order_id, &event)).await?;
    Ok(true)
}

/// Publishes payment reminder number `reminder` (`PaymentReminderDue`) once, and only
/// while the order still waits for payment; `true` when it was published now. Both engines
/// call it: the task queue's reminder task and the order workflow's reminder timer.
pub async fn publish_reminder(
    pool: &PgPool,
    order_id: Uuid,
    reminder: i32,
) -> Result<bool, OrderError> {
    let mut tx = pool.begin().await?;
    if !repo::claim_reminder(&mut tx, order_id, reminder).await? {
        return Ok(false);
    }
    let order = repo::order(&mut tx, order_id)
        .await?
        .ok_or_else(|| OrderError::NotFound(format!("order {order_id}")))?;
    let event = pb::PaymentReminderDue {
        order_id: order_id.to_string(),
        user_id: order.user_id.to_string(),
        reminder,
        total: total_money(&order),
        payment_due_at: order.payment_due_at.map(timestamp),
    };
    outbox::enqueue(&mut tx, order_event(order_id, &event)).await?;
    tx.commit().await?;
    tracing::info!(%order_id, reminder, "payment reminder due");
    Ok(true)
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn money(amount: rust_decimal::Decimal, currency: &str) -> Money {
    Money {
        amount: commerce_runtime::api::money_scale(amount).to_string(),
        currency: currency.to_owned(),
    }
}

fn total_money(order: &Order) -> Option<Money> {
    let currency = order.currency.as_deref().unwrap_or_default();
    order.totals.map(|totals| money(totals.total, currency))
}

/// An order as the events and the gRPC API carry it.
pub fn order_to_proto(order: &Order) -> pb::Order {
    let currency = order.currency.as_deref().unwrap_or_default();
    let address = order.shipping_address.clone().unwrap_or_default();
    pb::Order {
        id: order.id.to_string(),
        user_id: order.user_id.to_string(),
        status: order.status.as_str().to_owned(),
        items: order
            .items
            .iter()
            .map(|item| pb::OrderItem {
                product_id: item.product_id.to_string(),
                sku: item.sku.clone(),
                name: item.name.clone(),
                quantity: item.quantity,
                unit_price: Some(money(item.unit_price, currency)),
            })
            .collect(),
        subtotal: order.totals.map(|totals| money(totals.subtotal, currency)),
        discount: order.totals.map(|totals| money(totals.discount, currency)),
        shipping: order.totals.map(|totals| money(totals.shipping, currency)),
        total: total_money(order),
        promo_code: order.promo_code.clone().unwrap_or_default(),
        shipping_address: Some(pb::ShippingAddress {
            recipient: address.recipient,
            line1: address.line1,
            line2: address.line2,
            city: address.city,
            region: address.region,
            postal_code: address.postal_code,
            country: address.country,
            phone: address.phone,
        }),
        courier: order.courier.clone().unwrap_or_default(),
        payment_gateway: order.payment_gateway.clone().unwrap_or_default(),
        checkout_session_id: order.checkout_session_id.to_string(),
        payment_id: order
            .payment_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        created_at: Some(timestamp(order.created_at)),
        payment_due_at: order.payment_due_at.map(timestamp),
    }
}
