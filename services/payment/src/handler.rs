//! The payment service's edges: gRPC `PaymentService` (service tokens only).

use commerce_access::{RequireServiceToken, TokenVerifier, VerifierSettings};
use commerce_proto::payment::v1 as pb;
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
use serde::Deserialize;
use tower::Layer;
use uuid::Uuid;

use crate::domain::Charge;
use crate::gateway::{Gateways, OfflineGateway};
use crate::service::{PaymentError, PaymentService};

/// `services.payment` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettings {
    /// Where the auth service publishes its keys.
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
}

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: PaymentSettings = context.settings()?;
    // Stripe and Xendit clients join here when their credentials are configured (issue 6).
    let payments = PaymentService::new(
        context.database()?,
        Gateways::new(vec![Box::new(OfflineGateway)]),
    );
    let verifier = TokenVerifier::with_jwks_url(
        &settings.jwks_url,
        VerifierSettings::new(&settings.issuer, &["payment"]),
    );
    let grpc = RequireServiceToken::new(verifier).layer(
        pb::payment_service_server::PaymentServiceServer::new(GrpcHandler { payments }),
    );
    Ok(ServiceParts {
        grpc: Some(tonic::service::Routes::new(grpc)),
        ..ServiceParts::default()
    })
}

struct GrpcHandler {
    payments: PaymentService,
}

fn grpc_status(error: PaymentError) -> tonic::Status {
    match error {
        PaymentError::Invalid(invalid) => tonic::Status::invalid_argument(invalid.to_string()),
        PaymentError::Conflict(_)
        | PaymentError::Gateway(crate::gateway::GatewayError::NotConfigured(_)) => {
            tonic::Status::failed_precondition(error.to_string())
        }
        PaymentError::Gateway(_) => tonic::Status::unavailable(error.to_string()),
        PaymentError::Storage(_) => {
            tracing::error!(%error, "payment call failed");
            tonic::Status::internal("internal error")
        }
    }
}

fn grpc_uuid(field: &str, raw: &str) -> Result<Uuid, tonic::Status> {
    Uuid::parse_str(raw)
        .map_err(|_| tonic::Status::invalid_argument(format!("{field}: `{raw}` is not a UUID")))
}

#[tonic::async_trait]
impl pb::payment_service_server::PaymentService for GrpcHandler {
    async fn create_payment_intent(
        &self,
        request: tonic::Request<pb::CreatePaymentIntentRequest>,
    ) -> Result<tonic::Response<pb::CreatePaymentIntentResponse>, tonic::Status> {
        let request = request.into_inner();
        let order = grpc_uuid("order_id", &request.order_id)?;
        let user = grpc_uuid("user_id", &request.user_id)?;
        let amount = request.amount.unwrap_or_default();
        let charge = Charge::parse(&amount.amount, &amount.currency)
            .map_err(|invalid| tonic::Status::invalid_argument(invalid.to_string()))?;
        let payment = self
            .payments
            .create_intent(order, user, charge, &request.gateway)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::CreatePaymentIntentResponse {
            payment_id: payment.id.to_string(),
            client_secret: payment.client_secret,
            status: payment.status.as_str().to_owned(),
            gateway: payment.gateway,
        }))
    }

    async fn cancel_payment_intent(
        &self,
        request: tonic::Request<pb::CancelPaymentIntentRequest>,
    ) -> Result<tonic::Response<pb::CancelPaymentIntentResponse>, tonic::Status> {
        let order = grpc_uuid("order_id", &request.into_inner().order_id)?;
        let status = self
            .payments
            .cancel_intent(order)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::CancelPaymentIntentResponse {
            status: status
                .map(|status| status.as_str().to_owned())
                .unwrap_or_default(),
        }))
    }
}
