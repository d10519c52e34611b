//! PostgreSQL access for payments, their status history, refunds, disputes, webhook
//! deliveries and idempotency keys.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::PaymentStatus;

#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub gateway: String,
    pub amount: Decimal,
    pub currency: String,
    pub status: PaymentStatus,
    pub provider_reference: String,
    pub client_secret: String,
    pub refunded_amount: Decimal,
    /// How many times the intent was replaced by a re-pricing.
    pub revision: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct PaymentRow {
    id: Uuid,
    order_id: Uuid,
    user_id: Uuid,
    gateway: String,
    amount: Decimal,
    currency: String,
    status: String,
    provider_reference: String,
    client_secret: String,
    refunded_amount: Decimal,
    revision: i32,
    created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, order_id, user_id, gateway, amount, currency, status, provider_reference,
    client_secret, refunded_amount, revision, created_at";

fn from_row(row: PaymentRow) -> Result<Payment, sqlx::Error> {
    Ok(Payment {
        id: row.id,
        order_id: row.order_id,
        user_id: row.user_id,
        gateway: row.gateway,
        amount: row.amount.normalize(),
        currency: row.currency.trim().to_owned(),
        status: PaymentStatus::parse(&row.status)
            .ok_or_else(|| sqlx::Error::Decode(format!("status `{}`", row.status).into()))?,
        provider_reference: row.provider_reference,
        client_secret: row.client_secret,
        refunded_amount: row.refunded_amount.normalize(),
        revision: row.revision,
        created_at: row.created_at,
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
    let row: Option<PaymentRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payments WHERE order_id = $1 FOR UPDATE"
    ))
    .bind(order_id)
    .fetch_optional(connection)
    .await?;
    row.map(from_row).transpose()
}

/// The order id of the payment a provider knows by `reference`.
/// The order a provider reference belongs to, and the amount that intent asked for (a
/// retired intent asked for the payment's amount before it was re-priced).
pub async fn intent_of_reference(
    executor: impl PgExecutor<'_>,
    gateway: &str,
    reference: &str,
) -> Result<Option<(Uuid, Decimal)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_id, amount FROM payments WHERE gateway = $1 AND provider_reference = $2
         UNION ALL
         SELECT p.order_id, r.amount FROM retired_intents r JOIN payments p ON p.id = r.payment_id
         WHERE r.gateway = $1 AND r.provider_reference = $2
         LIMIT 1",
    )
    .bind(gateway)
    .bind(reference)
    .fetch_optional(executor)
    .await
}

pub async fn payment(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Payment>, sqlx::Error> {
    let row: Option<PaymentRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM payments WHERE id = $1"))
            .bind(id)
            .fetch_optional(executor)
            .await?;
    row.map(from_row).transpose()
}

pub async fn insert(connection: &mut PgConnection, payment: &Payment) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments (id, order_id, user_id, gateway, amount, currency, status, provider_reference, client_secret)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(payment.id)
    .bind(payment.order_id)
    .bind(payment.user_id)
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

/// Puts a new intent in place of the payment's current one, keeping the old reference.
pub async fn replace_intent(
    connection: &mut PgConnection,
    payment: &Payment,
    amount: Decimal,
    revision: i32,
    reference: &str,
    client_secret: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO retired_intents (gateway, provider_reference, payment_id, amount, revision)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&payment.gateway)
    .bind(&payment.provider_reference)
    .bind(payment.id)
    .bind(payment.amount)
    .bind(payment.revision)
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "UPDATE payments SET amount = $2, revision = $3, provider_reference = $4,
                client_secret = $5, status = 'requires_payment', updated_at = now()
         WHERE id = $1",
    )
    .bind(payment.id)
    .bind(amount)
    .bind(revision)
    .bind(reference)
    .bind(client_secret)
    .execute(&mut *connection)
    .await?;
    record_status(
        connection,
        payment.id,
        PaymentStatus::RequiresPayment,
        &format!("re-priced to {amount} (revision {revision})"),
    )
    .await
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

/// A line in the payment's history without a change of status.
pub async fn record_status(
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

pub async fn status_history(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Vec<(String, String, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, reason, changed_at FROM payment_status_history WHERE payment_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(executor)
    .await
}

/// Records a webhook delivery; `false` when this event was seen before.
pub async fn record_webhook(
    connection: &mut PgConnection,
    gateway: &str,
    event_id: &str,
    event_type: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO webhook_events (gateway, event_id, event_type) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(gateway)
    .bind(event_id)
    .bind(event_type)
    .execute(connection)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn link_webhook(
    connection: &mut PgConnection,
    gateway: &str,
    event_id: &str,
    payment_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_events SET payment_id = $3 WHERE gateway = $1 AND event_id = $2")
        .bind(gateway)
        .bind(event_id)
        .bind(payment_id)
        .execute(connection)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub id: Uuid,
    pub payment_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub status: String,
    pub reason: String,
    pub provider_reference: String,
}

pub async fn insert_refund(
    connection: &mut PgConnection,
    refund: &Refund,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refunds (id, payment_id, amount, currency, status, reason, provider_reference)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(refund.id)
    .bind(refund.payment_id)
    .bind(refund.amount)
    .bind(&refund.currency)
    .bind(&refund.status)
    .bind(&refund.reason)
    .bind(&refund.provider_reference)
    .execute(connection)
    .await?;
    Ok(())
}

/// Sets a refund's status by its provider reference; the refund as it was before, if the
/// status changed.
pub async fn settle_refund(
    connection: &mut PgConnection,
    provider_reference: &str,
    status: &str,
) -> Result<Option<Refund>, sqlx::Error> {
    let row: Option<(Uuid, Uuid, Decimal, String, String, String)> = sqlx::query_as(
        "UPDATE refunds SET status = $2, updated_at = now()
         WHERE provider_reference = $1 AND status = 'pending'
         RETURNING id, payment_id, amount, currency, reason, provider_reference",
    )
    .bind(provider_reference)
    .bind(status)
    .fetch_optional(connection)
    .await?;
    Ok(row.map(
        |(id, payment_id, amount, currency, reason, provider_reference)| Refund {
            id,
            payment_id,
            amount: amount.normalize(),
            currency: currency.trim().to_owned(),
            status: status.to_owned(),
            reason,
            provider_reference,
        },
    ))
}

pub async fn refunds(
    executor: impl PgExecutor<'_>,
    payment_id: Uuid,
) -> Result<Vec<Refund>, sqlx::Error> {
    let rows: Vec<(Uuid, Uuid, Decimal, String, String, String, String)> = sqlx::query_as(
        "SELECT id, payment_id, amount, currency, status, reason, provider_reference
         FROM refunds WHERE payment_id = $1 ORDER BY created_at",
    )
    .bind(payment_id)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, payment_id, amount, currency, status, reason, provider_reference)| Refund {
                id,
                payment_id,
                amount: amount.normalize(),
                currency: currency.trim().to_owned(),
                status,
                reason,
                provider_reference,
            },
        )
        .collect())
}

/// Adds `amount` to what was refunded of the payment (pending refunds count: the money
/// is promised).
pub async fn add_refunded(
    connection: &mut PgConnection,
    payment_id: Uuid,
    amount: Decimal,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payments SET refunded_amount = refunded_amount + $2, updated_at = now() WHERE id = $1")
        .bind(payment_id)
        .bind(amount)
        .execute(connection)
        .await?;
    Ok(())
}

pub async fn record_dispute(
    connection: &mut PgConnection,
    payment_id: Uuid,
    provider_reference: &str,
    reason: &str,
    amount: Option<Decimal>,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO disputes (id, payment_id, provider_reference, reason, amount, status)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (payment_id, provider_reference) DO UPDATE SET status = EXCLUDED.status",
    )
    .bind(Uuid::now_v7())
    .bind(payment_id)
    .bind(provider_reference)
    .bind(reason)
    .bind(amount)
    .bind(status)
    .execute(connection)
    .await?;
    Ok(())
}

pub async fn idempotent_response(
    executor: impl PgExecutor<'_>,
    key: &str,
) -> Result<Option<(String, serde_json::Value)>, sqlx::Error> {
    sqlx::query_as("SELECT operation, response FROM idempotency_keys WHERE key = $1")
        .bind(key)
        .fetch_optional(executor)
        .await
}

pub async fn remember_response(
    connection: &mut PgConnection,
    key: &str,
    operation: &str,
    response: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO idempotency_keys (key, operation, response) VALUES ($1, $2, $3)")
        .bind(key)
        .bind(operation)
        .bind(response)
        .execute(connection)
        .await?;
    Ok(())
}

/// One row of the admin analytics: a day, a gateway and a status.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct StatsRow {
    pub day: NaiveDate,
    pub gateway: String,
    pub status: String,
    pub currency: String,
    pub count: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: Decimal,
}

pub async fn stats(
    executor: impl PgExecutor<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<StatsRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, gateway, status, trim(currency) AS currency,
                count(*) AS count, sum(amount) AS amount, sum(refunded_amount) AS refunded
         FROM payments WHERE created_at >= $1 AND created_at < $2
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
    .bind(from)
    .bind(to)
    .fetch_all(executor)
    .await
}

/// Per day (UTC), gateway and currency in `[from, to)`: payments taken (by when they first
/// succeeded), refunds that went through (by when they did), disputes opened.
pub async fn report_rows(
    executor: impl PgExecutor<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<crate::report::DayCounts>, sqlx::Error> {
    type Row = (NaiveDate, String, String, i64, Decimal, i64, Decimal, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "WITH taken AS (
             SELECT p.id, p.gateway, trim(p.currency) AS currency, p.amount,
                    (SELECT min(h.changed_at) FROM payment_status_history h
                     WHERE h.payment_id = p.id AND h.status = 'succeeded') AS at
             FROM payments p
         ), paid AS (
             SELECT (at AT TIME ZONE 'UTC')::date AS day, gateway, currency,
                    count(*) AS paid, sum(amount) AS revenue
             FROM taken WHERE at >= $1 AND at < $2
             GROUP BY 1, 2, 3
         ), refunded AS (
             SELECT (r.updated_at AT TIME ZONE 'UTC')::date AS day, p.gateway,
                    trim(r.currency) AS currency, count(*) AS refunds, sum(r.amount) AS refunded
             FROM refunds r JOIN payments p ON p.id = r.payment_id
             WHERE r.status = 'succeeded' AND r.updated_at >= $1 AND r.updated_at < $2
             GROUP BY 1, 2, 3
         ), disputed AS (
             SELECT (d.created_at AT TIME ZONE 'UTC')::date AS day, p.gateway,
                    trim(p.currency) AS currency, count(*) AS disputes
             FROM disputes d JOIN payments p ON p.id = d.payment_id
             WHERE d.created_at >= $1 AND d.created_at < $2
             GROUP BY 1, 2, 3
         )
         SELECT day, gateway, currency,
                coalesce(paid, 0), coalesce(revenue, 0),
                coalesce(refunds, 0), coalesce(refunded, 0),
                coalesce(disputes, 0)
         FROM paid
         FULL JOIN refunded USING (day, gateway, currency)
         FULL JOIN disputed USING (day, gateway, currency)
         ORDER BY day, gateway, currency",
    )
    .bind(from)
    .bind(to)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(day, gateway, currency, paid, revenue, refunds, refunded, disputes)| {
                crate::report::DayCounts {
                    day,
                    gateway,
                    currency,
                    paid,
                    revenue,
                    refunds,
                    refunded,
                    disputes,
                }
            },
        )
        .collect())
}
