//! The fulfillment service's edges: the public courier list and gRPC `GetShippingCost`
//! (service tokens only).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use commerce_access::{Principal, RequireServiceToken, Role, TokenVerifier, VerifierSettings};
use commerce_messaging::{
    BrokerProbe, ConsumerSettings, EventHandler, HandlerError, ReceivedEvent, TopicSpec,
};
use commerce_runtime::api::ApiRoutes;
use commerce_runtime::health::KafkaCheck;
use uuid::Uuid;

use crate::carrier::{
    CarrierError, EasyPostCarrier, EasyPostSettings, LocalCarrier, ShippingProvider,
};
use crate::domain::{Address, FulfillmentStatus};
use crate::shipments::{self, Fulfillment, NewFulfillment, ShipmentError, Shipments};
use commerce_proto::fulfillment::v1 as pb;
use commerce_runtime::{ApiError, BoxError, ServiceContext, ServiceParts};
use serde::Deserialize;
use tower::Layer;

use crate::domain::ParcelLine;
use crate::service::{FulfillmentError, FulfillmentService};

/// `services.fulfillment` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct FulfillmentSettings {
    /// Where the auth service publishes its keys.
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// Weight of a unit whose weight the caller does not send.
    #[serde(default = "default_unit_weight")]
    pub default_unit_weight_g: i64,
    /// Who ships: `{ provider = "local" }` (default) or `{ provider = "easypost", … }`.
    #[serde(default)]
    pub carrier: CarrierSettings,
    /// How often pending shipments are handed to the carrier.
    #[serde(default = "default_worker_interval", with = "humantime_serde")]
    pub worker_interval: Duration,
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum CarrierSettings {
    #[default]
    Local,
    Easypost(Box<EasyPostSettings>),
}

fn default_worker_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_consumer_group() -> String {
    "fulfillment".to_owned()
}

pub const ORDER_TOPIC: &str = "commerce.order.events";
pub const DEAD_LETTER_TOPIC: &str = "commerce.fulfillment.dlq";

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}
fn default_unit_weight() -> i64 {
    500
}

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: FulfillmentSettings = context.settings()?;
    let pool = context.database()?;
    let fulfillment = FulfillmentService::new(pool.clone(), settings.default_unit_weight_g);
    let carrier: Arc<dyn ShippingProvider> = match &settings.carrier {
        CarrierSettings::Local => Arc::new(LocalCarrier),
        CarrierSettings::Easypost(easypost) => {
            Arc::new(EasyPostCarrier::new(easypost.as_ref().clone())?)
        }
    };
    let shipments = Shipments::new(pool.clone(), carrier);
    let redis = context.redis().await?;
    let user_tokens = TokenVerifier::with_jwks_url(
        &settings.jwks_url,
        VerifierSettings::new(&settings.issuer, &["commerce"]),
    )
    .checking_revocations(commerce_access::RevokedSessions::new(redis.clone()));
    let relay_task = context.outbox_relay(&[TopicSpec::new(shipments::TOPIC, 3)])?;
    let worker_shutdown = context.shutdown.clone();
    let worker = shipments.clone();
    let interval = settings.worker_interval;
    let worker_task: commerce_runtime::service::BackgroundTask = Box::pin(async move {
        worker
            .run_worker(interval, worker_shutdown)
            .await
            .map_err(BoxError::from)
    });
    let consumer = context.inbox_consumer(
        ConsumerSettings {
            group: settings.consumer_group.clone(),
            topics: vec![ORDER_TOPIC.to_owned()],
            dead_letter_topic: DEAD_LETTER_TOPIC.to_owned(),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
        },
        3,
        Arc::new(OrderEvents {
            shipments: shipments.clone(),
            default_unit_weight_g: settings.default_unit_weight_g,
        }),
    )?;
    let service_tokens = TokenVerifier::with_jwks_url(
        &settings.jwks_url,
        VerifierSettings::new(&settings.issuer, &["fulfillment"]),
    );
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::fulfillment_service_server::FulfillmentServiceServer::new(GrpcHandler {
            fulfillment: fulfillment.clone(),
        }),
    );
    let shipment_routes = shipment_api()
        .into_router()
        .layer(Extension(user_tokens))
        .with_state(shipments);
    Ok(ServiceParts {
        http: courier_api()
            .into_router()
            .with_state(fulfillment)
            .merge(shipment_routes),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: vec![relay_task, worker_task, consumer.task],
        readiness: vec![
            Arc::new(KafkaCheck(BrokerProbe::new(&context.config.app.kafka)?)),
            consumer.readiness,
        ],
    })
}

/// Public: which couriers a shopper may choose.
pub fn courier_api() -> ApiRoutes<FulfillmentService> {
    ApiRoutes::new()
        .get("/v1/shipping/couriers", couriers)
        .get("/v1/shipping/quotes", quotes)
}

/// Shipments: their owners and staff read them, staff and carriers report on them.
pub fn shipment_api() -> ApiRoutes<Shipments> {
    ApiRoutes::new()
        .get("/v1/fulfillments/{orderId}", show)
        .patch("/v1/admin/fulfillments/{orderId}", report)
        .post("/v1/fulfillments/webhooks/{carrier}", webhook)
}

/// Every public REST operation (see `openapi/openapi.yaml`).
pub fn operations() -> Vec<(axum::http::Method, &'static str)> {
    let mut operations = courier_api().operations().to_vec();
    operations.extend_from_slice(shipment_api().operations());
    operations
}

/// Order events: a confirmed order becomes a shipment to make.
struct OrderEvents {
    shipments: Shipments,
    default_unit_weight_g: i64,
}

#[async_trait::async_trait]
impl EventHandler for OrderEvents {
    async fn handle(
        &self,
        connection: &mut sqlx::PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        if !event.is::<commerce_proto::order::v1::OrderConfirmed>() {
            return Ok(());
        }
        let confirmed: commerce_proto::order::v1::OrderConfirmed = event.decode()?;
        let order = confirmed
            .order
            .ok_or_else(|| HandlerError::Permanent("OrderConfirmed without an order".into()))?;
        let uuid = |field: &str, raw: &str| {
            Uuid::parse_str(raw).map_err(|_| {
                HandlerError::Permanent(format!(
                    "OrderConfirmed.order.{field} `{raw}` is not a UUID"
                ))
            })
        };
        let lines: Vec<ParcelLine> = order
            .items
            .iter()
            .map(|item| ParcelLine {
                quantity: item.quantity,
                unit_weight_g: None,
            })
            .collect();
        let weight_g = crate::domain::parcel_weight(&lines, self.default_unit_weight_g)
            .map_err(|invalid| HandlerError::Permanent(invalid.to_string()))?;
        let address = order.shipping_address.unwrap_or_default();
        let new = NewFulfillment {
            order_id: uuid("id", &order.id)?,
            user_id: uuid("user_id", &order.user_id)?,
            courier: order.courier,
            address: Address {
                recipient: address.recipient,
                line1: address.line1,
                line2: address.line2,
                city: address.city,
                region: address.region,
                postal_code: address.postal_code,
                country: address.country,
                phone: address.phone,
            },
            weight_g,
        };
        self.shipments
            .accept(connection, new)
            .await
            .map_err(|error| HandlerError::Retryable(error.to_string()))?;
        Ok(())
    }
}

impl From<ShipmentError> for ApiError {
    fn from(error: ShipmentError) -> Self {
        match error {
            ShipmentError::NotFound(_) => ApiError::not_found(error.to_string()),
            ShipmentError::Conflict(_) => ApiError::conflict(error.to_string()),
            ShipmentError::Carrier(CarrierError::Webhook(_)) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_signature",
                error.to_string(),
            ),
            ShipmentError::Carrier(_) => ApiError::unavailable(2, error.to_string()),
            ShipmentError::Storage(_) | ShipmentError::Outbox(_) => ApiError::internal(error),
        }
    }
}

fn order_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid("orderId", "must be a UUID"))
}

/// The order's owner and staff see its shipment.
async fn show(
    State(shipments): State<Shipments>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<Fulfillment>, ApiError> {
    let fulfillment = shipments.by_order(order_id(&raw)?).await?;
    let staff = [Role::Admin, Role::Support].contains(&principal.role());
    if !staff && principal.user_id()? != fulfillment.user_id {
        return Err(ApiError::not_found(format!("fulfillment of order {raw}")));
    }
    Ok(Json(fulfillment))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    /// `SHIPPED` or `DELIVERED`.
    status: String,
}

async fn report(
    State(shipments): State<Shipments>,
    principal: Principal,
    Path(raw): Path<String>,
    body: Result<Json<Report>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Fulfillment>, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let Json(body) = body.map_err(commerce_runtime::api::json_rejection)?;
    let to = match FulfillmentStatus::parse(&body.status) {
        Some(to @ (FulfillmentStatus::Shipped | FulfillmentStatus::Delivered)) => to,
        _ => return Err(ApiError::invalid("status", "must be SHIPPED or DELIVERED")),
    };
    Ok(Json(
        shipments
            .report(order_id(&raw)?, to, &principal.actor())
            .await?,
    ))
}

/// Carriers call this; it is authenticated by the delivery's signature, not a token.
async fn webhook(
    State(shipments): State<Shipments>,
    Path(carrier): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let outcome = shipments.webhook(&carrier, &headers, &body).await?;
    Ok(Json(
        serde_json::json!({ "received": true, "outcome": outcome }),
    ))
}

/// Public: the storefront shows shoppers which couriers they can choose.
async fn couriers(
    State(fulfillment): State<FulfillmentService>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let couriers = fulfillment.couriers().await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "items": couriers })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteQuery {
    country: String,
    units: i64,
}

/// Public: the shipping cost per courier before an order is placed, for the checkout page.
async fn quotes(
    State(fulfillment): State<FulfillmentService>,
    query: Result<Query<QuoteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid("query", rejection.body_text()))?;
    if !(1..=10_000).contains(&query.units) {
        return Err(ApiError::invalid("units", "must be 1 to 10000"));
    }
    let country = query.country.trim().to_uppercase();
    if crate::domain::check_country(&country).is_err() {
        return Err(ApiError::invalid(
            "country",
            "must be a two-letter ISO 3166-1 code such as US",
        ));
    }
    let quotes = fulfillment
        .quotes(&country, query.units)
        .await
        .map_err(ApiError::internal)?;
    let items: Vec<_> = quotes
        .into_iter()
        .map(|(courier, quote)| {
            serde_json::json!({
                "courier": courier.code,
                "name": courier.name,
                "cost": quote.rate.price.to_string(),
                "currency": quote.rate.currency,
                "estimatedDays": quote.rate.estimated_days,
                "weightGrams": quote.weight_g,
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "country": country, "items": items }),
    ))
}

struct GrpcHandler {
    fulfillment: FulfillmentService,
}

#[tonic::async_trait]
impl pb::fulfillment_service_server::FulfillmentService for GrpcHandler {
    async fn get_shipping_cost(
        &self,
        request: tonic::Request<pb::GetShippingCostRequest>,
    ) -> Result<tonic::Response<pb::GetShippingCostResponse>, tonic::Status> {
        let request = request.into_inner();
        let lines: Vec<ParcelLine> = request
            .items
            .iter()
            .map(|item| ParcelLine {
                quantity: item.quantity,
                unit_weight_g: (item.weight_grams != 0).then_some(item.weight_grams),
            })
            .collect();
        let quote = self
            .fulfillment
            .shipping_cost(&request.courier, &request.destination_country, &lines)
            .await
            .map_err(|error| match error {
                FulfillmentError::Invalid(invalid) => {
                    tonic::Status::invalid_argument(invalid.to_string())
                }
                FulfillmentError::UnknownCourier(_) => tonic::Status::not_found(error.to_string()),
                FulfillmentError::NotDeliverable(_) => {
                    tonic::Status::failed_precondition(error.to_string())
                }
                FulfillmentError::Storage(_) => {
                    tracing::error!(%error, "GetShippingCost failed");
                    tonic::Status::internal("internal error")
                }
            })?;
        Ok(tonic::Response::new(pb::GetShippingCostResponse {
            cost: Some(commerce_proto::common::v1::Money {
                amount: quote.rate.price.to_string(),
                currency: quote.rate.currency.clone(),
            }),
            courier: request.courier.trim().to_lowercase(),
            zone: quote.rate.zone,
            weight_grams: quote.weight_g,
            estimated_days: quote.rate.estimated_days,
        }))
    }
}
