//! The cart service's edges: REST under `/v1/cart`, `/v1/checkout`, `/v1/admin/promo-codes`,
//! gRPC `CartService` (service tokens only), and the outbox relay.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use commerce_access::{
    Principal, RequireServiceToken, Role, ServiceTokenSource, TokenVerifier, VerifierSettings,
};
use commerce_messaging::{
    BrokerProbe, ConsumerSettings, EventHandler, HandlerError, ReceivedEvent, TopicSpec,
};
use commerce_proto::cart::v1 as pb;
use commerce_runtime::api::{ApiRoutes, json_rejection};
use commerce_runtime::health::KafkaCheck;
use commerce_runtime::{ApiError, BoxError, ServiceContext, ServiceParts};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tower::Layer;
use uuid::Uuid;

use crate::domain::{GuestCartKey, PromoCode, PromoKind};
use crate::peers::{PeerEndpoints, Peers};
use crate::repository::Owner;
use crate::service::{self, CartError, CartService, CheckoutRequest};

/// `services.cart` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct CartSettings {
    pub peers: PeerSettings,
    /// This service's client secret for service tokens (client id `cart`).
    pub client_secret: commerce_runtime::Secret,
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// How long a cart with items may sit untouched before `CartAbandoned`.
    #[serde(default = "default_abandon_after", with = "humantime_serde")]
    pub abandon_after: Duration,
    /// Carts untouched this long (and never checked out) are deleted.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    #[serde(default = "default_cleanup_interval", with = "humantime_serde")]
    pub cleanup_interval: Duration,
    /// How long cart state stays cached.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Namespace of this service's Redis keys (task queue, cart state).
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
}

fn default_consumer_group() -> String {
    "cart".to_owned()
}

/// The order stream this service consumes, and its dead-letter topic.
pub const ORDER_TOPIC: &str = "commerce.order.events";
pub const DEAD_LETTER_TOPIC: &str = "commerce.cart.dlq";

fn default_abandon_after() -> Duration {
    Duration::from_secs(24 * 60 * 60)
}
fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 60 * 60)
}
fn default_cleanup_interval() -> Duration {
    Duration::from_secs(60 * 60)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(60 * 60)
}
fn default_redis_prefix() -> String {
    "cart".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeerSettings {
    /// The auth service's HTTP base URL (JWKS, service tokens).
    pub auth_http: String,
    pub auth_grpc: String,
    pub product_grpc: String,
    pub payment_grpc: String,
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_issuer() -> String {
    "commerce-auth".to_owned()
}

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: CartSettings = context.settings()?;
    let guest_carts = GuestCartKey::derive(settings.client_secret.expose());
    let pool = context.database()?;
    let (auth_http, client_secret) = (
        settings.peers.auth_http.clone(),
        settings.client_secret.clone(),
    );
    let peers = Peers::new(PeerEndpoints {
        product_grpc: settings.peers.product_grpc.clone(),
        auth_grpc: settings.peers.auth_grpc.clone(),
        payment_grpc: settings.peers.payment_grpc.clone(),
        tokens: Box::new(move |audience| {
            ServiceTokenSource::new(&auth_http, "cart", client_secret.expose(), audience)
        }),
    })?;
    let redis = context.redis().await?;
    let queue =
        commerce_redis::TaskQueue::new(redis.clone(), &format!("{}-tasks", settings.redis_prefix));
    let abandonment = service::Abandonment {
        queue: queue.clone(),
        after: settings.abandon_after,
    };
    let cache = commerce_redis::VersionedCache::new(
        redis.clone(),
        &format!("{}-state", settings.redis_prefix),
        settings.cache_ttl,
    );
    let carts = CartService::new(
        pool.clone(),
        peers,
        settings.session_ttl,
        Some(abandonment),
        Some(cache),
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
        TokenVerifier::with_jwks_url(&jwks, VerifierSettings::new(&settings.issuer, &["cart"]));

    let relay_task = context.outbox_relay(&[TopicSpec::new(service::TOPIC, 3)])?;
    let worker = commerce_redis::TaskWorker::new(queue, commerce_redis::WorkerSettings::default())
        .handle(
            service::ABANDON_TASK,
            Arc::new(AbandonCheck {
                carts: carts.clone(),
            }),
        );
    let shutdown = context.shutdown.clone();
    let worker_task = Box::pin(async move { worker.run(shutdown).await.map_err(BoxError::from) });
    let cleanup_task = Box::pin(clean_up_periodically(
        carts.clone(),
        settings.retention,
        settings.cleanup_interval,
        context.shutdown.clone(),
    ));
    let consumer = context.inbox_consumer(
        ConsumerSettings {
            group: settings.consumer_group.clone(),
            topics: vec![ORDER_TOPIC.to_owned()],
            dead_letter_topic: DEAD_LETTER_TOPIC.to_owned(),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
        },
        3,
        Arc::new(OrderEvents),
    )?;
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::cart_service_server::CartServiceServer::new(GrpcHandler {
            carts: carts.clone(),
        }),
    );
    Ok(ServiceParts {
        http: routes(carts, user_tokens, guest_carts),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: vec![relay_task, worker_task, cleanup_task, consumer.task],
        readiness: vec![
            Arc::new(commerce_runtime::health::RedisCheck(redis)),
            Arc::new(KafkaCheck(BrokerProbe::new(&context.config.app.kafka)?)),
            consumer.readiness,
        ],
    })
}

/// Order events: an order made from a checkout session closes the cart it came from.
struct OrderEvents;

#[async_trait::async_trait]
impl EventHandler for OrderEvents {
    async fn handle(
        &self,
        connection: &mut sqlx::PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        if !event.is::<commerce_proto::order::v1::OrderCreated>() {
            return Ok(());
        }
        let created: commerce_proto::order::v1::OrderCreated = event.decode()?;
        let order = created
            .order
            .ok_or_else(|| HandlerError::Permanent("OrderCreated without an order".into()))?;
        let parse = |field: &str, raw: &str| {
            Uuid::parse_str(raw).map_err(|_| {
                HandlerError::Permanent(format!("OrderCreated.{field} `{raw}` is not a UUID"))
            })
        };
        let session = parse("order.checkout_session_id", &order.checkout_session_id)?;
        let order_id = parse("order.id", &order.id)?;
        if crate::repository::close_for_order(connection, session, order_id).await? {
            tracing::info!(%order_id, checkout_session_id = %session, "cart closed by its order");
        }
        Ok(())
    }
}

/// The delayed task that announces an idle cart.
struct AbandonCheck {
    carts: CartService,
}

impl commerce_redis::TaskHandler for AbandonCheck {
    fn handle<'a>(
        &'a self,
        task: &'a commerce_redis::Task,
    ) -> futures::future::BoxFuture<'a, Result<(), commerce_redis::TaskError>> {
        Box::pin(async move {
            let cart_id = task
                .payload
                .get("cartId")
                .and_then(|value| value.as_str())
                .and_then(|value| Uuid::parse_str(value).ok())
                .ok_or_else(|| commerce_redis::TaskError("task has no cartId".to_owned()))?;
            self.carts
                .announce_if_idle(cart_id)
                .await
                .map(|_| ())
                .map_err(|error| commerce_redis::TaskError(error.to_string()))
        })
    }
}

async fn clean_up_periodically(
    carts: CartService,
    retention: Duration,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), BoxError> {
    loop {
        match carts.clean_up(retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted stale carts"),
            Err(error) => tracing::warn!(%error, "cart cleanup failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<CartService> {
    ApiRoutes::new()
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
        .post("/v1/admin/promo-codes", create_promo)
}

pub fn routes(carts: CartService, verifier: TokenVerifier, guest_carts: GuestCartKey) -> Router {
    api()
        .into_router()
        .layer(Extension(verifier))
        .layer(Extension(guest_carts))
        .with_state(carts)
}

impl From<CartError> for ApiError {
    fn from(error: CartError) -> Self {
        match error {
            CartError::Invalid(invalid) => ApiError::invalid(invalid.field, invalid.message),
            CartError::NotFound(_) => ApiError::not_found(error.to_string()),
            CartError::Conflict(_) => ApiError::conflict(error.to_string()),
            CartError::Forbidden(_) => ApiError::forbidden(error.to_string()),
            CartError::Unavailable(_) => ApiError::unavailable(2, error.to_string()),
            CartError::Storage(_) => ApiError::internal(error),
        }
    }
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

struct GrpcHandler {
    carts: CartService,
}

fn grpc_status(error: CartError) -> tonic::Status {
    match error {
        CartError::Invalid(invalid) => tonic::Status::invalid_argument(invalid.to_string()),
        CartError::NotFound(_) => tonic::Status::not_found(error.to_string()),
        CartError::Conflict(_) | CartError::Forbidden(_) => {
            tonic::Status::failed_precondition(error.to_string())
        }
        CartError::Unavailable(_) => tonic::Status::unavailable(error.to_string()),
        CartError::Storage(_) => {
            tracing::error!(%error, "gRPC call failed");
            tonic::Status::internal("internal error")
        }
    }
}

fn grpc_uuid(field: &str, raw: &str) -> Result<Uuid, tonic::Status> {
    Uuid::parse_str(raw)
        .map_err(|_| tonic::Status::invalid_argument(format!("{field}: `{raw}` is not a UUID")))
}

#[tonic::async_trait]
impl pb::cart_service_server::CartService for GrpcHandler {
    async fn get_checkout_session(
        &self,
        request: tonic::Request<pb::GetCheckoutSessionRequest>,
    ) -> Result<tonic::Response<pb::GetCheckoutSessionResponse>, tonic::Status> {
        let id = grpc_uuid("session_id", &request.into_inner().session_id)?;
        let session = self.carts.session(id).await.map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::GetCheckoutSessionResponse {
            session: Some(service::session_to_proto(&session)),
        }))
    }

    async fn complete_checkout_session(
        &self,
        request: tonic::Request<pb::CompleteCheckoutSessionRequest>,
    ) -> Result<tonic::Response<pb::CompleteCheckoutSessionResponse>, tonic::Status> {
        let request = request.into_inner();
        let id = grpc_uuid("session_id", &request.session_id)?;
        let order = grpc_uuid("order_id", &request.order_id)?;
        let session = self.carts.complete(id, order).await.map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::CompleteCheckoutSessionResponse {
            session: Some(service::session_to_proto(&session)),
        }))
    }
}
