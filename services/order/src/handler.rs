//! The order service's edges: REST under `/v1/orders`, gRPC `OrderService` (service tokens
//! only), the outbox relay, the saga recovery loop and the reminder / expiry tasks.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use commerce_access::{Principal, RequireServiceToken, Role, TokenVerifier, VerifierSettings};
use commerce_messaging::{
    BrokerProbe, ConsumerSettings, EventHandler, HandlerError, ReceivedEvent, TopicSpec,
};
use commerce_proto::fulfillment::v1 as fulfillment_pb;
use commerce_proto::order::v1 as pb;
use commerce_proto::payment::v1 as payment_pb;
use commerce_runtime::api::{ApiRoutes, json_rejection};
use commerce_runtime::health::{KafkaCheck, RedisCheck};
use commerce_runtime::{ApiError, BoxError, ServiceContext, ServiceParts};
use futures::future::BoxFuture;
use serde::Deserialize;
use tower::Layer;
use uuid::Uuid;

use crate::domain::{Address, Order, OrderStatus};
use crate::lifecycle::{self, LifecycleContext};
use crate::peers::{PeerAddresses, Peers};
use crate::placement::{self, PlacementContext, PlacementSaga, STEP_NAMES};
use crate::saga::SharedPolicy;
use crate::saga::policy::Engine;
use crate::saga::postgres::Orchestrator;
use crate::saga::{Failpoints, FailureKind, SagaPolicy};
use crate::service::{Engines, OrderError, OrderService, PlaceAnswer, Viewer};
use crate::workflow::TemporalOrders;

/// `services.order` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderSettings {
    pub peers: PeerSettings,
    /// This service's client secret for service tokens (client id `order`).
    pub client_secret: commerce_runtime::Secret,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default)]
    pub saga: SagaPolicy,
    /// A file holding the saga policy (the same keys as `saga`), read at start and
    /// watched: a SagaPolicy resource's ConfigMap in Kubernetes. It wins over `saga`.
    #[serde(default)]
    pub saga_file: Option<std::path::PathBuf>,
    #[serde(default = "default_saga_reload_interval", with = "humantime_serde")]
    pub saga_reload_interval: Duration,
    /// How long a request waits for a saga that another request or process drives.
    #[serde(default = "default_request_wait", with = "humantime_serde")]
    pub request_wait: Duration,
    /// Namespace of this service's Redis keys (idempotency locks, the task queue).
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// Test hooks only: abort the process at these saga points (see `saga::Failpoints`).
    #[serde(default)]
    pub failpoints: Vec<String>,
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
    /// The Temporal server, when `saga.engine` is `temporal`.
    #[serde(default)]
    pub temporal: crate::saga::temporal::TemporalSettings,
}

fn default_consumer_group() -> String {
    "order".to_owned()
}

/// The payment stream this service consumes, and its dead-letter topic.
pub const PAYMENT_TOPIC: &str = "commerce.payment.events";
pub const PAYMENT_SUCCEEDED: &str = "commerce.payment.v1.PaymentSucceeded";
pub const PAYMENT_FAILED: &str = "commerce.payment.v1.PaymentFailed";
pub const DEAD_LETTER_TOPIC: &str = "commerce.order.dlq";
pub const FULFILLMENT_TOPIC: &str = "commerce.fulfillment.events";
pub const FULFILLMENT_CREATED: &str = "commerce.fulfillment.v1.FulfillmentCreated";
pub const FULFILLMENT_SHIPPED: &str = "commerce.fulfillment.v1.FulfillmentShipped";
pub const FULFILLMENT_DELIVERED: &str = "commerce.fulfillment.v1.FulfillmentDelivered";

/// Payment events: a payment starts the order's payment saga; a failed attempt is noted.
/// Fulfillment events: the order follows its shipment (SHIPPED, DELIVERED).
struct PeerEvents {
    orders: OrderService,
}

#[async_trait::async_trait]
impl EventHandler for PeerEvents {
    async fn handle(
        &self,
        connection: &mut sqlx::PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        let order_of = |raw: &str| {
            Uuid::parse_str(raw).map_err(|_| {
                HandlerError::Permanent(format!(
                    "{}: order id `{raw}` is not a UUID",
                    event.event_type
                ))
            })
        };
        match event.event_type.as_str() {
            PAYMENT_SUCCEEDED => {
                let paid: payment_pb::PaymentSucceeded = event.decode()?;
                let order_id = order_of(&paid.order_id)?;
                let saga = self
                    .orders
                    .payment_received(connection, order_id, paid.payment_id)
                    .await
                    .map_err(|error| HandlerError::Retryable(error.to_string()))?;
                // Driven once the inbox transaction commits; recovery if this gives up.
                if let Some(saga) = saga {
                    tokio::spawn(self.orders.engines().payment.clone().kick(saga));
                }
            }
            FULFILLMENT_CREATED => {
                let created: fulfillment_pb::FulfillmentCreated = event.decode()?;
                crate::repository::note(
                    connection,
                    order_of(&created.order_id)?,
                    &format!(
                        "shipment created: {} tracking {}",
                        created.courier, created.tracking_id
                    ),
                )
                .await?;
            }
            FULFILLMENT_SHIPPED => {
                let shipped: fulfillment_pb::FulfillmentShipped = event.decode()?;
                crate::repository::transition(
                    connection,
                    order_of(&shipped.order_id)?,
                    &[OrderStatus::Confirmed],
                    OrderStatus::Shipped,
                    &format!("tracking {}", shipped.tracking_id),
                )
                .await?;
            }
            FULFILLMENT_DELIVERED => {
                let delivered: fulfillment_pb::FulfillmentDelivered = event.decode()?;
                crate::repository::transition(
                    connection,
                    order_of(&delivered.order_id)?,
                    &[OrderStatus::Confirmed, OrderStatus::Shipped],
                    OrderStatus::Delivered,
                    &format!("tracking {}", delivered.tracking_id),
                )
                .await?;
            }
            PAYMENT_FAILED => {
                let failed: payment_pb::PaymentFailed = event.decode()?;
                let order_id = order_of(&failed.order_id)?;
                crate::repository::note(
                    connection,
                    order_id,
                    &format!("payment attempt failed: {}", failed.reason),
                )
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeerSettings {
    /// The auth service's HTTP base URL (JWKS, service tokens).
    pub auth_http: String,
    pub cart_grpc: String,
    pub product_grpc: String,
    pub fulfillment_grpc: String,
    pub payment_grpc: String,
}

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}
fn default_request_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_redis_prefix() -> String {
    "order".to_owned()
}

#[derive(Debug, thiserror::Error)]
#[error("services.order.{key}: {message}")]
struct SettingError {
    key: String,
    message: String,
}

fn default_saga_reload_interval() -> Duration {
    Duration::from_secs(2)
}

/// `services.order`, checked, with the saga policy file (when there is one) applied; the
/// file's text, to notice changes; and every saga step name, for the policy's keys.
pub(crate) fn load_settings(
    config: &commerce_runtime::Config,
) -> Result<(OrderSettings, Option<String>, Vec<&'static str>), BoxError> {
    let mut settings: OrderSettings = config.service_section("order")?;
    let step_names: Vec<&str> = [
        STEP_NAMES,
        lifecycle::PAYMENT_STEPS,
        lifecycle::EXPIRY_STEPS,
        lifecycle::CANCEL_STEPS,
        crate::delivery::DELIVERY_STEPS,
    ]
    .concat();
    settings
        .saga
        .validate(&step_names)
        .map_err(|(key, message)| SettingError {
            key: format!("saga.{key}"),
            message,
        })?;
    // The policy file, when there is one, replaces `saga` from the start.
    let mut policy_file_text = None;
    if let Some(path) = &settings.saga_file {
        let file_error = |message: String| SettingError {
            key: "saga_file".to_owned(),
            message,
        };
        if let Some(text) =
            crate::saga::reload::read(path).map_err(|error| file_error(error.to_string()))?
        {
            settings.saga = crate::saga::reload::parse(path, &text, &step_names)
                .map_err(|error| file_error(error.to_string()))?;
            policy_file_text = Some(text);
        }
    }
    if !settings.failpoints.is_empty() {
        tracing::warn!(failpoints = ?settings.failpoints, "saga failpoints are set: this process aborts at them");
    }
    Ok((settings, policy_file_text, step_names))
}

/// Follows the saga policy file, when there is one, into `policy` until shutdown.
pub(crate) fn policy_watcher(
    settings: &OrderSettings,
    policy: &SharedPolicy,
    step_names: Vec<&'static str>,
    policy_file_text: Option<String>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Option<commerce_runtime::service::BackgroundTask> {
    let watcher = crate::saga::reload::PolicyWatcher {
        path: settings.saga_file.clone()?,
        shared: policy.clone(),
        step_names,
        interval: settings.saga_reload_interval,
        last: policy_file_text,
    };
    Some(Box::pin(async move {
        watcher.run(shutdown).await;
        Ok(())
    }))
}

/// The saga definitions, over what their steps share.
pub(crate) struct Sagas {
    pub placement: Arc<PlacementSaga>,
    pub payment: Arc<lifecycle::Lifecycle<lifecycle::PaymentReceived>>,
    pub expiry: Arc<lifecycle::Lifecycle<lifecycle::Expiry>>,
    pub cancel: Arc<lifecycle::Lifecycle<lifecycle::Cancellation>>,
    pub delivery: Arc<lifecycle::Lifecycle<crate::delivery::DeliveryChange>>,
}

/// What both the service and the Temporal worker build from `services.order`.
pub(crate) struct Foundation {
    pub sagas: Sagas,
    pub queue: commerce_redis::TaskQueue,
    pub redis: commerce_redis::RedisClient,
}

pub(crate) async fn foundation(
    context: &ServiceContext,
    settings: &OrderSettings,
    pool: &sqlx::PgPool,
    policy: &SharedPolicy,
) -> Result<Foundation, BoxError> {
    let peers = Peers::new(
        &PeerAddresses {
            auth_http: &settings.peers.auth_http,
            cart_grpc: &settings.peers.cart_grpc,
            product_grpc: &settings.peers.product_grpc,
            fulfillment_grpc: &settings.peers.fulfillment_grpc,
            payment_grpc: &settings.peers.payment_grpc,
        },
        settings.client_secret.expose(),
    )?;
    let redis = context.redis().await?;
    let queue =
        commerce_redis::TaskQueue::new(redis.clone(), &format!("{}-tasks", settings.redis_prefix));
    let lifecycle = Arc::new(LifecycleContext {
        pool: pool.clone(),
        peers: peers.clone(),
        queue: queue.clone(),
        policy: policy.clone(),
    });
    Ok(Foundation {
        sagas: Sagas {
            placement: Arc::new(PlacementSaga::new(Arc::new(PlacementContext {
                pool: pool.clone(),
                peers,
                queue: queue.clone(),
                policy: policy.clone(),
            }))),
            payment: Arc::new(lifecycle::payment_saga(lifecycle.clone())),
            expiry: Arc::new(lifecycle::expiry_saga(lifecycle.clone())),
            cancel: Arc::new(lifecycle::cancel_saga(lifecycle.clone())),
            delivery: Arc::new(crate::delivery::delivery_saga(lifecycle)),
        },
        queue,
        redis,
    })
}

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let (settings, policy_file_text, step_names) = load_settings(&context.config)?;
    let pool = context.database()?;
    let policy = SharedPolicy::new(settings.saga.clone());
    let Foundation {
        sagas,
        queue,
        redis,
    } = foundation(&context, &settings, &pool, &policy).await?;
    let failpoints = Failpoints::new(settings.failpoints.clone());
    let temporal = match settings.saga.engine {
        Engine::Postgres => None,
        Engine::Temporal => Some(TemporalOrders::new(
            crate::saga::temporal::connect(&settings.temporal).await?,
            failpoints.clone(),
            settings.temporal.task_queue.clone(),
            sagas.placement.clone(),
            sagas.payment.clone(),
            sagas.expiry.clone(),
            policy.clone(),
        )),
    };
    let engines = Engines {
        placement: Arc::new(Orchestrator::new(
            pool.clone(),
            sagas.placement,
            policy.clone(),
            failpoints.clone(),
        )),
        payment: engine(&pool, sagas.payment, &policy, &failpoints),
        expiry: engine(&pool, sagas.expiry, &policy, &failpoints),
        cancel: engine(&pool, sagas.cancel, &policy, &failpoints),
        delivery: engine(&pool, sagas.delivery, &policy, &failpoints),
        temporal,
    };
    let orders = OrderService::new(
        pool.clone(),
        redis.clone(),
        settings.redis_prefix.clone(),
        engines.clone(),
        settings.request_wait,
    );

    let jwks = format!(
        "{}/.well-known/jwks.json",
        settings.peers.auth_http.trim_end_matches('/')
    );
    let user_tokens = TokenVerifier::with_jwks_url(
        &jwks,
        VerifierSettings::new(&settings.issuer, &["commerce"]),
    )
    .checking_revocations(commerce_access::RevokedSessions::new(redis.clone()));
    let service_tokens =
        TokenVerifier::with_jwks_url(&jwks, VerifierSettings::new(&settings.issuer, &["order"]));

    let relay_task = context.outbox_relay(&[TopicSpec::new(placement::TOPIC, 3)])?;
    let shutdown = context.shutdown.clone();
    let recovery_task: commerce_runtime::service::BackgroundTask = Box::pin(async move {
        let (placement, payment, expiry, cancel, delivery) = tokio::join!(
            engines.placement.clone().run_recovery(shutdown.clone()),
            engines.payment.clone().run_recovery(shutdown.clone()),
            engines.expiry.clone().run_recovery(shutdown.clone()),
            engines.cancel.clone().run_recovery(shutdown.clone()),
            engines.delivery.clone().run_recovery(shutdown.clone()),
        );
        placement
            .and(payment)
            .and(expiry)
            .and(cancel)
            .and(delivery)
            .map_err(BoxError::from)
    });
    let consumer = context.inbox_consumer(
        ConsumerSettings {
            group: settings.consumer_group.clone(),
            topics: vec![PAYMENT_TOPIC.to_owned(), FULFILLMENT_TOPIC.to_owned()],
            dead_letter_topic: DEAD_LETTER_TOPIC.to_owned(),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
        },
        3,
        Arc::new(PeerEvents {
            orders: orders.clone(),
        }),
    )?;
    let worker = commerce_redis::TaskWorker::new(queue, commerce_redis::WorkerSettings::default())
        .handle(
            placement::REMINDER_TASK,
            Arc::new(ReminderTask {
                orders: orders.clone(),
            }),
        )
        .handle(
            placement::EXPIRY_TASK,
            Arc::new(ExpiryTask {
                orders: orders.clone(),
            }),
        );
    let shutdown = context.shutdown.clone();
    let worker_task = Box::pin(async move { worker.run(shutdown).await.map_err(BoxError::from) });
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::order_service_server::OrderServiceServer::new(GrpcHandler {
            orders: orders.clone(),
        }),
    );
    let temporal_check = orders.engines().temporal.as_ref().map(|temporal| {
        Arc::new(crate::workflow::TemporalCheck(temporal.client().clone()))
            as Arc<dyn commerce_runtime::health::ReadinessCheck>
    });
    let mut background_tasks: Vec<commerce_runtime::service::BackgroundTask> = Vec::new();
    if let Some(temporal) = orders.engines().temporal.clone() {
        let (pool, shutdown) = (pool.clone(), context.shutdown.clone());
        background_tasks.push(Box::pin(async move {
            temporal
                .run_recovery(pool, shutdown)
                .await
                .map_err(BoxError::from)
        }));
    }
    background_tasks.extend(policy_watcher(
        &settings,
        &policy,
        step_names.clone(),
        policy_file_text,
        context.shutdown.clone(),
    ));
    let feed = crate::status_feed::StatusFeed::new();
    let feed_task = {
        let (feed, pool, shutdown) = (feed.clone(), pool.clone(), context.shutdown.clone());
        Box::pin(async move { feed.run(pool, shutdown).await.map_err(BoxError::from) })
    };
    Ok(ServiceParts {
        http: routes(orders, feed, user_tokens),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: [
            relay_task,
            recovery_task,
            worker_task,
            consumer.task,
            feed_task,
        ]
        .into_iter()
        .chain(background_tasks)
        .collect(),
        readiness: [
            Arc::new(RedisCheck(redis)) as Arc<dyn commerce_runtime::health::ReadinessCheck>,
            Arc::new(KafkaCheck(BrokerProbe::new(&context.config.app.kafka)?)),
            consumer.readiness,
        ]
        .into_iter()
        .chain(temporal_check)
        .collect(),
    })
}

/// An orchestrator for one lifecycle saga, sharing the service's pool, policy and failpoints.
fn engine<D>(
    pool: &sqlx::PgPool,
    definition: Arc<lifecycle::Lifecycle<D>>,
    policy: &SharedPolicy,
    failpoints: &Failpoints,
) -> Arc<Orchestrator<lifecycle::Lifecycle<D>>>
where
    D: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    Arc::new(Orchestrator::new(
        pool.clone(),
        definition,
        policy.clone(),
        failpoints.clone(),
    ))
}

fn order_id_of(task: &commerce_redis::Task) -> Result<Uuid, commerce_redis::TaskError> {
    task.payload
        .get("orderId")
        .and_then(|value| value.as_str())
        .and_then(|value| Uuid::parse_str(value).ok())
        .ok_or_else(|| commerce_redis::TaskError("task has no orderId".to_owned()))
}

struct ReminderTask {
    orders: OrderService,
}

impl commerce_redis::TaskHandler for ReminderTask {
    fn handle<'a>(
        &'a self,
        task: &'a commerce_redis::Task,
    ) -> BoxFuture<'a, Result<(), commerce_redis::TaskError>> {
        Box::pin(async move {
            let order_id = order_id_of(task)?;
            let reminder = task
                .payload
                .get("reminder")
                .and_then(|value| value.as_i64())
                .ok_or_else(|| commerce_redis::TaskError("task has no reminder".to_owned()))?;
            self.orders
                .remind(order_id, reminder as i32)
                .await
                .map(|_| ())
                .map_err(|error| commerce_redis::TaskError(error.to_string()))
        })
    }
}

struct ExpiryTask {
    orders: OrderService,
}

impl commerce_redis::TaskHandler for ExpiryTask {
    fn handle<'a>(
        &'a self,
        task: &'a commerce_redis::Task,
    ) -> BoxFuture<'a, Result<(), commerce_redis::TaskError>> {
        Box::pin(async move {
            self.orders
                .expire(order_id_of(task)?)
                .await
                .map(|_| ())
                .map_err(|error| commerce_redis::TaskError(error.to_string()))
        })
    }
}

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<OrderService> {
    ApiRoutes::new()
        .get("/v1/orders", list)
        .post("/v1/orders", place)
        .get("/v1/orders/{id}", show)
        .post("/v1/orders/{id}/cancel", cancel)
        .patch("/v1/orders/{id}/delivery", change_delivery)
}

pub fn routes(
    orders: OrderService,
    feed: crate::status_feed::StatusFeed,
    verifier: TokenVerifier,
) -> Router {
    let schema = crate::graphql::schema(Some((orders.clone(), feed)));
    api()
        .graphql(crate::graphql::handler)
        .into_router()
        .layer(Extension(schema))
        .layer(Extension(verifier))
        .with_state(orders)
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::Invalid { field, message } => ApiError::invalid(field, message),
            OrderError::NotFound(_) => ApiError::not_found(error.to_string()),
            OrderError::Conflict(_) => ApiError::conflict(error.to_string()),
            OrderError::Busy(_) => ApiError {
                retry_after: Some(1),
                ..ApiError::conflict(error.to_string())
            },
            OrderError::Unavailable(_) => unavailable(error.to_string()),
            OrderError::Storage(_) | OrderError::Engine(_) | OrderError::Redis(_) => {
                ApiError::internal(error)
            }
        }
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError {
        retry_after: Some(2),
        ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
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

async fn place(
    State(orders): State<OrderService>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonBody<PlaceOrder>,
) -> Result<Response, ApiError> {
    let user_id = principal.user_id()?;
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "is required: a unique value per order attempt, reused when retrying it",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?
        .to_owned();
    let Json(body) = body.map_err(json_rejection)?;
    let session = parse_id("checkoutSessionId", &body.checkout_session_id)?;
    let (status, body, replayed) = match orders.place(user_id, &key, session).await? {
        PlaceAnswer::Replay { status, body } => (status, body, true),
        PlaceAnswer::Placed(placed) => {
            let body = serde_json::json!({
                "orderId": placed.order.id,
                "clientSecret": placed.client_secret,
                "order": placed.order,
            });
            (StatusCode::CREATED.as_u16(), body, false)
        }
        PlaceAnswer::Failed { order_id, failure } => {
            let error = match failure.kind {
                FailureKind::NotFound => ApiError::not_found(failure.message),
                FailureKind::Conflict => ApiError::conflict(failure.message),
                FailureKind::Invalid => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "failed_precondition",
                    failure.message,
                ),
                FailureKind::Unavailable => unavailable(failure.message),
            };
            let mut body = error.body();
            body["error"]["orderId"] = order_id.to_string().into();
            (error.status.as_u16(), body, false)
        }
    };
    if !replayed {
        orders.remember(user_id, &key, status, &body).await?;
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
    let order = orders.order(viewer, parse_id("id", &id)?).await?;
    order_body(viewer, &order)
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

struct GrpcHandler {
    orders: OrderService,
}

#[tonic::async_trait]
impl pb::order_service_server::OrderService for GrpcHandler {
    async fn get_order(
        &self,
        request: tonic::Request<pb::GetOrderRequest>,
    ) -> Result<tonic::Response<pb::GetOrderResponse>, tonic::Status> {
        let raw = request.into_inner().order_id;
        let id = Uuid::parse_str(&raw).map_err(|_| {
            tonic::Status::invalid_argument(format!("order_id: `{raw}` is not a UUID"))
        })?;
        let order = self
            .orders
            .order_by_id(id)
            .await
            .map_err(|error| match error {
                OrderError::NotFound(_) => tonic::Status::not_found(error.to_string()),
                other => {
                    tracing::error!(error = %other, "GetOrder failed");
                    tonic::Status::internal("internal error")
                }
            })?;
        Ok(tonic::Response::new(pb::GetOrderResponse {
            order: Some(crate::service::order_to_proto(&order)),
        }))
    }
}
