//! gRPC `CartService` for the order service (service tokens only).

use commerce_proto::cart::v1 as pb;
use uuid::Uuid;

use crate::service::{self, CartError, CartService};

pub struct GrpcHandler {
    pub carts: CartService,
}

fn grpc_status(error: CartError) -> tonic::Status {
    match error {
        CartError::Invalid(invalid) => tonic::Status::invalid_argument(invalid.to_string()),
        CartError::NotFound(_) => tonic::Status::not_found(error.to_string()),
        CartError::Conflict(_) | CartError::Forbidden(_) => {
            tonic::Status::failed_precondition(error.to_string())
        }
        CartError::Unavailable(_) => tonic::Status::unavailable(error.to_string()),
        CartError::Database(_) | CartError::Outbox(_) => {
            commerce_runtime::api::storage_status(&error)
        }
    }
}

fn grpc_uuid(field: &str, raw: &str) -> Result<Uuid, tonic::Status> {
    Uuid::parse_str(raw)
        .map_err(|_| tonic::Status::invalid_argument(format!("{field}: `{raw}` is not a UUID")))
}

#[tonic::async_trait]
impl pb::cart_service_server::CartService for GrpcHandler {
    async fn get_abandoned_cart(
        &self,
        request: tonic::Request<pb::GetAbandonedCartRequest>,
    ) -> Result<tonic::Response<pb::GetAbandonedCartResponse>, tonic::Status> {
        let id = grpc_uuid("cart_id", &request.into_inner().cart_id)?;
        let cart = self.carts.abandoned(id).await.map_err(grpc_status)?;
        Ok(tonic::Response::new(
            cart.map(|cart| cart.to_proto()).unwrap_or_default(),
        ))
    }

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
