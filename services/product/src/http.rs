//! The product service's REST edge under `/v1/products`: reads for everyone, writes for admins.

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use commerce_access::{MaybePrincipal, Principal, Role, TokenVerifier};
use commerce_runtime::ApiError;
use commerce_runtime::api::{ApiRoutes, json_rejection};
use rust_decimal::Decimal;
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{Money, NewProduct, Page, Product, ProductDetails};
use crate::repository::{ListFilter, Sort};
use crate::service::ProductService;

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<ProductService> {
    ApiRoutes::new()
        .get("/v1/products", list_products)
        .post("/v1/products", create_product)
        .get("/v1/products/{id}", get_product)
        .put("/v1/products/{id}", replace_product)
        .patch("/v1/products/{id}", patch_product)
        .delete("/v1/products/{id}", delete_product)
        .get("/v1/products/{id}/price-history", price_history)
        .get("/v1/products/{id}/stock-adjustments", stock_adjustments)
        .post("/v1/products/{id}/stock-adjustments", adjust_stock)
}

pub fn routes(products: ProductService, verifier: TokenVerifier) -> Router {
    let schema = crate::graphql::schema(Some(products.clone()));
    api()
        .graphql(crate::graphql::handler)
        .into_router()
        .layer(Extension(schema))
        .layer(Extension(verifier))
        .with_state(products)
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid("id", "must be a UUID"))
}

/// The representation with its version as a strong ETag (`If-Match` on writes).
fn with_etag(status: StatusCode, product: Product) -> impl IntoResponse {
    (
        status,
        [(header::ETAG, format!("\"{}\"", product.version))],
        Json(product),
    )
}

/// The version a write expects: `If-Match: "<version>"`, or `version` in the body.
fn expected_version(headers: &HeaderMap, body_version: Option<i64>) -> Result<i64, ApiError> {
    if let Some(value) = headers.get(header::IF_MATCH) {
        let text = value
            .to_str()
            .unwrap_or_default()
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"');
        return text.parse().map_err(|_| {
            ApiError::invalid("If-Match", "must be the product's version, e.g. \"3\"")
        });
    }
    body_version.ok_or_else(|| {
        ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "send the version you are changing: If-Match header or `version` in the body",
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    page: Option<u32>,
    page_size: Option<u32>,
    category: Option<String>,
    min_price: Option<String>,
    max_price: Option<String>,
    in_stock: Option<bool>,
    sort: Option<String>,
    include_inactive: Option<bool>,
}

fn decimal(field: &'static str, raw: Option<&str>) -> Result<Option<Decimal>, ApiError> {
    raw.map(|text| {
        Decimal::from_str(text).map_err(|_| ApiError::invalid(field, "must be a decimal number"))
    })
    .transpose()
}

/// Everyone may browse; only admins and support see inactive products.
async fn list_products(
    State(products): State<ProductService>,
    caller: MaybePrincipal,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid("query", rejection.body_text()))?;
    let page = Page::new(query.page, query.page_size)
        .map_err(|invalid| ApiError::invalid(invalid.field, invalid.message))?;
    let include_inactive = query.include_inactive.unwrap_or(false);
    if include_inactive && !caller.has_role(&[Role::Admin, Role::Support]) {
        return Err(ApiError::forbidden(
            "includeInactive is for admins and support",
        ));
    }
    let filter = ListFilter {
        category: query.category,
        min_price: decimal("minPrice", query.min_price.as_deref())?,
        max_price: decimal("maxPrice", query.max_price.as_deref())?,
        in_stock: query.in_stock,
        include_inactive,
        sort: match query.sort.as_deref() {
            None => Sort::default(),
            Some(raw) => Sort::parse(raw).ok_or_else(|| {
                ApiError::invalid("sort", "must be newest, price_asc, price_desc or name")
            })?,
        },
    };
    let (items, total) = products.list(&filter, page).await?;
    Ok(Json(serde_json::json!({
        "items": items,
        "page": page.number,
        "pageSize": page.size,
        "total": total,
    })))
}

async fn get_product(
    State(products): State<ProductService>,
    caller: MaybePrincipal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let product = products.get(parse_id(&id)?).await?;
    if !product.active && !caller.has_role(&[Role::Admin, Role::Support]) {
        return Err(ApiError::not_found(format!("product {id} not found")));
    }
    Ok(with_etag(StatusCode::OK, product))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MoneyBody {
    amount: String,
    currency: String,
}

impl MoneyBody {
    fn parse(&self) -> Result<Money, ApiError> {
        let amount = Decimal::from_str(self.amount.trim()).map_err(|_| {
            ApiError::invalid("price.amount", "must be a decimal string such as \"19.90\"")
        })?;
        Money::new(amount, self.currency.trim())
            .map_err(|invalid| ApiError::invalid(invalid.field, invalid.message))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    sku: String,
    name: String,
    #[serde(default)]
    description: String,
    category: String,
    price: MoneyBody,
    #[serde(default)]
    stock: i64,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

async fn create_product(
    State(products): State<ProductService>,
    principal: Principal,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin])?;
    let Json(body) = body.map_err(json_rejection)?;
    let details = ProductDetails {
        name: body.name,
        description: body.description,
        category: body.category,
        price: body.price.parse()?,
        attributes: body.attributes,
        images: body.images,
        active: body.active,
    };
    let product = NewProduct::with_details(&body.sku, details, body.stock)
        .map_err(|invalid| ApiError::invalid(invalid.field, invalid.message))?;
    let created = products.create(product, &principal.actor()).await?;
    Ok(with_etag(StatusCode::CREATED, created))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReplaceBody {
    name: String,
    #[serde(default)]
    description: String,
    category: String,
    price: MoneyBody,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default = "yes")]
    active: bool,
    version: Option<i64>,
}

async fn replace_product(
    State(products): State<ProductService>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ReplaceBody>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin])?;
    let id = parse_id(&id)?;
    let Json(body) = body.map_err(json_rejection)?;
    let version = expected_version(&headers, body.version)?;
    let details = ProductDetails {
        name: body.name,
        description: body.description,
        category: body.category,
        price: body.price.parse()?,
        attributes: body.attributes,
        images: body.images,
        active: body.active,
    };
    let updated = products
        .replace(id, version, details, &principal.actor())
        .await?;
    Ok(with_etag(StatusCode::OK, updated))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchBody {
    name: Option<String>,
    description: Option<String>,
    category: Option<String>,
    price: Option<MoneyBody>,
    attributes: Option<BTreeMap<String, String>>,
    images: Option<Vec<String>>,
    active: Option<bool>,
    version: Option<i64>,
}

async fn patch_product(
    State(products): State<ProductService>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<PatchBody>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin])?;
    let id = parse_id(&id)?;
    let Json(patch) = body.map_err(json_rejection)?;
    let version = expected_version(&headers, patch.version)?;
    // The merge starts from what the caller saw (same version) or the write is refused.
    let current = products.get(id).await?;
    let details = ProductDetails {
        name: patch.name.unwrap_or(current.name),
        description: patch.description.unwrap_or(current.description),
        category: patch.category.unwrap_or(current.category),
        price: match patch.price {
            Some(price) => price.parse()?,
            None => current.price,
        },
        attributes: patch.attributes.unwrap_or(current.attributes),
        images: patch.images.unwrap_or(current.images),
        active: patch.active.unwrap_or(current.active),
    };
    let updated = products
        .replace(id, version, details, &principal.actor())
        .await?;
    Ok(with_etag(StatusCode::OK, updated))
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    version: Option<i64>,
}

async fn delete_product(
    State(products): State<ProductService>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require(&[Role::Admin])?;
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid("query", rejection.body_text()))?;
    let version = expected_version(&headers, query.version)?;
    products.delete(parse_id(&id)?, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn price_history(
    State(products): State<ProductService>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let history = products.price_history(parse_id(&id)?).await?;
    Ok(Json(serde_json::json!({ "items": history })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    delta: i64,
    reason: String,
}

async fn adjust_stock(
    State(products): State<ProductService>,
    principal: Principal,
    Path(id): Path<String>,
    body: Result<Json<AdjustBody>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin])?;
    let Json(body) = body.map_err(json_rejection)?;
    let updated = products
        .adjust_stock(parse_id(&id)?, body.delta, &body.reason, &principal.actor())
        .await?;
    Ok(with_etag(StatusCode::OK, updated))
}

async fn stock_adjustments(
    State(products): State<ProductService>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let items = products.stock_adjustments(parse_id(&id)?).await?;
    Ok(Json(serde_json::json!({ "items": items })))
}
