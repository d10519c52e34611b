//! The payment service's REST edge: provider webhooks, payments for their owners, the offline
//! gateway's "customer pays" and admin analytics (statistics, the report and its CSV).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use chrono::Utc;
use commerce_access::{Principal, Role, TokenVerifier};
use commerce_runtime::ApiError;
use commerce_runtime::api::ApiRoutes;
use serde::Deserialize;
use uuid::Uuid;

use crate::service::{self, PaymentService, Viewer};

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<PaymentService> {
    ApiRoutes::new()
        .get("/v1/payments/gateways", gateways)
        .post("/v1/payments/webhooks/{gateway}", webhook)
        .get("/v1/payments/{id}", show)
        .post("/v1/payments/{id}/offline/pay", pay_offline)
        .get("/v1/admin/payments/stats", stats)
        .get("/v1/admin/payments/report", report)
        .get("/v1/admin/payments/report.csv", report_csv)
}

pub fn routes(payments: PaymentService, verifier: TokenVerifier) -> Router {
    api()
        .into_router()
        .layer(Extension(verifier))
        .with_state(payments)
}

fn viewer(principal: &Principal) -> Result<Viewer, ApiError> {
    Ok(Viewer {
        user_id: principal.user_id()?,
        staff: [Role::Admin, Role::Support].contains(&principal.role()),
        admin: principal.role() == Role::Admin,
    })
}

fn parse_id(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

/// Providers call this; it is authenticated by the delivery's signature, not a token.
async fn webhook(
    State(payments): State<PaymentService>,
    Path(gateway): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let outcome = payments.webhook(&gateway, &headers, &body).await?;
    Ok(Json(
        serde_json::json!({ "received": true, "outcome": outcome }),
    ))
}

async fn show(
    State(payments): State<PaymentService>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        payments
            .view(viewer(&principal)?, parse_id("id", &id)?)
            .await?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OfflinePay {
    /// `succeeded` (default) or `failed`.
    outcome: Option<String>,
}

/// Public: which payment gateways checkout offers, with the public half of their setup.
async fn gateways(State(payments): State<PaymentService>) -> Json<serde_json::Value> {
    let items: Vec<serde_json::Value> = payments
        .offered_gateways()
        .into_iter()
        .map(|(code, flow)| {
            let mut item = serde_json::to_value(flow).unwrap_or_default();
            item["code"] = code.into();
            item
        })
        .collect();
    Json(serde_json::json!({ "items": items }))
}

async fn pay_offline(
    State(payments): State<PaymentService>,
    principal: Principal,
    Path(id): Path<String>,
    body: Result<Option<Json<OfflinePay>>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body
        .map_err(commerce_runtime::api::json_rejection)?
        .map(|Json(body)| body)
        .unwrap_or_default();
    let succeed = match body.outcome.as_deref() {
        None | Some("succeeded") => true,
        Some("failed") => false,
        Some(_) => {
            return Err(ApiError::invalid(
                "outcome",
                "must be `succeeded` or `failed`",
            ));
        }
    };
    let outcome = payments
        .pay_offline(viewer(&principal)?, parse_id("id", &id)?, succeed)
        .await?;
    Ok(Json(serde_json::json!({ "outcome": outcome })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// First day, inclusive (YYYY-MM-DD); 30 days ago by default.
    from: Option<chrono::NaiveDate>,
    /// Last day, inclusive; today by default.
    to: Option<chrono::NaiveDate>,
}

/// The days a `from`/`to` query covers, and the instants bounding them.
struct Period {
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    start: chrono::DateTime<Utc>,
    end: chrono::DateTime<Utc>,
}

/// The longest period one request reads.
const MAX_PERIOD_DAYS: i64 = 366;

fn period(
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Period, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid("query", rejection.body_text()))?;
    let today = Utc::now().date_naive();
    let to = query.to.unwrap_or(today);
    let from = query.from.unwrap_or(to - chrono::Days::new(29));
    if from > to {
        return Err(ApiError::invalid("from", "must not be after to"));
    }
    if (to - from).num_days() >= MAX_PERIOD_DAYS {
        return Err(ApiError::invalid(
            "from",
            format!("the period is at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    let midnight = |day: chrono::NaiveDate| day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    Ok(Period {
        from,
        to,
        start: midnight(from),
        end: midnight(to + chrono::Days::new(1)),
    })
}

async fn stats(
    State(payments): State<PaymentService>,
    principal: Principal,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let Period {
        from,
        to,
        start,
        end,
    } = period(query)?;
    let rows = payments.stats(start, end).await?;
    Ok(Json(serde_json::json!({
        "from": from,
        "to": to,
        "rows": rows,
        "byStatus": service::totals_by(&rows, |row| row.status.clone()),
        "byGateway": service::totals_by(&rows, |row| row.gateway.clone()),
    })))
}

/// The report's period and days, for staff.
async fn report_days(
    payments: &PaymentService,
    principal: &Principal,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(Period, Vec<crate::report::ReportRow>), ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let period = period(query)?;
    let days = payments.report(period.start, period.end).await?;
    Ok((period, days))
}

/// Money taken, refunded and kept per day, gateway and currency, with each currency's
/// totals, average order value and refund and dispute rates.
async fn report(
    State(payments): State<PaymentService>,
    principal: Principal,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (period, days) = report_days(&payments, &principal, query).await?;
    Ok(Json(serde_json::json!({
        "from": period.from,
        "to": period.to,
        "totals": crate::report::totals(&days),
        "days": days,
    })))
}

/// The report's days as a CSV download.
async fn report_csv(
    State(payments): State<PaymentService>,
    principal: Principal,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (period, days) = report_days(&payments, &principal, query).await?;
    let body = crate::report::csv(&days).map_err(ApiError::internal)?;
    let file = format!(
        "attachment; filename=\"payments-{}-{}.csv\"",
        period.from, period.to
    );
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, file),
        ],
        body,
    ))
}
