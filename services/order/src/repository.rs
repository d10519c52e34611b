//! Orders, their items and status history, and the idempotency keys of `POST /v1/orders`.

use chrono::{DateTime, Utc};
use commerce_runtime::api::money_scale;
use rust_decimal::Decimal;
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::{
    Address, CheckoutSnapshot, HistoryEntry, LineItem, Order, OrderStatus, Totals, refund_note,
};

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    user_id: Uuid,
    status: String,
    checkout_session_id: Uuid,
    currency: Option<String>,
    subtotal: Option<Decimal>,
    discount: Option<Decimal>,
    shipping: Option<Decimal>,
    total: Option<Decimal>,
    promo_code: Option<String>,
    shipping_address: Option<Json<Address>>,
    courier: Option<String>,
    payment_gateway: Option<String>,
    payment_id: Option<Uuid>,
    payment_client_secret: Option<String>,
    payment_due_at: Option<DateTime<Utc>>,
    reminders_sent: i32,
    failure_reason: Option<String>,
    refunded_amount: Decimal,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const ORDER_COLUMNS: &str =
    "id, user_id, status, checkout_session_id, currency, subtotal, discount, shipping, total,
    promo_code, shipping_address, courier, payment_gateway, payment_id, payment_client_secret,
    payment_due_at, reminders_sent, failure_reason, refunded_amount, created_at, updated_at";

impl OrderRow {
    fn into_order(self, items: Vec<LineItem>) -> Order {
        let totals = match (self.subtotal, self.discount, self.shipping, self.total) {
            (Some(subtotal), Some(discount), Some(shipping), Some(total)) => Some(Totals {
                subtotal: money_scale(subtotal),
                discount: money_scale(discount),
                shipping: money_scale(shipping),
                total: money_scale(total),
            }),
            _ => None,
        };
        Order {
            id: self.id,
            user_id: self.user_id,
            status: OrderStatus::parse(&self.status).unwrap_or(OrderStatus::Failed),
            checkout_session_id: self.checkout_session_id,
            items,
            currency: self.currency.map(|currency| currency.trim().to_owned()),
            totals,
            promo_code: self.promo_code,
            shipping_address: self.shipping_address.map(|address| address.0),
            courier: self.courier,
            payment_gateway: self.payment_gateway,
            payment_id: self.payment_id,
            payment_client_secret: self.payment_client_secret,
            payment_due_at: self.payment_due_at,
            reminders_sent: self.reminders_sent,
            failure_reason: self.failure_reason,
            refunded_amount: money_scale(self.refunded_amount),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    order_id: Uuid,
    product_id: Uuid,
    sku: String,
    name: String,
    quantity: i64,
    unit_price: Decimal,
}

async fn items_of(
    executor: impl PgExecutor<'_>,
    order_ids: &[Uuid],
) -> Result<Vec<ItemRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_id, product_id, sku, name, quantity, unit_price FROM order_items
         WHERE order_id = ANY($1) ORDER BY order_id, sku",
    )
    .bind(order_ids)
    .fetch_all(executor)
    .await
}

fn line(item: ItemRow) -> LineItem {
    LineItem {
        product_id: item.product_id,
        sku: item.sku,
        name: item.name,
        quantity: item.quantity,
        unit_price: money_scale(item.unit_price),
    }
}

async fn record_status(
    connection: &mut PgConnection,
    order_id: Uuid,
    status: OrderStatus,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO order_status_history (order_id, status, reason) VALUES ($1, $2, $3)")
        .bind(order_id)
        .bind(status.as_str())
        .bind(reason)
        .execute(connection)
        .await?;
    Ok(())
}

/// A new order in PLACING. `false` when the checkout session already has a live order.
/// Orders still PLACING that were created more than `older_than` ago: (id, user,
/// checkout session, created at).
pub async fn stale_placing_orders(
    pool: &sqlx::PgPool,
    older_than: std::time::Duration,
) -> Result<Vec<(Uuid, Uuid, Uuid, chrono::DateTime<chrono::Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, user_id, checkout_session_id, created_at FROM orders
         WHERE status = 'PLACING' AND created_at < now() - make_interval(secs => $1)
         ORDER BY created_at LIMIT 100",
    )
    .bind(older_than.as_secs_f64())
    .fetch_all(pool)
    .await
}

pub async fn insert_order(
    connection: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
    checkout_session_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO orders (id, user_id, status, checkout_session_id) VALUES ($1, $2, 'PLACING', $3)
         ON CONFLICT (checkout_session_id) WHERE status <> 'FAILED' DO NOTHING",
    )
    .bind(id)
    .bind(user_id)
    .bind(checkout_session_id)
    .execute(&mut *connection)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    record_status(connection, id, OrderStatus::Placing, "").await?;
    Ok(true)
}

/// The live (not failed) order placed from a checkout session.
pub async fn live_order_for_session(
    executor: impl PgExecutor<'_>,
    checkout_session_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM orders WHERE checkout_session_id = $1 AND status <> 'FAILED'",
    )
    .bind(checkout_session_id)
    .fetch_optional(executor)
    .await
}

/// Writes the final prices and what the order ships. Safe to repeat.
pub async fn save_priced(
    connection: &mut PgConnection,
    order_id: Uuid,
    checkout: &CheckoutSnapshot,
    items: &[LineItem],
    totals: &Totals,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET currency = $2, subtotal = $3, discount = $4, shipping = $5, total = $6,
                promo_code = $7, shipping_address = $8, courier = $9, payment_gateway = $10,
                updated_at = now()
         WHERE id = $1 AND status = 'PLACING'",
    )
    .bind(order_id)
    .bind(&checkout.currency)
    .bind(totals.subtotal)
    .bind(totals.discount)
    .bind(totals.shipping)
    .bind(totals.total)
    .bind(&checkout.promo_code)
    .bind(Json(&checkout.address))
    .bind(&checkout.courier)
    .bind(&checkout.payment_gateway)
    .execute(&mut *connection)
    .await?;
    sqlx::query("DELETE FROM order_items WHERE order_id = $1")
        .bind(order_id)
        .execute(&mut *connection)
        .await?;
    for item in items {
        sqlx::query(
            "INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(order_id)
        .bind(item.product_id)
        .bind(&item.sku)
        .bind(&item.name)
        .bind(item.quantity)
        .bind(item.unit_price)
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

/// PLACING → PENDING_PAYMENT. `false` when the order had already moved on.
pub async fn mark_pending_payment(
    connection: &mut PgConnection,
    order_id: Uuid,
    payment_id: Uuid,
    client_secret: &str,
    due_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE orders SET status = 'PENDING_PAYMENT', payment_id = $2, payment_client_secret = $3,
                payment_due_at = $4, updated_at = now()
         WHERE id = $1 AND status = 'PLACING'",
    )
    .bind(order_id)
    .bind(payment_id)
    .bind(client_secret)
    .bind(due_at)
    .execute(&mut *connection)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    record_status(connection, order_id, OrderStatus::PendingPayment, "").await?;
    Ok(true)
}

/// PLACING → FAILED after the placement saga compensated.
pub async fn mark_failed(
    connection: &mut PgConnection,
    order_id: Uuid,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE orders SET status = 'FAILED', failure_reason = $2, updated_at = now()
         WHERE id = $1 AND status = 'PLACING'",
    )
    .bind(order_id)
    .bind(reason)
    .execute(&mut *connection)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    record_status(connection, order_id, OrderStatus::Failed, reason).await?;
    Ok(true)
}

/// Counts reminder number `reminder` as sent if the order still waits for payment and
/// has not had it yet; `false` otherwise.
pub async fn claim_reminder(
    connection: &mut PgConnection,
    order_id: Uuid,
    reminder: i32,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE orders SET reminders_sent = $2, updated_at = now()
         WHERE id = $1 AND status = 'PENDING_PAYMENT' AND reminders_sent < $2",
    )
    .bind(order_id)
    .bind(reminder)
    .execute(connection)
    .await?;
    Ok(updated.rows_affected() == 1)
}

pub async fn order(connection: &mut PgConnection, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    let row: Option<OrderRow> =
        sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *connection)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let items = items_of(connection, &[id])
        .await?
        .into_iter()
        .map(line)
        .collect();
    Ok(Some(row.into_order(items)))
}

/// A page of orders, newest first (ids are UUIDv7); `user` limits it to one customer's,
/// `before` is the last order of the previous page.
pub async fn orders(
    executor: impl PgExecutor<'_> + Copy,
    user: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    let rows: Vec<OrderRow> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders
         WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(user)
    .bind(before)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let mut items = items_of(executor, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let (mine, rest): (Vec<ItemRow>, Vec<ItemRow>) =
                items.drain(..).partition(|item| item.order_id == row.id);
            items = rest;
            row.into_order(mine.into_iter().map(line).collect())
        })
        .collect())
}

pub struct IdempotencyRecord {
    pub checkout_session_id: Uuid,
    pub order_id: Uuid,
    pub response: Option<(u16, serde_json::Value)>,
}

pub async fn idempotency_record(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
    key: &str,
) -> Result<Option<IdempotencyRecord>, sqlx::Error> {
    let row: Option<(Uuid, Uuid, Option<i32>, Option<serde_json::Value>)> = sqlx::query_as(
        "SELECT checkout_session_id, order_id, status_code, response FROM idempotency_keys
         WHERE user_id = $1 AND key = $2",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(
        |(checkout_session_id, order_id, status, response)| IdempotencyRecord {
            checkout_session_id,
            order_id,
            response: status
                .zip(response)
                .map(|(status, body)| (status as u16, body)),
        },
    ))
}

pub async fn insert_idempotency_key(
    connection: &mut PgConnection,
    user_id: Uuid,
    key: &str,
    checkout_session_id: Uuid,
    order_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, checkout_session_id, order_id)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(user_id)
    .bind(key)
    .bind(checkout_session_id)
    .bind(order_id)
    .execute(connection)
    .await?;
    Ok(())
}

pub async fn store_response(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
    key: &str,
    status: u16,
    body: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET status_code = $3, response = $4
         WHERE user_id = $1 AND key = $2 AND status_code IS NULL",
    )
    .bind(user_id)
    .bind(key)
    .bind(status as i32)
    .bind(body)
    .execute(executor)
    .await?;
    Ok(())
}

/// The order's status and owner, locked for the rest of the transaction.
pub async fn lock_status(
    connection: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<(OrderStatus, Uuid)>, sqlx::Error> {
    let row: Option<(String, Uuid)> =
        sqlx::query_as("SELECT status, user_id FROM orders WHERE id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(connection)
            .await?;
    Ok(row.map(|(status, user)| {
        (
            OrderStatus::parse(&status).unwrap_or(OrderStatus::Failed),
            user,
        )
    }))
}

/// Moves the order to `to` if it is in one of `from`; `false` otherwise.
pub async fn transition(
    connection: &mut PgConnection,
    order_id: Uuid,
    from: &[OrderStatus],
    to: OrderStatus,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let from: Vec<&str> = from.iter().map(|status| status.as_str()).collect();
    let updated = sqlx::query(
        "UPDATE orders SET status = $2, updated_at = now() WHERE id = $1 AND status = ANY($3)",
    )
    .bind(order_id)
    .bind(to.as_str())
    .bind(&from)
    .execute(&mut *connection)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    record_status(connection, order_id, to, reason).await?;
    Ok(true)
}

/// The status the order had before it last became `status`.
pub async fn status_before(
    connection: &mut PgConnection,
    order_id: Uuid,
    status: OrderStatus,
) -> Result<Option<OrderStatus>, sqlx::Error> {
    let previous: Option<String> = sqlx::query_scalar(
        "SELECT status FROM order_status_history
         WHERE order_id = $1 AND status <> $2
           AND id < (SELECT max(id) FROM order_status_history WHERE order_id = $1 AND status = $2)
         ORDER BY id DESC LIMIT 1",
    )
    .bind(order_id)
    .bind(status.as_str())
    .fetch_optional(connection)
    .await?;
    Ok(previous.as_deref().and_then(OrderStatus::parse))
}

/// A line in the order's history without a change of status (a failed payment attempt).
pub async fn note(
    connection: &mut PgConnection,
    order_id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    if let Some((status, _)) = lock_status(connection, order_id).await? {
        record_status(connection, order_id, status, reason).await?;
    }
    Ok(())
}

/// Records a refund the payment service made, once per refund id: the money joins the
/// order's refunded total and the history gets a line. `false` when it was recorded before.
pub async fn record_refund(
    connection: &mut PgConnection,
    order_id: Uuid,
    refund_id: Uuid,
    amount: Decimal,
    currency: &str,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO order_refunds (refund_id, order_id, amount, currency, reason)
         SELECT $1, id, $3, $4, $5 FROM orders WHERE id = $2
         ON CONFLICT (refund_id) DO NOTHING",
    )
    .bind(refund_id)
    .bind(order_id)
    .bind(amount)
    .bind(currency)
    .bind(reason)
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    sqlx::query("UPDATE orders SET refunded_amount = refunded_amount + $2 WHERE id = $1")
        .bind(order_id)
        .bind(amount)
        .execute(&mut *connection)
        .await?;
    note(connection, order_id, &refund_note(amount, currency, reason)).await?;
    Ok(true)
}

/// The order's history, oldest first.
pub async fn history(
    executor: impl PgExecutor<'_>,
    order_id: Uuid,
) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let rows: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT status, reason, changed_at FROM order_status_history WHERE order_id = $1 ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(status, reason, at)| HistoryEntry { status, reason, at })
        .collect())
}

/// The order's applied-change count, with the change in progress (if any).
pub async fn delivery_state(
    connection: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<(Option<Uuid>, i32)>, sqlx::Error> {
    sqlx::query_as("SELECT delivery_change_id, delivery_revision FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_optional(connection)
        .await
}

pub async fn set_delivery_change(
    connection: &mut PgConnection,
    order_id: Uuid,
    change: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET delivery_change_id = $2, updated_at = now() WHERE id = $1")
        .bind(order_id)
        .bind(change)
        .execute(connection)
        .await?;
    Ok(())
}

/// Writes a delivery change into the order and closes it (one history line records it).
#[allow(clippy::too_many_arguments)]
pub async fn apply_delivery_change(
    connection: &mut PgConnection,
    order_id: Uuid,
    revision: i32,
    address: &Address,
    courier: &str,
    totals: &Totals,
    client_secret: Option<&str>,
    status: OrderStatus,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET shipping_address = $2, courier = $3, shipping = $4, total = $5,
                payment_client_secret = COALESCE($6, payment_client_secret),
                delivery_revision = $7, delivery_change_id = NULL, updated_at = now()
         WHERE id = $1",
    )
    .bind(order_id)
    .bind(Json(address))
    .bind(courier)
    .bind(totals.shipping)
    .bind(totals.total)
    .bind(client_secret)
    .bind(revision)
    .execute(&mut *connection)
    .await?;
    sqlx::query("INSERT INTO order_status_history (order_id, status, reason) VALUES ($1, $2, $3)")
        .bind(order_id)
        .bind(status.as_str())
        .bind(format!(
            "delivery changed (revision {revision}): {courier} to {}, total {}",
            address.country, totals.total
        ))
        .execute(connection)
        .await?;
    Ok(())
}
