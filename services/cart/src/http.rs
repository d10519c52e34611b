//! REST under `/v1/cart`, `/v1/checkout` and `/v1/admin/promo-codes` (see
//! `openapi/openapi.yaml`).

use std::str::FromStr;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use commerce_access::{Principal, Role, TokenVerifier};
use commerce_runtime::ApiError;
use commerce_runtime::api::{ApiRoutes, json_rejection};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{GuestCartKey, PromoCode, PromoKind};
use crate::repository::Owner;
use crate::service::{CartService, CheckoutRequest};

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<CartService> {
    let routes = ApiRoutes::new()
        .get("/v1/cart", view)
        .delete("/v1/cart", clear)
        .post("/v1/cart/items", add_item)
        .put("/v1/cart/items/{productId}", set_quantity)
        .delete("/v1/cart/items/{productId}", remove_item)
        .post("/v1/cart/promo", apply_promo)
        .delete("/v1/cart/promo", remove_promo)
        .post("/v1/cart/guest", new_guest_cart)
        .post("/v1/cart/merge", merge)
        .post("/v1/checkout", checkout)
        .get("/v1/checkout/{id}", checkout_session)
        .get("/v1/admin/promo-codes", list_promos)
        .post("/v1/admin/promo-codes", create_promo);
    commerce_access::task_admin::with_task_admin(routes, &TASK_ADMIN)
}

/// The cart queue's abandonment checks in the back office.
const TASK_ADMIN: commerce_access::task_admin::TaskAdminPaths =
    commerce_access::task_admin::TaskAdminPaths {
        queue: "/v1/admin/tasks/cart",
        retry: "/v1/admin/tasks/cart/dead/{id}/retry",
        drop: "/v1/admin/tasks/cart/dead/{id}",
    };

pub fn routes(
    carts: CartService,
    verifier: TokenVerifier,
    guest_carts: GuestCartKey,
    queue: commerce_redis::TaskQueue,
) -> Router {
    api()
        .into_router()
        .layer(Extension(verifier))
        .layer(Extension(guest_carts))
        .layer(Extension(queue))
        .with_state(carts)
}

/// Whose cart a request is about: the signed-in user, or a guest holding the token from
/// `POST /v1/cart/guest` in `X-Guest-Cart`.
struct CartOwner(Owner);

pub const GUEST_HEADER: &str = "x-guest-cart";

impl<S: Send + Sync> FromRequestParts<S> for CartOwner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            let principal = Principal::from_request_parts(parts, state).await?;
            return Ok(Self(Owner::User(principal.user_id()?)));
        }
        let Some(token) = parts.headers.get(GUEST_HEADER) else {
            return Err(ApiError::unauthenticated(
                "sign in, or send X-Guest-Cart with a token from POST /v1/cart/guest",
            ));
        };
        let keys = parts
            .extensions
            .get::<GuestCartKey>()
            .ok_or_else(|| ApiError::internal("the guest cart key is not installed"))?;
        token
            .to_str()
            .ok()
            .and_then(|token| keys.verify(token))
            .map(|guest| Self(Owner::Guest(guest)))
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "X-Guest-Cart is not a guest cart token this shop issued (POST /v1/cart/guest)",
                )
            })
    }
}

fn parse_id(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

async fn view(
    State(carts): State<CartService>,
    CartOwner(owner): CartOwner,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(carts.view(owner).await?))
}

async fn clear(
    State(carts): State<CartService>,
    CartOwner(owner): CartOwner,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(carts.clear(owner).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddItem {
    product_id: String,
    quantity: i64,
}

async fn add_item(
    State(carts): State<CartService>,
    CartOwner(owner): CartOwner,
    body: JsonBody<AddItem>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let product = parse_id("productId", &body.product_id)?;
    Ok(Json(carts.add(owner, product, body.quantity).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Quantity {
    quantity: i64,
}

async fn set_quantity(
    State(carts): State<CartService>,
    CartOwner(owner): CartOwner,
    Path(product_id): Path<String>,
    body: JsonBody<Quantity>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let product = parse_id("productId", &product_id)?;
    Ok(Json(
        carts.set_quantity(owner, product, body.quantity).await?,
    ))
}

async fn remove_item(
    State(carts): State<CartService>,
    CartOwner(owner): CartOwner,
    Path(product_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let product = parse_id("productId", &product_id)?;
    Ok(Json(carts.remove(owner, product).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyPromo {
    code: String,
}

async fn apply_promo(
    State(carts): State<CartService>,
    principal: Principal,
    body: JsonBody<ApplyPromo>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    if body.code.trim().is_empty() {
        return Err(ApiError::invalid("code", "is required"));
    }
    Ok(Json(
        carts.apply_promo(principal.user_id()?, &body.code).await?,
    ))
}

async fn remove_promo(
    State(carts): State<CartService>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(carts.remove_promo(principal.user_id()?).await?))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GuestCart {
    guest_cart: String,
}

/// A new guest cart: the token the client keeps and sends as `X-Guest-Cart`.
async fn new_guest_cart(
    Extension(keys): Extension<GuestCartKey>,
) -> Result<impl IntoResponse, ApiError> {
    let (_, guest_cart) = keys.issue();
    Ok((StatusCode::CREATED, Json(GuestCart { guest_cart })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Merge {
    guest_cart: String,
}

/// Only the holder of the guest cart's token may move its lines.
async fn merge(
    State(carts): State<CartService>,
    Extension(keys): Extension<GuestCartKey>,
    principal: Principal,
    body: JsonBody<Merge>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let guest = keys.verify(&body.guest_cart).ok_or_else(|| {
        ApiError::invalid(
            "guestCart",
            "is not a guest cart token this shop issued (POST /v1/cart/guest)",
        )
    })?;
    Ok(Json(carts.merge_guest(principal.user_id()?, guest).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Checkout {
    address_id: String,
    courier: String,
    payment_gateway: String,
}

async fn checkout(
    State(carts): State<CartService>,
    principal: Principal,
    body: JsonBody<Checkout>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let request = CheckoutRequest {
        address_id: parse_id("addressId", &body.address_id)?,
        courier: body.courier,
        payment_gateway: body.payment_gateway,
    };
    let session = carts.checkout(principal.user_id()?, request).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

async fn checkout_session(
    State(carts): State<CartService>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        carts
            .session_for(principal.user_id()?, parse_id("id", &id)?)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewPromo {
    code: String,
    kind: PromoKind,
    value: String,
    currency: Option<String>,
    min_subtotal: Option<String>,
    starts_at: Option<chrono::DateTime<chrono::Utc>>,
    ends_at: Option<chrono::DateTime<chrono::Utc>>,
    max_uses: Option<i32>,
    max_uses_per_user: Option<i32>,
}

async fn create_promo(
    State(carts): State<CartService>,
    principal: Principal,
    body: JsonBody<NewPromo>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin])?;
    let Json(body) = body.map_err(json_rejection)?;
    let decimal = |field: &'static str, raw: &str| {
        Decimal::from_str(raw.trim())
            .map_err(|_| ApiError::invalid(field, "must be a decimal string"))
    };
    let promo = PromoCode {
        code: PromoCode::normalize(&body.code),
        kind: body.kind,
        value: decimal("value", &body.value)?,
        currency: body.currency.map(|currency| currency.trim().to_uppercase()),
        min_subtotal: match &body.min_subtotal {
            Some(raw) => decimal("minSubtotal", raw)?,
            None => Decimal::ZERO,
        },
        starts_at: body.starts_at.unwrap_or_else(chrono::Utc::now),
        ends_at: body.ends_at,
        max_uses: body.max_uses,
        max_uses_per_user: body.max_uses_per_user,
        uses: 0,
    };
    Ok((StatusCode::CREATED, Json(carts.create_promo(promo).await?)))
}

async fn list_promos(
    State(carts): State<CartService>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    Ok(Json(serde_json::json!({ "items": carts.promos().await? })))
}
