//! The Xendit gateway inside the payment service, against a local server that answers as
//! Xendit's API reference documents: JSON requests with the secret key as the Basic-auth
//! user, invoices (create, list by `external_id`, `expire!`), refunds with an
//! `idempotency-key`, `{"error_code", "message"}` failures, and callbacks carrying the
//! account's `x-callback-token`.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use commerce_proto::common::v1::Money;
use commerce_proto::payment::v1 as pb;
use serde_json::{Value, json};
use uuid::Uuid;

use support::{PaymentUnderTest, with_token};

const SECRET_KEY: &str = "xnd_development_commerce";
const CALLBACK_TOKEN: &str = "callback-token-commerce";

#[derive(Default)]
struct FakeXendit {
    invoices: Vec<Value>,
    refunds: HashMap<String, Value>,
    refund_requests: Vec<Value>,
    expired: Vec<String>,
    /// The next create is recorded but its answer "lost" (a 503), as on a dropped link.
    lose_next_answer: bool,
}

type Shared = Arc<Mutex<FakeXendit>>;
type Reply = (StatusCode, Json<Value>);

fn check(headers: &HeaderMap) -> Result<(), Reply> {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SECRET_KEY}:"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str()) {
        return Ok(());
    }
    Err((
        StatusCode::UNAUTHORIZED,
        Json(json!({"error_code": "INVALID_API_KEY", "message": "API key is invalid"})),
    ))
}

async fn create_invoice(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Json(request): Json<Value>,
) -> Reply {
    if let Err(error) = check(&headers) {
        return error;
    }
    let amount = request["amount"].as_f64().unwrap_or(0.0);
    if amount < 10000.0 && request["currency"] == "IDR" {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error_code": "API_VALIDATION_ERROR", "message": "Minimum amount is 10000 IDR"}),
            ),
        );
    }
    let mut fake = fake.lock().unwrap();
    let id = format!("inv_{}", fake.invoices.len() + 1);
    let invoice = json!({
        "id": id, "external_id": request["external_id"], "status": "PENDING",
        "amount": request["amount"], "currency": request["currency"],
        "invoice_url": format!("https://checkout.xendit.example/web/{id}"),
        "invoice_duration": request["invoice_duration"],
    });
    fake.invoices.push(invoice.clone());
    if std::mem::take(&mut fake.lose_next_answer) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error_code": "SERVER_ERROR", "message": "try again"})),
        );
    }
    (StatusCode::OK, Json(invoice))
}

async fn list_invoices(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    if let Err(error) = check(&headers) {
        return error;
    }
    let fake = fake.lock().unwrap();
    let found: Vec<Value> = fake
        .invoices
        .iter()
        .filter(|invoice| {
            Some(&invoice["external_id"]) == query.get("external_id").map(|id| json!(id)).as_ref()
        })
        .cloned()
        .collect();
    (StatusCode::OK, Json(Value::Array(found)))
}

async fn expire_invoice(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    if let Err(error) = check(&headers) {
        return error;
    }
    let mut fake = fake.lock().unwrap();
    let Some(invoice) = fake.invoices.iter_mut().find(|invoice| invoice["id"] == id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(
                json!({"error_code": "INVOICE_NOT_FOUND_ERROR", "message": "Could not find invoice"}),
            ),
        );
    };
    invoice["status"] = json!("EXPIRED");
    let invoice = invoice.clone();
    fake.expired.push(id);
    (StatusCode::OK, Json(invoice))
}

async fn create_refund(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Json(request): Json<Value>,
) -> Reply {
    if let Err(error) = check(&headers) {
        return error;
    }
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error_code": "API_VALIDATION_ERROR", "message": "this test server wants an idempotency-key"}),
            ),
        );
    };
    let mut fake = fake.lock().unwrap();
    if let Some(refund) = fake.refunds.get(key) {
        return (StatusCode::OK, Json(refund.clone()));
    }
    let refund = json!({
        "id": format!("rfd-{}", fake.refunds.len() + 1), "invoice_id": request["invoice_id"],
        "reference_id": request["reference_id"], "amount": request["amount"],
        "currency": request["currency"], "reason": request["reason"], "status": "PENDING",
    });
    fake.refunds.insert(key.to_owned(), refund.clone());
    fake.refund_requests.push(request);
    (StatusCode::OK, Json(refund))
}

async fn fake_xendit() -> (String, Shared) {
    let fake: Shared = Arc::default();
    let app = Router::new()
        .route("/v2/invoices", post(create_invoice).get(list_invoices))
        .route("/invoices/{id}/expire!", post(expire_invoice))
        .route("/refunds", post(create_refund))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

async fn status_of(payment: &PaymentUnderTest, order: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1")
        .bind(order)
        .fetch_one(&payment.database.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn xendit_invoices_callbacks_and_refunds() {
    let (xendit_url, fake) = fake_xendit().await;
    let payment = PaymentUnderTest::start(&format!(
        r#"xendit = {{ base_url = "{xendit_url}", secret_key = "{SECRET_KEY}", callback_token = "{CALLBACK_TOKEN}", invoice_duration = "2h" }}"#
    ))
    .await;
    let http = payment.http.clone();
    // Xendit pays on its hosted invoice page; Stripe is not configured and the offline
    // gateway not enabled, so neither is offered.
    let offered: Value = reqwest::get(format!("{http}/v1/payments/gateways"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        offered["items"],
        json!([{"code": "xendit", "flow": "redirect"}])
    );
    let mut grpc = pb::payment_service_client::PaymentServiceClient::connect(payment.grpc.clone())
        .await
        .unwrap();
    let token = payment.issuer.service_token("order", "payment");
    let create = |order: Uuid, amount: &str| {
        with_token(
            &token,
            pb::CreatePaymentIntentRequest {
                order_id: order.to_string(),
                user_id: Uuid::now_v7().to_string(),
                amount: Some(Money {
                    amount: amount.into(),
                    currency: "IDR".into(),
                }),
                gateway: "xendit".into(),
            },
        )
    };

    // The first answer is lost after Xendit made the invoice: the caller sees an outage,
    // and its retry finds that invoice instead of making a second one.
    let order = Uuid::now_v7();
    fake.lock().unwrap().lose_next_answer = true;
    let lost = grpc
        .create_payment_intent(create(order, "150000"))
        .await
        .unwrap_err();
    assert_eq!(lost.code(), tonic::Code::Unavailable, "{}", lost.message());
    let intent = grpc
        .create_payment_intent(create(order, "150000"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        intent.client_secret,
        "https://checkout.xendit.example/web/inv_1"
    );
    {
        let fake = fake.lock().unwrap();
        assert_eq!(fake.invoices.len(), 1, "one invoice for one order");
        let sent = &fake.invoices[0];
        assert_eq!(sent["amount"], json!(150000.0));
        assert_eq!(sent["currency"], "IDR");
        assert_eq!(sent["external_id"], order.to_string());
        assert_eq!(sent["invoice_duration"], 7200);
    }
    // Xendit's own refusals are refusals, not outages; IDR with decimals never leaves.
    let too_small = grpc
        .create_payment_intent(create(Uuid::now_v7(), "5000"))
        .await
        .unwrap_err();
    assert_eq!(too_small.code(), tonic::Code::FailedPrecondition);
    assert!(
        too_small.message().contains("Minimum amount"),
        "{}",
        too_small.message()
    );
    let fractional = grpc
        .create_payment_intent(create(Uuid::now_v7(), "15000.50"))
        .await
        .unwrap_err();
    assert_eq!(fractional.code(), tonic::Code::FailedPrecondition);
    assert_eq!(fake.lock().unwrap().invoices.len(), 1);

    // The invoice callback: refused without the account's token, applied once with it.
    let client = reqwest::Client::new();
    let deliver = |callback: Value, token: &'static str| {
        client
            .post(format!("{http}/v1/payments/webhooks/xendit"))
            .header("x-callback-token", token)
            .json(&callback)
            .send()
    };
    // What the payment service made of an authentic callback.
    let outcome = |callback: Value| async {
        let answer: Value = deliver(callback, CALLBACK_TOKEN)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["outcome"].as_str().unwrap_or_default().to_owned()
    };
    let paid = json!({
        "id": "inv_1", "external_id": order.to_string(), "status": "PAID",
        "amount": 150000, "paid_amount": 150000, "currency": "IDR", "payment_method": "BANK_TRANSFER",
    });
    let forged = deliver(paid.clone(), "not-the-token").await.unwrap();
    assert_eq!(forged.status(), 400);
    assert_eq!(status_of(&payment, order).await, "requires_payment");
    // Authentic (its own delivery id), but paid in another currency than the invoice's
    // IDR: refused and not applied.
    let mut other_currency = paid.clone();
    other_currency["currency"] = json!("PHP");
    let answer: Value = client
        .post(format!("{http}/v1/payments/webhooks/xendit"))
        .header("x-callback-token", CALLBACK_TOKEN)
        .header("webhook-id", "wh-other-currency")
        .json(&other_currency)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "refused");
    assert_eq!(status_of(&payment, order).await, "requires_payment");
    for expected in ["applied", "duplicate"] {
        assert_eq!(outcome(paid.clone()).await, expected);
    }
    // SETTLED is the same payment reaching the balance: no second effect.
    let mut settled = paid.clone();
    settled["status"] = json!("SETTLED");
    assert_eq!(outcome(settled).await, "duplicate");
    assert_eq!(status_of(&payment, order).await, "succeeded");

    // A partial refund goes to Xendit with its idempotency key and settles by callback.
    let refund = grpc
        .refund_payment(with_token(
            &token,
            pb::RefundPaymentRequest {
                order_id: order.to_string(),
                amount: Some(Money {
                    amount: "50000".into(),
                    currency: "IDR".into(),
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
        assert_eq!(fake.refund_requests.len(), 1);
        let sent = &fake.refund_requests[0];
        assert_eq!(sent["invoice_id"], "inv_1");
        assert_eq!(sent["amount"], json!(50000.0));
        assert_eq!(sent["reason"], "CANCELLATION");
    }
    let refunded = json!({
        "event": "refund.succeeded", "business_id": "biz_1", "created": "2026-11-25T10:00:00Z",
        "data": {"id": "rfd-1", "invoice_id": "inv_1", "amount": 50000, "currency": "IDR",
                 "status": "SUCCEEDED", "reason": "CANCELLATION", "reference_id": "refund-1"}
    });
    for expected in ["applied", "duplicate"] {
        assert_eq!(outcome(refunded.clone()).await, expected);
    }
    let (refund_status, announced): (String, i64) = sqlx::query_as(
        "SELECT (SELECT status FROM refunds LIMIT 1),
                (SELECT count(*) FROM outbox_events WHERE event_type = 'commerce.payment.v1.PaymentRefunded')",
    )
    .fetch_one(&payment.database.pool)
    .await
    .unwrap();
    assert_eq!((refund_status.as_str(), announced), ("succeeded", 1));

    // Re-pricing an unpaid order (its delivery changed) expires the invoice and opens a
    // new one under the next revision; a repeat of that revision changes nothing.
    let repriced = Uuid::now_v7();
    grpc.create_payment_intent(create(repriced, "20000"))
        .await
        .unwrap();
    let replace = |amount: &str, revision: i32| {
        with_token(
            &token,
            pb::ReplacePaymentIntentRequest {
                order_id: repriced.to_string(),
                amount: Some(Money {
                    amount: amount.into(),
                    currency: "IDR".into(),
                }),
                revision,
            },
        )
    };
    let first = grpc
        .replace_payment_intent(replace("25000", 1))
        .await
        .unwrap()
        .into_inner();
    let again = grpc
        .replace_payment_intent(replace("25000", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.client_secret, again.client_secret);
    assert_eq!(
        first.client_secret,
        "https://checkout.xendit.example/web/inv_3"
    );
    {
        let fake = fake.lock().unwrap();
        assert_eq!(fake.expired, vec!["inv_2"]);
        assert_eq!(fake.invoices.len(), 3);
        assert_eq!(fake.invoices[2]["external_id"], format!("{repriced}:r1"));
        assert_eq!(fake.invoices[2]["amount"], json!(25000.0));
    }
    let other_amount = grpc
        .replace_payment_intent(replace("30000", 1))
        .await
        .unwrap_err();
    assert_eq!(other_amount.code(), tonic::Code::FailedPrecondition);
    // A late success for the retired invoice still finds its payment (money was taken).
    let late = json!({"id": "inv_2", "external_id": repriced.to_string(), "status": "PAID", "amount": 20000, "paid_amount": 20000, "currency": "IDR"});
    assert_eq!(outcome(late).await, "applied");
    assert_eq!(status_of(&payment, repriced).await, "succeeded");
    let too_late = grpc
        .replace_payment_intent(replace("30000", 2))
        .await
        .unwrap_err();
    assert_eq!(too_late.code(), tonic::Code::FailedPrecondition);
    assert!(
        too_late.message().contains("succeeded"),
        "{}",
        too_late.message()
    );

    // Canceling an unpaid order expires its invoice at Xendit; the EXPIRED callback that
    // follows changes nothing.
    let unpaid = Uuid::now_v7();
    grpc.create_payment_intent(create(unpaid, "20000"))
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
    assert_eq!(fake.lock().unwrap().expired, vec!["inv_2", "inv_4"]);
    let expired = json!({"id": "inv_4", "external_id": unpaid.to_string(), "status": "EXPIRED", "amount": 20000});
    deliver(expired, CALLBACK_TOKEN).await.unwrap();
    assert_eq!(status_of(&payment, unpaid).await, "canceled");
    payment.stop().await;
}
