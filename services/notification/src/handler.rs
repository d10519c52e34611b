//! The notification service's edges: the REST API (history, unread count, read marks,
//! preferences, the SSE stream; templates and the delivery log for staff), gRPC `Send`
//! (service tokens only), the inbox consumer of the shop's events, and the delivery worker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use commerce_access::{
    Principal, RequireServiceToken, Role, ServiceTokenSource, TokenVerifier, VerifierSettings,
};
use commerce_messaging::{BrokerProbe, ConsumerSettings, TopicSpec};
use commerce_proto::notification::v1 as pb;
use commerce_redis::Fanout;
use commerce_runtime::api::{ApiRoutes, QueryResult, json_rejection, parsed_query as query};
use commerce_runtime::health::{KafkaCheck, RedisCheck};
use commerce_runtime::{ApiError, BoxError, ServiceContext, ServiceParts};
use serde::Deserialize;
use tower::Layer;
use uuid::Uuid;

use crate::delivery::{DeliveryWorker, UserDirectory};
use crate::domain::{Channel, Template};
use crate::email::{SmtpMailer, SmtpSettings};
use crate::events::{DEAD_LETTER_TOPIC, Links, ShopEvents, TOPICS};
use crate::service::{NotificationError, NotificationService, NotifyRequest, Preferences};
use crate::sms::{self, SmsSettings};
use crate::stream::StreamHub;

/// `services.notification` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationSettings {
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default = "default_group")]
    pub consumer_group: String,
    /// Prefix of the Redis channels pushes travel on.
    #[serde(default = "default_prefix")]
    pub redis_prefix: String,
    /// Without it, e-mail deliveries fail (logged) and nothing else changes.
    pub smtp: Option<SmtpSettings>,
    #[serde(default)]
    pub sms: SmsSettings,
    /// The e-mail verification link, `{token}` where the token goes.
    #[serde(default = "default_verify_link")]
    pub verify_email_url: String,
    /// The password-reset link: the storefront's page that asks for the new password,
    /// `{token}` where the token goes.
    #[serde(default = "default_reset_link")]
    pub reset_password_url: String,
    /// SSE keep-alive comment interval.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Attempts per delivery before it is marked failed.
    #[serde(default = "default_attempts")]
    pub max_attempts: i32,
    /// How often the worker looks for due retries when nothing wakes it.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How far a stream may fall behind before it re-reads the database.
    #[serde(default = "default_stream_buffer")]
    pub stream_buffer: usize,
    /// Asks auth for addresses it has not seen in an event: `{ auth_http, auth_grpc }`
    /// with `client_secret` (auth's `service_clients.notification`).
    pub peers: Option<Peers>,
    pub client_secret: Option<commerce_runtime::Secret>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Peers {
    pub auth_http: String,
    pub auth_grpc: String,
}

fn default_issuer() -> String {
    "commerce-auth".into()
}
fn default_group() -> String {
    "notification".into()
}
fn default_prefix() -> String {
    "notification".into()
}
fn default_verify_link() -> String {
    "http://localhost:8080/v1/auth/verify-email?token={token}".into()
}
fn default_reset_link() -> String {
    "http://localhost:5173/reset-password?token={token}".into()
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(15)
}
fn default_attempts() -> i32 {
    8
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_stream_buffer() -> usize {
    256
}

#[derive(Clone)]
pub struct AppState {
    pub notifications: NotificationService,
    pub streams: StreamHub,
}

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: NotificationSettings = context.settings()?;
    let pool = context.database()?;
    let redis = context.redis().await?;
    let mailer = settings.smtp.as_ref().map(SmtpMailer::new).transpose()?;
    let sms = sms::from_settings(&settings.sms)?;
    let directory = match (&settings.peers, &settings.client_secret) {
        (Some(peers), Some(secret)) => Some(UserDirectory::new(
            &peers.auth_grpc,
            ServiceTokenSource::new(&peers.auth_http, "notification", secret.expose(), "auth"),
        )?),
        (Some(_), None) => {
            return Err("services.notification.client_secret: needed with `peers`".into());
        }
        _ => None,
    };
    let worker = DeliveryWorker {
        pool: pool.clone(),
        mailer,
        sms,
        redis: redis.clone(),
        push_prefix: settings.redis_prefix.clone(),
        directory,
        max_attempts: settings.max_attempts.max(1),
        poll_interval: settings.poll_interval,
        concurrency: 8,
    };
    let worker_shutdown = context.shutdown.clone();
    let worker_task: commerce_runtime::service::BackgroundTask =
        Box::pin(async move { worker.run(worker_shutdown).await.map_err(BoxError::from) });
    let consumer = context.inbox_consumer(
        ConsumerSettings {
            group: settings.consumer_group.clone(),
            topics: TOPICS.iter().map(|t| (*t).to_owned()).collect(),
            dead_letter_topic: DEAD_LETTER_TOPIC.to_owned(),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
        },
        3,
        Arc::new(ShopEvents {
            links: Links {
                verify_email: settings.verify_email_url.clone(),
                reset_password: settings.reset_password_url.clone(),
            },
        }),
    )?;
    // The dead-letter topic is this service's only topic; the relay creates it.
    let relay_task = context.outbox_relay(&[TopicSpec::new(DEAD_LETTER_TOPIC, 1)])?;
    let fanout = Fanout::start(
        &context.config.app.redis,
        settings.stream_buffer,
        context.shutdown.clone(),
    );
    let notifications = NotificationService::new(pool.clone());
    let state = AppState {
        notifications: notifications.clone(),
        streams: StreamHub {
            pool: pool.clone(),
            fanout,
            prefix: settings.redis_prefix.clone(),
            heartbeat: settings.heartbeat,
            shutdown: context.shutdown.clone(),
        },
    };
    let user_tokens = TokenVerifier::with_jwks_url(
        &settings.jwks_url,
        VerifierSettings::new(&settings.issuer, &["commerce"]),
    )
    .checking_revocations(commerce_access::RevokedSessions::new(redis.clone()));
    let service_tokens = TokenVerifier::with_jwks_url(
        &settings.jwks_url,
        VerifierSettings::new(&settings.issuer, &["notification"]),
    );
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::notification_service_server::NotificationServiceServer::new(GrpcHandler {
            notifications,
        }),
    );
    Ok(ServiceParts {
        http: api()
            .into_router()
            .layer(Extension(user_tokens))
            .with_state(state),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: vec![worker_task, consumer.task, relay_task],
        readiness: vec![
            Arc::new(RedisCheck(redis)),
            Arc::new(KafkaCheck(BrokerProbe::new(&context.config.app.kafka)?)),
            consumer.readiness,
        ],
    })
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

impl From<NotificationError> for ApiError {
    fn from(error: NotificationError) -> Self {
        match error {
            NotificationError::Invalid { field, message } => ApiError::invalid(field, message),
            NotificationError::NotFound => ApiError::not_found("notification not found"),
            NotificationError::UnknownKind(_) => ApiError::not_found(error.to_string()),
            NotificationError::Template { .. } => ApiError::invalid("data", error.to_string()),
            NotificationError::Database(_) => ApiError::internal(error),
        }
    }
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

struct GrpcHandler {
    notifications: NotificationService,
}

fn grpc_error(error: NotificationError) -> tonic::Status {
    match error {
        NotificationError::Invalid { field, message } => {
            tonic::Status::invalid_argument(format!("{field}: {message}"))
        }
        NotificationError::UnknownKind(_) | NotificationError::NotFound => {
            tonic::Status::not_found(error.to_string())
        }
        NotificationError::Template { .. } => tonic::Status::invalid_argument(error.to_string()),
        NotificationError::Database(_) => tonic::Status::unavailable(error.to_string()),
    }
}

#[tonic::async_trait]
impl pb::notification_service_server::NotificationService for GrpcHandler {
    async fn send(
        &self,
        request: tonic::Request<pb::SendRequest>,
    ) -> Result<tonic::Response<pb::SendResponse>, tonic::Status> {
        let request = request.into_inner();
        let uuid = |field: &str, raw: &str| {
            Uuid::parse_str(raw)
                .map_err(|_| tonic::Status::invalid_argument(format!("{field}: must be a UUID")))
        };
        let request_id = uuid("request_id", &request.request_id)?;
        let user_id = uuid("user_id", &request.user_id)?;
        if !crate::domain::valid_kind(&request.kind) {
            return Err(tonic::Status::invalid_argument(
                "kind: lowercase letters, digits and `_`, starting with a letter",
            ));
        }
        let mut channels = Vec::new();
        for raw in &request.channels {
            channels.push(match pb::Channel::try_from(*raw) {
                Ok(pb::Channel::Email) => Channel::Email,
                Ok(pb::Channel::Sms) => Channel::Sms,
                Ok(pb::Channel::Push) => Channel::Push,
                _ => {
                    return Err(tonic::Status::invalid_argument(
                        "channels: each must be EMAIL, SMS or PUSH",
                    ));
                }
            });
        }
        let data: BTreeMap<String, String> = request.data.into_iter().collect();
        let notified = self
            .notifications
            .send(NotifyRequest {
                source: format!("request:{request_id}"),
                user_id,
                kind: &request.kind,
                data,
                only: (!channels.is_empty()).then_some(channels.as_slice()),
            })
            .await
            .map_err(grpc_error)?;
        Ok(tonic::Response::new(pb::SendResponse {
            notification_id: notified.id.to_string(),
            channels: notified
                .channels
                .iter()
                .map(|channel| match channel {
                    Channel::Email => pb::Channel::Email as i32,
                    Channel::Sms => pb::Channel::Sms as i32,
                    Channel::Push => pb::Channel::Push as i32,
                })
                .collect(),
        }))
    }
}
