//! PostgreSQL access for payments and their status history.

use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::PaymentStatus;

#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub gateway: String,
    pub amount: Decimal,
    pub currency: String,
    pub status: PaymentStatus,
    pub provider_reference: String,
    pub client_secret: String,
}

type PaymentRow = (Uuid, Uuid, String, Decimal, String, String, String, String);

fn from_row(
    (id, order_id, gateway, amount, currency, status, provider_reference, client_secret): PaymentRow,
) -> Result<Payment, sqlx::Error> {
    Ok(Payment {
        id,
        order_id,
        gateway,
        amount: amount.normalize(),
        currency,
        status: PaymentStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("status `{status}`").into()))?,
        provider_reference,
        client_secret,
    })
}

/// Serialises work on one order's payment for the rest of the transaction.
pub async fn lock_order(
    connection: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 1))")
        .bind(order_id)
        .execute(&mut *connection)
        .await?;
    let row: Option<PaymentRow> = sqlx::query_as(
        "SELECT id, order_id, gateway, amount, currency, status, provider_reference, client_secret
         FROM payments WHERE order_id = $1 FOR UPDATE",
    )
    .bind(order_id)
    .fetch_optional(connection)
    .await?;
    row.map(from_row).transpose()
}

pub async fn insert(
    connection: &mut PgConnection,
    payment: &Payment,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments (id, order_id, user_id, gateway, amount, currency, status, provider_reference, client_secret)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(payment.id)
    .bind(payment.order_id)
    .bind(user_id)
    .bind(&payment.gateway)
    .bind(payment.amount)
    .bind(&payment.currency)
    .bind(payment.status.as_str())
    .bind(&payment.provider_reference)
    .bind(&payment.client_secret)
    .execute(&mut *connection)
    .await?;
    record_status(connection, payment.id, payment.status, "created").await
}

pub async fn set_status(
    connection: &mut PgConnection,
    id: Uuid,
    status: PaymentStatus,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payments SET status = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(status.as_str())
        .execute(&mut *connection)
        .await?;
    record_status(connection, id, status, reason).await
}

async fn record_status(
    connection: &mut PgConnection,
    id: Uuid,
    status: PaymentStatus,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payment_status_history (payment_id, status, reason) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(reason)
    .execute(connection)
    .await?;
    Ok(())
}
