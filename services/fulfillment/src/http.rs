//! The fulfillment service's REST edge: the public courier list and quotes, shipments for their
//! owners and staff, and carrier webhooks.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use commerce_access::{Principal, Role};
use commerce_runtime::api::ApiRoutes;
use uuid::Uuid;

use crate::domain::FulfillmentStatus;
use crate::shipments::{Fulfillment, Shipments};
use commerce_runtime::ApiError;
use serde::Deserialize;

use crate::service::FulfillmentService;

/// Public: which couriers a shopper may choose.
pub fn courier_api() -> ApiRoutes<FulfillmentService> {
    ApiRoutes::new()
        .get("/v1/shipping/couriers", couriers)
        .get("/v1/shipping/quotes", quotes)
}

/// Shipments: their owners and staff read them, staff and carriers report on them.
pub fn shipment_api() -> ApiRoutes<Shipments> {
    ApiRoutes::new()
        .get("/v1/fulfillments/{orderId}", show)
        .patch("/v1/admin/fulfillments/{orderId}", report)
        .post("/v1/fulfillments/webhooks/{carrier}", webhook)
}

/// Every public REST operation (see `openapi/openapi.yaml`).
pub fn operations() -> Vec<(axum::http::Method, &'static str)> {
    let mut operations = courier_api().operations().to_vec();
    operations.extend_from_slice(shipment_api().operations());
    operations
}

fn order_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid("orderId", "must be a UUID"))
}

/// The order's owner and staff see its shipment.
async fn show(
    State(shipments): State<Shipments>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<Fulfillment>, ApiError> {
    let fulfillment = shipments.by_order(order_id(&raw)?).await?;
    let staff = [Role::Admin, Role::Support].contains(&principal.role());
    if !staff && principal.user_id()? != fulfillment.user_id {
        return Err(ApiError::not_found(format!("fulfillment of order {raw}")));
    }
    Ok(Json(fulfillment))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    /// `SHIPPED` or `DELIVERED`.
    status: String,
}

async fn report(
    State(shipments): State<Shipments>,
    principal: Principal,
    Path(raw): Path<String>,
    body: Result<Json<Report>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Fulfillment>, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let Json(body) = body.map_err(commerce_runtime::api::json_rejection)?;
    let to = match FulfillmentStatus::parse(&body.status) {
        Some(to @ (FulfillmentStatus::Shipped | FulfillmentStatus::Delivered)) => to,
        _ => return Err(ApiError::invalid("status", "must be SHIPPED or DELIVERED")),
    };
    Ok(Json(
        shipments
            .report(order_id(&raw)?, to, &principal.actor())
            .await?,
    ))
}

/// Carriers call this; it is authenticated by the delivery's signature, not a token.
async fn webhook(
    State(shipments): State<Shipments>,
    Path(carrier): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let outcome = shipments.webhook(&carrier, &headers, &body).await?;
    Ok(Json(
        serde_json::json!({ "received": true, "outcome": outcome }),
    ))
}

/// Public: the storefront shows shoppers which couriers they can choose.
async fn couriers(
    State(fulfillment): State<FulfillmentService>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let couriers = fulfillment.couriers().await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "items": couriers })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteQuery {
    country: String,
    units: i64,
}

/// Public: the shipping cost per courier before an order is placed, for the checkout page.
async fn quotes(
    State(fulfillment): State<FulfillmentService>,
    query: Result<Query<QuoteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid("query", rejection.body_text()))?;
    if !(1..=10_000).contains(&query.units) {
        return Err(ApiError::invalid("units", "must be 1 to 10000"));
    }
    let country = query.country.trim().to_uppercase();
    if crate::domain::check_country(&country).is_err() {
        return Err(ApiError::invalid(
            "country",
            "must be a two-letter ISO 3166-1 code such as US",
        ));
    }
    let quotes = fulfillment
        .quotes(&country, query.units)
        .await
        .map_err(ApiError::internal)?;
    let items: Vec<_> = quotes
        .into_iter()
        .map(|(courier, quote)| {
            serde_json::json!({
                "courier": courier.code,
                "name": courier.name,
                "cost": quote.rate.price.to_string(),
                "currency": quote.rate.currency,
                "estimatedDays": quote.rate.estimated_days,
                "weightGrams": quote.weight_g,
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "country": country, "items": items }),
    ))
}
