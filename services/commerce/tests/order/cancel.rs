//! Canceling orders before they ship, with stock and money returned.

use reqwest::StatusCode;
use serde_json::json;

use crate::shop::*;

async fn orders_are_canceled_before_shipping_with_stock_and_money_returned(engine: Engine) {
    let shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let (bob, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "12.00", 20).await;
    let cancel = |token: &str, order: &str| {
        shop.client
            .post(format!("{}/v1/orders/{order}/cancel", shop.order))
            .bearer_auth(token.to_owned())
            .json(&json!({"reason": "changed my mind"}))
    };

    // Unpaid: the intent is canceled and the reservation released.
    let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
    let (_, placed) = shop.place(&alice, "c-1", &session).await;
    let unpaid = placed["orderId"].as_str().unwrap().to_owned();
    let (status, _) = shop.send(cancel(&bob, &unpaid)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not Bob's order");
    let (status, canceled) = shop.send(cancel(&alice, &unpaid)).await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["status"], "CANCELED");
    assert_eq!(shop.payment_status(&unpaid).await, "canceled");
    assert_eq!(shop.stock(&mug).await, (20, 0));
    assert_eq!(
        shop.events("commerce.order.v1.OrderCanceled", &unpaid)
            .await
            .len(),
        1
    );
    // Canceling again answers the same, and does nothing more.
    let (status, again) = shop.send(cancel(&alice, &unpaid)).await;
    assert_eq!(
        (status, again["status"].as_str()),
        (StatusCode::OK, Some("CANCELED"))
    );
    assert_eq!(
        shop.events("commerce.order.v1.OrderCanceled", &unpaid)
            .await
            .len(),
        1
    );

    // Paid and confirmed: refunded in full, the sold units back in stock.
    let session = shop.checkout(&alice, &[(&mug, 3)], None).await;
    let (_, placed) = shop.place(&alice, "c-2", &session).await;
    let paid = placed["orderId"].as_str().unwrap().to_owned();
    shop.pay(&alice, &paid).await;
    shop.await_status(&paid, "CONFIRMED").await;
    assert_eq!(shop.stock(&mug).await, (17, 0));
    let (status, canceled) = shop.send(cancel(&alice, &paid)).await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(shop.payment_status(&paid).await, "refunded");
    assert_eq!(
        shop.payment_events("commerce.payment.v1.PaymentRefunded", &paid)
            .await,
        1
    );
    assert_eq!(shop.stock(&mug).await, (20, 0), "restocked");

    // Shipped: too late.
    let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
    let (_, placed) = shop.place(&alice, "c-3", &session).await;
    let shipped = placed["orderId"].as_str().unwrap().to_owned();
    shop.pay(&alice, &shipped).await;
    shop.await_status(&shipped, "CONFIRMED").await;
    shop.ship(&admin, &shipped).await;
    let (status, body) = shop.send(cancel(&alice, &shipped)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SHIPPED")
    );
    assert_eq!(shop.order_status(&shipped).await, "SHIPPED");
    assert_eq!(
        shop.payment_status(&shipped).await,
        "succeeded",
        "not refunded"
    );
    assert_eq!(
        shop.stock(&mug).await,
        (19, 0),
        "the shipped unit stays sold"
    );
    shop.stop().await;
}

on_both_engines!(orders_are_canceled_before_shipping_with_stock_and_money_returned,);
