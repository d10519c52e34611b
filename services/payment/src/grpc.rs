//! gRPC `PaymentService` (service tokens only): intents, captures and refunds for the order saga.

use commerce_proto::payment::v1 as pb;
use uuid::Uuid;

use crate::domain::Charge;
use crate::gateway::GatewayError;
use crate::service::{PaymentError, PaymentService};

pub(crate) struct GrpcHandler {
    pub(crate) payments: PaymentService,
}

fn grpc_status(error: PaymentError) -> tonic::Status {
    match error {
        PaymentError::Invalid(invalid) => tonic::Status::invalid_argument(invalid.to_string()),
        PaymentError::NotFound(_) => tonic::Status::not_found(error.to_string()),
        PaymentError::Forbidden(_) => tonic::Status::permission_denied(error.to_string()),
        PaymentError::Conflict(_)
        | PaymentError::Gateway(GatewayError::NotConfigured(_) | GatewayError::Refused(_)) => {
            tonic::Status::failed_precondition(error.to_string())
        }
        PaymentError::Gateway(_) => tonic::Status::unavailable(error.to_string()),
        PaymentError::Webhook(_) | PaymentError::Storage(_) | PaymentError::Outbox(_) => {
            commerce_runtime::api::storage_status(&error)
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

    async fn replace_payment_intent(
        &self,
        request: tonic::Request<pb::ReplacePaymentIntentRequest>,
    ) -> Result<tonic::Response<pb::ReplacePaymentIntentResponse>, tonic::Status> {
        let request = request.into_inner();
        let order = grpc_uuid("order_id", &request.order_id)?;
        let amount = request.amount.unwrap_or_default();
        let charge = Charge::parse(&amount.amount, &amount.currency)
            .map_err(|invalid| tonic::Status::invalid_argument(invalid.to_string()))?;
        let payment = self
            .payments
            .replace_intent(order, charge, request.revision)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::ReplacePaymentIntentResponse {
            payment_id: payment.id.to_string(),
            client_secret: payment.client_secret,
            status: payment.status.as_str().to_owned(),
            revision: payment.revision,
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

    async fn refund_payment(
        &self,
        request: tonic::Request<pb::RefundPaymentRequest>,
    ) -> Result<tonic::Response<pb::RefundPaymentResponse>, tonic::Status> {
        let request = request.into_inner();
        let order = grpc_uuid("order_id", &request.order_id)?;
        let requested = match request.amount {
            Some(amount) if !amount.amount.is_empty() => Some(
                Charge::parse(&amount.amount, &amount.currency)
                    .map_err(|invalid| tonic::Status::invalid_argument(invalid.to_string()))?,
            ),
            _ => None,
        };
        let answer = self
            .payments
            .refund(order, requested, &request.reason, &request.idempotency_key)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::RefundPaymentResponse {
            refund_id: answer.refund_id.to_string(),
            amount: Some(commerce_proto::common::v1::Money {
                amount: commerce_runtime::api::money_scale(answer.amount).to_string(),
                currency: answer.currency,
            }),
            status: answer.status,
            payment_status: answer.payment_status,
        }))
    }

    async fn list_gateways(
        &self,
        _request: tonic::Request<pb::ListGatewaysRequest>,
    ) -> Result<tonic::Response<pb::ListGatewaysResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::ListGatewaysResponse {
            gateways: self
                .payments
                .offered_gateways()
                .into_iter()
                .map(|(code, _)| code.to_owned())
                .collect(),
        }))
    }
}
