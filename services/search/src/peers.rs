//! The product service, asked for the whole catalogue when the index has to be rebuilt,
//! over gRPC with this service's own service token and the caller's trace.

use commerce_access::ServiceTokenSource;
use commerce_proto::product::v1 as pb;
use futures::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("product is unreachable: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("no service token for product: {0}")]
    Token(#[from] commerce_access::AccessError),
    #[error("product answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
}

/// Where the catalogue comes from: product's gRPC address, and auth's for the tokens.
pub struct CatalogueSource {
    product: pb::product_service_client::ProductServiceClient<Channel>,
    tokens: ServiceTokenSource,
}

impl CatalogueSource {
    /// Connects lazily: search starts while product is still down, and asks again later.
    pub fn new(
        product_grpc: &str,
        auth_http: &str,
        client_secret: &str,
    ) -> Result<Self, PeerError> {
        let channel = Endpoint::from_shared(product_grpc.to_owned())?
            .connect_timeout(std::time::Duration::from_secs(3))
            .connect_lazy();
        Ok(Self {
            product: pb::product_service_client::ProductServiceClient::new(channel),
            tokens: ServiceTokenSource::new(auth_http, "search", client_secret, "product"),
        })
    }

    /// Every active product, in id order, as product streams it.
    pub async fn products(
        &self,
    ) -> Result<impl Stream<Item = Result<pb::Product, PeerError>> + use<>, PeerError> {
        let request = self
            .tokens
            .authorize(commerce_runtime::telemetry::traced_request(
                pb::ListCatalogueRequest::default(),
            ))
            .await?;
        let stream = self
            .product
            .clone()
            .list_catalogue(request)
            .await?
            .into_inner();
        Ok(stream.map(|item| {
            item.map_err(PeerError::from)?.product.ok_or_else(|| {
                PeerError::Status(tonic::Status::internal("an empty catalogue item"))
            })
        }))
    }
}
