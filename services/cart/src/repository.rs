//! PostgreSQL access for carts, promo codes and checkout sessions.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use commerce_runtime::api::money_scale;

use crate::domain::{PricedLine, PromoCode, PromoKind};

/// Whose cart: a signed-in user's, or a guest device's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    User(Uuid),
    Guest(Uuid),
}

impl Owner {
    fn columns(self) -> (Option<Uuid>, Option<Uuid>) {
        match self {
            Self::User(id) => (Some(id), None),
            Self::Guest(id) => (None, Some(id)),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CartRow {
    pub id: Uuid,
    pub promo_code: Option<String>,
    pub revision: i64,
}

pub async fn active_cart(
    executor: impl PgExecutor<'_>,
    owner: Owner,
) -> Result<Option<CartRow>, sqlx::Error> {
    let (user, guest) = owner.columns();
    sqlx::query_as(
        "SELECT id, promo_code, revision FROM carts WHERE status = 'active'
         AND (($1::uuid IS NOT NULL AND user_id = $1) OR ($2::uuid IS NOT NULL AND guest_id = $2))",
    )
    .bind(user)
    .bind(guest)
    .fetch_optional(executor)
    .await
}

/// The owner's active cart, created if there is none, locked for the transaction.
pub async fn lock_or_create_cart(
    connection: &mut PgConnection,
    owner: Owner,
) -> Result<CartRow, sqlx::Error> {
    let (user, guest) = owner.columns();
    sqlx::query("INSERT INTO carts (id, user_id, guest_id, status) VALUES ($1, $2, $3, 'active') ON CONFLICT DO NOTHING")
        .bind(Uuid::now_v7())
        .bind(user)
        .bind(guest)
        .execute(&mut *connection)
        .await?;
    sqlx::query_as(
        "SELECT id, promo_code, revision FROM carts WHERE status = 'active'
         AND (($1::uuid IS NOT NULL AND user_id = $1) OR ($2::uuid IS NOT NULL AND guest_id = $2)) FOR UPDATE",
    )
    .bind(user)
    .bind(guest)
    .fetch_one(connection)
    .await
}

pub async fn items(
    executor: impl PgExecutor<'_>,
    cart_id: Uuid,
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT product_id, quantity FROM cart_items WHERE cart_id = $1 ORDER BY added_at, product_id")
        .bind(cart_id)
        .fetch_all(executor)
        .await
}

pub async fn set_quantity(
    connection: &mut PgConnection,
    cart_id: Uuid,
    product_id: Uuid,
    quantity: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES ($1, $2, $3)
         ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = EXCLUDED.quantity",
    )
    .bind(cart_id)
    .bind(product_id)
    .bind(quantity)
    .execute(&mut *connection)
    .await?;
    touch(connection, cart_id).await
}

pub async fn remove_item(
    connection: &mut PgConnection,
    cart_id: Uuid,
    product_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let removed = sqlx::query("DELETE FROM cart_items WHERE cart_id = $1 AND product_id = $2")
        .bind(cart_id)
        .bind(product_id)
        .execute(&mut *connection)
        .await?;
    touch(connection, cart_id).await?;
    Ok(removed.rows_affected() == 1)
}

pub async fn clear(connection: &mut PgConnection, cart_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM cart_items WHERE cart_id = $1")
        .bind(cart_id)
        .execute(&mut *connection)
        .await?;
    sqlx::query("UPDATE carts SET promo_code = NULL WHERE id = $1")
        .bind(cart_id)
        .execute(&mut *connection)
        .await?;
    touch(connection, cart_id).await
}

async fn touch(connection: &mut PgConnection, cart_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE carts SET updated_at = now(), abandoned_at = NULL, revision = revision + 1 WHERE id = $1")
        .bind(cart_id)
        .execute(connection)
        .await?;
    Ok(())
}

pub async fn set_promo(
    connection: &mut PgConnection,
    cart_id: Uuid,
    code: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE carts SET promo_code = $2, updated_at = now(), revision = revision + 1 WHERE id = $1")
        .bind(cart_id)
        .bind(code)
        .execute(connection)
        .await?;
    Ok(())
}

pub async fn set_status(
    executor: impl PgExecutor<'_>,
    cart_id: Uuid,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE carts SET status = $2, updated_at = now(), revision = revision + 1 WHERE id = $1",
    )
    .bind(cart_id)
    .bind(status)
    .execute(executor)
    .await?;
    Ok(())
}

/// A cart idle since before `idle_since` with items and not yet announced, locked; with
/// its owner and contents.
pub async fn lock_idle_cart(
    connection: &mut PgConnection,
    cart_id: Uuid,
    idle_since: DateTime<Utc>,
) -> Result<Option<(Option<Uuid>, Vec<(Uuid, i64)>)>, sqlx::Error> {
    let owner: Option<(Option<Uuid>,)> = sqlx::query_as(
        "SELECT user_id FROM carts WHERE id = $1 AND status = 'active' AND abandoned_at IS NULL
         AND updated_at <= $2 FOR UPDATE",
    )
    .bind(cart_id)
    .bind(idle_since)
    .fetch_optional(&mut *connection)
    .await?;
    let Some((user_id,)) = owner else {
        return Ok(None);
    };
    let lines = items(&mut *connection, cart_id).await?;
    Ok((!lines.is_empty()).then_some((user_id, lines)))
}

/// Where a cart stands since it was announced abandoned.
pub enum Abandonment {
    UnknownCart,
    /// Changed (any change clears `abandoned_at`), emptied or ordered since.
    Over,
    /// Still active, announced and untouched, with items.
    Ongoing {
        user_id: Option<Uuid>,
        lines: Vec<(Uuid, i64)>,
    },
}

pub async fn abandonment(
    connection: &mut PgConnection,
    cart_id: Uuid,
) -> Result<Abandonment, sqlx::Error> {
    let cart: Option<(Option<Uuid>, bool)> = sqlx::query_as(
        "SELECT user_id, status = 'active' AND abandoned_at IS NOT NULL FROM carts WHERE id = $1",
    )
    .bind(cart_id)
    .fetch_optional(&mut *connection)
    .await?;
    Ok(match cart {
        None => Abandonment::UnknownCart,
        Some((_, false)) => Abandonment::Over,
        Some((user_id, true)) => {
            let lines = items(&mut *connection, cart_id).await?;
            if lines.is_empty() {
                Abandonment::Over
            } else {
                Abandonment::Ongoing { user_id, lines }
            }
        }
    })
}

pub async fn mark_abandoned(
    connection: &mut PgConnection,
    cart_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE carts SET abandoned_at = now() WHERE id = $1")
        .bind(cart_id)
        .execute(connection)
        .await?;
    Ok(())
}

/// Deletes carts idle since before `cutoff` that no checkout refers to; returns how many.
pub async fn delete_stale_carts(
    executor: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM carts c WHERE c.updated_at < $1 AND c.status IN ('active', 'merged', 'abandoned')
         AND NOT EXISTS (SELECT 1 FROM checkout_sessions s WHERE s.cart_id = c.id)",
    )
    .bind(cutoff)
    .execute(executor)
    .await?;
    Ok(deleted.rows_affected())
}

// --- promo codes --------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct PromoRow {
    code: String,
    kind: String,
    value: Decimal,
    currency: Option<String>,
    min_subtotal: Decimal,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    max_uses: Option<i32>,
    max_uses_per_user: Option<i32>,
    uses: i32,
}

impl From<PromoRow> for PromoCode {
    fn from(row: PromoRow) -> Self {
        Self {
            code: row.code,
            kind: if row.kind == "fixed" {
                PromoKind::Fixed
            } else {
                PromoKind::Percent
            },
            value: row.value.normalize(),
            currency: row.currency,
            min_subtotal: money_scale(row.min_subtotal),
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            max_uses: row.max_uses,
            max_uses_per_user: row.max_uses_per_user,
            uses: row.uses,
        }
    }
}

const PROMO_COLUMNS: &str = "code, kind, value, currency, min_subtotal, starts_at, ends_at, max_uses, max_uses_per_user, uses";

/// `false` when the code exists already.
pub async fn insert_promo(
    executor: impl PgExecutor<'_>,
    promo: &PromoCode,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO promo_codes (code, kind, value, currency, min_subtotal, starts_at, ends_at, max_uses, max_uses_per_user)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (code) DO NOTHING",
    )
    .bind(&promo.code)
    .bind(match promo.kind {
        PromoKind::Percent => "percent",
        PromoKind::Fixed => "fixed",
    })
    .bind(promo.value)
    .bind(&promo.currency)
    .bind(promo.min_subtotal)
    .bind(promo.starts_at)
    .bind(promo.ends_at)
    .bind(promo.max_uses)
    .bind(promo.max_uses_per_user)
    .execute(executor)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn promo(
    executor: impl PgExecutor<'_>,
    code: &str,
) -> Result<Option<PromoCode>, sqlx::Error> {
    let row: Option<PromoRow> = sqlx::query_as(&format!(
        "SELECT {PROMO_COLUMNS} FROM promo_codes WHERE code = $1"
    ))
    .bind(code)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn lock_promo(
    connection: &mut PgConnection,
    code: &str,
) -> Result<Option<PromoCode>, sqlx::Error> {
    let row: Option<PromoRow> = sqlx::query_as(&format!(
        "SELECT {PROMO_COLUMNS} FROM promo_codes WHERE code = $1 FOR UPDATE"
    ))
    .bind(code)
    .fetch_optional(connection)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn list_promos(executor: impl PgExecutor<'_>) -> Result<Vec<PromoCode>, sqlx::Error> {
    let rows: Vec<PromoRow> = sqlx::query_as(&format!(
        "SELECT {PROMO_COLUMNS} FROM promo_codes ORDER BY created_at DESC"
    ))
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn user_redemptions(
    executor: impl PgExecutor<'_>,
    code: &str,
    user_id: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM promo_redemptions WHERE code = $1 AND user_id = $2")
        .bind(code)
        .bind(user_id)
        .fetch_one(executor)
        .await
}

pub async fn redeem(
    connection: &mut PgConnection,
    code: &str,
    user_id: Uuid,
    order_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO promo_redemptions (code, user_id, order_id) VALUES ($1, $2, $3)")
        .bind(code)
        .bind(user_id)
        .bind(order_id)
        .execute(&mut *connection)
        .await?;
    sqlx::query("UPDATE promo_codes SET uses = uses + 1 WHERE code = $1")
        .bind(code)
        .execute(connection)
        .await?;
    Ok(())
}

// --- checkout sessions ----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub recipient: String,
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: String,
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub cart_id: Uuid,
    pub items: Vec<PricedLine>,
    #[serde(with = "rust_decimal::serde::str")]
    pub subtotal: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub discount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    pub currency: String,
    pub promo_code: Option<String>,
    pub shipping_address: Address,
    pub courier: String,
    pub payment_gateway: String,
    pub status: String,
    pub order_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    user_id: Uuid,
    cart_id: Uuid,
    items: sqlx::types::Json<Vec<PricedLine>>,
    subtotal: Decimal,
    discount: Decimal,
    currency: String,
    promo_code: Option<String>,
    shipping_address: sqlx::types::Json<Address>,
    courier: String,
    payment_gateway: String,
    status: String,
    order_id: Option<Uuid>,
    expires_at: DateTime<Utc>,
}

impl From<SessionRow> for CheckoutSession {
    fn from(row: SessionRow) -> Self {
        let (subtotal, discount) = (money_scale(row.subtotal), money_scale(row.discount));
        Self {
            id: row.id,
            user_id: row.user_id,
            cart_id: row.cart_id,
            items: row.items.0,
            subtotal,
            discount,
            total: subtotal - discount,
            currency: row.currency,
            promo_code: row.promo_code,
            shipping_address: row.shipping_address.0,
            courier: row.courier,
            payment_gateway: row.payment_gateway,
            status: row.status,
            order_id: row.order_id,
            expires_at: row.expires_at,
        }
    }
}

const SESSION_COLUMNS: &str = "id, user_id, cart_id, items, subtotal, discount, currency, promo_code, \
                               shipping_address, courier, payment_gateway, status, order_id, expires_at";

pub async fn insert_session(
    connection: &mut PgConnection,
    session: &CheckoutSession,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO checkout_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(session.id)
    .bind(session.user_id)
    .bind(session.cart_id)
    .bind(sqlx::types::Json(&session.items))
    .bind(session.subtotal)
    .bind(session.discount)
    .bind(&session.currency)
    .bind(&session.promo_code)
    .bind(sqlx::types::Json(&session.shipping_address))
    .bind(&session.courier)
    .bind(&session.payment_gateway)
    .bind(&session.status)
    .bind(session.order_id)
    .bind(session.expires_at)
    .execute(connection)
    .await?;
    Ok(())
}

pub async fn session(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<CheckoutSession>, sqlx::Error> {
    let row: Option<SessionRow> = sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM checkout_sessions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn lock_session(
    connection: &mut PgConnection,
    id: Uuid,
) -> Result<Option<CheckoutSession>, sqlx::Error> {
    let row: Option<SessionRow> = sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM checkout_sessions WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(connection)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn complete_session(
    connection: &mut PgConnection,
    id: Uuid,
    order_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE checkout_sessions SET status = 'completed', order_id = $2 WHERE id = $1")
        .bind(id)
        .bind(order_id)
        .execute(connection)
        .await?;
    Ok(())
}

/// Closes the cart a checkout session came from once its order exists. `false` when the
/// cart was already closed (or the session is unknown).
pub async fn close_for_order(
    connection: &mut PgConnection,
    session_id: Uuid,
    order_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let closed = sqlx::query(
        "UPDATE carts SET status = 'ordered', order_id = $2, updated_at = now(), revision = revision + 1
         WHERE id = (SELECT cart_id FROM checkout_sessions WHERE id = $1) AND status = 'checked_out'",
    )
    .bind(session_id)
    .bind(order_id)
    .execute(connection)
    .await?;
    Ok(closed.rows_affected() == 1)
}
