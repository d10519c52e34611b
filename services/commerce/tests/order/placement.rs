//! Placing orders: across the real services, once per idempotency key, compensated step by
//! step when one fails, and within a promo code's limits when orders race.

use std::collections::HashSet;
use std::time::Duration;

use commerce_proto::order::v1 as order_pb;
use commerce_testkit::eventually;
use prost::Message;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::shop::*;

async fn an_order_is_placed_across_the_real_services(engine: Engine) {
    let shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, alice_id) = shop.user("customer").await;
    let (bob, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "12.50", 10).await;
    let lamp = shop.product(&admin, "30.00", 5).await;
    let session = shop.checkout(&alice, &[(&mug, 2), (&lamp, 1)], None).await;

    // The key is required, and the body is checked, before anything happens.
    let (status, error) = shop.send(shop.place_request(&alice, None, &session)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "Idempotency-Key");
    let (status, error) = shop.place(&alice, "k-1", "not-a-uuid").await;
    assert_eq!(
        (status, error["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("checkoutSessionId"))
    );
    let (status, _) = shop
        .send(
            shop.client
                .post(format!("{}/v1/orders", shop.order))
                .header("Idempotency-Key", "k-anon")
                .json(&json!({"checkoutSessionId": session})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Bob cannot order from Alice's checkout session.
    let (status, error) = shop.place(&bob, "bob-1", &session).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");

    // On Temporal the service is ready only while the server answers.
    let (_, ready) = shop
        .send(shop.client.get(format!("{}/readyz", shop.order_ops)))
        .await;
    let checks: Vec<&str> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["ok"] == true)
        .map(|check| check["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks.contains(&"temporal"),
        engine == Engine::Temporal,
        "{ready}"
    );

    let (status, placed) = shop.place(&alice, "alice-1", &session).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order_id = placed["orderId"].as_str().unwrap().to_owned();
    assert!(!placed["clientSecret"].as_str().unwrap().is_empty());
    let order = &placed["order"];
    assert_eq!(order["status"], "PENDING_PAYMENT");
    assert_eq!(order["items"].as_array().unwrap().len(), 2);
    assert_eq!(order["totals"]["subtotal"], "55.00");
    let shipping = decimal(&order["totals"]["shipping"]);
    assert!(shipping > Decimal::ZERO, "{order}");
    let total = decimal(&order["totals"]["total"]);
    assert_eq!(total, Decimal::new(5500, 2) + shipping, "{order}");
    assert!(order["paymentDueAt"].is_string());

    // Stock is held, the intent exists for the total, the session is used.
    assert_eq!(shop.stock(&mug).await, (10, 2));
    assert_eq!(shop.stock(&lamp).await, (5, 1));
    let (amount, payment_status): (rust_decimal::Decimal, String) =
        sqlx::query_as("SELECT amount, status FROM payments WHERE order_id = $1::uuid")
            .bind(&order_id)
            .fetch_one(&shop.payment_pool)
            .await
            .unwrap();
    assert_eq!(amount, total);
    assert_eq!(payment_status, "requires_payment");
    let session_status: String =
        sqlx::query_scalar("SELECT status FROM checkout_sessions WHERE id = $1::uuid")
            .bind(&session)
            .fetch_one(&shop.cart_pool)
            .await
            .unwrap();
    assert_eq!(session_status, "completed");

    // OrderCreated goes out once, through Kafka to the cart, which closes the cart.
    let created = shop
        .events("commerce.order.v1.OrderCreated", &order_id)
        .await;
    assert_eq!(created.len(), 1);
    let event = order_pb::OrderCreated::decode(created[0].as_slice()).unwrap();
    assert_eq!(event.order.as_ref().unwrap().user_id, alice_id);
    assert_eq!(event.order.unwrap().checkout_session_id, session);
    let cart_pool = shop.cart_pool.clone();
    let session_for_cart = session.clone();
    let order_for_cart = order_id.clone();
    eventually(Duration::from_secs(20), "the cart to be closed by OrderCreated", || {
        let (pool, session, order) = (
            cart_pool.clone(),
            session_for_cart.clone(),
            order_for_cart.clone(),
        );
        async move {
            let row: (String, Option<uuid::Uuid>) = sqlx::query_as(
                "SELECT c.status, c.order_id FROM carts c JOIN checkout_sessions s ON s.cart_id = c.id WHERE s.id = $1::uuid",
            )
            .bind(session)
            .fetch_one(&pool)
            .await
            .ok()?;
            (row.0 == "ordered" && row.1.map(|id| id.to_string()) == Some(order)).then_some(())
        }
    })
    .await;

    // Every step ran once, in order, and nothing was compensated (on Temporal the
    // workflow's timers do what `schedule_payment_reminders` does).
    let expected = shop.placement_steps();
    assert_eq!(shop.steps_done(&order_id).await, expected);
    for step in &expected {
        assert_eq!(shop.attempts(&order_id, step).await, 1, "{step}");
    }
    assert!(shop.compensations(&order_id).await.is_empty());

    // Reading orders: the owner (with the client secret), staff, nobody else.
    let (status, mine) = shop
        .send(
            shop.client
                .get(format!("{}/v1/orders/{order_id}", shop.order))
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["clientSecret"], placed["clientSecret"]);
    let (status, _) = shop
        .send(
            shop.client
                .get(format!("{}/v1/orders/{order_id}", shop.order))
                .bearer_auth(&bob),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, seen) = shop
        .send(
            shop.client
                .get(format!("{}/v1/orders/{order_id}", shop.order))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(seen.get("clientSecret").is_none(), "{seen}");
    let list = |token: &str, query: &str| {
        shop.client
            .get(format!("{}/v1/orders{query}", shop.order))
            .bearer_auth(token.to_owned())
    };
    let (_, alices) = shop.send(list(&alice, "")).await;
    assert_eq!(alices["items"].as_array().unwrap().len(), 1);
    // Bob sees only his own (failed) attempt.
    let (_, bobs) = shop.send(list(&bob, "")).await;
    let bobs = bobs["items"].as_array().unwrap();
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    assert_eq!(bobs[0]["status"], "FAILED");
    assert_ne!(bobs[0]["id"], order_id.as_str());
    let (status, _) = shop.send(list(&bob, &format!("?userId={alice_id}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, by_admin) = shop
        .send(list(&admin, &format!("?userId={alice_id}")))
        .await;
    assert_eq!(by_admin["items"][0]["id"], order_id.as_str());
    let (status, _) = shop.send(list(&alice, "?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Other services read orders over gRPC with a service token, and only with one.
    let channel = tonic::transport::Endpoint::from_shared(shop.order_grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = order_pb::order_service_client::OrderServiceClient::new(channel);
    let denied = grpc
        .get_order(order_pb::GetOrderRequest {
            order_id: order_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    let tokens = commerce_access::ServiceTokenSource::new(
        &shop.auth,
        "cart",
        shop.client_secret("cart"),
        "order",
    );
    let request = tokens
        .authorize(tonic::Request::new(order_pb::GetOrderRequest {
            order_id: order_id.clone(),
        }))
        .await
        .unwrap();
    let answer = grpc.get_order(request).await.unwrap().into_inner();
    let grpc_order = answer.order.unwrap();
    assert_eq!(grpc_order.status, "PENDING_PAYMENT");
    assert_eq!(
        grpc_order.total.unwrap().amount,
        order["totals"]["total"].as_str().unwrap()
    );
    shop.stop().await;
}

async fn the_same_idempotency_key_gets_the_same_answer(engine: Engine) {
    let shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "9.99", 20).await;

    let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
    let (first_status, first) = shop.place(&alice, "same-key", &session).await;
    assert_eq!(first_status, StatusCode::CREATED, "{first}");
    let replay = shop
        .place_request(&alice, Some("same-key"), &session)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    // The key belongs to that session; the session to that order.
    let other_session = shop.checkout(&alice, &[(&mug, 2)], None).await;
    let (status, error) = shop.place(&alice, "same-key", &other_session).await;
    assert_eq!(
        (status, error["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Idempotency-Key")),
        "{error}"
    );
    let (status, error) = shop.place(&alice, "another-key", &session).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");

    // Twice at once: one order, both requests get its answer.
    let (a, b) = tokio::join!(
        shop.place(&alice, "at-once", &other_session),
        shop.place(&alice, "at-once", &other_session)
    );
    assert_eq!(a.0, StatusCode::CREATED, "{}", a.1);
    assert_eq!(b.0, StatusCode::CREATED, "{}", b.1);
    assert_eq!(a.1["orderId"], b.1["orderId"]);
    // Two different keys at once for one session: still one order.
    let third_session = shop.checkout(&alice, &[(&mug, 3)], None).await;
    let (c, d) = tokio::join!(
        shop.place(&alice, "race-1", &third_session),
        shop.place(&alice, "race-2", &third_session)
    );
    let statuses: HashSet<StatusCode> = [c.0, d.0].into_iter().collect();
    assert!(statuses.contains(&StatusCode::CREATED), "{} {}", c.1, d.1);
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE checkout_session_id = $1::uuid AND status <> 'FAILED'",
    )
    .bind(&third_session)
    .fetch_one(&shop.order_pool)
    .await
    .unwrap();
    assert_eq!(live, 1);

    let orders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'PENDING_PAYMENT'")
            .fetch_one(&shop.order_pool)
            .await
            .unwrap();
    assert_eq!(orders, 3);
    assert_eq!(shop.stock(&mug).await, (20, 6), "each order reserved once");
    assert_eq!(shop.payment_statuses().await.len(), 3);
    shop.stop().await;
}

async fn each_failing_step_compensates_and_leaves_stock_as_it_was(engine: Engine) {
    let shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let (bob, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "10.00", 10).await;

    async fn failed_order(shop: &Shop, body: &Value) -> String {
        let order = body["error"]["orderId"]
            .as_str()
            .expect("failed order id")
            .to_owned();
        assert_eq!(shop.order_status(&order).await, "FAILED");
        order
    }

    // get_checkout_session: unknown, somebody else's, expired.
    let (status, body) = shop
        .place(&alice, "unknown", &uuid::Uuid::now_v7().to_string())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    failed_order(&shop, &body).await;
    let bobs = shop.checkout(&bob, &[(&mug, 1)], None).await;
    let (status, body) = shop.place(&alice, "not-mine", &bobs).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let expired = shop.checkout(&alice, &[(&mug, 1)], None).await;
    sqlx::query(
        "UPDATE checkout_sessions SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid",
    )
    .bind(&expired)
    .execute(&shop.cart_pool)
    .await
    .unwrap();
    let (status, body) = shop.place(&alice, "expired", &expired).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    assert_eq!(shop.stock(&mug).await, (10, 0));

    // reserve_stock: the stock ran out between checkout and order.
    let greedy = shop.checkout(&alice, &[(&mug, 8)], None).await;
    sqlx::query("UPDATE products SET stock = 5 WHERE id = $1::uuid")
        .bind(&mug)
        .execute(&shop.product_pool)
        .await
        .unwrap();
    let (status, body) = shop.place(&alice, "greedy", &greedy).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(shop.stock(&mug).await, (5, 0));
    sqlx::query("UPDATE products SET stock = 10 WHERE id = $1::uuid")
        .bind(&mug)
        .execute(&shop.product_pool)
        .await
        .unwrap();

    // quote_shipping: the courier stopped serving the destination → the reservation goes back.
    let session = shop.checkout(&alice, &[(&mug, 3)], None).await;
    let rates: Vec<(String, String, i64, rust_decimal::Decimal, String, i32)> = sqlx::query_as(
        "DELETE FROM shipping_rates WHERE courier = 'standard'
         RETURNING courier, zone, max_weight_g, price, currency, estimated_days",
    )
    .fetch_all(&shop.fulfillment_pool)
    .await
    .unwrap();
    let (status, body) = shop.place(&alice, "no-courier", &session).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let order = failed_order(&shop, &body).await;
    assert_eq!(
        shop.compensations(&order).await,
        vec!["reserve_stock", "compensated"]
    );
    assert_eq!(shop.stock(&mug).await, (10, 0));
    for (courier, zone, weight, price, currency, days) in rates {
        sqlx::query("INSERT INTO shipping_rates VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(courier)
            .bind(zone)
            .bind(weight)
            .bind(price)
            .bind(currency)
            .bind(days)
            .execute(&shop.fulfillment_pool)
            .await
            .unwrap();
    }
    // A failed attempt frees the session: with the courier back, a new attempt succeeds.
    let (status, body) = shop.place(&alice, "no-courier-retry", &session).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(shop.stock(&mug).await, (10, 3));

    // create_payment_intent: the payment service keeps failing → 503 after the policy's
    // attempts, stock released, the (maybe half-made) intent canceled.
    let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
    sqlx::query("ALTER TABLE payments ADD CONSTRAINT refuse_all CHECK (amount < 0) NOT VALID")
        .execute(&shop.payment_pool)
        .await
        .unwrap();
    let (status, body) = shop.place(&alice, "no-payment", &session).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let order = failed_order(&shop, &body).await;
    assert_eq!(
        shop.attempts(&order, "create_payment_intent").await,
        3,
        "the policy's attempts"
    );
    assert_eq!(
        shop.compensations(&order).await,
        vec!["create_payment_intent", "reserve_stock", "compensated"]
    );
    assert_eq!(shop.stock(&mug).await, (10, 3));
    sqlx::query("ALTER TABLE payments DROP CONSTRAINT refuse_all")
        .execute(&shop.payment_pool)
        .await
        .unwrap();

    // The same key replays the failure; it never retries on its own.
    let (status, replay) = shop.place(&alice, "no-payment", &session).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(replay, body);
    shop.stop().await;
}

async fn promo_code_limits_hold_when_orders_race(engine: Engine) {
    let shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let mug = shop.product(&admin, "20.00", 50).await;
    let (status, promo) = shop
        .send(shop.client.post(format!("{}/v1/admin/promo-codes", shop.cart)).bearer_auth(&admin).json(&json!({
            "code": "ONLYONE", "kind": "fixed", "value": "5", "currency": "USD", "maxUses": 1
        })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{promo}");
    let mut buyers = Vec::new();
    for _ in 0..3 {
        let (token, _) = shop.user("customer").await;
        let session = shop.checkout(&token, &[(&mug, 2)], Some("ONLYONE")).await;
        buyers.push((token, session));
    }
    let answers = futures::future::join_all(
        buyers
            .iter()
            .map(|(token, session)| shop.place(token, "promo", session)),
    )
    .await;
    let placed: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(placed.len(), 1, "{answers:?}");
    assert_eq!(placed[0]["order"]["totals"]["discount"], "5.00");
    for (status, body) in answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::CREATED)
    {
        assert_eq!(*status, StatusCode::CONFLICT, "{body}");
        let order = body["error"]["orderId"].as_str().unwrap();
        assert_eq!(shop.order_status(order).await, "FAILED");
        assert_eq!(
            shop.compensations(order).await,
            vec!["create_payment_intent", "reserve_stock", "compensated"]
        );
    }
    assert_eq!(
        shop.stock(&mug).await,
        (50, 2),
        "only the placed order holds stock"
    );
    let mut statuses: Vec<String> = shop
        .payment_statuses()
        .await
        .into_iter()
        .map(|(_, status)| status)
        .collect();
    statuses.sort();
    assert_eq!(statuses, vec!["canceled", "canceled", "requires_payment"]);
    let uses: i32 = sqlx::query_scalar("SELECT uses FROM promo_codes WHERE code = 'ONLYONE'")
        .fetch_one(&shop.cart_pool)
        .await
        .unwrap();
    assert_eq!(uses, 1);
    shop.stop().await;
}

on_both_engines!(
    an_order_is_placed_across_the_real_services,
    the_same_idempotency_key_gets_the_same_answer,
    each_failing_step_compensates_and_leaves_stock_as_it_was,
    promo_code_limits_hold_when_orders_race,
);
