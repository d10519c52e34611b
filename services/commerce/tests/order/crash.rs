//! The order service killed at every step of every saga (the effect made, not recorded): the
//! restarted service finishes each saga with every effect exactly once. The step lists come
//! from the order crate, so a new step is crash-tested without anyone adding it here.

use commerce_order::delivery::DELIVERY_STEPS;
use commerce_order::lifecycle::{CANCEL_STEPS, EXPIRY_STEPS, PAYMENT_STEPS};
use commerce_order::workflow::{order_workflow_id, payment_workflow_id};
use reqwest::StatusCode;
use serde_json::json;

use crate::shop::*;

async fn a_crash_at_every_step_resumes_after_restart(engine: Engine) {
    let mut shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "15.00", 100).await;
    let mut reserved = 0;
    for step in shop.placement_steps() {
        let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
        shop.stop_order();
        shop.start_order(&[&format!("after:{step}")]).await;
        let key = format!("crash-{step}");
        // The process dies with the step's effect made but not recorded.
        let cut_off = shop
            .place_request(&alice, Some(&key), &session)
            .send()
            .await;
        assert!(
            cut_off.is_err(),
            "{step}: the request should have been cut off"
        );
        shop.await_order_crash().await;
        shop.start_order(&[]).await;
        // The client retries with its key: the resumed saga's answer.
        let (status, body) = shop.place(&alice, &key, &session).await;
        assert_eq!(status, StatusCode::CREATED, "{step}: {body}");
        let order = body["orderId"].as_str().unwrap().to_owned();
        assert_eq!(shop.order_status(&order).await, "PENDING_PAYMENT", "{step}");
        reserved += 2;
        assert_eq!(
            shop.stock(&mug).await,
            (100, reserved),
            "{step}: reserved once"
        );
        let payments: i64 =
            sqlx::query_scalar("SELECT count(*) FROM payments WHERE order_id = $1::uuid")
                .bind(&order)
                .fetch_one(&shop.payment_pool)
                .await
                .unwrap();
        assert_eq!(payments, 1, "{step}");
        assert_eq!(
            shop.events("commerce.order.v1.OrderCreated", &order)
                .await
                .len(),
            1,
            "{step}: OrderCreated once"
        );
        let workflow = order_workflow_id(order.parse().unwrap());
        assert_eq!(
            shop.step_runs(&order, &workflow, step).await,
            shop.runs_recorded_across_a_crash(),
            "{step}: ran before the crash and again after it"
        );
    }

    // A crash in the middle of compensating: the restarted process finishes undoing.
    let (status, promo) = shop
        .send(
            shop.client
                .post(format!("{}/v1/admin/promo-codes", shop.cart))
                .bearer_auth(&admin)
                .json(&json!({
                    "code": "GONE", "kind": "fixed", "value": "1", "currency": "USD", "maxUses": 5
                })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{promo}");
    let session = shop.checkout(&alice, &[(&mug, 2)], Some("GONE")).await;
    sqlx::query("UPDATE promo_codes SET uses = max_uses WHERE code = 'GONE'")
        .execute(&shop.cart_pool)
        .await
        .unwrap();
    shop.stop_order();
    shop.start_order(&["compensated:create_payment_intent"])
        .await;
    let cut_off = shop
        .place_request(&alice, Some("crash-compensating"), &session)
        .send()
        .await;
    assert!(cut_off.is_err());
    shop.await_order_crash().await;
    shop.start_order(&[]).await;
    let (status, body) = shop.place(&alice, "crash-compensating", &session).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let order = body["error"]["orderId"].as_str().unwrap().to_owned();
    assert_eq!(shop.order_status(&order).await, "FAILED");
    assert_eq!(
        shop.stock(&mug).await,
        (100, reserved),
        "the reservation went back"
    );
    let payment: String =
        sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1::uuid")
            .bind(&order)
            .fetch_one(&shop.payment_pool)
            .await
            .unwrap();
    assert_eq!(payment, "canceled");
    shop.stop().await;
}

/// The process dies right after storing the order, before its saga took a step (on
/// Temporal: before its workflow started), and the customer never retries: the order is
/// placed all the same.
async fn an_order_cut_off_before_its_saga_began_is_placed_without_a_retry(engine: Engine) {
    let mut shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "15.00", 10).await;
    let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
    shop.stop_order();
    shop.start_order(&[match engine {
        Engine::Postgres => "before:get_checkout_session",
        Engine::Temporal => "before:start_workflow",
    }])
    .await;
    let cut_off = shop
        .place_request(&alice, Some("cut-off"), &session)
        .send()
        .await;
    assert!(cut_off.is_err(), "the request should have been cut off");
    shop.await_order_crash().await;
    let order: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM orders WHERE checkout_session_id = $1::uuid")
            .bind(&session)
            .fetch_one(&shop.order_pool)
            .await
            .unwrap();
    assert_eq!(shop.order_status(&order.to_string()).await, "PLACING");

    shop.start_order(&[]).await;
    shop.await_status(&order.to_string(), "PENDING_PAYMENT")
        .await;
    assert_eq!(shop.stock(&mug).await, (10, 2));
    // A late retry gets that order.
    let (status, body) = shop.place(&alice, "cut-off", &session).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["orderId"], order.to_string());
    shop.stop().await;
}

/// Kills the order service after each step of the payment saga (effect made, not
/// recorded) and checks the restarted one finishes it with every effect exactly once.
async fn a_crash_at_every_payment_step_resumes_after_restart(engine: Engine) {
    let mut shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "15.00", 100).await;
    let mut sold = 0;
    for &step in PAYMENT_STEPS {
        shop.stop_order();
        shop.start_order(&[&format!("after:{step}")]).await;
        let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
        let (status, placed) = shop
            .place(&alice, &format!("paycrash-{step}"), &session)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        let order = placed["orderId"].as_str().unwrap().to_owned();
        shop.pay(&alice, &order).await;
        shop.await_order_crash().await;
        shop.start_order(&[]).await;
        shop.await_status(&order, "CONFIRMED").await;
        shop.await_sagas_done(&order).await;
        sold += 2;
        assert_eq!(
            shop.stock(&mug).await,
            (100 - sold, 0),
            "{step}: deducted once"
        );
        assert_eq!(
            shop.events("commerce.order.v1.OrderConfirmed", &order)
                .await
                .len(),
            1,
            "{step}"
        );
        assert_eq!(
            shop.payment_status(&order).await,
            "succeeded",
            "{step}: not refunded"
        );
        let workflow = payment_workflow_id(order.parse().unwrap());
        assert_eq!(
            shop.step_runs(&order, &workflow, step).await,
            shop.runs_recorded_across_a_crash(),
            "{step}: ran before the crash and again after it"
        );
    }
    shop.stop().await;
}

/// The same for the cancel saga, on paid and confirmed orders.
async fn a_crash_at_every_cancel_step_resumes_after_restart(engine: Engine) {
    let mut shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "15.00", 100).await;
    let steps = CANCEL_STEPS;
    let mut confirmed = Vec::new();
    for step in steps {
        let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
        let (_, placed) = shop
            .place(&alice, &format!("cancelcrash-{step}"), &session)
            .await;
        let order = placed["orderId"].as_str().unwrap().to_owned();
        shop.pay(&alice, &order).await;
        shop.await_status(&order, "CONFIRMED").await;
        confirmed.push(order);
    }
    let mut sold = 2 * steps.len() as i64;
    assert_eq!(shop.stock(&mug).await, (100 - sold, 0));
    for (step, order) in steps.iter().zip(confirmed) {
        shop.stop_order();
        shop.start_order(&[&format!("after:{step}")]).await;
        let cut_off = shop
            .client
            .post(format!("{}/v1/orders/{order}/cancel", shop.order))
            .bearer_auth(&alice)
            .send()
            .await;
        assert!(
            cut_off.is_err(),
            "{step}: the request should have been cut off"
        );
        shop.await_order_crash().await;
        shop.start_order(&[]).await;
        // The customer asks again: the resumed saga's answer.
        let (status, body) = shop
            .send(
                shop.client
                    .post(format!("{}/v1/orders/{order}/cancel", shop.order))
                    .bearer_auth(&alice),
            )
            .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("CANCELED")),
            "{step}: {body}"
        );
        sold -= 2;
        assert_eq!(
            shop.stock(&mug).await,
            (100 - sold, 0),
            "{step}: restocked once"
        );
        assert_eq!(shop.payment_status(&order).await, "refunded", "{step}");
        let refunds: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE p.order_id = $1::uuid",
        )
        .bind(&order)
        .fetch_one(&shop.payment_pool)
        .await
        .unwrap();
        assert_eq!(refunds, 1, "{step}: refunded once");
        assert_eq!(
            shop.events("commerce.order.v1.OrderCanceled", &order)
                .await
                .len(),
            1,
            "{step}"
        );
    }
    assert_eq!(shop.stock(&mug).await, (100, 0));
    shop.stop().await;
}

/// The same for the expiry saga.
async fn a_crash_at_every_expiry_step_resumes_after_restart(engine: Engine) {
    let mut shop = Shop::start_with(engine, &[("REMINDERS", "[]"), ("PAYMENT_WINDOW", "2s")]).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "15.00", 100).await;
    for &step in EXPIRY_STEPS {
        shop.stop_order();
        shop.start_order(&[&format!("after:{step}")]).await;
        let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
        let (status, placed) = shop
            .place(&alice, &format!("expirycrash-{step}"), &session)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        let order = placed["orderId"].as_str().unwrap().to_owned();
        shop.await_order_crash().await;
        shop.start_order(&[]).await;
        shop.await_status(&order, "EXPIRED").await;
        shop.await_reserved(&mug, 0).await;
        // The next process's failpoint must not meet a step of this order still in flight.
        shop.await_sagas_done(&order).await;
        assert_eq!(shop.stock(&mug).await, (100, 0), "{step}");
        assert_eq!(shop.payment_status(&order).await, "canceled", "{step}");
        assert_eq!(
            shop.events("commerce.order.v1.OrderExpired", &order)
                .await
                .len(),
            1,
            "{step}"
        );
    }
    shop.stop().await;
}

/// Kills the order service after each step of the delivery-change saga and checks the
/// change is applied exactly once after a restart (the customer asking again).
async fn a_crash_at_every_delivery_change_step_resumes_after_restart(engine: Engine) {
    let mut shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "10.00", 100).await;
    for &step in DELIVERY_STEPS {
        shop.stop_order();
        shop.start_order(&[]).await;
        let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
        let (_, placed) = shop
            .place(&alice, &format!("deliverycrash-{step}"), &session)
            .await;
        let order = placed["orderId"].as_str().unwrap().to_owned();
        shop.stop_order();
        shop.start_order(&[&format!("after:{step}")]).await;
        let cut_off = shop
            .change_delivery(&alice, &order, json!({"courier": "express"}))
            .send()
            .await;
        assert!(
            cut_off.is_err(),
            "{step}: the request should have been cut off"
        );
        shop.await_order_crash().await;
        shop.start_order(&[]).await;
        let (status, changed) = shop
            .send(shop.change_delivery(&alice, &order, json!({"courier": "express"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{step}: {changed}");
        assert_eq!(changed["courier"], "express", "{step}");
        let total = decimal(&changed["totals"]["total"]);
        assert_eq!(
            shop.payment_pricing(&order).await,
            (total, 1, 1),
            "{step}: re-priced exactly once"
        );
        let open: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT delivery_change_id FROM orders WHERE id = $1::uuid")
                .bind(&order)
                .fetch_one(&shop.order_pool)
                .await
                .unwrap();
        assert_eq!(open, None, "{step}: the change is closed");
        shop.pay(&alice, &order).await;
        shop.await_status(&order, "CONFIRMED").await;
    }

    // Paid at the old price while a change was half done: the change gives way, the
    // order is confirmed as it was paid.
    let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
    let (_, placed) = shop.place(&alice, "deliverycrash-paid", &session).await;
    let order = placed["orderId"].as_str().unwrap().to_owned();
    shop.stop_order();
    shop.start_order(&["after:quote_delivery"]).await;
    let cut_off = shop
        .change_delivery(&alice, &order, json!({"courier": "express"}))
        .send()
        .await;
    assert!(cut_off.is_err());
    shop.await_order_crash().await;
    shop.pay(&alice, &order).await;
    shop.start_order(&[]).await;
    let (status, refused) = shop
        .send(shop.change_delivery(&alice, &order, json!({"courier": "express"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    shop.await_status(&order, "CONFIRMED").await;
    let (_, confirmed) = shop
        .send(
            shop.client
                .get(format!("{}/v1/orders/{order}", shop.order))
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(confirmed["courier"], "standard");
    assert_eq!(shop.payment_pricing(&order).await.1, 0, "never re-priced");
    shop.stop().await;
}

on_both_engines!(
    a_crash_at_every_step_resumes_after_restart,
    an_order_cut_off_before_its_saga_began_is_placed_without_a_retry,
    a_crash_at_every_payment_step_resumes_after_restart,
    a_crash_at_every_cancel_step_resumes_after_restart,
    a_crash_at_every_expiry_step_resumes_after_restart,
    a_crash_at_every_delivery_change_step_resumes_after_restart,
);
