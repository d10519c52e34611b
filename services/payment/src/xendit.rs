//! Xendit: a client for its documented Invoices, Refunds and callback APIs. Requests are
//! JSON with the secret key as the Basic-auth user name; the customer pays on the
//! invoice's hosted page (its URL is the intent's client secret); callbacks carry the
//! account's `x-callback-token`, checked in constant time before the body is read.

use commerce_runtime::{ExposeSecret, SecretString};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::domain::{Charge, WebhookEvent, WebhookKind};
use crate::gateway::{
    BrowserFlow, GatewayError, Intent, PaymentGateway, RefundReceipt, WebhookError,
};

/// `services.payment.xendit`.
#[derive(Debug, Clone, Deserialize)]
pub struct XenditSettings {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub secret_key: SecretString,
    /// The verification token Xendit puts in `x-callback-token` on every callback.
    pub callback_token: SecretString,
    /// How long a customer has to pay an invoice; the order's own payment window should
    /// not be longer.
    #[serde(default = "default_invoice_duration", with = "humantime_serde")]
    pub invoice_duration: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_base_url() -> String {
    "https://api.xendit.co".to_owned()
}
fn default_invoice_duration() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_timeout() -> Duration {
    Duration::from_secs(20)
}

pub const CALLBACK_TOKEN_HEADER: &str = "x-callback-token";
/// Xendit's delivery id; the same callback retried keeps it.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";

/// Currencies Xendit takes in whole units only (it would silently truncate decimals).
const WHOLE_UNITS: &[&str] = &["IDR", "VND"];

/// The amount as Xendit's JSON number, refusing decimals it would drop.
pub fn xendit_amount(charge: &Charge) -> Result<f64, GatewayError> {
    if WHOLE_UNITS.contains(&charge.currency.as_str()) && charge.amount.fract() != Decimal::ZERO {
        return Err(GatewayError::Refused(format!(
            "{} {} has decimals; Xendit takes {} in whole units",
            charge.amount, charge.currency, charge.currency
        )));
    }
    if charge.amount.round_dp(2) != charge.amount {
        return Err(GatewayError::Refused(format!(
            "{} {} has more than two decimals",
            charge.amount, charge.currency
        )));
    }
    charge
        .amount
        .to_f64()
        .ok_or_else(|| GatewayError::Refused("amount out of range".to_owned()))
}

pub struct XenditGateway {
    settings: XenditSettings,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct XenditError {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Invoice {
    id: String,
    status: String,
    invoice_url: String,
}

#[derive(Debug, Deserialize)]
struct Refund {
    id: String,
    status: String,
}

impl XenditGateway {
    pub fn new(settings: XenditSettings) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|error| GatewayError::Failure(error.into()))?;
        Ok(Self { settings, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url.trim_end_matches('/'))
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, GatewayError> {
        let response = request
            .basic_auth(self.settings.secret_key.expose_secret(), Some(""))
            .send()
            .await
            .map_err(|error| GatewayError::Failure(error.into()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| GatewayError::Failure(error.into()))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map(Some).map_err(|error| {
                GatewayError::Failure(format!("unreadable answer: {error}").into())
            });
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let detail = serde_json::from_slice::<XenditError>(&body)
            .map(|error| {
                format!(
                    "{}: {}",
                    error.error_code.unwrap_or_default(),
                    error.message.unwrap_or_default()
                )
            })
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(GatewayError::from_status(status.as_u16(), detail))
    }

    /// The unpaid invoice an earlier attempt created for this order, if any: Xendit's
    /// invoice API keys nothing on `external_id`, so a retried create looks first.
    async fn open_invoice(&self, external_id: &str) -> Result<Option<Invoice>, GatewayError> {
        let invoices: Option<Vec<Invoice>> = self
            .send(
                self.http
                    .get(self.url("/v2/invoices"))
                    .query(&[("external_id", external_id)]),
            )
            .await?;
        Ok(invoices
            .unwrap_or_default()
            .into_iter()
            .find(|invoice| invoice.status == "PENDING"))
    }
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

fn decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(number) => Decimal::from_str(&number.to_string())
            .or_else(|_| Decimal::from_scientific(&number.to_string()))
            .ok(),
        _ => None,
    }
}

#[async_trait]
impl PaymentGateway for XenditGateway {
    fn name(&self) -> &'static str {
        "xendit"
    }

    /// The client secret is the invoice's hosted page.
    fn browser_flow(&self) -> Option<BrowserFlow> {
        Some(BrowserFlow::Redirect)
    }

    async fn create_intent(
        &self,
        charge: &Charge,
        idempotency_key: &str,
    ) -> Result<Intent, GatewayError> {
        let amount = xendit_amount(charge)?;
        let invoice = match self.open_invoice(idempotency_key).await? {
            Some(invoice) => invoice,
            None => {
                let request = json!({
                    "external_id": idempotency_key,
                    "amount": amount,
                    "currency": charge.currency,
                    "description": format!("Order {idempotency_key}"),
                    "invoice_duration": self.settings.invoice_duration.as_secs(),
                });
                self.send(self.http.post(self.url("/v2/invoices")).json(&request))
                    .await?
                    .ok_or_else(|| GatewayError::Failure("invoice API not found".into()))?
            }
        };
        Ok(Intent {
            reference: invoice.id,
            client_secret: invoice.invoice_url,
        })
    }

    async fn cancel_intent(&self, reference: &str) -> Result<(), GatewayError> {
        // An invoice Xendit no longer knows has nothing left to cancel.
        let _: Option<Invoice> = self
            .send(
                self.http
                    .post(self.url(&format!("/invoices/{reference}/expire!"))),
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
        let request = json!({
            "invoice_id": reference,
            "reference_id": idempotency_key,
            "amount": xendit_amount(amount)?,
            "currency": amount.currency,
            "reason": "CANCELLATION",
        });
        let refund: Refund = self
            .send(
                self.http
                    .post(self.url("/refunds"))
                    .header("idempotency-key", idempotency_key)
                    .json(&request),
            )
            .await?
            .ok_or_else(|| GatewayError::Refused(format!("invoice {reference} not found")))?;
        Ok(RefundReceipt {
            reference: refund.id,
            status: match refund.status.as_str() {
                "SUCCEEDED" => "succeeded",
                "FAILED" | "CANCELLED" => "failed",
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
        let token = headers
            .get(CALLBACK_TOKEN_HEADER)
            .map(|value| value.as_bytes())
            .ok_or(WebhookError::Unauthenticated)?;
        if !bool::from(token.ct_eq(self.settings.callback_token.expose_secret().as_bytes())) {
            return Err(WebhookError::Unauthenticated);
        }
        let callback: Value = serde_json::from_slice(body)
            .map_err(|error| WebhookError::Payload(error.to_string()))?;
        if !callback.is_object() {
            return Err(WebhookError::Payload("expected a JSON object".to_owned()));
        }
        // Refund callbacks name their event; invoice callbacks are the invoice itself.
        let (event_type, kind, object_id) = match callback["event"].as_str() {
            Some(event) => {
                let data = &callback["data"];
                let refund = (text(data, "invoice_id"), text(data, "id"));
                let kind = match event {
                    "refund.succeeded" => WebhookKind::RefundSucceeded {
                        payment_reference: refund.0,
                        refund_reference: refund.1,
                    },
                    "refund.failed" => WebhookKind::RefundFailed {
                        payment_reference: refund.0,
                        refund_reference: refund.1,
                    },
                    _ => WebhookKind::Other,
                };
                (event.to_owned(), kind, text(data, "id"))
            }
            None => {
                let reference = text(&callback, "id");
                if reference.is_empty() {
                    return Err(WebhookError::Payload("callback without an id".to_owned()));
                }
                let status = text(&callback, "status");
                let kind = match status.as_str() {
                    "PAID" | "SETTLED" => {
                        let paid = decimal(&callback["paid_amount"]);
                        let due = decimal(&callback["amount"]);
                        match (paid, due) {
                            (Some(paid), Some(due)) if paid < due => WebhookKind::PaymentFailed {
                                reference: reference.clone(),
                                reason: format!("paid {paid} of {due}"),
                            },
                            _ => WebhookKind::PaymentSucceeded {
                                reference: reference.clone(),
                                paid: paid.map(|amount| Charge {
                                    amount,
                                    currency: text(&callback, "currency").to_uppercase(),
                                }),
                            },
                        }
                    }
                    "EXPIRED" => WebhookKind::PaymentFailed {
                        reference: reference.clone(),
                        reason: "the invoice expired unpaid".to_owned(),
                    },
                    _ => WebhookKind::Other,
                };
                // PAID and SETTLED are one payment: the same event for deduplication.
                let phase = if status == "SETTLED" { "PAID" } else { &status };
                (format!("invoice.{}", phase.to_lowercase()), kind, reference)
            }
        };
        let id = headers
            .get(WEBHOOK_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
            // Without a delivery id, an object's transition happens once.
            .unwrap_or_else(|| format!("{object_id}:{event_type}"));
        Ok(WebhookEvent {
            id,
            event_type,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(amount: &str, currency: &str) -> Charge {
        Charge::parse(amount, currency).unwrap()
    }

    fn gateway() -> XenditGateway {
        XenditGateway::new(XenditSettings {
            base_url: default_base_url(),
            secret_key: "xnd_development_x".into(),
            callback_token: "token-1".into(),
            invoice_duration: default_invoice_duration(),
            timeout: default_timeout(),
        })
        .unwrap()
    }

    fn headers(token: &str, id: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(CALLBACK_TOKEN_HEADER, token.parse().unwrap());
        if let Some(id) = id {
            headers.insert(WEBHOOK_ID_HEADER, id.parse().unwrap());
        }
        headers
    }

    #[test]
    fn amounts_keep_what_xendit_would_truncate_out() {
        assert_eq!(xendit_amount(&charge("150000", "IDR")).unwrap(), 150000.0);
        assert!(xendit_amount(&charge("150000.50", "IDR")).is_err());
        assert_eq!(xendit_amount(&charge("19.99", "PHP")).unwrap(), 19.99);
        assert!(xendit_amount(&charge("19.999", "PHP")).is_err());
    }

    #[test]
    fn callbacks_need_the_token_and_read_invoice_and_refund_events() {
        let gateway = gateway();
        let paid =
            br#"{"id":"inv_1","external_id":"o","status":"PAID","amount":1000,"paid_amount":1000,"currency":"IDR"}"#;
        assert!(matches!(
            gateway.verify_webhook(&headers("token-2", None), paid),
            Err(WebhookError::Unauthenticated)
        ));
        assert!(matches!(
            gateway.verify_webhook(&http::HeaderMap::new(), paid),
            Err(WebhookError::Unauthenticated)
        ));
        let event = gateway
            .verify_webhook(&headers("token-1", None), paid)
            .unwrap();
        assert_eq!(event.id, "inv_1:invoice.paid");
        assert!(
            matches!(event.kind, WebhookKind::PaymentSucceeded { reference, paid: Some(paid) }
                if reference == "inv_1" && paid.same_as(rust_decimal::Decimal::from(1000), "IDR"))
        );
        // SETTLED follows PAID for the same payment: one event, not two.
        let settled = br#"{"id":"inv_1","status":"SETTLED","amount":1000,"paid_amount":1000,"currency":"IDR"}"#;
        assert_eq!(
            gateway
                .verify_webhook(&headers("token-1", None), settled)
                .unwrap()
                .id,
            "inv_1:invoice.paid"
        );
        let short = br#"{"id":"inv_2","status":"PAID","amount":1000,"paid_amount":900}"#;
        assert!(matches!(
            gateway.verify_webhook(&headers("token-1", Some("wh-9")), short).unwrap(),
            WebhookEvent { id, kind: WebhookKind::PaymentFailed { .. }, .. } if id == "wh-9"
        ));
        let refund = br#"{"event":"refund.succeeded","data":{"id":"rfd-1","invoice_id":"inv_1","status":"SUCCEEDED","amount":500}}"#;
        assert!(matches!(
            gateway.verify_webhook(&headers("token-1", None), refund).unwrap().kind,
            WebhookKind::RefundSucceeded { payment_reference, refund_reference }
                if payment_reference == "inv_1" && refund_reference == "rfd-1"
        ));
        assert!(matches!(
            gateway.verify_webhook(&headers("token-1", None), b"[1]"),
            Err(WebhookError::Payload(_))
        ));
    }
}
