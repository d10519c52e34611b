//! The Stripe gateway inside the payment service, against a local server that answers as
//! Stripe's API reference documents: form-encoded requests with a Bearer secret key,
//! `Idempotency-Key` replays returning the first object, PaymentIntents and Refunds
//! objects, `{"error": {...}}` failures, and events signed with `Stripe-Signature`.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use commerce_proto::common::v1::Money;
use commerce_proto::payment::v1 as pb;
use serde_json::{Value, json};
use uuid::Uuid;

use support::{PaymentUnderTest, with_token};

const SECRET_KEY: &str = "sk_test_commerce";
const WEBHOOK_SECRET: &str = "whsec_commerce";

#[derive(Default)]
struct FakeStripe {
    /// Idempotency-Key → the first answer.
    replies: HashMap<String, Value>,
    intents: Vec<HashMap<String, String>>,
    refunds: Vec<HashMap<String, String>>,
    canceled: Vec<String>,
}

type Shared = Arc<Mutex<FakeStripe>>;

fn check(headers: &HeaderMap) -> Result<String, (StatusCode, Json<Value>)> {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {SECRET_KEY}"))
    {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(
                json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
            ),
        ));
    }
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"type": "invalid_request_error", "message": "this test server wants an Idempotency-Key"}})),
        ))
}

async fn create_intent(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let key = match check(&headers) {
        Ok(key) => key,
        Err(error) => return error,
    };
    let mut fake = fake.lock().unwrap();
    if let Some(reply) = fake.replies.get(&key) {
        return (StatusCode::OK, Json(reply.clone()));
    }
    if form
        .get("amount")
        .and_then(|a| a.parse::<i64>().ok())
        .unwrap_or(0)
        < 50
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"type": "invalid_request_error", "code": "amount_too_small", "message": "Amount must be at least $0.50 usd"}}),
            ),
        );
    }
    let id = format!("pi_{}", fake.intents.len() + 1);
    fake.intents.push(form.clone());
    let intent = json!({
        "id": id, "object": "payment_intent", "amount": form["amount"].parse::<i64>().unwrap(),
        "currency": form["currency"], "status": "requires_payment_method",
        "client_secret": format!("{id}_secret_abc"), "metadata": {"order_id": form["metadata[order_id]"]}
    });
    fake.replies.insert(key, intent.clone());
    (StatusCode::OK, Json(intent))
}

async fn cancel_intent(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    if let Err(error) = check(&headers) {
        return error;
    }
    fake.lock().unwrap().canceled.push(id.clone());
    (
        StatusCode::OK,
        Json(
            json!({"id": id, "object": "payment_intent", "status": "canceled", "client_secret": null}),
        ),
    )
}

async fn create_refund(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let key = match check(&headers) {
        Ok(key) => key,
        Err(error) => return error,
    };
    let mut fake = fake.lock().unwrap();
    if let Some(reply) = fake.replies.get(&key) {
        return (StatusCode::OK, Json(reply.clone()));
    }
    let id = format!("re_{}", fake.refunds.len() + 1);
    fake.refunds.push(form.clone());
    // Card refunds settle later: Stripe answers pending and reports by webhook.
    let refund = json!({
        "id": id, "object": "refund", "amount": form["amount"].parse::<i64>().unwrap(),
        "payment_intent": form["payment_intent"], "status": "pending"
    });
    fake.replies.insert(key, refund.clone());
    (StatusCode::OK, Json(refund))
}

async fn fake_stripe() -> (String, Shared) {
    let fake: Shared = Arc::default();
    let app = Router::new()
        .route("/v1/payment_intents", post(create_intent))
        .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
        .route("/v1/refunds", post(create_refund))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn stripe_intents_webhooks_and_refunds() {
    let (stripe_url, fake) = fake_stripe().await;
    let payment = PaymentUnderTest::start(&format!(
        r#"stripe = {{ base_url = "{stripe_url}", secret_key = "{SECRET_KEY}", webhook_secret = "{WEBHOOK_SECRET}", publishable_key = "pk_test_commerce" }}"#
    ))
    .await;
    let (database, issuer) = (&payment.database, &payment.issuer);
    let http = payment.http.clone();
    // Checkout offers Stripe with the key Stripe.js needs, and nothing else: the offline
    // gateway is off unless enabled.
    let offered: Value = reqwest::get(format!("{http}/v1/payments/gateways"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        offered["items"],
        json!([
            {"code": "stripe", "flow": "stripeElements", "publishableKey": "pk_test_commerce"},
        ])
    );
    let mut grpc = pb::payment_service_client::PaymentServiceClient::connect(payment.grpc.clone())
        .await
        .unwrap();
    let token = issuer.service_token("order", "payment");
    let order = Uuid::now_v7();
    let create = |order: Uuid, amount: &str| {
        with_token(
            &token,
            pb::CreatePaymentIntentRequest {
                order_id: order.to_string(),
                user_id: Uuid::now_v7().to_string(),
                amount: Some(Money {
                    amount: amount.into(),
                    currency: "USD".into(),
                }),
                gateway: "stripe".into(),
            },
        )
    };
    let intent = grpc
        .create_payment_intent(create(order, "42.50"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(intent.client_secret, "pi_1_secret_abc");
    {
        let fake = fake.lock().unwrap();
        let sent = &fake.intents[0];
        assert_eq!(sent["amount"], "4250", "cents");
        assert_eq!(sent["currency"], "usd");
        assert_eq!(sent["metadata[order_id]"], order.to_string());
    }
    // Stripe refuses a too-small amount: a refusal, not an outage.
    let refused = grpc
        .create_payment_intent(create(Uuid::now_v7(), "0.10"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("amount_too_small"),
        "{}",
        refused.message()
    );

    // payment_intent.succeeded, signed by Stripe.
    let client = reqwest::Client::new();
    let deliver = |event: Value, secret: &'static str| {
        let body = serde_json::to_vec(&event).unwrap();
        client
            .post(format!("{http}/v1/payments/webhooks/stripe"))
            .header(
                "stripe-signature",
                commerce_payment::signature::sign(secret, now(), &body),
            )
            .body(body)
            .send()
    };
    let succeeded_with = |id: &str, received: i64, currency: &str| {
        json!({
            "id": id, "object": "event", "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_1", "object": "payment_intent", "status": "succeeded",
                                "amount": 4250, "amount_received": received, "currency": currency}}
        })
    };
    let succeeded = succeeded_with("evt_1", 4250, "usd");
    let forged = deliver(succeeded.clone(), "whsec_forged").await.unwrap();
    assert_eq!(forged.status(), 400);
    // Signed, but for other money than the intent asked (42.50 USD): refused, kept in the
    // payment's history, not applied.
    for (id, received, currency) in [("evt_low", 100, "usd"), ("evt_eur", 4250, "eur")] {
        let answer: Value = deliver(succeeded_with(id, received, currency), WEBHOOK_SECRET)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["outcome"], "refused", "{id}");
    }
    let (status, refusals): (String, i64) = sqlx::query_as(
        "SELECT p.status, (SELECT count(*) FROM payment_status_history h
                           WHERE h.payment_id = p.id AND h.reason LIKE 'refused %')
         FROM payments p WHERE p.order_id = $1",
    )
    .bind(order)
    .fetch_one(&database.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), refusals), ("requires_payment", 2));
    let answer: Value = deliver(succeeded.clone(), WEBHOOK_SECRET)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "applied");
    let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1")
        .bind(order)
        .fetch_one(&database.pool)
        .await
        .unwrap();
    assert_eq!(status, "succeeded");

    // A partial refund: Stripe answers pending, then reports it by webhook.
    let refund = grpc
        .refund_payment(with_token(
            &token,
            pb::RefundPaymentRequest {
                order_id: order.to_string(),
                amount: Some(Money {
                    amount: "12.50".into(),
                    currency: "USD".into(),
                }),
                reason: "damaged".into(),
                idempotency_key: "refund-1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refund.status, "pending");
    {
        let fake = fake.lock().unwrap();
        assert_eq!(fake.refunds[0]["amount"], "1250");
        assert_eq!(fake.refunds[0]["payment_intent"], "pi_1");
    }
    let refunded = json!({
        "id": "evt_2", "object": "event", "type": "refund.updated",
        "data": {"object": {"id": "re_1", "object": "refund", "payment_intent": "pi_1", "status": "succeeded"}}
    });
    for expected in ["applied", "duplicate"] {
        let answer: Value = deliver(refunded.clone(), WEBHOOK_SECRET)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["outcome"], expected);
    }
    let (refund_status, announced): (String, i64) = sqlx::query_as(
        "SELECT (SELECT status FROM refunds LIMIT 1),
                (SELECT count(*) FROM outbox_events WHERE event_type = 'commerce.payment.v1.PaymentRefunded')",
    )
    .fetch_one(&database.pool)
    .await
    .unwrap();
    assert_eq!((refund_status.as_str(), announced), ("succeeded", 1));

    // A dispute is recorded.
    let dispute = json!({
        "id": "evt_3", "object": "event", "type": "charge.dispute.created",
        "data": {"object": {"id": "dp_1", "object": "dispute", "payment_intent": "pi_1",
                 "reason": "fraudulent", "amount": 3000, "currency": "usd", "status": "needs_response"}}
    });
    deliver(dispute, WEBHOOK_SECRET).await.unwrap();
    let (reason, amount): (String, rust_decimal::Decimal) =
        sqlx::query_as("SELECT reason, amount FROM disputes")
            .fetch_one(&database.pool)
            .await
            .unwrap();
    assert_eq!(
        (reason.as_str(), amount),
        ("fraudulent", rust_decimal::Decimal::from(30))
    );

    // Canceling an unpaid Stripe intent reaches Stripe.
    let unpaid = Uuid::now_v7();
    grpc.create_payment_intent(create(unpaid, "5.00"))
        .await
        .unwrap();
    grpc.cancel_payment_intent(with_token(
        &token,
        pb::CancelPaymentIntentRequest {
            order_id: unpaid.to_string(),
        },
    ))
    .await
    .unwrap();
    assert_eq!(fake.lock().unwrap().canceled, vec!["pi_2"]);
    payment.stop().await;
}
