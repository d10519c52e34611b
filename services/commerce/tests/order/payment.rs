//! Paying for orders: reminders while unpaid and expiry, the offline gateway and signed
//! webhooks, and money that arrives too late.

use std::time::Duration;

use commerce_proto::order::v1 as order_pb;
use prost::Message;
use reqwest::StatusCode;
use serde_json::json;

use crate::shop::*;

async fn reminders_go_out_while_unpaid_and_the_order_expires(engine: Engine) {
    let shop = Shop::start_with(
        engine,
        &[("REMINDERS", r#"["1s", "2s"]"#), ("PAYMENT_WINDOW", "4s")],
    )
    .await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "15.00", 10).await;
    let unpaid_session = shop.checkout(&alice, &[(&mug, 1)], None).await;
    let (status, unpaid) = shop.place(&alice, "unpaid", &unpaid_session).await;
    assert_eq!(status, StatusCode::CREATED, "{unpaid}");
    let paid_session = shop.checkout(&alice, &[(&mug, 2)], None).await;
    let (status, paid) = shop.place(&alice, "paid", &paid_session).await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    let unpaid = unpaid["orderId"].as_str().unwrap().to_owned();
    let paid = paid["orderId"].as_str().unwrap().to_owned();
    // The other order is paid at once: from then on, reminders and expiry leave it alone.
    shop.pay(&alice, &paid).await;
    shop.await_status(&paid, "CONFIRMED").await;

    shop.await_status(&unpaid, "EXPIRED").await;
    let reminders: Vec<i32> = shop
        .events("commerce.order.v1.PaymentReminderDue", &unpaid)
        .await
        .iter()
        .map(|payload| {
            order_pb::PaymentReminderDue::decode(payload.as_slice())
                .unwrap()
                .reminder
        })
        .collect();
    assert_eq!(reminders, vec![1, 2]);
    assert_eq!(
        shop.events("commerce.order.v1.OrderExpired", &unpaid)
            .await
            .len(),
        1
    );
    // The unpaid order's stock comes back (the expiry saga's last step) and its intent is
    // canceled; the paid order's units are sold.
    shop.await_reserved(&mug, 0).await;
    assert_eq!(shop.stock(&mug).await, (8, 0));
    let payments: std::collections::HashMap<String, String> =
        shop.payment_statuses().await.into_iter().collect();
    assert_eq!(payments[&unpaid], "canceled");
    assert_eq!(payments[&paid], "succeeded");
    // A reminder that fell due before the payment arrived may have gone out; none after:
    // every reminder of the paid order was written before its confirmation.
    let reminders_after_payment: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events r
         WHERE r.aggregate_id = $1 AND r.event_type = 'commerce.order.v1.PaymentReminderDue'
           AND r.seq > (SELECT c.seq FROM outbox_events c
                        WHERE c.aggregate_id = $1 AND c.event_type = 'commerce.order.v1.OrderConfirmed')",
    )
    .bind(&paid)
    .fetch_one(&shop.order_pool)
    .await
    .unwrap();
    assert_eq!(reminders_after_payment, 0);
    assert!(
        shop.events("commerce.order.v1.OrderExpired", &paid)
            .await
            .is_empty()
    );
    assert_eq!(shop.order_status(&paid).await, "CONFIRMED");
    shop.stop().await;
}

async fn paying_confirms_the_order_deducts_stock_and_stops_reminders(engine: Engine) {
    // Long enough for the payment below to come first on a loaded machine.
    let shop = Shop::start_with(
        engine,
        &[("REMINDERS", r#"["8s"]"#), ("PAYMENT_WINDOW", "10s")],
    )
    .await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let (bob, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "12.00", 10).await;
    let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
    let placing = tokio::time::Instant::now();
    let (_, placed) = shop.place(&alice, "pay-1", &session).await;
    let order = placed["orderId"].as_str().unwrap().to_owned();

    // Only the payer (or staff) may drive the offline gateway.
    let (status, _) = shop.pay_attempt(&bob, &order, "succeeded").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A declined attempt: noted, the order keeps waiting.
    let (status, body) = shop.pay_attempt(&alice, &order, "failed").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "applied");
    assert_eq!(
        shop.payment_events("commerce.payment.v1.PaymentFailed", &order)
            .await,
        1
    );
    shop.await_note(&order, "payment attempt failed").await;
    assert_eq!(shop.order_status(&order).await, "PENDING_PAYMENT");
    // ... and the customer is told, with what is due and until when.
    let told = shop
        .events("commerce.order.v1.PaymentAttemptFailed", &order)
        .await;
    assert_eq!(told.len(), 1);
    let told = commerce_proto::order::v1::PaymentAttemptFailed::decode(told[0].as_slice()).unwrap();
    let due: rust_decimal::Decimal = told.total.as_ref().unwrap().amount.parse().unwrap();
    assert!(
        due >= rust_decimal::Decimal::from(24),
        "two mugs at 12.00: {told:?}"
    );
    assert!(
        told.payment_due_at.is_some() && !told.reason.is_empty(),
        "{told:?}"
    );

    let (status, body) = shop.pay_attempt(&alice, &order, "succeeded").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    shop.await_status(&order, "CONFIRMED").await;
    assert_eq!(
        shop.stock(&mug).await,
        (8, 0),
        "the reservation became a sale"
    );
    assert_eq!(
        shop.events("commerce.order.v1.OrderConfirmed", &order)
            .await
            .len(),
        1
    );
    let (status, _) = shop.pay_attempt(&alice, &order, "succeeded").await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing left to pay");

    // The payment, as its owner sees it.
    let payment: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM payments WHERE order_id = $1::uuid")
            .bind(&order)
            .fetch_one(&shop.payment_pool)
            .await
            .unwrap();
    let (status, view) = shop
        .send(
            shop.client
                .get(format!("{}/v1/payments/{payment}", shop.payment))
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "succeeded");
    let history: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, vec!["requires_payment", "failed", "succeeded"]);
    let (status, _) = shop
        .send(
            shop.client
                .get(format!("{}/v1/payments/{payment}", shop.payment))
                .bearer_auth(&bob),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Past the reminder and the window: no reminder, no expiry for a paid order.
    assert!(
        placing.elapsed() < Duration::from_secs(8),
        "paid before the reminder was due"
    );
    tokio::time::sleep_until(placing + Duration::from_secs(11)).await;
    assert!(
        shop.events("commerce.order.v1.PaymentReminderDue", &order)
            .await
            .is_empty()
    );
    assert_eq!(shop.order_status(&order).await, "CONFIRMED");

    // Admin analytics count it.
    let (status, stats) = shop
        .send(
            shop.client
                .get(format!("{}/v1/admin/payments/stats", shop.payment))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["byStatus"]["succeeded"]["USD"]["count"], 1, "{stats}");
    assert_eq!(stats["byGateway"]["offline"]["USD"]["count"], 1, "{stats}");
    let (status, _) = shop
        .send(
            shop.client
                .get(format!("{}/v1/admin/payments/stats", shop.payment))
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    shop.stop().await;
}

#[tokio::test]
async fn webhooks_are_authenticated_and_take_effect_once() {
    let shop = Shop::start(Engine::Postgres).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "12.00", 10).await;
    let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
    let (status, placed) = shop.place(&alice, "hook-1", &session).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order = placed["orderId"].as_str().unwrap().to_owned();
    let paid = json!({"id": "evt_hook_1", "type": "payment.succeeded", "reference": shop.reference(&order).await});

    // Forged, stale, tampered and unsigned deliveries change nothing.
    let (status, body) = shop.webhook(&paid, "not-the-secret", now()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_signature");
    let (status, body) = shop.webhook(&paid, OFFLINE_SECRET, now() - 600).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("old"),
        "{body}"
    );
    let signature = commerce_payment::signature::sign(OFFLINE_SECRET, now(), b"{}");
    let (status, _) = shop
        .send(
            shop.client
                .post(format!("{}/v1/payments/webhooks/offline", shop.payment))
                .header("offline-signature", signature)
                .body(serde_json::to_vec(&paid).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "signed for another body");
    let (status, _) = shop
        .send(
            shop.client
                .post(format!("{}/v1/payments/webhooks/offline", shop.payment))
                .json(&paid),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = shop
        .send(
            shop.client
                .post(format!("{}/v1/payments/webhooks/paypal", shop.payment))
                .json(&paid),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(shop.payment_status(&order).await, "requires_payment");

    // The genuine delivery, three times: one effect.
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let (status, body) = shop.webhook(&paid, OFFLINE_SECRET, now()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        outcomes.push(body["outcome"].as_str().unwrap().to_owned());
    }
    assert_eq!(outcomes, vec!["applied", "duplicate", "duplicate"]);
    // Another event id for the same payment: authentic, but nothing left to do.
    let again =
        json!({"id": "evt_hook_2", "type": "payment.succeeded", "reference": paid["reference"]});
    let (_, body) = shop.webhook(&again, OFFLINE_SECRET, now()).await;
    assert_eq!(body["outcome"], "ignored");
    // An event about a payment nobody knows is accepted and ignored.
    let stray =
        json!({"id": "evt_hook_3", "type": "payment.succeeded", "reference": "off_unknown"});
    let (status, body) = shop.webhook(&stray, OFFLINE_SECRET, now()).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("ignored"))
    );

    shop.await_status(&order, "CONFIRMED").await;
    assert_eq!(
        shop.payment_events("commerce.payment.v1.PaymentSucceeded", &order)
            .await,
        1
    );
    assert_eq!(
        shop.events("commerce.order.v1.OrderConfirmed", &order)
            .await
            .len(),
        1
    );
    assert_eq!(shop.stock(&mug).await, (9, 0));
    shop.stop().await;
}

async fn a_payment_after_expiry_is_refunded_not_confirmed(engine: Engine) {
    let shop = Shop::start_with(engine, &[("REMINDERS", "[]"), ("PAYMENT_WINDOW", "2s")]).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "12.00", 10).await;
    let session = shop.checkout(&alice, &[(&mug, 3)], None).await;
    let (_, placed) = shop.place(&alice, "late", &session).await;
    let order = placed["orderId"].as_str().unwrap().to_owned();
    shop.await_status(&order, "EXPIRED").await;
    shop.await_reserved(&mug, 0).await;
    assert_eq!(shop.payment_status(&order).await, "canceled");
    // The offline gateway will not take money for it any more...
    let (status, _) = shop.pay_attempt(&alice, &order, "succeeded").await;
    assert_eq!(status, StatusCode::CONFLICT);
    // ...but a provider that took it anyway is believed, and the money goes back.
    let late = json!({"id": "evt_late", "type": "payment.succeeded", "reference": shop.reference(&order).await});
    let (status, body) = shop.webhook(&late, OFFLINE_SECRET, now()).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    shop.await_payment_status(&order, "refunded").await;
    assert_eq!(
        shop.payment_events("commerce.payment.v1.PaymentRefunded", &order)
            .await,
        1
    );
    assert_eq!(shop.order_status(&order).await, "EXPIRED");
    assert!(
        shop.events("commerce.order.v1.OrderConfirmed", &order)
            .await
            .is_empty()
    );
    assert_eq!(
        shop.events("commerce.order.v1.OrderExpired", &order)
            .await
            .len(),
        1
    );
    assert_eq!(shop.stock(&mug).await, (10, 0));
    shop.stop().await;
}

on_both_engines!(
    reminders_go_out_while_unpaid_and_the_order_expires,
    paying_confirms_the_order_deducts_stock_and_stops_reminders,
    a_payment_after_expiry_is_refunded_not_confirmed,
);
