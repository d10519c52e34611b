//! gRPC `OrderService` for other services (service tokens only).

use commerce_proto::order::v1 as pb;
use uuid::Uuid;

use crate::events::order_to_proto;
use crate::service::OrderService;

/// Its errors become statuses by `From<OrderError> for tonic::Status` (`error.rs`).
pub struct GrpcHandler {
    pub orders: OrderService,
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
        let order = self.orders.order_by_id(id).await?;
        Ok(tonic::Response::new(pb::GetOrderResponse {
            order: Some(order_to_proto(&order)),
        }))
    }
}
