//! Shipping providers behind one interface: the local carrier (no outside party, for local
//! runs and demos) and EasyPost, a real client for its documented REST API (shipments,
//! buying a rate, tracker webhooks signed with `X-Hmac-Signature`).

use commerce_runtime::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::Address;

/// What the shop asks a carrier to ship.
#[derive(Debug, Clone)]
pub struct ShipmentRequest {
    /// Our fulfillment id: the carrier's reference for the shipment.
    pub reference: String,
    /// Our courier code (`standard`, `express`, …), mapped to a carrier service.
    pub courier: String,
    pub to: Address,
    pub weight_g: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    /// The carrier's id for the shipment.
    pub reference: String,
    pub tracking_id: String,
    pub label_url: Option<String>,
    pub estimated_days: Option<i64>,
}

/// What a carrier's tracking update says, in our terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingStatus {
    Shipped,
    Delivered,
    /// Anything else (pre-transit, exceptions): recorded, no status change.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingUpdate {
    pub event_id: String,
    pub tracking_id: String,
    pub status: TrackingStatus,
    pub carrier_status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    /// The carrier refused the shipment (bad address, no such service): retrying won't help.
    #[error("the carrier refused: {0}")]
    Refused(String),
    /// Worth retrying: the cause, or a sentence.
    #[error("carrier unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("webhook: {0}")]
    Webhook(String),
}

#[async_trait]
pub trait ShippingProvider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Registers the shipment with the carrier; returns the carrier's id for it. The caller
    /// stores that id before buying, so a retry never buys a second label.
    async fn create(&self, request: &ShipmentRequest) -> Result<String, CarrierError>;
    /// Pays for the shipment `reference` (or reads it back if an earlier attempt did).
    async fn buy(
        &self,
        request: &ShipmentRequest,
        reference: &str,
    ) -> Result<Shipment, CarrierError>;
    /// Authenticates and reads a tracking webhook.
    fn verify_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<TrackingUpdate, CarrierError>;
}

/// Ships nothing: tracking ids are made up here; status moves come from staff.
pub struct LocalCarrier;

#[async_trait]
impl ShippingProvider for LocalCarrier {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn create(&self, request: &ShipmentRequest) -> Result<String, CarrierError> {
        Ok(format!("local_{}", request.reference))
    }

    async fn buy(
        &self,
        request: &ShipmentRequest,
        reference: &str,
    ) -> Result<Shipment, CarrierError> {
        Ok(Shipment {
            reference: reference.to_owned(),
            tracking_id: format!(
                "LOC{}",
                request.reference.replace('-', "")[..16].to_uppercase()
            ),
            label_url: None,
            estimated_days: None,
        })
    }

    fn verify_webhook(
        &self,
        _headers: &http::HeaderMap,
        _body: &[u8],
    ) -> Result<TrackingUpdate, CarrierError> {
        Err(CarrierError::Webhook(
            "the local carrier sends no webhooks".to_owned(),
        ))
    }
}

/// `services.fulfillment.carrier` when `provider = "easypost"`.
#[derive(Debug, Clone, Deserialize)]
pub struct EasyPostSettings {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub api_key: SecretString,
    pub webhook_secret: SecretString,
    pub from_address: Address,
    /// Our courier code → (EasyPost carrier, service), e.g. `standard = ["USPS", "Ground"]`.
    pub services: BTreeMap<String, (String, String)>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_base_url() -> String {
    "https://api.easypost.com".to_owned()
}
fn default_timeout() -> Duration {
    Duration::from_secs(20)
}

pub struct EasyPostCarrier {
    settings: EasyPostSettings,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct EasyPostAddress<'a> {
    name: &'a str,
    street1: &'a str,
    street2: &'a str,
    city: &'a str,
    state: &'a str,
    zip: &'a str,
    country: &'a str,
    phone: &'a str,
}

impl<'a> From<&'a Address> for EasyPostAddress<'a> {
    fn from(address: &'a Address) -> Self {
        Self {
            name: &address.recipient,
            street1: &address.line1,
            street2: &address.line2,
            city: &address.city,
            state: &address.region,
            zip: &address.postal_code,
            country: &address.country,
            phone: &address.phone,
        }
    }
}

#[derive(Debug, Deserialize)]
struct EasyPostRate {
    id: String,
    carrier: String,
    service: String,
    delivery_days: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct EasyPostLabel {
    label_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EasyPostShipment {
    id: String,
    #[serde(default)]
    rates: Vec<EasyPostRate>,
    tracking_code: Option<String>,
    selected_rate: Option<EasyPostRate>,
    postage_label: Option<EasyPostLabel>,
}

#[derive(Debug, Deserialize)]
struct EasyPostErrorBody {
    error: EasyPostErrorDetail,
}

#[derive(Debug, Deserialize)]
struct EasyPostErrorDetail {
    code: String,
    message: String,
}

#[derive(Debug, Deserialize)]
struct EasyPostEvent {
    id: String,
    description: String,
    result: EasyPostTracker,
}

#[derive(Debug, Deserialize)]
struct EasyPostTracker {
    tracking_code: String,
    status: String,
}

/// EasyPost weighs parcels in ounces.
fn ounces(grams: i64) -> f64 {
    ((grams as f64 / 28.349_523_125) * 10.0).ceil() / 10.0
}

pub const EASYPOST_SIGNATURE_HEADER: &str = "x-hmac-signature";

/// `hmac-sha256-hex=<hex HMAC-SHA256 of the body>`, as EasyPost signs webhook events.
pub fn easypost_signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!(
        "hmac-sha256-hex={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

impl EasyPostCarrier {
    pub fn new(settings: EasyPostSettings) -> Result<Self, CarrierError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|error| CarrierError::Unavailable(error.into()))?;
        Ok(Self { settings, http })
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<EasyPostShipment, CarrierError> {
        let response = request
            .basic_auth(self.settings.api_key.expose_secret(), Some(""))
            .send()
            .await
            .map_err(|error| CarrierError::Unavailable(error.into()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| CarrierError::Unavailable(error.into()))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|error| {
                CarrierError::Unavailable(format!("unreadable answer: {error}").into())
            });
        }
        let detail = serde_json::from_slice::<EasyPostErrorBody>(&body)
            .map(|body| format!("{}: {}", body.error.code, body.error.message))
            .unwrap_or_else(|_| format!("HTTP {status}"));
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(CarrierError::Refused(detail))
        } else {
            Err(CarrierError::Unavailable(detail.into()))
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url.trim_end_matches('/'))
    }

    fn service_for(&self, courier: &str) -> Result<&(String, String), CarrierError> {
        self.settings.services.get(courier).ok_or_else(|| {
            CarrierError::Refused(format!("no EasyPost service for courier `{courier}`"))
        })
    }

    fn finished(shipment: EasyPostShipment) -> Option<Shipment> {
        let tracking_id = shipment.tracking_code.filter(|code| !code.is_empty())?;
        Some(Shipment {
            reference: shipment.id,
            tracking_id,
            label_url: shipment.postage_label.and_then(|label| label.label_url),
            estimated_days: shipment.selected_rate.and_then(|rate| rate.delivery_days),
        })
    }
}

#[async_trait]
impl ShippingProvider for EasyPostCarrier {
    fn name(&self) -> &'static str {
        "easypost"
    }

    async fn create(&self, request: &ShipmentRequest) -> Result<String, CarrierError> {
        self.service_for(&request.courier)?;
        let body = serde_json::json!({
            "shipment": {
                "reference": request.reference,
                "to_address": EasyPostAddress::from(&request.to),
                "from_address": EasyPostAddress::from(&self.settings.from_address),
                "parcel": { "weight": ounces(request.weight_g) },
            }
        });
        let shipment = self
            .call(self.http.post(self.url("/v2/shipments")).json(&body))
            .await?;
        Ok(shipment.id)
    }

    async fn buy(
        &self,
        request: &ShipmentRequest,
        reference: &str,
    ) -> Result<Shipment, CarrierError> {
        let (carrier, service) = self.service_for(&request.courier)?;
        // An earlier attempt may have bought it already: look before buying.
        let shipment = self
            .call(
                self.http
                    .get(self.url(&format!("/v2/shipments/{reference}"))),
            )
            .await?;
        if shipment
            .tracking_code
            .as_deref()
            .is_some_and(|code| !code.is_empty())
        {
            return Self::finished(shipment)
                .ok_or_else(|| CarrierError::Unavailable("shipment without tracking".into()));
        }
        let rate = shipment
            .rates
            .iter()
            .find(|rate| {
                rate.carrier.eq_ignore_ascii_case(carrier)
                    && rate.service.eq_ignore_ascii_case(service)
            })
            .ok_or_else(|| {
                CarrierError::Refused(format!("EasyPost offered no {carrier} {service} rate"))
            })?;
        let bought = self
            .call(
                self.http
                    .post(self.url(&format!("/v2/shipments/{}/buy", shipment.id)))
                    .json(&serde_json::json!({ "rate": { "id": rate.id } })),
            )
            .await?;
        Self::finished(bought)
            .ok_or_else(|| CarrierError::Unavailable("bought shipment without tracking".into()))
    }

    fn verify_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<TrackingUpdate, CarrierError> {
        let given = headers
            .get(EASYPOST_SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("hmac-sha256-hex="))
            .and_then(|value| hex::decode(value).ok())
            .ok_or_else(|| {
                CarrierError::Webhook("missing or malformed X-Hmac-Signature".to_owned())
            })?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.settings.webhook_secret.expose_secret().as_bytes())
                .expect("HMAC takes keys of any length");
        mac.update(body);
        mac.verify_slice(&given)
            .map_err(|_| CarrierError::Webhook("signature does not match".to_owned()))?;
        let event: EasyPostEvent = serde_json::from_slice(body)
            .map_err(|error| CarrierError::Webhook(format!("payload: {error}")))?;
        let status = match (event.description.as_str(), event.result.status.as_str()) {
            ("tracker.updated" | "tracker.created", "in_transit" | "out_for_delivery") => {
                TrackingStatus::Shipped
            }
            ("tracker.updated" | "tracker.created", "delivered") => TrackingStatus::Delivered,
            _ => TrackingStatus::Other,
        };
        Ok(TrackingUpdate {
            event_id: event.id,
            tracking_id: event.result.tracking_code,
            status,
            carrier_status: event.result.status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parcels_are_weighed_in_tenths_of_ounces_rounded_up() {
        assert_eq!(ounces(1000), 35.3);
        assert_eq!(ounces(1), 0.1);
    }

    #[test]
    fn signatures_are_hex_hmac_of_the_body() {
        // HMAC-SHA256("secret", "body") computed independently with openssl.
        assert_eq!(
            easypost_signature("secret", b"body"),
            "hmac-sha256-hex=dc46983557fea127b43af721467eb9b3fde2338fe3e14f51952aa8478c13d355"
        );
    }
}
