//! REST under `/v1/orders` and `/v1/admin/orders` (see `openapi/openapi.yaml`) and the
//! GraphQL subgraph's route.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use commerce_access::{Principal, Role, TokenVerifier};
use commerce_runtime::ApiError;
use commerce_runtime::api::{ApiRoutes, json_rejection};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{Address, Order};
use crate::error::UNAVAILABLE_RETRY_SECS;
use crate::service::{OrderService, PlaceOrderAnswer, Viewer};
use commerce_saga::FailureKind;

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<OrderService> {
    let routes = ApiRoutes::new()
        .get("/v1/orders", list)
        .post("/v1/orders", place)
        .get("/v1/orders/{id}", show)
        .post("/v1/orders/{id}/cancel", cancel)
        .patch("/v1/orders/{id}/delivery", change_delivery)
        .post("/v1/admin/orders/{id}/refunds", refund);
    commerce_access::task_admin::with_task_admin(routes, &TASK_ADMIN)
}

/// The order queue's reminders and expiries in the back office.
const TASK_ADMIN: commerce_access::task_admin::TaskAdminPaths =
    commerce_access::task_admin::TaskAdminPaths {
        queue: "/v1/admin/tasks/order",
        retry: "/v1/admin/tasks/order/dead/{id}/retry",
        drop: "/v1/admin/tasks/order/dead/{id}",
    };

pub fn routes(
    orders: OrderService,
    feed: crate::status_feed::StatusFeed,
    verifier: TokenVerifier,
    queue: commerce_redis::TaskQueue,
) -> Router {
    let schema = crate::graphql::schema(Some((orders.clone(), feed)));
    api()
        .graphql(crate::graphql::handler)
        .into_router()
        .layer(Extension(schema))
        .layer(Extension(verifier))
        .layer(Extension(queue))
        .with_state(orders)
}

fn viewer(principal: &Principal) -> Result<Viewer, ApiError> {
    Ok(Viewer {
        user_id: principal.user_id()?,
        staff: [Role::Admin, Role::Support].contains(&principal.role()),
    })
}

fn parse_id(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlaceOrder {
    checkout_session_id: String,
}

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The request's `Idempotency-Key`; `purpose` says what a good one is.
fn idempotency_key(headers: &HeaderMap, purpose: &str) -> Result<String, ApiError> {
    Ok(headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::invalid("Idempotency-Key", format!("is required: {purpose}")))?
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?
        .to_owned())
}

async fn place(
    State(orders): State<OrderService>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody<PlaceOrder>,
) -> Result<Response, ApiError> {
    let user_id = principal.user_id()?;
    let key = idempotency_key(
        &headers,
        "a unique value per order attempt, reused when retrying it",
    )?;
    let Json(body) = body.map_err(json_rejection)?;
    let session = parse_id("checkoutSessionId", &body.checkout_session_id)?;
    let (status, body, replayed) = match orders.place(user_id, &key, session).await? {
        PlaceOrderAnswer::Replay { status, body } => (status, body, true),
        PlaceOrderAnswer::PlacedOrder(placed) => {
            let body = serde_json::json!({
                "orderId": placed.order.id,
                "clientSecret": placed.client_secret,
                "order": placed.order,
            });
            (StatusCode::CREATED.as_u16(), body, false)
        }
        PlaceOrderAnswer::Failed { order_id, failure } => {
            let error = match failure.kind {
                FailureKind::NotFound => ApiError::not_found(failure.message),
                FailureKind::Conflict => ApiError::conflict(failure.message),
                FailureKind::Invalid => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "failed_precondition",
                    failure.message,
                ),
                FailureKind::Unavailable => {
                    ApiError::unavailable(UNAVAILABLE_RETRY_SECS, failure.message)
                }
            };
            let mut body = error.body();
            body["error"]["orderId"] = order_id.to_string().into();
            (error.status.as_u16(), body, false)
        }
    };
    if !replayed {
        orders.store_answer(user_id, &key, status, &body).await?;
    }
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
    before: Option<String>,
    user_id: Option<String>,
}

async fn list(
    State(orders): State<OrderService>,
    principal: Principal,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid("query", rejection.body_text()))?;
    let before = query
        .before
        .as_deref()
        .map(|raw| parse_id("before", raw))
        .transpose()?;
    let user = query
        .user_id
        .as_deref()
        .map(|raw| parse_id("userId", raw))
        .transpose()?;
    let limit = query.limit.unwrap_or(20);
    let items: Vec<Order> = orders
        .orders(viewer(&principal)?, user, before, limit)
        .await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|order| order.id))
        .flatten();
    Ok(Json(
        serde_json::json!({ "items": items, "nextBefore": next }),
    ))
}

async fn show(
    State(orders): State<OrderService>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let viewer = viewer(&principal)?;
    let (order, history) = orders.history(viewer, parse_id("id", &id)?).await?;
    let Json(mut body) = order_body(viewer, &order)?;
    body["history"] = serde_json::to_value(history).map_err(ApiError::internal)?;
    Ok(Json(body))
}

/// An order as its viewer sees it: the owner of an unpaid order also gets the client
/// secret (again) to finish paying.
fn order_body(viewer: Viewer, order: &Order) -> Result<Json<serde_json::Value>, ApiError> {
    let mut body = serde_json::to_value(order).map_err(ApiError::internal)?;
    if order.user_id == viewer.user_id && order.status == crate::domain::OrderStatus::PendingPayment
    {
        body["clientSecret"] = order.payment_client_secret.clone().into();
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeDelivery {
    address: Option<Address>,
    courier: Option<String>,
}

/// `PATCH /v1/orders/{id}/delivery`: a new address and/or courier while unpaid; the
/// answer carries the new total and client secret.
async fn change_delivery(
    State(orders): State<OrderService>,
    principal: Principal,
    Path(id): Path<String>,
    body: JsonBody<ChangeDelivery>,
) -> Result<impl IntoResponse, ApiError> {
    let viewer = viewer(&principal)?;
    let Json(body) = body.map_err(json_rejection)?;
    let order = orders
        .change_delivery(viewer, parse_id("id", &id)?, body.address, body.courier)
        .await?;
    order_body(viewer, &order)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelOrder {
    reason: Option<String>,
}

async fn cancel(
    State(orders): State<OrderService>,
    principal: Principal,
    Path(id): Path<String>,
    body: Result<Option<Json<CancelOrder>>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let viewer = viewer(&principal)?;
    let reason = body
        .map_err(json_rejection)?
        .and_then(|Json(body)| body.reason)
        .map(|reason| reason.trim().to_owned())
        .filter(|reason| !reason.is_empty())
        .unwrap_or_else(|| "canceled by the customer".to_owned());
    if reason.len() > 500 {
        return Err(ApiError::invalid(
            "reason",
            "must be at most 500 characters",
        ));
    }
    let order = orders.cancel(viewer, parse_id("id", &id)?, &reason).await?;
    Ok(Json(order))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffRefund {
    amount: Option<String>,
    reason: String,
}

/// `POST /v1/admin/orders/{id}/refunds`: an admin gives back part of a paid order, or
/// everything left of it.
async fn refund(
    State(orders): State<OrderService>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<StaffRefund>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin])?;
    let order_id = parse_id("id", &id)?;
    let key = idempotency_key(
        &headers,
        "a unique value per refund, reused when retrying it",
    )?;
    let Json(body) = body.map_err(json_rejection)?;
    let amount = body
        .amount
        .as_deref()
        .map(|raw| {
            rust_decimal::Decimal::from_str_exact(raw.trim())
                .map_err(|_| ApiError::invalid("amount", "must be a decimal such as 5.50"))
        })
        .transpose()?;
    let refund = orders.refund(order_id, amount, &body.reason, &key).await?;
    Ok((StatusCode::CREATED, Json(refund)))
}
