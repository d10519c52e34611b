//! The chat service's REST edge: conversations, history, search, moderation, attachments, and
//! `GET /v1/chat/ws`, the WebSocket.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use commerce_access::{Principal, Role, TokenVerifier, bearer_token};
use commerce_redis::Fanout;
use commerce_runtime::ApiError;
use commerce_runtime::api::{ApiRoutes, QueryResult, json_rejection, parsed_query as query};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{self, Kind, Refusal};
use crate::service::{Actor, ChatError, ChatService};
use crate::socket::{self, SocketLimits};

#[derive(Clone)]
pub struct AppState {
    pub chat: ChatService,
    pub fanout: Fanout,
    pub limits: SocketLimits,
    pub verifier: TokenVerifier,
    pub shutdown: CancellationToken,
}

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<AppState> {
    ApiRoutes::new()
        .get("/v1/chat/ws", websocket)
        .post("/v1/chat/support", open_support)
        .get("/v1/chat/conversations", conversations)
        .post("/v1/chat/conversations", create)
        .get("/v1/chat/conversations/{id}", conversation)
        .post("/v1/chat/conversations/{id}/join", join)
        .post("/v1/chat/conversations/{id}/participants", add_participant)
        .get("/v1/chat/invitations", invitations)
        .delete("/v1/chat/invitations/{id}", decline_invitation)
        .post(
            "/v1/chat/conversations/{id}/participants/{userId}/mute",
            mute,
        )
        .post("/v1/chat/conversations/{id}/participants/{userId}/ban", ban)
        .get("/v1/chat/conversations/{id}/messages", history)
        .post("/v1/chat/conversations/{id}/messages", send)
        .delete(
            "/v1/chat/conversations/{id}/messages/{messageId}",
            delete_message,
        )
        .get("/v1/chat/conversations/{id}/search", search)
        .post("/v1/chat/conversations/{id}/attachments", upload)
        .get(
            "/v1/chat/conversations/{id}/attachments/{attachmentId}",
            download,
        )
}

fn actor(principal: &Principal) -> Result<Actor, ApiError> {
    let role = principal.role();
    Ok(Actor {
        user_id: principal.user_id()?,
        staff: matches!(role, Role::Admin | Role::Support),
        support: role == Role::Support,
    })
}

fn uuid(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SocketQuery {
    /// For browsers, which cannot set headers on a WebSocket.
    token: Option<String>,
}

async fn websocket(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: QueryResult<SocketQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = match bearer_token(&headers) {
        Ok(token) => token.to_owned(),
        Err(_) => query(raw)?
            .token
            .ok_or_else(|| ApiError::unauthenticated("send the access token"))?,
    };
    let claims = state
        .verifier
        .verify(&token)
        .await
        .map_err(|error| ApiError::unauthenticated(error.to_string()))?;
    let principal = Principal(claims);
    let actor = actor(&principal)?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            rejection.body_text(),
        )
    })?;
    state.chat.note_agent(actor).await?;
    let expires_in = Duration::from_secs(
        (principal.claims().exp - chrono::Utc::now().timestamp()).max(1) as u64,
    );
    Ok(upgrade
        .max_message_size(socket::MAX_FRAME_BYTES)
        .on_upgrade(move |ws| {
            socket::run(
                ws,
                state.chat,
                state.fanout,
                actor,
                expires_in,
                state.limits,
                state.shutdown,
            )
        }))
}

async fn open_support(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let detail = state.chat.open_support(actor(&principal)?).await?;
    Ok(Json(serde_json::to_value(detail).unwrap_or_default()))
}

async fn conversations(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let actor = actor(&principal)?;
    state.chat.note_agent(actor).await?;
    let items = state.chat.mine(actor).await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConversation {
    kind: String,
    title: String,
    #[serde(default)]
    members: Vec<Uuid>,
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: JsonBody<NewConversation>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let kind = Kind::parse(&body.kind)
        .filter(|kind| *kind != Kind::Support)
        .ok_or_else(|| ApiError::invalid("kind", "must be group or channel"))?;
    let detail = state
        .chat
        .create(actor(&principal)?, kind, &body.title, &body.members)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(detail).unwrap_or_default()),
    ))
}

async fn conversation(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let detail = state
        .chat
        .detail(uuid("id", &raw)?, actor(&principal)?)
        .await?;
    Ok(Json(serde_json::to_value(detail).unwrap_or_default()))
}

async fn join(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let detail = state
        .chat
        .join(uuid("id", &raw)?, actor(&principal)?)
        .await?;
    Ok(Json(serde_json::to_value(detail).unwrap_or_default()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewParticipant {
    user_id: Uuid,
}

async fn invitations(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let items = state.chat.invitations(actor(&principal)?).await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

async fn decline_invitation(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .chat
        .decline(uuid("id", &raw)?, actor(&principal)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_participant(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
    body: JsonBody<NewParticipant>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let detail = state
        .chat
        .add(uuid("id", &raw)?, actor(&principal)?, body.user_id)
        .await?;
    Ok(Json(serde_json::to_value(detail).unwrap_or_default()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteBody {
    /// 0 lifts a mute.
    minutes: u32,
}

async fn mute(
    State(state): State<AppState>,
    principal: Principal,
    Path((raw, user)): Path<(String, String)>,
    body: JsonBody<MuteBody>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    if body.minutes > 7 * 24 * 60 {
        return Err(ApiError::invalid("minutes", "at most one week (10080)"));
    }
    let until = (body.minutes > 0)
        .then(|| chrono::Utc::now() + chrono::Duration::minutes(i64::from(body.minutes)));
    state
        .chat
        .mute(
            uuid("id", &raw)?,
            actor(&principal)?,
            uuid("userId", &user)?,
            until,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanBody {
    banned: bool,
}

async fn ban(
    State(state): State<AppState>,
    principal: Principal,
    Path((raw, user)): Path<(String, String)>,
    body: JsonBody<BanBody>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    state
        .chat
        .ban(
            uuid("id", &raw)?,
            actor(&principal)?,
            uuid("userId", &user)?,
            body.banned,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

async fn history(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
    raw_query: QueryResult<HistoryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query = query(raw_query)?;
    let limit = query.limit.unwrap_or(50);
    let items = state
        .chat
        .history(uuid("id", &raw)?, actor(&principal)?, query.before, limit)
        .await?;
    let next_before = (items.len() as i64 == limit)
        .then(|| items.last().map(|m| m.seq))
        .flatten();
    Ok(Json(
        serde_json::json!({ "items": items, "nextBefore": next_before }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendBody {
    client_id: String,
    body: String,
    #[serde(default)]
    attachments: Vec<Uuid>,
}

async fn send(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
    body: JsonBody<SendBody>,
) -> Result<(StatusCode, Json<domain::ChatMessage>), ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let message = state
        .chat
        .send(
            uuid("id", &raw)?,
            actor(&principal)?,
            &body.client_id,
            &body.body,
            &body.attachments,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(message)))
}

async fn delete_message(
    State(state): State<AppState>,
    principal: Principal,
    Path((raw, message)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .chat
        .delete_message(
            uuid("id", &raw)?,
            uuid("messageId", &message)?,
            actor(&principal)?,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: String,
}

async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
    raw_query: QueryResult<SearchQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query = query(raw_query)?;
    let items = state
        .chat
        .search(uuid("id", &raw)?, actor(&principal)?, &query.q)
        .await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::forbidden(refusal.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UploadQuery {
    file_name: String,
}

/// The file is the raw body; its type is `Content-Type` (checked against the bytes).
async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
    headers: HeaderMap,
    raw_query: QueryResult<UploadQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<crate::repository::Attachment>), ApiError> {
    let query = query(raw_query)?;
    let bytes = body.map_err(|_| ChatError::TooLarge(state.chat.max_attachment_bytes))?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| ApiError::invalid("Content-Type", "is required"))?;
    let attachment = state
        .chat
        .upload(
            uuid("id", &raw)?,
            actor(&principal)?,
            &query.file_name,
            content_type,
            &bytes,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(attachment)))
}

/// The bytes, only to those who may read the conversation; never rendered inline.
async fn download(
    State(state): State<AppState>,
    principal: Principal,
    Path((raw, attachment)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (attachment, bytes) = state
        .chat
        .download(
            uuid("id", &raw)?,
            uuid("attachmentId", &attachment)?,
            actor(&principal)?,
        )
        .await?;
    use axum::response::IntoResponse;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                attachment.content_type.clone(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                crate::attachments::content_disposition(&attachment.file_name),
            ),
            (
                axum::http::header::CACHE_CONTROL,
                "private, max-age=3600".to_owned(),
            ),
            (
                axum::http::header::HeaderName::from_static("x-content-type-options"),
                "nosniff".to_owned(),
            ),
        ],
        bytes,
    )
        .into_response())
}
