//! The search service's REST edge: catalogue search under `/v1/search` for everyone, the
//! search analytics under `/v1/admin/search` for staff.

use std::net::SocketAddr;
use std::str::FromStr;

use axum::extract::State;
use axum::{Json, Router};
use commerce_runtime::ApiError;
use commerce_runtime::api::ApiRoutes;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::domain::{SearchQuery, SearchSort};
use crate::service::SearchService;

/// Catalogue search is public: anonymous shoppers search; abuse is the gateway's to limit.
/// The analytics check the caller's token.
pub fn routes(search: SearchService, verifier: commerce_access::TokenVerifier) -> Router {
    api()
        .into_router()
        .layer(axum::Extension(verifier))
        .with_state(search)
}

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<SearchService> {
    ApiRoutes::new()
        .get("/v1/search", search_products)
        .get("/v1/search/autocomplete", autocomplete)
        .get("/v1/search/suggestions", suggestions)
        .get("/v1/search/popular", popular)
        .get("/v1/admin/search/analytics", analytics)
}

use commerce_runtime::api::{QueryResult, parsed_query as query_of};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    category: Option<String>,
    min_price: Option<String>,
    max_price: Option<String>,
    in_stock: Option<bool>,
    sort: Option<String>,
    page: Option<u32>,
    page_size: Option<u32>,
}

fn decimal(field: &'static str, raw: Option<&str>) -> Result<Option<Decimal>, ApiError> {
    raw.map(|text| {
        Decimal::from_str(text.trim())
            .map_err(|_| ApiError::invalid(field, "must be a decimal number"))
    })
    .transpose()
}

/// Who searched, for the popular queries: the client the gateway names in
/// `X-Forwarded-For` (it replaces the header with what it saw), else the peer. Search is
/// not reachable from outside but through the gateway.
fn searching_client(headers: &axum::http::HeaderMap, peer: Option<SocketAddr>) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(|first| first.trim().to_owned())
        .filter(|first| !first.is_empty())
        .or_else(|| peer.map(|peer| peer.ip().to_string()))
        .unwrap_or_default()
}

async fn search_products(
    State(search): State<SearchService>,
    headers: axum::http::HeaderMap,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<SocketAddr>>>,
    params: QueryResult<SearchParams>,
) -> Result<Json<crate::domain::SearchResults>, ApiError> {
    let peer = peer.map(|axum::Extension(axum::extract::ConnectInfo(peer))| peer);
    let client = searching_client(&headers, peer);
    let params = query_of(params)?;
    let query = SearchQuery {
        text: params.q,
        category: params.category.filter(|category| !category.is_empty()),
        min_price: decimal("minPrice", params.min_price.as_deref())?,
        max_price: decimal("maxPrice", params.max_price.as_deref())?,
        in_stock: params.in_stock,
        sort: match params.sort.as_deref() {
            None => SearchSort::default(),
            Some(raw) => SearchSort::parse(raw).ok_or_else(|| {
                ApiError::invalid(
                    "sort",
                    "must be relevance, price_asc, price_desc, newest or best_selling",
                )
            })?,
        },
        page: params.page.unwrap_or(1),
        page_size: params.page_size.unwrap_or(20),
    };
    Ok(Json(search.search(query, &client).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteParams {
    q: String,
    limit: Option<usize>,
}

async fn autocomplete(
    State(search): State<SearchService>,
    params: QueryResult<CompleteParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = query_of(params)?;
    let limit = params.limit.unwrap_or(8);
    if !(1..=20).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 20"));
    }
    if params.q.chars().count() > 100 {
        return Err(ApiError::invalid("q", "must be at most 100 characters"));
    }
    Ok(Json(
        serde_json::json!({ "items": search.autocomplete(&params.q, limit).await? }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuggestParams {
    q: String,
}

async fn suggestions(
    State(search): State<SearchService>,
    params: QueryResult<SuggestParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = query_of(params)?;
    if params.q.chars().count() > 200 {
        return Err(ApiError::invalid("q", "must be at most 200 characters"));
    }
    Ok(Json(
        serde_json::json!({ "items": search.suggestions(&params.q).await? }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PopularParams {
    limit: Option<usize>,
}

async fn popular(
    State(search): State<SearchService>,
    params: QueryResult<PopularParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = query_of(params)?.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 50"));
    }
    let items: Vec<_> = search
        .popular(limit)
        .await?
        .into_iter()
        .map(|(query, count)| serde_json::json!({ "query": query, "count": count }))
        .collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyticsParams {
    days: Option<u32>,
    limit: Option<usize>,
}

/// What was searched, and what found nothing: admins and support.
async fn analytics(
    State(search): State<SearchService>,
    principal: commerce_access::Principal,
    params: QueryResult<AnalyticsParams>,
) -> Result<Json<crate::service::SearchReport>, ApiError> {
    use commerce_access::Role;
    principal.require(&[Role::Admin, Role::Support])?;
    let params = query_of(params)?;
    let days = params.days.unwrap_or(7);
    if !(1..=crate::repository::ANALYTICS_KEPT_DAYS).contains(&days) {
        return Err(ApiError::invalid(
            "days",
            format!("must be 1 to {}", crate::repository::ANALYTICS_KEPT_DAYS),
        ));
    }
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 100"));
    }
    Ok(Json(search.report(days, limit).await?))
}
