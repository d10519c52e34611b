//! The fulfillment service's edges: the public courier list and gRPC `GetShippingCost`
//! (service tokens only).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use commerce_access::{RequireServiceToken, TokenVerifier, VerifierSettings};
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
}

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}
fn default_unit_weight() -> i64 {
    500
}

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: FulfillmentSettings = context.settings()?;
    let fulfillment = FulfillmentService::new(context.database()?, settings.default_unit_weight_g);
    let service_tokens = TokenVerifier::with_jwks_url(
        &settings.jwks_url,
        VerifierSettings::new(&settings.issuer, &["fulfillment"]),
    );
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::fulfillment_service_server::FulfillmentServiceServer::new(GrpcHandler {
            fulfillment: fulfillment.clone(),
        }),
    );
    Ok(ServiceParts {
        http: Router::new()
            .route("/v1/shipping/couriers", get(couriers))
            .with_state(fulfillment),
        grpc: Some(tonic::service::Routes::new(grpc)),
        ..ServiceParts::default()
    })
}

/// Public: the storefront shows shoppers which couriers they can choose.
async fn couriers(
    State(fulfillment): State<FulfillmentService>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let couriers = fulfillment.couriers().await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "items": couriers })))
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
