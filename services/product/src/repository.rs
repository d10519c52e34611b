//! PostgreSQL access for products, prices, stock and reservations.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::{
    Money, NewProduct, Page, Product, ProductDetails, ReservationLine, ReservationStatus,
};
use commerce_runtime::api::money_scale;

#[derive(sqlx::FromRow)]
struct ProductRow {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    category: String,
    price_amount: Decimal,
    currency: String,
    stock: i64,
    reserved: i64,
    attributes: sqlx::types::Json<BTreeMap<String, String>>,
    images: Vec<String>,
    active: bool,
    version: i64,
    revision: i64,
    units_sold: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Self {
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            category: row.category,
            price: Money {
                amount: money_scale(row.price_amount),
                currency: row.currency,
            },
            stock: row.stock,
            reserved: row.reserved,
            attributes: row.attributes.0,
            images: row.images,
            active: row.active,
            version: row.version,
            revision: row.revision,
            units_sold: row.units_sold,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const COLUMNS: &str = "id, sku, name, description, category, price_amount, currency, stock, reserved, \
                       attributes, images, active, version, revision, units_sold, created_at, updated_at";

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("a product with sku `{0}` already exists")]
    DuplicateSku(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn insert(
    connection: &mut PgConnection,
    product: &NewProduct,
) -> Result<Product, RepositoryError> {
    let row: ProductRow = sqlx::query_as(&format!(
        "INSERT INTO products (id, sku, name, description, category, price_amount, currency, stock,
                               attributes, images, active)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&product.sku)
    .bind(&product.name)
    .bind(&product.description)
    .bind(&product.category)
    .bind(product.price.amount)
    .bind(&product.price.currency)
    .bind(product.stock)
    .bind(sqlx::types::Json(&product.attributes))
    .bind(&product.images)
    .bind(product.active)
    .fetch_one(connection)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            RepositoryError::DuplicateSku(product.sku.clone())
        }
        _ => RepositoryError::Database(error),
    })?;
    Ok(row.into())
}

pub async fn get(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Product>, RepositoryError> {
    let row: Option<ProductRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(Into::into))
}

/// Locks the product row for the rest of the transaction.
pub async fn lock(
    connection: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Product>, RepositoryError> {
    let row: Option<ProductRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(connection)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn get_many(
    executor: impl PgExecutor<'_>,
    ids: &[Uuid],
) -> Result<Vec<Product>, RepositoryError> {
    let rows: Vec<ProductRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE id = ANY($1) AND deleted_at IS NULL ORDER BY id"
    ))
    .bind(ids)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Up to `limit` active products with ids above `after`, in id order: one page of the
/// whole catalogue (keyset paging, so a long walk costs the same per page).
pub async fn catalogue_page(
    executor: impl PgExecutor<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Product>, RepositoryError> {
    let rows: Vec<ProductRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products
         WHERE deleted_at IS NULL AND active AND ($1::uuid IS NULL OR id > $1)
         ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Newest,
    PriceAsc,
    PriceDesc,
    Name,
}

impl Sort {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "newest" => Some(Self::Newest),
            "price_asc" => Some(Self::PriceAsc),
            "price_desc" => Some(Self::PriceDesc),
            "name" => Some(Self::Name),
            _ => None,
        }
    }

    fn order_by(self) -> &'static str {
        match self {
            Self::Newest => "created_at DESC, id DESC",
            Self::PriceAsc => "price_amount ASC, id",
            Self::PriceDesc => "price_amount DESC, id",
            Self::Name => "name ASC, id",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub category: Option<String>,
    pub min_price: Option<Decimal>,
    pub max_price: Option<Decimal>,
    pub in_stock: Option<bool>,
    /// Admins see inactive products too.
    pub include_inactive: bool,
    pub sort: Sort,
}

/// One page and the total number of matches.
pub async fn list(
    executor: impl PgExecutor<'_> + Copy,
    filter: &ListFilter,
    page: Page,
) -> Result<(Vec<Product>, i64), RepositoryError> {
    const WHERE: &str = "deleted_at IS NULL
        AND ($1::text IS NULL OR category = $1)
        AND ($2::numeric IS NULL OR price_amount >= $2)
        AND ($3::numeric IS NULL OR price_amount <= $3)
        AND ($4::bool IS NULL OR (stock - reserved > 0) = $4)
        AND ($5 OR active)";
    let rows: Vec<ProductRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE {WHERE} ORDER BY {} LIMIT $6 OFFSET $7",
        filter.sort.order_by()
    ))
    .bind(&filter.category)
    .bind(filter.min_price)
    .bind(filter.max_price)
    .bind(filter.in_stock)
    .bind(filter.include_inactive)
    .bind(i64::from(page.size))
    .bind(page.offset())
    .fetch_all(executor)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM products WHERE {WHERE}"))
        .bind(&filter.category)
        .bind(filter.min_price)
        .bind(filter.max_price)
        .bind(filter.in_stock)
        .bind(filter.include_inactive)
        .fetch_one(executor)
        .await?;
    Ok((rows.into_iter().map(Into::into).collect(), total))
}

pub async fn count(executor: impl PgExecutor<'_>) -> Result<i64, RepositoryError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(executor)
        .await?)
}

/// Replaces a locked product's details; bumps version and revision.
pub async fn update_details(
    connection: &mut PgConnection,
    id: Uuid,
    details: &ProductDetails,
) -> Result<Product, RepositoryError> {
    let row: ProductRow = sqlx::query_as(&format!(
        "UPDATE products SET name = $2, description = $3, category = $4, price_amount = $5, currency = $6,
             attributes = $7, images = $8, active = $9,
             version = version + 1, revision = revision + 1, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&details.name)
    .bind(&details.description)
    .bind(&details.category)
    .bind(details.price.amount)
    .bind(&details.price.currency)
    .bind(sqlx::types::Json(&details.attributes))
    .bind(&details.images)
    .bind(details.active)
    .fetch_one(connection)
    .await?;
    Ok(row.into())
}

pub async fn soft_delete(connection: &mut PgConnection, id: Uuid) -> Result<i64, RepositoryError> {
    Ok(sqlx::query_scalar(
        "UPDATE products SET deleted_at = now(), active = false, version = version + 1,
             revision = revision + 1, updated_at = now()
         WHERE id = $1 RETURNING revision",
    )
    .bind(id)
    .fetch_one(connection)
    .await?)
}

pub async fn record_price(
    connection: &mut PgConnection,
    product_id: Uuid,
    price: &Money,
    actor: &str,
) -> Result<(), RepositoryError> {
    sqlx::query("INSERT INTO price_history (product_id, price_amount, currency, changed_by) VALUES ($1, $2, $3, $4)")
        .bind(product_id)
        .bind(price.amount)
        .bind(&price.currency)
        .bind(actor)
        .execute(connection)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PricePoint {
    pub price: Money,
    pub changed_by: String,
    pub changed_at: DateTime<Utc>,
}

pub async fn price_history(
    executor: impl PgExecutor<'_>,
    product_id: Uuid,
) -> Result<Vec<PricePoint>, RepositoryError> {
    let rows: Vec<(Decimal, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT price_amount, currency, changed_by, changed_at FROM price_history WHERE product_id = $1 ORDER BY id",
    )
    .bind(product_id)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(amount, currency, changed_by, changed_at)| PricePoint {
            price: Money {
                amount: money_scale(amount),
                currency,
            },
            changed_by,
            changed_at,
        })
        .collect())
}

/// Sets a locked product's stock and records who did it and why.
pub async fn adjust_stock(
    connection: &mut PgConnection,
    product_id: Uuid,
    delta: i64,
    reason: &str,
    actor: &str,
) -> Result<Product, RepositoryError> {
    let row: ProductRow = sqlx::query_as(&format!(
        "UPDATE products SET stock = stock + $2, version = version + 1, revision = revision + 1, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(product_id)
    .bind(delta)
    .fetch_one(&mut *connection)
    .await?;
    sqlx::query(
        "INSERT INTO stock_adjustments (product_id, delta, stock_after, reason, actor) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(product_id)
    .bind(delta)
    .bind(row.stock)
    .bind(reason)
    .bind(actor)
    .execute(connection)
    .await?;
    Ok(row.into())
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StockAdjustment {
    pub delta: i64,
    pub stock_after: i64,
    pub reason: String,
    pub actor: String,
    pub created_at: DateTime<Utc>,
}

pub async fn stock_adjustments(
    executor: impl PgExecutor<'_>,
    product_id: Uuid,
) -> Result<Vec<StockAdjustment>, RepositoryError> {
    let rows: Vec<(i64, i64, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT delta, stock_after, reason, actor, created_at FROM stock_adjustments WHERE product_id = $1 ORDER BY id",
    )
    .bind(product_id)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(delta, stock_after, reason, actor, created_at)| StockAdjustment {
                delta,
                stock_after,
                reason,
                actor,
                created_at,
            },
        )
        .collect())
}

// --- reservations -----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRow {
    pub product_id: Uuid,
    pub quantity: i64,
    pub status: ReservationStatus,
}

/// An order's reservation rows, locked. Concurrent calls for one order serialise on the
/// advisory lock, so a retried call sees the first one's outcome.
pub async fn lock_order(
    connection: &mut PgConnection,
    order_id: Uuid,
) -> Result<Vec<ReservationRow>, RepositoryError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
        .bind(order_id)
        .execute(&mut *connection)
        .await?;
    let rows: Vec<(Uuid, i64, String)> = sqlx::query_as(
        "SELECT product_id, quantity, status FROM stock_reservations WHERE order_id = $1 ORDER BY product_id FOR UPDATE",
    )
    .bind(order_id)
    .fetch_all(connection)
    .await?;
    rows.into_iter()
        .map(|(product_id, quantity, status)| {
            let status = ReservationStatus::parse(&status).ok_or_else(|| {
                sqlx::Error::Decode(format!("reservation status `{status}`").into())
            })?;
            Ok(ReservationRow {
                product_id,
                quantity,
                status,
            })
        })
        .collect()
}

/// Locks the products in id order (one global order: no deadlocks between orders).
pub async fn lock_products(
    connection: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Product>, RepositoryError> {
    let rows: Vec<ProductRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE id = ANY($1) AND deleted_at IS NULL ORDER BY id FOR UPDATE"
    ))
    .bind(ids)
    .fetch_all(connection)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn insert_reservation(
    connection: &mut PgConnection,
    order_id: Uuid,
    line: &ReservationLine,
) -> Result<(), RepositoryError> {
    sqlx::query(
        "INSERT INTO stock_reservations (order_id, product_id, quantity, status) VALUES ($1, $2, $3, 'reserved')",
    )
    .bind(order_id)
    .bind(line.product_id)
    .bind(line.quantity)
    .execute(&mut *connection)
    .await?;
    sqlx::query("UPDATE products SET reserved = reserved + $2, revision = revision + 1, updated_at = now() WHERE id = $1")
        .bind(line.product_id)
        .bind(line.quantity)
        .execute(connection)
        .await?;
    Ok(())
}

/// Moves one reserved line to `to` (deducted: leaves stock; released: back to available).
pub async fn settle_reservation(
    connection: &mut PgConnection,
    order_id: Uuid,
    row: &ReservationRow,
    to: ReservationStatus,
) -> Result<(), RepositoryError> {
    // reserved → deducted: the units leave stock, sold; reserved → released: they are free
    // again; deducted → restocked: they come back to stock, unsold.
    let (reserved_change, stock_change) = match to {
        ReservationStatus::Deducted => (row.quantity, row.quantity),
        ReservationStatus::Restocked => (0, -row.quantity),
        _ => (row.quantity, 0),
    };
    sqlx::query(
        "UPDATE products SET reserved = reserved - $2, stock = stock - $3, units_sold = units_sold + $3,
                revision = revision + 1, updated_at = now()
         WHERE id = $1",
    )
    .bind(row.product_id)
    .bind(reserved_change)
    .bind(stock_change)
    .execute(&mut *connection)
    .await?;
    sqlx::query("UPDATE stock_reservations SET status = $3, updated_at = now() WHERE order_id = $1 AND product_id = $2")
        .bind(order_id)
        .bind(row.product_id)
        .bind(to.as_str())
        .execute(connection)
        .await?;
    Ok(())
}
