//! Payment gateways behind one interface, chosen per payment by name.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::domain::{Charge, WebhookEvent, WebhookKind};
use crate::signature::{self, SignatureError};

/// What a gateway hands back for a new intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub reference: String,
    pub client_secret: String,
}

/// What a gateway says of a refund it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReceipt {
    pub reference: String,
    /// "pending" (the provider confirms later, by webhook), "succeeded" or "failed".
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("payment gateway `{0}` is not offered by this shop")]
    NotConfigured(String),
    /// The provider refused the request for good (bad parameters, state).
    #[error("the gateway refused: {0}")]
    Refused(String),
    /// Worth retrying: network, timeouts, the provider's 5xx and rate limits.
    #[error("gateway failure: {0}")]
    Failure(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("webhook authentication failed")]
    Unauthenticated,
    #[error("webhook payload: {0}")]
    Payload(String),
}

/// How a shopper's browser pays through a gateway.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(
    tag = "flow",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum BrowserFlow {
    /// The shop's own test gateway: a "pay" button calls `/v1/payments/{id}/offline/pay`.
    Offline,
    /// Stripe.js confirms the PaymentIntent with its client secret and this key.
    StripeElements { publishable_key: String },
    /// The client secret is the provider's hosted payment page.
    Redirect,
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn name(&self) -> &'static str;
    /// What the storefront needs to pay through this gateway; `None` when the browser
    /// cannot (the gateway is configured without its public half).
    fn browser_flow(&self) -> Option<BrowserFlow>;
    /// `idempotency_key` makes a retried call return the same intent at the provider.
    async fn create_intent(
        &self,
        charge: &Charge,
        idempotency_key: &str,
    ) -> Result<Intent, GatewayError>;
    async fn cancel_intent(&self, reference: &str) -> Result<(), GatewayError>;
    /// Refunds `amount` of the payment `reference`; `idempotency_key` makes a retried call
    /// return the same refund.
    async fn refund(
        &self,
        reference: &str,
        amount: &Charge,
        idempotency_key: &str,
    ) -> Result<RefundReceipt, GatewayError>;
    /// Authenticates a webhook delivery and reads it. Nothing of `body` is trusted before
    /// the signature (or token) checked out.
    fn verify_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookEvent, WebhookError>;
}

impl GatewayError {
    /// A provider's non-2xx answer: 4xx will not change on retry (a refusal), except 409
    /// (idempotency races) and 429 (rate limits), which are worth retrying like 5xx.
    pub fn from_status(status: u16, detail: String) -> Self {
        match status {
            409 | 429 => Self::Failure(detail.into()),
            400..=499 => Self::Refused(detail),
            _ => Self::Failure(detail.into()),
        }
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// For local runs and demos: no provider; intents and refunds live only here. "The
/// customer pays" is a webhook the payment service signs with this gateway's secret and
/// sends through the same path as a real provider's (`OfflineGateway::signed_event`).
pub struct OfflineGateway {
    webhook_secret: String,
    tolerance: Duration,
}

pub const OFFLINE_SIGNATURE_HEADER: &str = "offline-signature";

/// The offline provider's webhook payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfflineEvent {
    pub id: String,
    /// `payment.succeeded` or `payment.failed`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub reference: String,
    #[serde(default)]
    pub reason: String,
}

impl OfflineGateway {
    pub fn new(webhook_secret: Option<String>, tolerance: Duration) -> Self {
        Self {
            // Without a configured secret only this process can sign its deliveries.
            webhook_secret: webhook_secret.unwrap_or_else(random_token),
            tolerance,
        }
    }

    /// A signed delivery of `event`, as the offline "provider" sends it: (header, body).
    pub fn signed_event(&self, event: &OfflineEvent) -> (String, Vec<u8>) {
        let body = serde_json::to_vec(event).expect("an event serializes");
        (
            signature::sign(&self.webhook_secret, signature::unix_now(), &body),
            body,
        )
    }
}

#[async_trait]
impl PaymentGateway for OfflineGateway {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn browser_flow(&self) -> Option<BrowserFlow> {
        Some(BrowserFlow::Offline)
    }

    async fn create_intent(
        &self,
        _charge: &Charge,
        _idempotency_key: &str,
    ) -> Result<Intent, GatewayError> {
        let reference = format!("off_{}", uuid::Uuid::now_v7().simple());
        Ok(Intent {
            client_secret: format!("{reference}_secret_{}", random_token()),
            reference,
        })
    }

    async fn cancel_intent(&self, _reference: &str) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn refund(
        &self,
        _reference: &str,
        _amount: &Charge,
        _idempotency_key: &str,
    ) -> Result<RefundReceipt, GatewayError> {
        Ok(RefundReceipt {
            reference: format!("offre_{}", uuid::Uuid::now_v7().simple()),
            status: "succeeded".to_owned(),
        })
    }

    fn verify_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookEvent, WebhookError> {
        signature::verify_delivery(
            headers,
            OFFLINE_SIGNATURE_HEADER,
            &self.webhook_secret,
            body,
            self.tolerance,
        )?;
        let event: OfflineEvent = serde_json::from_slice(body)
            .map_err(|error| WebhookError::Payload(error.to_string()))?;
        let kind = match event.event_type.as_str() {
            "payment.succeeded" => WebhookKind::PaymentSucceeded {
                reference: event.reference,
                paid: None,
            },
            "payment.failed" => WebhookKind::PaymentFailed {
                reference: event.reference,
                reason: event.reason,
            },
            _ => WebhookKind::Other,
        };
        Ok(WebhookEvent {
            id: event.id,
            event_type: event.event_type,
            kind,
        })
    }
}

/// The gateways this deployment can use, by name.
pub struct Gateways {
    gateways: Vec<Box<dyn PaymentGateway>>,
    offline: Option<std::sync::Arc<OfflineGateway>>,
}

impl Gateways {
    pub fn new(gateways: Vec<Box<dyn PaymentGateway>>) -> Self {
        Self {
            gateways,
            offline: None,
        }
    }

    /// Adds the offline gateway, which the service also signs "customer pays" events with.
    pub fn with_offline(mut self, offline: OfflineGateway) -> Self {
        let offline = std::sync::Arc::new(offline);
        self.gateways.push(Box::new(SharedOffline(offline.clone())));
        self.offline = Some(offline);
        self
    }

    /// The gateways a shopper can pay with from a browser, by name.
    pub fn offered(&self) -> Vec<(&'static str, BrowserFlow)> {
        self.gateways
            .iter()
            .filter_map(|gateway| Some((gateway.name(), gateway.browser_flow()?)))
            .collect()
    }

    pub fn offline(&self) -> Option<&OfflineGateway> {
        self.offline.as_deref()
    }

    pub fn get(&self, name: &str) -> Result<&dyn PaymentGateway, GatewayError> {
        self.gateways
            .iter()
            .find(|gateway| gateway.name() == name)
            .map(|gateway| gateway.as_ref())
            .ok_or_else(|| GatewayError::NotConfigured(name.to_owned()))
    }
}

struct SharedOffline(std::sync::Arc<OfflineGateway>);

#[async_trait]
impl PaymentGateway for SharedOffline {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn browser_flow(&self) -> Option<BrowserFlow> {
        self.0.browser_flow()
    }
    async fn create_intent(&self, charge: &Charge, key: &str) -> Result<Intent, GatewayError> {
        self.0.create_intent(charge, key).await
    }
    async fn cancel_intent(&self, reference: &str) -> Result<(), GatewayError> {
        self.0.cancel_intent(reference).await
    }
    async fn refund(
        &self,
        reference: &str,
        amount: &Charge,
        key: &str,
    ) -> Result<RefundReceipt, GatewayError> {
        self.0.refund(reference, amount, key).await
    }
    fn verify_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookEvent, WebhookError> {
        self.0.verify_webhook(headers, body)
    }
}
