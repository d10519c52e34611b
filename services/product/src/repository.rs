//! PostgreSQL access for products.

use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{Money, NewProduct, Page, Product};

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
    version: i64,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Self {
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            category: row.category,
            // The column is NUMERIC(19,4); keep the scale the product was priced with.
            price: Money {
                amount: money_scale(row.price_amount),
                currency: row.currency,
            },
            stock: row.stock,
            reserved: row.reserved,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const COLUMNS: &str = "id, sku, name, description, category, price_amount, currency, stock, reserved, version, created_at, updated_at";

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
        "INSERT INTO products (id, sku, name, description, category, price_amount, currency, stock)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&product.sku)
    .bind(&product.name)
    .bind(&product.description)
    .bind(&product.category)
    .bind(product.price.amount)
    .bind(&product.price.currency)
    .bind(product.stock)
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

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Product>, RepositoryError> {
    let row: Option<ProductRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM products WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(Into::into))
}

pub async fn get_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Product>, RepositoryError> {
    let rows: Vec<ProductRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE id = ANY($1) ORDER BY id"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Newest first; returns the page and the total count.
pub async fn list(
    pool: &PgPool,
    category: Option<&str>,
    page: Page,
) -> Result<(Vec<Product>, i64), RepositoryError> {
    let rows: Vec<ProductRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE ($1::text IS NULL OR category = $1)
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(category)
    .bind(i64::from(page.size))
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM products WHERE ($1::text IS NULL OR category = $1)",
    )
    .bind(category)
    .fetch_one(pool)
    .await?;
    Ok((rows.into_iter().map(Into::into).collect(), total))
}

pub async fn count(pool: &PgPool) -> Result<i64, RepositoryError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(pool)
        .await?)
}

/// Drops the column's padding zeros but keeps at least cents: 9.9000 → 9.90, 1.2345 → 1.2345.
fn money_scale(amount: Decimal) -> Decimal {
    let mut amount = amount.normalize();
    if amount.scale() < 2 {
        amount.rescale(2);
    }
    amount
}
