//! Payment gateways behind one interface, chosen per payment by name.

use async_trait::async_trait;
use base64::Engine;
use rand::RngCore;

use crate::domain::Charge;

/// What a gateway hands back for a new intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub reference: String,
    pub client_secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway `{0}` is not configured")]
    NotConfigured(String),
    #[error("gateway failure: {0}")]
    Failure(String),
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn name(&self) -> &'static str;
    /// `idempotency_key` makes a retried call return the same intent at the provider.
    async fn create_intent(
        &self,
        charge: &Charge,
        idempotency_key: &str,
    ) -> Result<Intent, GatewayError>;
    async fn cancel_intent(&self, reference: &str) -> Result<(), GatewayError>;
}

/// For local runs and demos: no provider; the intent lives only here, and "the customer
/// pays" is triggered through the same signed webhook path as real gateways (issue 6).
pub struct OfflineGateway;

fn secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[async_trait]
impl PaymentGateway for OfflineGateway {
    fn name(&self) -> &'static str {
        "offline"
    }

    async fn create_intent(
        &self,
        _charge: &Charge,
        _idempotency_key: &str,
    ) -> Result<Intent, GatewayError> {
        let reference = format!("off_{}", uuid::Uuid::now_v7().simple());
        Ok(Intent {
            client_secret: format!("{reference}_secret_{}", secret()),
            reference,
        })
    }

    async fn cancel_intent(&self, _reference: &str) -> Result<(), GatewayError> {
        Ok(())
    }
}

/// The gateways this deployment can use, by name.
pub struct Gateways {
    gateways: Vec<Box<dyn PaymentGateway>>,
}

impl Gateways {
    pub fn new(gateways: Vec<Box<dyn PaymentGateway>>) -> Self {
        Self { gateways }
    }

    pub fn get(&self, name: &str) -> Result<&dyn PaymentGateway, GatewayError> {
        self.gateways
            .iter()
            .find(|gateway| gateway.name() == name)
            .map(|gateway| gateway.as_ref())
            .ok_or_else(|| GatewayError::NotConfigured(name.to_owned()))
    }
}
