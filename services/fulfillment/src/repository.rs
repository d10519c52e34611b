//! PostgreSQL access for couriers and rate tables.

use rust_decimal::Decimal;
use sqlx::PgExecutor;

use crate::domain::Rate;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Courier {
    pub code: String,
    pub name: String,
}

/// `None` for an unknown courier; `Some(false)` for a known but inactive one.
pub async fn courier_active(
    executor: impl PgExecutor<'_>,
    code: &str,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT active FROM couriers WHERE code = $1")
        .bind(code)
        .fetch_optional(executor)
        .await
}

pub async fn active_couriers(executor: impl PgExecutor<'_>) -> Result<Vec<Courier>, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT code, name FROM couriers WHERE active ORDER BY code")
            .fetch_all(executor)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(code, name)| Courier { code, name })
        .collect())
}

/// The courier's rates for `country` and for the rest of the world.
pub async fn rates(
    executor: impl PgExecutor<'_>,
    courier: &str,
    country: &str,
) -> Result<Vec<Rate>, sqlx::Error> {
    let rows: Vec<(String, i64, Decimal, String, i32)> = sqlx::query_as(
        "SELECT zone, max_weight_g, price, currency, estimated_days FROM shipping_rates
         WHERE courier = $1 AND zone IN ($2, '*') ORDER BY zone, max_weight_g",
    )
    .bind(courier)
    .bind(country)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(zone, max_weight_g, price, currency, estimated_days)| Rate {
                zone,
                max_weight_g,
                price: commerce_runtime::api::money_scale(price),
                currency,
                estimated_days,
            },
        )
        .collect())
}
