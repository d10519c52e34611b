//! The notification service's REST edge: history, unread count, read marks, preferences, the SSE
//! stream; templates and the delivery log for staff.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use commerce_access::{Principal, Role};
use commerce_runtime::ApiError;
use commerce_runtime::api::{ApiRoutes, QueryResult, json_rejection, parsed_query as query};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{Channel, Template};
use crate::service::{NotificationService, Preferences};
use crate::stream::StreamHub;

#[derive(Clone)]
pub struct AppState {
    pub notifications: NotificationService,
    pub streams: StreamHub,
}

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<AppState> {
    ApiRoutes::new()
        .get("/v1/notifications", history)
        .get("/v1/notifications/unread-count", unread_count)
        .post("/v1/notifications/{id}/read", mark_read)
        .post("/v1/notifications/read-all", mark_all_read)
        .get("/v1/notifications/preferences", preferences)
        .put("/v1/notifications/preferences", set_preferences)
        .get("/v1/notifications/stream", stream)
        .get("/v1/admin/notification-templates", templates)
        .put(
            "/v1/admin/notification-templates/{kind}/{channel}/{locale}",
            put_template,
        )
        .get("/v1/admin/notifications", delivery_log)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HistoryQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

async fn history(
    State(state): State<AppState>,
    principal: Principal,
    raw: QueryResult<HistoryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user_id = principal.user_id()?;
    let query = query(raw)?;
    let limit = query.limit.unwrap_or(20);
    let items = state
        .notifications
        .history(user_id, query.before, limit)
        .await?;
    let next_before = (items.len() as i64 == limit)
        .then(|| items.last().map(|last| last.seq))
        .flatten();
    Ok(Json(
        serde_json::json!({ "items": items, "nextBefore": next_before }),
    ))
}

async fn unread_count(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let unread = state.notifications.unread(principal.user_id()?).await?;
    Ok(Json(serde_json::json!({ "unread": unread })))
}

fn notification_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid("id", "must be a UUID"))
}

async fn mark_read(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user_id = principal.user_id()?;
    state
        .notifications
        .mark_read(user_id, notification_id(&raw)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn mark_all_read(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let updated = state
        .notifications
        .mark_all_read(principal.user_id()?)
        .await?;
    Ok(Json(serde_json::json!({ "updated": updated })))
}

async fn preferences(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Preferences>, ApiError> {
    Ok(Json(
        state
            .notifications
            .preferences(principal.user_id()?)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreferencesBody {
    email: bool,
    sms: bool,
    push: bool,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    locale: Option<String>,
}

async fn set_preferences(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<PreferencesBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Preferences>, ApiError> {
    let user_id = principal.user_id()?;
    let Json(body) = body.map_err(json_rejection)?;
    let current = state.notifications.preferences(user_id).await?;
    Ok(Json(
        state
            .notifications
            .set_preferences(
                user_id,
                Preferences {
                    email: body.email,
                    sms: body.sms,
                    push: body.push,
                    phone: body.phone.filter(|phone| !phone.trim().is_empty()),
                    locale: body.locale.unwrap_or(current.locale),
                },
            )
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StreamQuery {
    /// For clients that cannot set the header (the same value as `Last-Event-ID`).
    last_event_id: Option<String>,
}

async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    raw: QueryResult<StreamQuery>,
) -> Result<axum::response::Response, ApiError> {
    let user_id = principal.user_id()?;
    let from_query = query(raw)?.last_event_id;
    let last_event_id = match headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("x").to_owned())
        .or(from_query)
    {
        None => None,
        Some(raw) if raw.trim().is_empty() => None,
        Some(raw) => Some(
            raw.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::invalid("Last-Event-ID", "must be an event id this stream sent")
                })?,
        ),
    };
    let expires_in = Duration::from_secs(
        (principal.claims().exp - chrono::Utc::now().timestamp()).max(1) as u64,
    );
    let sse = state
        .streams
        .open(user_id, last_event_id, expires_in)
        .await
        .map_err(|error| {
            ApiError::unavailable(5, format!("cannot open the stream right now: {error}"))
        })?;
    // Proxies must not buffer the stream.
    Ok(([("x-accel-buffering", "no")], sse).into_response())
}

async fn templates(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let items: Vec<serde_json::Value> = state
        .notifications
        .templates()
        .await?
        .into_iter()
        .map(|(template, version)| {
            let mut value = serde_json::to_value(template).unwrap_or_default();
            value["version"] = version.into();
            value
        })
        .collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateBody {
    #[serde(default)]
    subject: String,
    body: String,
    #[serde(default)]
    html: Option<String>,
}

async fn put_template(
    State(state): State<AppState>,
    principal: Principal,
    Path((kind, channel, locale)): Path<(String, String, String)>,
    body: Result<Json<TemplateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&[Role::Admin])?;
    let channel = Channel::parse(&channel)
        .ok_or_else(|| ApiError::invalid("channel", "must be email, sms or push"))?;
    let Json(body) = body.map_err(json_rejection)?;
    let template = Template {
        kind,
        channel,
        locale,
        subject: body.subject,
        body: body.body,
        html: body.html,
    };
    let version = state.notifications.put_template(template.clone()).await?;
    let mut value = serde_json::to_value(template).unwrap_or_default();
    value["version"] = version.into();
    Ok(Json(value))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LogQuery {
    user_id: String,
    limit: Option<i64>,
}

async fn delivery_log(
    State(state): State<AppState>,
    principal: Principal,
    raw: QueryResult<LogQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let query = query(raw)?;
    let user_id = Uuid::parse_str(query.user_id.trim())
        .map_err(|_| ApiError::invalid("userId", "must be a UUID"))?;
    let items = state
        .notifications
        .log(user_id, query.limit.unwrap_or(20))
        .await?;
    Ok(Json(serde_json::json!({ "items": items })))
}
