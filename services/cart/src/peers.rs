//! The services the cart asks: product (prices, availability), auth (addresses) and
//! payment (the gateways checkout may offer), over gRPC with this service's own service
//! tokens and the caller's trace.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commerce_access::ServiceTokenSource;
use commerce_proto::auth::v1 as auth_pb;
use commerce_proto::payment::v1 as payment_pb;
use commerce_proto::product::v1 as product_pb;
use rust_decimal::Decimal;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::repository::Address;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{peer} is unavailable: {message}")]
    Unavailable { peer: &'static str, message: String },
}

/// A catalogue entry as the cart needs it.
#[derive(Debug, Clone)]
pub struct CatalogueItem {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub price: Decimal,
    pub currency: String,
    pub available: i64,
    pub active: bool,
}

/// How long the payment service's list of gateways is trusted: a gateway switched on or
/// off reaches checkout within this.
const GATEWAYS_FRESH_FOR: Duration = Duration::from_secs(30);

/// Where each peer answers, and a token source for each (audience = the peer).
pub struct PeerEndpoints {
    pub product_grpc: String,
    pub auth_grpc: String,
    pub payment_grpc: String,
    pub tokens: Box<dyn Fn(&str) -> ServiceTokenSource>,
}

#[derive(Clone)]
pub struct Peers {
    product: product_pb::product_service_client::ProductServiceClient<Channel>,
    auth: auth_pb::auth_service_client::AuthServiceClient<Channel>,
    payment: payment_pb::payment_service_client::PaymentServiceClient<Channel>,
    product_tokens: Arc<ServiceTokenSource>,
    auth_tokens: Arc<ServiceTokenSource>,
    payment_tokens: Arc<ServiceTokenSource>,
    gateways: Arc<Mutex<Option<GatewayList>>>,
}

/// The payment service's answer and when it was given.
struct GatewayList {
    fetched: Instant,
    names: Arc<Vec<String>>,
}

impl Peers {
    /// Channels connect lazily, so the cart starts even while a peer is down.
    pub fn new(endpoints: PeerEndpoints) -> Result<Self, tonic::transport::Error> {
        let channel = |url: &str| -> Result<Channel, tonic::transport::Error> {
            Ok(Endpoint::from_shared(url.to_owned())?
                .connect_timeout(std::time::Duration::from_secs(3))
                .timeout(std::time::Duration::from_secs(10))
                .connect_lazy())
        };
        let tokens = &endpoints.tokens;
        Ok(Self {
            product: product_pb::product_service_client::ProductServiceClient::new(channel(
                &endpoints.product_grpc,
            )?),
            auth: auth_pb::auth_service_client::AuthServiceClient::new(channel(
                &endpoints.auth_grpc,
            )?),
            payment: payment_pb::payment_service_client::PaymentServiceClient::new(channel(
                &endpoints.payment_grpc,
            )?),
            product_tokens: Arc::new(tokens("product")),
            auth_tokens: Arc::new(tokens("auth")),
            payment_tokens: Arc::new(tokens("payment")),
            gateways: Arc::default(),
        })
    }

    /// The payment gateways this shop offers, as the payment service lists them; asked
    /// at most every [`GATEWAYS_FRESH_FOR`].
    pub async fn offered_gateways(&self) -> Result<Arc<Vec<String>>, PeerError> {
        if let Some(list) = self.gateways.lock().expect("gateway cache").as_ref()
            && list.fetched.elapsed() < GATEWAYS_FRESH_FOR
        {
            return Ok(list.names.clone());
        }
        let request = Self::authorized(
            &self.payment_tokens,
            "payment",
            payment_pb::ListGatewaysRequest {},
        )
        .await?;
        let gateways = Arc::new(
            self.payment
                .clone()
                .list_gateways(request)
                .await
                .map_err(|status| PeerError::Unavailable {
                    peer: "payment",
                    message: status.message().to_owned(),
                })?
                .into_inner()
                .gateways,
        );
        *self.gateways.lock().expect("gateway cache") = Some(GatewayList {
            fetched: Instant::now(),
            names: gateways.clone(),
        });
        Ok(gateways)
    }

    async fn authorized<T>(
        tokens: &ServiceTokenSource,
        peer: &'static str,
        message: T,
    ) -> Result<tonic::Request<T>, PeerError> {
        tokens
            .authorize(commerce_runtime::telemetry::traced_request(message))
            .await
            .map_err(|error| PeerError::Unavailable {
                peer,
                message: error.to_string(),
            })
    }

    /// The products with these ids; unknown ids are absent from the answer.
    pub async fn products(&self, ids: &[Uuid]) -> Result<Vec<CatalogueItem>, PeerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let request = Self::authorized(
            &self.product_tokens,
            "product",
            product_pb::GetProductsRequest {
                ids: ids.iter().map(Uuid::to_string).collect(),
            },
        )
        .await?;
        let answer = self
            .product
            .clone()
            .get_products(request)
            .await
            .map_err(|status| PeerError::Unavailable {
                peer: "product",
                message: status.message().to_owned(),
            })?;
        answer
            .into_inner()
            .products
            .into_iter()
            .map(|product| {
                let price = product.price.unwrap_or_default();
                Ok(CatalogueItem {
                    id: Uuid::parse_str(&product.id).map_err(|_| PeerError::Unavailable {
                        peer: "product",
                        message: "bad product id".into(),
                    })?,
                    sku: product.sku,
                    name: product.name,
                    price: Decimal::from_str(&price.amount).map_err(|_| {
                        PeerError::Unavailable {
                            peer: "product",
                            message: "bad price".into(),
                        }
                    })?,
                    currency: price.currency,
                    available: product.stock,
                    active: product.active,
                })
            })
            .collect()
    }

    /// One of the user's addresses; NotFound when it is not theirs.
    pub async fn address(&self, user_id: Uuid, address_id: Uuid) -> Result<Address, PeerError> {
        let request = Self::authorized(
            &self.auth_tokens,
            "auth",
            auth_pb::GetAddressRequest {
                user_id: user_id.to_string(),
                address_id: address_id.to_string(),
            },
        )
        .await?;
        match self.auth.clone().get_address(request).await {
            Ok(answer) => {
                let address = answer.into_inner().address.unwrap_or_default();
                Ok(Address {
                    recipient: address.recipient,
                    line1: address.line1,
                    line2: address.line2,
                    city: address.city,
                    region: address.region,
                    postal_code: address.postal_code,
                    country: address.country,
                    phone: address.phone,
                })
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(PeerError::NotFound(format!("address {address_id}")))
            }
            Err(status) => Err(PeerError::Unavailable {
                peer: "auth",
                message: status.message().to_owned(),
            }),
        }
    }
}
