//! Payment intents over gRPC on real PostgreSQL.

mod support;

use commerce_proto::common::v1::Money;
use commerce_proto::payment::v1 as pb;
use uuid::Uuid;

use support::{PaymentUnderTest, with_token};

#[tokio::test]
async fn intents_are_idempotent_per_order_and_cancel_safely() {
    let payment = PaymentUnderTest::start("offline = { enabled = true }").await;
    let (database, issuer) = (&payment.database, &payment.issuer);
    let grpc = pb::payment_service_client::PaymentServiceClient::connect(payment.grpc.clone())
        .await
        .unwrap();
    let token = issuer.service_token("order", "payment");
    let authorized = |message| with_token(&token, message);
    let authorized_cancel = |message| with_token(&token, message);
    let order = Uuid::now_v7();
    let create = |order: Uuid, amount: &str, gateway: &str| pb::CreatePaymentIntentRequest {
        order_id: order.to_string(),
        user_id: Uuid::nil().to_string(),
        amount: Some(Money {
            amount: amount.into(),
            currency: "USD".into(),
        }),
        gateway: gateway.into(),
    };

    // Ten concurrent attempts for one order: one payment, one secret.
    let attempts = futures::future::join_all((0..10).map(|_| {
        let mut grpc = grpc.clone();
        let request = authorized(create(order, "36.00", "offline"));
        async move {
            grpc.create_payment_intent(request)
                .await
                .map(|answer| answer.into_inner())
        }
    }))
    .await;
    let secrets: std::collections::BTreeSet<_> = attempts
        .iter()
        .map(|attempt| attempt.as_ref().unwrap().client_secret.clone())
        .collect();
    assert_eq!(secrets.len(), 1, "every attempt got the same intent");
    let first = attempts[0].as_ref().unwrap();
    assert_eq!(
        (first.status.as_str(), first.gateway.as_str()),
        ("requires_payment", "offline")
    );
    assert!(first.client_secret.starts_with("off_"));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&database.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);

    let mut grpc = grpc.clone();
    let different = grpc
        .create_payment_intent(authorized(create(order, "40.00", "offline")))
        .await
        .unwrap_err();
    assert_eq!(different.code(), tonic::Code::FailedPrecondition);
    let unconfigured = grpc
        .create_payment_intent(authorized(create(Uuid::now_v7(), "1.00", "stripe")))
        .await
        .unwrap_err();
    assert_eq!(unconfigured.code(), tonic::Code::FailedPrecondition);
    assert!(
        unconfigured
            .message()
            .contains("`stripe` is not offered by this shop")
    );
    let negative = grpc
        .create_payment_intent(authorized(create(Uuid::now_v7(), "-1", "offline")))
        .await
        .unwrap_err();
    assert_eq!(negative.code(), tonic::Code::InvalidArgument);
    assert!(negative.message().contains("amount"));

    let cancel = |order: Uuid| {
        authorized_cancel(pb::CancelPaymentIntentRequest {
            order_id: order.to_string(),
        })
    };
    for _ in 0..2 {
        let canceled = grpc
            .cancel_payment_intent(cancel(order))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(canceled.status, "canceled");
    }
    let history: Vec<String> =
        sqlx::query_scalar("SELECT status FROM payment_status_history ORDER BY id")
            .fetch_all(&database.pool)
            .await
            .unwrap();
    assert_eq!(history, ["requires_payment", "canceled"], "cancelled once");
    let never = grpc
        .cancel_payment_intent(cancel(Uuid::now_v7()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        never.status, "",
        "compensation for an order without a payment is a no-op"
    );

    // A paid intent is not cancelled: it must be refunded.
    let paid = Uuid::now_v7();
    grpc.create_payment_intent(authorized(create(paid, "5.00", "offline")))
        .await
        .unwrap();
    sqlx::query("UPDATE payments SET status = 'succeeded' WHERE order_id = $1")
        .bind(paid)
        .execute(&database.pool)
        .await
        .unwrap();
    let refused = grpc.cancel_payment_intent(cancel(paid)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("refund"));

    let anonymous = grpc
        .cancel_payment_intent(tonic::Request::new(pb::CancelPaymentIntentRequest {
            order_id: order.to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    payment.stop().await;
}

#[tokio::test]
async fn refunds_are_partial_or_full_and_idempotent_per_key() {
    let payment = PaymentUnderTest::start(
        r#"offline = { enabled = true, webhook_secret = "refund-test-webhook-secret-0001" }"#,
    )
    .await;
    let (database, issuer) = (&payment.database, &payment.issuer);
    let http = payment.http.clone();
    let mut grpc = pb::payment_service_client::PaymentServiceClient::connect(payment.grpc.clone())
        .await
        .unwrap();
    let token = issuer.service_token("order", "payment");
    let order = Uuid::now_v7();
    let intent = grpc
        .create_payment_intent(with_token(
            &token,
            pb::CreatePaymentIntentRequest {
                order_id: order.to_string(),
                user_id: Uuid::now_v7().to_string(),
                amount: Some(Money {
                    amount: "30.00".into(),
                    currency: "USD".into(),
                }),
                gateway: "offline".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let refund = |amount: Option<&str>, key: &str| {
        with_token(
            &token,
            pb::RefundPaymentRequest {
                order_id: order.to_string(),
                amount: amount.map(|amount| Money {
                    amount: amount.into(),
                    currency: "USD".into(),
                }),
                reason: "test".into(),
                idempotency_key: key.into(),
            },
        )
    };
    // Nothing to refund before the customer paid.
    let unpaid = grpc.refund_payment(refund(None, "r-0")).await.unwrap_err();
    assert_eq!(unpaid.code(), tonic::Code::FailedPrecondition);

    // The provider reports the payment (signed like any delivery).
    let reference: String =
        sqlx::query_scalar("SELECT provider_reference FROM payments WHERE id = $1::uuid")
            .bind(&intent.payment_id)
            .fetch_one(&database.pool)
            .await
            .unwrap();
    let body = serde_json::to_vec(&serde_json::json!({
        "id": "evt_r1", "type": "payment.succeeded", "reference": reference
    }))
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let delivered = reqwest::Client::new()
        .post(format!("{http}/v1/payments/webhooks/offline"))
        .header(
            "offline-signature",
            commerce_payment::signature::sign("refund-test-webhook-secret-0001", now, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), 200);

    let partial = grpc
        .refund_payment(refund(Some("10.00"), "r-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (partial.status.as_str(), partial.payment_status.as_str()),
        ("succeeded", "succeeded")
    );
    assert_eq!(partial.amount.unwrap().amount, "10.00");
    let repeated = grpc
        .refund_payment(refund(Some("10.00"), "r-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        repeated.refund_id, partial.refund_id,
        "same key, same refund"
    );
    let too_much = grpc
        .refund_payment(refund(Some("25.00"), "r-2"))
        .await
        .unwrap_err();
    // The caller's amount is its input: refused on the field, with what is left.
    assert_eq!(too_much.code(), tonic::Code::InvalidArgument);
    assert!(
        too_much.message().starts_with("amount:") && too_much.message().contains("20"),
        "{}",
        too_much.message()
    );
    let wrong_currency = grpc
        .refund_payment(with_token(
            &token,
            pb::RefundPaymentRequest {
                order_id: order.to_string(),
                amount: Some(Money {
                    amount: "1".into(),
                    currency: "EUR".into(),
                }),
                reason: String::new(),
                idempotency_key: "r-3".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong_currency.code(), tonic::Code::InvalidArgument);
    let no_key = grpc.refund_payment(refund(None, " ")).await.unwrap_err();
    assert_eq!(no_key.code(), tonic::Code::InvalidArgument);
    assert!(no_key.message().contains("idempotency_key"));

    let rest = grpc
        .refund_payment(refund(None, "r-4"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.amount.unwrap().amount, "20.00");
    assert_eq!(rest.payment_status, "refunded");
    let nothing_left = grpc.refund_payment(refund(None, "r-5")).await.unwrap_err();
    assert_eq!(nothing_left.code(), tonic::Code::FailedPrecondition);
    let (refunded, refunds, events): (rust_decimal::Decimal, i64, i64) = sqlx::query_as(
        "SELECT p.refunded_amount,
                (SELECT count(*) FROM refunds WHERE payment_id = p.id),
                (SELECT count(*) FROM outbox_events WHERE event_type = 'commerce.payment.v1.PaymentRefunded')
         FROM payments p WHERE p.order_id = $1",
    )
    .bind(order)
    .fetch_one(&database.pool)
    .await
    .unwrap();
    assert_eq!(refunded, rust_decimal::Decimal::from(30));
    assert_eq!((refunds, events), (2, 2));
    payment.stop().await;
}

fn offline_intent(order: Uuid, customer: Uuid) -> pb::CreatePaymentIntentRequest {
    pb::CreatePaymentIntentRequest {
        order_id: order.to_string(),
        user_id: customer.to_string(),
        amount: Some(Money {
            amount: "19.00".into(),
            currency: "USD".into(),
        }),
        gateway: "offline".into(),
    }
}

#[tokio::test]
async fn the_offline_gateway_is_off_unless_enabled() {
    // As a Shop runs the service unless its spec says otherwise.
    let payment = PaymentUnderTest::start("").await;
    let http = payment.http.clone();
    let client = reqwest::Client::new();
    let mut grpc = pb::payment_service_client::PaymentServiceClient::connect(payment.grpc.clone())
        .await
        .unwrap();
    let token = payment.issuer.service_token("order", "payment");

    let offered: serde_json::Value = client
        .get(format!("{http}/v1/payments/gateways"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(offered["items"], serde_json::json!([]));
    let listed = grpc
        .list_gateways(with_token(&token, pb::ListGatewaysRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.gateways.is_empty(), "{:?}", listed.gateways);

    // No intent, no settling, no webhook.
    let customer = Uuid::now_v7();
    let refused = grpc
        .create_payment_intent(with_token(&token, offline_intent(Uuid::now_v7(), customer)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("`offline` is not offered"),
        "{}",
        refused.message()
    );
    let pay = client
        .post(format!("{http}/v1/payments/{}/offline/pay", Uuid::now_v7()))
        .bearer_auth(payment.issuer.user_token(customer, "customer"))
        .send()
        .await
        .unwrap();
    assert_eq!(pay.status(), 404);
    let webhook = client
        .post(format!("{http}/v1/payments/webhooks/offline"))
        .header("offline-signature", "t=1,v1=00")
        .body(r#"{"id":"evt_1","type":"payment.succeeded","reference":"off_x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 404);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&payment.database.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    payment.stop().await;
}

#[tokio::test]
async fn only_the_owner_or_an_admin_settles_an_offline_payment() {
    let payment = PaymentUnderTest::start("offline = { enabled = true }").await;
    let http = payment.http.clone();
    let issuer = &payment.issuer;
    let client = reqwest::Client::new();
    let mut grpc = pb::payment_service_client::PaymentServiceClient::connect(payment.grpc.clone())
        .await
        .unwrap();
    let token = issuer.service_token("order", "payment");
    let listed = grpc
        .list_gateways(with_token(&token, pb::ListGatewaysRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.gateways, ["offline"]);

    let (owner, stranger) = (Uuid::now_v7(), Uuid::now_v7());
    let open = |order: Uuid| {
        let mut grpc = grpc.clone();
        let request = with_token(&token, offline_intent(order, owner));
        async move {
            grpc.create_payment_intent(request)
                .await
                .unwrap()
                .into_inner()
                .payment_id
        }
    };
    let (first, second) = (open(Uuid::now_v7()).await, open(Uuid::now_v7()).await);
    let pay = |id: &str, token: String| {
        client
            .post(format!("{http}/v1/payments/{id}/offline/pay"))
            .bearer_auth(token)
            .send()
    };
    let read = |id: &str, token: String| {
        client
            .get(format!("{http}/v1/payments/{id}"))
            .bearer_auth(token)
            .send()
    };

    // Support staff read any payment but settle none.
    let support = issuer.user_token(Uuid::now_v7(), "support");
    assert_eq!(read(&first, support.clone()).await.unwrap().status(), 200);
    let refused = pay(&first, support).await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("support staff may only read"),
        "{body}"
    );
    // Another customer does not even see it.
    let stranger = issuer.user_token(stranger, "customer");
    assert_eq!(read(&first, stranger.clone()).await.unwrap().status(), 404);
    assert_eq!(pay(&first, stranger).await.unwrap().status(), 404);
    let status = |id: String| {
        let pool = payment.database.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM payments WHERE id = $1::uuid")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(status(first.clone()).await, "requires_payment");

    // The owner settles their own; an admin may settle anyone's.
    let owner_token = issuer.user_token(owner, "customer");
    assert_eq!(pay(&first, owner_token).await.unwrap().status(), 200);
    let admin = issuer.user_token(Uuid::now_v7(), "admin");
    assert_eq!(pay(&second, admin).await.unwrap().status(), 200);
    assert_eq!(status(first).await, "succeeded");
    assert_eq!(status(second).await, "succeeded");
    payment.stop().await;
}
