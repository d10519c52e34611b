//! Stripe: a client for its documented PaymentIntents, Refunds and webhook APIs. Requests
//! are form-encoded with the secret key as a Bearer token; every mutating call carries an
//! `Idempotency-Key`; webhooks are verified with `Stripe-Signature` before they are read.

use commerce_runtime::{ExposeSecret, SecretString};
use std::time::Duration;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::domain::{Charge, WebhookEvent, WebhookKind};
use crate::gateway::{
    BrowserFlow, GatewayError, Intent, PaymentGateway, RefundReceipt, WebhookError,
};
use crate::signature;

/// `services.payment.stripe`.
#[derive(Debug, Clone, Deserialize)]
pub struct StripeSettings {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub secret_key: SecretString,
    pub webhook_secret: SecretString,
    /// The `pk_…` key Stripe.js uses in the storefront; without it shoppers cannot pick
    /// Stripe at checkout (server-side intents still work).
    #[serde(default)]
    pub publishable_key: Option<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_base_url() -> String {
    "https://api.stripe.com".to_owned()
}
fn default_timeout() -> Duration {
    Duration::from_secs(20)
}

pub const SIGNATURE_HEADER: &str = "stripe-signature";

pub struct StripeGateway {
    settings: StripeSettings,
    http: reqwest::Client,
    tolerance: Duration,
}

#[derive(Debug, Deserialize)]
struct StripeError {
    error: StripeErrorDetail,
}

#[derive(Debug, Deserialize)]
struct StripeErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PaymentIntentObject {
    id: String,
    client_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundObject {
    id: String,
    status: String,
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// ISO 4217 currencies Stripe takes in whole units.
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// An amount in the currency's smallest unit, as Stripe wants it.
pub fn minor_units(charge: &Charge) -> Result<i64, GatewayError> {
    let exponent = if ZERO_DECIMAL.contains(&charge.currency.as_str()) {
        0
    } else {
        2
    };
    let scaled = charge.amount * Decimal::from(10i64.pow(exponent));
    if scaled.fract() != Decimal::ZERO {
        return Err(GatewayError::Refused(format!(
            "{} {} has more decimals than the currency allows",
            charge.amount, charge.currency
        )));
    }
    i64::try_from(scaled.trunc()).map_err(|_| GatewayError::Refused("amount too large".to_owned()))
}

fn from_minor_units(amount: i64, currency: &str) -> Decimal {
    let exponent = if ZERO_DECIMAL.contains(&currency.to_uppercase().as_str()) {
        0
    } else {
        2
    };
    Decimal::new(amount, exponent)
}

impl StripeGateway {
    pub fn new(settings: StripeSettings, tolerance: Duration) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|error| GatewayError::Failure(error.into()))?;
        Ok(Self {
            settings,
            http,
            tolerance,
        })
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<T, GatewayError> {
        let response = self
            .http
            .post(format!(
                "{}{path}",
                self.settings.base_url.trim_end_matches('/')
            ))
            .bearer_auth(self.settings.secret_key.expose_secret())
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await
            .map_err(|error| GatewayError::Failure(error.into()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| GatewayError::Failure(error.into()))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|error| {
                GatewayError::Failure(format!("unreadable answer: {error}").into())
            });
        }
        let detail = serde_json::from_slice::<StripeError>(&body)
            .map(|error| {
                format!(
                    "{} {}: {}",
                    error.error.kind.unwrap_or_default(),
                    error.error.code.unwrap_or_default(),
                    error.error.message.unwrap_or_default()
                )
            })
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(GatewayError::from_status(status.as_u16(), detail))
    }
}

fn text(value: &serde_json::Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn browser_flow(&self) -> Option<BrowserFlow> {
        let publishable_key = self.settings.publishable_key.clone()?;
        Some(BrowserFlow::StripeElements { publishable_key })
    }

    async fn create_intent(
        &self,
        charge: &Charge,
        idempotency_key: &str,
    ) -> Result<Intent, GatewayError> {
        let form = [
            ("amount", minor_units(charge)?.to_string()),
            ("currency", charge.currency.to_lowercase()),
            ("automatic_payment_methods[enabled]", "true".to_owned()),
            ("metadata[order_id]", idempotency_key.to_owned()),
        ];
        let intent: PaymentIntentObject = self
            .post("/v1/payment_intents", &form, idempotency_key)
            .await?;
        Ok(Intent {
            client_secret: intent.client_secret.ok_or_else(|| {
                GatewayError::Failure("the intent came without a client secret".into())
            })?,
            reference: intent.id,
        })
    }

    async fn cancel_intent(&self, reference: &str) -> Result<(), GatewayError> {
        let _: PaymentIntentObject = self
            .post(
                &format!("/v1/payment_intents/{reference}/cancel"),
                &[("cancellation_reason", "abandoned".to_owned())],
                &format!("cancel-{reference}"),
            )
            .await?;
        Ok(())
    }

    async fn refund(
        &self,
        reference: &str,
        amount: &Charge,
        idempotency_key: &str,
    ) -> Result<RefundReceipt, GatewayError> {
        let form = [
            ("payment_intent", reference.to_owned()),
            ("amount", minor_units(amount)?.to_string()),
        ];
        let refund: RefundObject = self.post("/v1/refunds", &form, idempotency_key).await?;
        Ok(RefundReceipt {
            reference: refund.id,
            // Stripe's "requires_action" and "pending" settle later, by webhook.
            status: match refund.status.as_str() {
                "succeeded" => "succeeded",
                "failed" | "canceled" => "failed",
                _ => "pending",
            }
            .to_owned(),
        })
    }

    fn verify_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookEvent, WebhookError> {
        signature::verify_delivery(
            headers,
            SIGNATURE_HEADER,
            self.settings.webhook_secret.expose_secret(),
            body,
            self.tolerance,
        )?;
        let event: Event = serde_json::from_slice(body)
            .map_err(|error| WebhookError::Payload(error.to_string()))?;
        let object = &event.data.object;
        let kind = match event.event_type.as_str() {
            "payment_intent.succeeded" => {
                // A PaymentIntent always names its currency and what it received.
                let (Some(received), Some(currency)) = (
                    object["amount_received"].as_i64(),
                    object["currency"].as_str(),
                ) else {
                    return Err(WebhookError::Payload(
                        "payment_intent.succeeded without amount_received and currency".to_owned(),
                    ));
                };
                WebhookKind::PaymentSucceeded {
                    reference: text(object, "id"),
                    paid: Some(Charge {
                        amount: from_minor_units(received, currency),
                        currency: currency.to_uppercase(),
                    }),
                }
            }
            "payment_intent.payment_failed" => WebhookKind::PaymentFailed {
                reference: text(object, "id"),
                reason: object["last_payment_error"]["message"]
                    .as_str()
                    .unwrap_or("payment failed")
                    .to_owned(),
            },
            "refund.updated" | "refund.failed" => {
                let refund = WebhookKind::RefundSucceeded {
                    payment_reference: text(object, "payment_intent"),
                    refund_reference: text(object, "id"),
                };
                match (object["status"].as_str(), refund) {
                    (Some("succeeded"), refund) => refund,
                    (
                        Some("failed" | "canceled"),
                        WebhookKind::RefundSucceeded {
                            payment_reference,
                            refund_reference,
                        },
                    ) => WebhookKind::RefundFailed {
                        payment_reference,
                        refund_reference,
                    },
                    _ => WebhookKind::Other,
                }
            }
            "charge.dispute.created" | "charge.dispute.updated" | "charge.dispute.closed" => {
                WebhookKind::Dispute {
                    payment_reference: text(object, "payment_intent"),
                    dispute_reference: text(object, "id"),
                    reason: text(object, "reason"),
                    amount: object["amount"]
                        .as_i64()
                        .map(|amount| from_minor_units(amount, &text(object, "currency"))),
                    status: text(object, "status"),
                }
            }
            _ => WebhookKind::Other,
        };
        Ok(WebhookEvent {
            id: event.id,
            event_type: event.event_type,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn charge(amount: &str, currency: &str) -> Charge {
        Charge::parse(amount, currency).unwrap()
    }

    #[test]
    fn amounts_go_to_stripe_in_minor_units() {
        assert_eq!(minor_units(&charge("19.99", "USD")).unwrap(), 1999);
        assert_eq!(minor_units(&charge("500", "JPY")).unwrap(), 500);
        assert!(minor_units(&charge("1.5", "JPY")).is_err());
        assert!(minor_units(&charge("1.005", "USD")).is_err());
        assert_eq!(
            from_minor_units(1999, "usd"),
            Decimal::from_str("19.99").unwrap()
        );
    }
}
