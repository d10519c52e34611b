//! The cart service, asked whether a cart announced abandoned still is, and what it holds
//! at today's prices, before the recovery e-mail goes out.

use std::sync::Arc;
use std::time::Duration;

use commerce_access::ServiceTokenSource;
use commerce_proto::cart::v1 as cart_pb;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum CartPeerError {
    #[error("no service token for cart: {0}")]
    Token(#[from] commerce_access::AccessError),
    #[error("cart answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
}

#[derive(Clone)]
pub struct Carts {
    client: cart_pb::cart_service_client::CartServiceClient<Channel>,
    tokens: Arc<ServiceTokenSource>,
}

impl Carts {
    /// Connects lazily: the service starts while cart is down.
    pub fn new(
        cart_grpc: &str,
        tokens: ServiceTokenSource,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(cart_grpc.to_owned())?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        Ok(Self {
            client: cart_pb::cart_service_client::CartServiceClient::new(channel),
            tokens: Arc::new(tokens),
        })
    }

    /// The cart priced now while it is still abandoned; `None` once it changed, was
    /// emptied or ordered, or if cart does not know it.
    pub async fn abandoned(
        &self,
        cart_id: Uuid,
    ) -> Result<Option<cart_pb::GetAbandonedCartResponse>, CartPeerError> {
        let request = self
            .tokens
            .authorize(commerce_runtime::telemetry::traced_request(
                cart_pb::GetAbandonedCartRequest {
                    cart_id: cart_id.to_string(),
                },
            ))
            .await?;
        match self.client.clone().get_abandoned_cart(request).await {
            Ok(answer) => Ok(Some(answer.into_inner()).filter(|cart| cart.abandoned)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }
}
