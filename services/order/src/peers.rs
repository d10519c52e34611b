//! The services the order saga calls over gRPC, each with this service's own service token
//! for that peer's audience and the caller's trace. Peer answers are translated into step
//! errors here: what a retry can fix (UNAVAILABLE, DEADLINE_EXCEEDED, …) is retryable,
//! what the peer refused for good (NOT_FOUND, FAILED_PRECONDITION, …) is not.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use commerce_access::ServiceTokenSource;
use commerce_proto::cart::v1 as cart_pb;
use commerce_proto::common::v1::Money;
use commerce_proto::fulfillment::v1 as fulfillment_pb;
use commerce_proto::payment::v1 as payment_pb;
use commerce_proto::product::v1 as product_pb;
use commerce_runtime::telemetry::traced_request;
use rust_decimal::Decimal;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::domain::{Address, CheckoutSnapshot, LineItem, OrderRefund, ShippingQuote};
use commerce_saga::{FailureKind, StepError};

/// A checkout session as the cart reports it.
#[derive(Debug, Clone)]
pub struct CheckoutSession {
    pub user_id: Uuid,
    pub status: String,
    pub order_id: Option<Uuid>,
    pub snapshot: CheckoutSnapshot,
}

#[derive(Debug, Clone)]
pub struct PaymentIntent {
    pub payment_id: Uuid,
    pub client_secret: String,
}

#[derive(Clone)]
pub struct Peers {
    cart: cart_pb::cart_service_client::CartServiceClient<Channel>,
    product: product_pb::product_service_client::ProductServiceClient<Channel>,
    fulfillment: fulfillment_pb::fulfillment_service_client::FulfillmentServiceClient<Channel>,
    payment: payment_pb::payment_service_client::PaymentServiceClient<Channel>,
    tokens: Arc<Tokens>,
}

struct Tokens {
    cart: ServiceTokenSource,
    product: ServiceTokenSource,
    fulfillment: ServiceTokenSource,
    payment: ServiceTokenSource,
}

/// Where the peers listen (gRPC URLs) and how to get tokens for them.
pub struct PeerAddresses<'a> {
    pub auth_http: &'a str,
    pub cart_grpc: &'a str,
    pub product_grpc: &'a str,
    pub fulfillment_grpc: &'a str,
    pub payment_grpc: &'a str,
}

fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    // Lazy: the order service starts while a peer is still down.
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .connect_lazy())
}

fn status_error(peer: &str, status: tonic::Status) -> StepError {
    use tonic::Code;
    let message = format!("{peer}: {}", status.message());
    match status.code() {
        Code::NotFound => StepError::rejected(FailureKind::NotFound, status.message()),
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
            StepError::rejected(FailureKind::Conflict, status.message())
        }
        Code::InvalidArgument | Code::OutOfRange => {
            StepError::rejected(FailureKind::Invalid, status.message())
        }
        // A service that refuses our own credentials is misconfigured, and may be fixed by
        // an operator while the saga waits; everything else is transient.
        _ => StepError::Retryable(message.into()),
    }
}

fn bad_answer(peer: &str, what: &str) -> StepError {
    StepError::Retryable(format!("{peer} answered with an invalid {what}").into())
}

fn money(peer: &str, money: Option<Money>) -> Result<(Decimal, String), StepError> {
    let money = money.ok_or_else(|| bad_answer(peer, "amount"))?;
    let amount = Decimal::from_str(&money.amount).map_err(|_| bad_answer(peer, "amount"))?;
    Ok((amount, money.currency))
}

fn to_money(amount: Decimal, currency: &str) -> Money {
    Money {
        amount: amount.to_string(),
        currency: currency.to_owned(),
    }
}

impl Peers {
    pub fn new(
        addresses: &PeerAddresses<'_>,
        client_secret: &str,
    ) -> Result<Self, tonic::transport::Error> {
        let tokens = |audience: &str| {
            ServiceTokenSource::new(addresses.auth_http, "order", client_secret, audience)
        };
        Ok(Self {
            cart: cart_pb::cart_service_client::CartServiceClient::new(channel(
                addresses.cart_grpc,
            )?),
            product: product_pb::product_service_client::ProductServiceClient::new(channel(
                addresses.product_grpc,
            )?),
            fulfillment: fulfillment_pb::fulfillment_service_client::FulfillmentServiceClient::new(
                channel(addresses.fulfillment_grpc)?,
            ),
            payment: payment_pb::payment_service_client::PaymentServiceClient::new(channel(
                addresses.payment_grpc,
            )?),
            tokens: Arc::new(Tokens {
                cart: tokens("cart"),
                product: tokens("product"),
                fulfillment: tokens("fulfillment"),
                payment: tokens("payment"),
            }),
        })
    }

    async fn request<T>(
        tokens: &ServiceTokenSource,
        peer: &str,
        message: T,
    ) -> Result<tonic::Request<T>, StepError> {
        tokens
            .authorize(traced_request(message))
            .await
            .map_err(|error| {
                StepError::Retryable(format!("service token for {peer}: {error}").into())
            })
    }

    pub async fn checkout_session(&self, session_id: Uuid) -> Result<CheckoutSession, StepError> {
        let request = Self::request(
            &self.tokens.cart,
            "cart",
            cart_pb::GetCheckoutSessionRequest {
                session_id: session_id.to_string(),
            },
        )
        .await?;
        let session = self
            .cart
            .clone()
            .get_checkout_session(request)
            .await
            .map_err(|status| status_error("cart", status))?
            .into_inner()
            .session
            .ok_or_else(|| bad_answer("cart", "session"))?;
        session_from_proto(session)
    }

    pub async fn complete_checkout_session(
        &self,
        session_id: Uuid,
        order_id: Uuid,
    ) -> Result<(), StepError> {
        let request = Self::request(
            &self.tokens.cart,
            "cart",
            cart_pb::CompleteCheckoutSessionRequest {
                session_id: session_id.to_string(),
                order_id: order_id.to_string(),
            },
        )
        .await?;
        self.cart
            .clone()
            .complete_checkout_session(request)
            .await
            .map_err(|status| status_error("cart", status))?;
        Ok(())
    }

    /// Holds stock for the order; the answer carries the prices the order is charged.
    pub async fn reserve(
        &self,
        order_id: Uuid,
        items: &[LineItem],
    ) -> Result<Vec<LineItem>, StepError> {
        let request = Self::request(
            &self.tokens.product,
            "product",
            product_pb::ReserveProductsRequest {
                order_id: order_id.to_string(),
                items: items
                    .iter()
                    .map(|item| product_pb::ReservationItem {
                        product_id: item.product_id.to_string(),
                        quantity: item.quantity,
                    })
                    .collect(),
            },
        )
        .await?;
        let reserved = self
            .product
            .clone()
            .reserve_products(request)
            .await
            .map_err(|status| status_error("product", status))?
            .into_inner()
            .items;
        reserved
            .into_iter()
            .map(|item| {
                let (unit_price, _) = money("product", item.unit_price)?;
                Ok(LineItem {
                    product_id: Uuid::parse_str(&item.product_id)
                        .map_err(|_| bad_answer("product", "product id"))?,
                    sku: item.sku,
                    name: item.name,
                    quantity: item.quantity,
                    unit_price,
                })
            })
            .collect()
    }

    pub async fn release(&self, order_id: Uuid) -> Result<(), StepError> {
        let request = Self::request(
            &self.tokens.product,
            "product",
            product_pb::ReleaseReservationRequest {
                order_id: order_id.to_string(),
            },
        )
        .await?;
        self.product
            .clone()
            .release_reservation(request)
            .await
            .map_err(|status| status_error("product", status))?;
        Ok(())
    }

    /// Turns the order's reservation into a sale.
    pub async fn deduct(&self, order_id: Uuid) -> Result<(), StepError> {
        let request = Self::request(
            &self.tokens.product,
            "product",
            product_pb::DeductStockRequest {
                order_id: order_id.to_string(),
            },
        )
        .await?;
        self.product
            .clone()
            .deduct_stock(request)
            .await
            .map_err(|status| status_error("product", status))?;
        Ok(())
    }

    /// Gives a paid order's deducted stock back.
    pub async fn restock(&self, order_id: Uuid) -> Result<(), StepError> {
        let request = Self::request(
            &self.tokens.product,
            "product",
            product_pb::RestockOrderRequest {
                order_id: order_id.to_string(),
            },
        )
        .await?;
        self.product
            .clone()
            .restock_order(request)
            .await
            .map_err(|status| status_error("product", status))?;
        Ok(())
    }

    pub async fn shipping_cost(
        &self,
        courier: &str,
        country: &str,
        items: &[LineItem],
    ) -> Result<ShippingQuote, StepError> {
        let request = Self::request(
            &self.tokens.fulfillment,
            "fulfillment",
            fulfillment_pb::GetShippingCostRequest {
                courier: courier.to_owned(),
                destination_country: country.to_owned(),
                items: items
                    .iter()
                    .map(|item| fulfillment_pb::ParcelItem {
                        product_id: item.product_id.to_string(),
                        quantity: item.quantity,
                        weight_grams: 0,
                    })
                    .collect(),
            },
        )
        .await?;
        let answer = self
            .fulfillment
            .clone()
            .get_shipping_cost(request)
            .await
            .map_err(|status| status_error("fulfillment", status))?
            .into_inner();
        let (cost, currency) = money("fulfillment", answer.cost)?;
        Ok(ShippingQuote {
            cost,
            currency,
            zone: answer.zone,
            estimated_days: answer.estimated_days,
        })
    }

    pub async fn create_payment_intent(
        &self,
        order_id: Uuid,
        user_id: Uuid,
        amount: Decimal,
        currency: &str,
        gateway: &str,
    ) -> Result<PaymentIntent, StepError> {
        let request = Self::request(
            &self.tokens.payment,
            "payment",
            payment_pb::CreatePaymentIntentRequest {
                order_id: order_id.to_string(),
                user_id: user_id.to_string(),
                amount: Some(to_money(amount, currency)),
                gateway: gateway.to_owned(),
            },
        )
        .await?;
        let answer = self
            .payment
            .clone()
            .create_payment_intent(request)
            .await
            .map_err(|status| status_error("payment", status))?
            .into_inner();
        Ok(PaymentIntent {
            payment_id: Uuid::parse_str(&answer.payment_id)
                .map_err(|_| bad_answer("payment", "payment id"))?,
            client_secret: answer.client_secret,
        })
    }

    /// Refunds `amount` of the order's payment (in its currency), or everything not yet
    /// refunded when `None`; `key` makes retries safe.
    pub async fn refund(
        &self,
        order_id: Uuid,
        amount: Option<(Decimal, &str)>,
        reason: &str,
        key: &str,
    ) -> Result<OrderRefund, StepError> {
        let request = Self::request(
            &self.tokens.payment,
            "payment",
            payment_pb::RefundPaymentRequest {
                order_id: order_id.to_string(),
                amount: amount.map(|(amount, currency)| to_money(amount, currency)),
                reason: reason.to_owned(),
                idempotency_key: key.to_owned(),
            },
        )
        .await?;
        let answer = self
            .payment
            .clone()
            .refund_payment(request)
            .await
            .map_err(|status| status_error("payment", status))?
            .into_inner();
        let (amount, currency) = money("payment", answer.amount)?;
        Ok(OrderRefund {
            refund_id: Uuid::parse_str(&answer.refund_id)
                .map_err(|_| bad_answer("payment", "refund id"))?,
            amount,
            currency,
            status: answer.status,
            payment_status: answer.payment_status,
        })
    }

    /// Re-prices the order's unpaid payment under `revision`; answers the new client secret.
    pub async fn replace_payment_intent(
        &self,
        order_id: Uuid,
        amount: Decimal,
        currency: &str,
        revision: i32,
    ) -> Result<String, StepError> {
        let request = Self::request(
            &self.tokens.payment,
            "payment",
            payment_pb::ReplacePaymentIntentRequest {
                order_id: order_id.to_string(),
                amount: Some(to_money(amount, currency)),
                revision,
            },
        )
        .await?;
        let answer = self
            .payment
            .clone()
            .replace_payment_intent(request)
            .await
            .map_err(|status| status_error("payment", status))?
            .into_inner();
        Ok(answer.client_secret)
    }

    pub async fn cancel_payment_intent(&self, order_id: Uuid) -> Result<(), StepError> {
        let request = Self::request(
            &self.tokens.payment,
            "payment",
            payment_pb::CancelPaymentIntentRequest {
                order_id: order_id.to_string(),
            },
        )
        .await?;
        self.payment
            .clone()
            .cancel_payment_intent(request)
            .await
            .map_err(|status| status_error("payment", status))?;
        Ok(())
    }
}

fn session_from_proto(session: cart_pb::CheckoutSession) -> Result<CheckoutSession, StepError> {
    let (subtotal, currency) = money("cart", session.subtotal)?;
    let (discount, _) = money("cart", session.discount)?;
    let items = session
        .items
        .into_iter()
        .map(|item| {
            let (unit_price, _) = money("cart", item.unit_price)?;
            Ok(LineItem {
                product_id: Uuid::parse_str(&item.product_id)
                    .map_err(|_| bad_answer("cart", "product id"))?,
                sku: item.sku,
                name: item.name,
                quantity: item.quantity,
                unit_price,
            })
        })
        .collect::<Result<Vec<_>, StepError>>()?;
    let address = session.shipping_address.unwrap_or_default();
    Ok(CheckoutSession {
        user_id: Uuid::parse_str(&session.user_id).map_err(|_| bad_answer("cart", "user id"))?,
        status: session.status,
        order_id: Uuid::parse_str(&session.order_id).ok(),
        snapshot: CheckoutSnapshot {
            items,
            currency,
            subtotal,
            discount,
            promo_code: Some(session.promo_code).filter(|code| !code.is_empty()),
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
            courier: session.courier,
            payment_gateway: session.payment_gateway,
        },
    })
}
