//! Stripe's API as far as the shop and a shopper's browser use it, served by the simulator
//! so a run can pay by card through the shop's real Stripe gateway. The shop creates and
//! cancels PaymentIntents and creates Refunds (form bodies, `Bearer` secret key,
//! `Idempotency-Key` replays, `{"error": …}` failures); a shopper confirms its intent with
//! the publishable key as Stripe.js does; the outcome reaches the shop as Stripe sends it,
//! a signed event to its webhook endpoint, retried with growing pauses until it answers
//! 2xx. Point `services.payment.stripe.base_url` at `--stripe-listen`. It serves until
//! dropped: past the shoppers' last visit, while the shop still refunds what was canceled.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How the simulator plays Stripe.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    pub listen: SocketAddr,
    pub secret_key: SecretString,
    pub publishable_key: String,
    pub webhook_secret: SecretString,
    /// The shop's Stripe webhook endpoint.
    pub webhook_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("cannot serve Stripe's API on {listen}")]
    Listen {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Webhook deliveries are given up after this many tries (Stripe keeps trying for days;
/// a run is shorter).
const DELIVERY_TRIES: u32 = 12;

struct Ledger {
    settings: StripeSettings,
    http: reqwest::Client,
    stop: CancellationToken,
    /// Idempotency-Key → the first answer.
    replies: Mutex<HashMap<String, Value>>,
    intents: Mutex<HashMap<String, Value>>,
}

type Shared = Arc<Ledger>;

/// The Stripe API, served until dropped.
pub struct StripeServer {
    pub url: String,
    publishable_key: String,
    stop: CancellationToken,
}

impl Drop for StripeServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl StripeServer {
    pub async fn start(settings: StripeSettings) -> Result<Self, StripeError> {
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| StripeError::Listen {
                listen: settings.listen,
                source,
            })?;
        let url = format!("http://{}", settings.listen);
        let publishable_key = settings.publishable_key.clone();
        let ledger = Arc::new(Ledger {
            settings,
            http: reqwest::Client::new(),
            stop: stop.clone(),
            replies: Mutex::default(),
            intents: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/payment_intents", post(create_intent))
            .route("/v1/payment_intents/{id}/confirm", post(confirm_intent))
            .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
            .route("/v1/refunds", post(create_refund))
            .with_state(ledger);
        let serving = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(serving.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "the simulated Stripe API stopped");
            }
        });
        Ok(Self {
            url,
            publishable_key,
            stop,
        })
    }

    /// What a shopper's browser sends to confirm the intent behind `client_secret`, as
    /// Stripe.js does: `POST /v1/payment_intents/{id}/confirm` with the publishable key.
    pub fn confirm(&self, http: &reqwest::Client, client_secret: &str) -> reqwest::RequestBuilder {
        let intent = client_secret
            .split_once("_secret_")
            .map_or(client_secret, |(id, _)| id);
        http.post(format!("{}/v1/payment_intents/{intent}/confirm", self.url))
            .bearer_auth(&self.publishable_key)
            .form(&[
                ("client_secret", client_secret),
                ("payment_method", "pm_card_visa"),
            ])
    }
}

type Answer = (StatusCode, Json<Value>);

fn refusal(status: StatusCode, kind: &str, message: &str) -> Answer {
    (
        status,
        Json(json!({"error": {"type": kind, "message": message}})),
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
}

/// The secret key's caller, and the request's idempotency key.
fn server_call(ledger: &Ledger, headers: &HeaderMap) -> Result<String, Answer> {
    if bearer(headers) != Some(ledger.settings.secret_key.expose_secret()) {
        return Err(refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided",
        ));
    }
    Ok(headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned))
}

/// The idempotency key of a call not made before; a repeated call gets the first answer.
fn first_call(ledger: &Ledger, headers: &HeaderMap) -> Result<String, Answer> {
    let key = server_call(ledger, headers)?;
    match ledger.replies.lock().unwrap().get(&key) {
        Some(reply) => Err((StatusCode::OK, Json(reply.clone()))),
        None => Ok(key),
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

async fn create_intent(
    State(ledger): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let key = match first_call(&ledger, &headers) {
        Ok(key) => key,
        Err(answer) => return answer,
    };
    let Some(amount) = form
        .get("amount")
        .and_then(|amount| amount.parse::<i64>().ok())
    else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Missing required param: amount.",
        );
    };
    if amount < 50 {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Amount must be at least $0.50 usd",
        );
    }
    let id = new_id("pi");
    let intent = json!({
        "id": id, "object": "payment_intent", "amount": amount, "amount_received": 0,
        "currency": form.get("currency").cloned().unwrap_or_default(),
        "status": "requires_payment_method",
        "client_secret": format!("{id}_secret_{}", uuid::Uuid::new_v4().simple()),
        "metadata": {"order_id": form.get("metadata[order_id]")},
    });
    ledger.intents.lock().unwrap().insert(id, intent.clone());
    ledger.replies.lock().unwrap().insert(key, intent.clone());
    (StatusCode::OK, Json(intent))
}

async fn confirm_intent(
    State(ledger): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    if bearer(&headers) != Some(ledger.settings.publishable_key.as_str()) {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided",
        );
    }
    let confirmed = {
        let mut intents = ledger.intents.lock().unwrap();
        let Some(intent) = intents.get_mut(&id) else {
            return refusal(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "No such payment_intent",
            );
        };
        if intent["client_secret"].as_str() != form.get("client_secret").map(String::as_str) {
            return refusal(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "The client_secret provided does not match the client_secret associated with the PaymentIntent.",
            );
        }
        match intent["status"].as_str() {
            Some("requires_payment_method") => {}
            // Confirming again answers what the first confirmation did.
            Some("succeeded") => return (StatusCode::OK, Json(intent.clone())),
            _ => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "This PaymentIntent's status does not allow confirmation.",
                );
            }
        }
        intent["status"] = json!("succeeded");
        intent["amount_received"] = intent["amount"].clone();
        intent.clone()
    };
    deliver(&ledger, "payment_intent.succeeded", confirmed.clone());
    (StatusCode::OK, Json(confirmed))
}

async fn cancel_intent(
    State(ledger): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    if let Err(refused) = server_call(&ledger, &headers) {
        return refused;
    }
    let mut intents = ledger.intents.lock().unwrap();
    let Some(intent) = intents.get_mut(&id) else {
        return refusal(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "No such payment_intent",
        );
    };
    if intent["status"] == "succeeded" {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "You cannot cancel this PaymentIntent because it has a status of succeeded.",
        );
    }
    intent["status"] = json!("canceled");
    (StatusCode::OK, Json(intent.clone()))
}

async fn create_refund(
    State(ledger): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let key = match first_call(&ledger, &headers) {
        Ok(key) => key,
        Err(answer) => return answer,
    };
    let intent = form.get("payment_intent").cloned().unwrap_or_default();
    let received = ledger
        .intents
        .lock()
        .unwrap()
        .get(&intent)
        .and_then(|intent| intent["amount_received"].as_i64());
    let Some(received) = received.filter(|received| *received > 0) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "This PaymentIntent has no successful charge to refund.",
        );
    };
    let amount = form
        .get("amount")
        .and_then(|amount| amount.parse::<i64>().ok())
        .unwrap_or(received);
    if amount > received {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Refund amount is greater than the charge's unrefunded amount.",
        );
    }
    // Card refunds settle later: Stripe answers pending, then reports by webhook.
    let refund = json!({
        "id": new_id("re"), "object": "refund", "amount": amount,
        "payment_intent": intent, "status": "pending",
    });
    ledger.replies.lock().unwrap().insert(key, refund.clone());
    let mut settled = refund.clone();
    settled["status"] = json!("succeeded");
    deliver(&ledger, "refund.updated", settled);
    (StatusCode::OK, Json(refund))
}

/// Sends `object` to the shop as a signed event of `event_type`, in the background, until
/// the shop answers 2xx, the run stops, or [`DELIVERY_TRIES`] tries failed.
fn deliver(ledger: &Shared, event_type: &str, object: Value) {
    let body = json!({
        "id": new_id("evt"), "object": "event", "type": event_type,
        "created": chrono::Utc::now().timestamp(), "data": {"object": object},
    })
    .to_string();
    let ledger = ledger.clone();
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(500);
        for _ in 0..DELIVERY_TRIES {
            let signature = commerce_payment::signature::sign(
                ledger.settings.webhook_secret.expose_secret(),
                chrono::Utc::now().timestamp(),
                body.as_bytes(),
            );
            let sent = ledger
                .http
                .post(&ledger.settings.webhook_url)
                .header("content-type", "application/json")
                .header(commerce_payment::stripe::SIGNATURE_HEADER, signature)
                .body(body.clone())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer) => {
                    tracing::debug!(status = %answer.status(), "webhook refused; retrying")
                }
                Err(error) => tracing::debug!(%error, "webhook not delivered; retrying"),
            }
            tokio::select! {
                () = ledger.stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(8));
        }
        tracing::warn!(%body, "the shop never took this webhook event");
    });
}
