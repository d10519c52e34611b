//! After payment: the journey from cart to doorstep, and changing the delivery of an unpaid
//! order with its payment following.

use std::time::Duration;

use commerce_proto::order::v1 as order_pb;
use commerce_testkit::eventually;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::shop::*;

/// The whole journey on the real servers: register → verify → cart → checkout → order →
/// signed payment webhook → confirmed → shipment with the carrier → shipped → delivered.
async fn an_order_travels_from_cart_to_doorstep(engine: Engine) {
    let shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let (bob, _) = shop.user("customer").await;
    let lamp = shop.product(&admin, "45.00", 4).await;
    let session = shop.checkout(&alice, &[(&lamp, 1)], None).await;
    let (status, placed) = shop.place(&alice, "journey", &session).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order = placed["orderId"].as_str().unwrap().to_owned();
    let paid = json!({"id": "evt_journey", "type": "payment.succeeded", "reference": shop.reference(&order).await});
    let (status, _) = shop.webhook(&paid, OFFLINE_SECRET, now()).await;
    assert_eq!(status, StatusCode::OK);
    shop.await_status(&order, "CONFIRMED").await;

    // The fulfillment service ships it (the local carrier) and the order hears of it.
    let fulfillment = format!("{}/v1/fulfillments/{order}", shop.fulfillment);
    let client = shop.client.clone();
    let token = alice.clone();
    let url = fulfillment.clone();
    let shipment = eventually(
        Duration::from_secs(30),
        "the shipment to be created",
        || {
            let (client, token, url) = (client.clone(), token.clone(), url.clone());
            async move {
                let body: Value = client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (body["status"] == "IN_PROGRESS").then_some(body)
            }
        },
    )
    .await;
    let tracking = shipment["trackingId"].as_str().unwrap().to_owned();
    assert!(tracking.starts_with("LOC"), "{shipment}");
    assert_eq!(shipment["courier"], "standard");
    let (status, _) = shop
        .send(shop.client.get(&fulfillment).bearer_auth(&bob))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not Bob's shipment");
    shop.await_note(&order, "shipment created").await;

    // Staff report the parcel's progress; statuses only move forward.
    let report = |token: &str, status: &str| {
        shop.client
            .patch(format!(
                "{}/v1/admin/fulfillments/{order}",
                shop.fulfillment
            ))
            .bearer_auth(token.to_owned())
            .json(&json!({"status": status}))
    };
    let (status, _) = shop.send(report(&alice, "SHIPPED")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = shop.send(report(&admin, "LOST")).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("status"))
    );
    let (status, body) = shop.send(report(&admin, "SHIPPED")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("SHIPPED")),
        "{body}"
    );
    shop.await_status(&order, "SHIPPED").await;
    let (status, body) = shop
        .send(
            shop.client
                .post(format!("{}/v1/orders/{order}/cancel", shop.order))
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = shop.send(report(&admin, "DELIVERED")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("DELIVERED"))
    );
    shop.await_status(&order, "DELIVERED").await;
    let (_, body) = shop.send(report(&admin, "SHIPPED")).await;
    assert_eq!(body["status"], "DELIVERED", "no going back");
    let history: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM order_status_history WHERE order_id = $1::uuid ORDER BY id",
    )
    .bind(&order)
    .fetch_all(&shop.order_pool)
    .await
    .unwrap();
    let mut statuses = history.clone();
    statuses.dedup();
    assert_eq!(
        statuses,
        vec![
            "PLACING",
            "PENDING_PAYMENT",
            "PAID",
            "CONFIRMED",
            "SHIPPED",
            "DELIVERED"
        ],
        "{history:?}"
    );
    assert_eq!(shop.stock(&lamp).await, (3, 0));
    shop.stop().await;
}

async fn the_delivery_changes_while_unpaid_and_the_payment_follows(engine: Engine) {
    let shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let (bob, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "10.00", 10).await;
    let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
    let (_, placed) = shop.place(&alice, "d-1", &session).await;
    let order = placed["orderId"].as_str().unwrap().to_owned();
    let first_secret = placed["clientSecret"].as_str().unwrap().to_owned();
    let (_, before) = shop
        .send(
            shop.client
                .get(format!("{}/v1/orders/{order}", shop.order))
                .bearer_auth(&alice),
        )
        .await;
    let subtotal = decimal(&before["totals"]["subtotal"]);

    // Someone else's order is not found; bad input names the field and changes nothing.
    let (status, _) = shop
        .send(shop.change_delivery(&bob, &order, json!({"courier": "express"})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (body, field) in [
        (json!({}), "address"),
        (json!({"courier": " "}), "courier"),
        (
            json!({"address": {"recipient": "A", "line1": "B", "city": "C", "postalCode": "1", "country": "Germany"}}),
            "address.country",
        ),
        (
            json!({"address": {"recipient": "", "line1": "B", "city": "C", "postalCode": "1", "country": "DE"}}),
            "address.recipient",
        ),
    ] {
        let (status, error) = shop.send(shop.change_delivery(&alice, &order, body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }

    // Express instead of standard: shipping quoted again, the payment re-priced with a
    // new intent, and the owner gets its secret.
    let (status, changed) = shop
        .send(shop.change_delivery(&alice, &order, json!({"courier": "Express"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["courier"], "express");
    assert_eq!(changed["status"], "PENDING_PAYMENT");
    let express_total = subtotal + rust_decimal::Decimal::new(1490, 2);
    assert_eq!(decimal(&changed["totals"]["total"]), express_total);
    let second_secret = changed["clientSecret"].as_str().unwrap().to_owned();
    assert_ne!(second_secret, first_secret);
    assert_eq!(shop.payment_pricing(&order).await, (express_total, 1, 1));
    // Asking for what the order already has changes nothing.
    let (status, same) = shop
        .send(shop.change_delivery(&alice, &order, json!({"courier": "express"})))
        .await;
    assert_eq!(
        (status, &same["clientSecret"]),
        (StatusCode::OK, &json!(second_secret))
    );
    assert_eq!(shop.payment_pricing(&order).await.1, 1);

    // A courier that does not serve the new country is refused; the order keeps its delivery.
    let (status, refused) = shop
        .send(shop.change_delivery(
            &alice,
            &order,
            json!({"courier": "pickup", "address": berlin()}),
        ))
        .await;
    assert!(status.is_client_error(), "{status} {refused}");
    let (_, unchanged) = shop
        .send(
            shop.client
                .get(format!("{}/v1/orders/{order}", shop.order))
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(unchanged["courier"], "express");
    assert_eq!(unchanged["shippingAddress"]["country"], "US");
    assert_eq!(shop.payment_pricing(&order).await.1, 1);

    // Abroad with express: the rest-of-world rate.
    let (status, abroad) = shop
        .send(shop.change_delivery(&alice, &order, json!({"address": berlin()})))
        .await;
    assert_eq!(status, StatusCode::OK, "{abroad}");
    assert_eq!(abroad["shippingAddress"]["country"], "DE");
    assert_eq!(abroad["shippingAddress"]["city"], "Berlin");
    let abroad_total = subtotal + rust_decimal::Decimal::new(4900, 2);
    assert_eq!(decimal(&abroad["totals"]["total"]), abroad_total);
    assert_eq!(shop.payment_pricing(&order).await, (abroad_total, 2, 2));

    // Paid at the new price: confirmed with the new delivery, which the shipment follows.
    shop.pay(&alice, &order).await;
    shop.await_status(&order, "CONFIRMED").await;
    let confirmed = shop
        .events("commerce.order.v1.OrderConfirmed", &order)
        .await;
    let confirmed = order_pb::OrderConfirmed::decode(confirmed[0].as_slice())
        .unwrap()
        .order
        .unwrap();
    assert_eq!(confirmed.courier, "express");
    assert_eq!(confirmed.shipping_address.unwrap().country, "DE");
    assert_eq!(
        confirmed
            .total
            .unwrap()
            .amount
            .parse::<rust_decimal::Decimal>()
            .unwrap(),
        abroad_total
    );
    // Too late now.
    let (status, late) = shop
        .send(shop.change_delivery(&alice, &order, json!({"courier": "standard"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{late}");
    assert!(
        late["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CONFIRMED")
    );
    shop.stop().await;
}

on_both_engines!(
    an_order_travels_from_cart_to_doorstep,
    the_delivery_changes_while_unpaid_and_the_payment_follows,
);
