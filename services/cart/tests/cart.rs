//! The cart against the real auth, product and payment services (gRPC with service
//! tokens), on real PostgreSQL, Redis and the broker.

use std::sync::Arc;

use commerce_proto::cart::v1 as pb;
use commerce_runtime::Config;
use commerce_runtime::service::{self, Running};
use commerce_testkit::{free_port, fresh_database, required_env, unique};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const CART_SECRET: &str = "cart-secret-for-tests-00001";
const ORDER_SECRET: &str = "order-secret-for-tests-0001";

struct Shop {
    auth: String,
    product: String,
    cart: String,
    cart_grpc: String,
    auth_pool: sqlx::PgPool,
    cart_pool: sqlx::PgPool,
    client: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<Running>,
    _keys: tempfile::TempDir,
    /// Held for the test's length: dropped, they are marked finished (`commerce_testkit`).
    _databases: [commerce_testkit::TestDatabase; 4],
}

impl Shop {
    async fn start() -> Self {
        Self::start_with("").await
    }

    /// `cart_extra` is TOML appended to `[services.cart]`; the payment service offers the
    /// offline gateway, as `make run`'s does.
    async fn start_with(cart_extra: &str) -> Self {
        Self::start_configured(cart_extra, "offline = { enabled = true }").await
    }

    /// `payment_extra` is TOML appended to `[services.payment]`.
    async fn start_configured(cart_extra: &str, payment_extra: &str) -> Self {
        let (auth_db, product_db, cart_db, payment_db) = (
            fresh_database("cartauth").await,
            fresh_database("cartproduct").await,
            fresh_database("cartcart").await,
            fresh_database("cartpayment").await,
        );
        let keys = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
        let toml = format!(
            r#"
            shutdown_grace = "5s"
            [kafka]
            brokers = "{kafka}"
            topic_prefix = "{topic_prefix}."
            [redis]
            urls = ["{redis}"]
            [services.auth]
            http_addr = "127.0.0.1:{p0}"
            grpc_addr = "127.0.0.1:{p1}"
            database = {{ url = "{auth_db}" }}
            keys = {{ dir = "{keys}", generate = true }}
            redis_prefix = "{auth_prefix}"
            service_clients = {{ cart = "{CART_SECRET}", order = "{ORDER_SECRET}" }}
            client_audiences = {{ cart = ["product", "auth", "payment"], order = ["cart", "product", "fulfillment", "payment"] }}
            [services.product]
            http_addr = "127.0.0.1:{p2}"
            grpc_addr = "127.0.0.1:{p3}"
            database = {{ url = "{product_db}" }}
            redis_prefix = "{product_prefix}"
            auth = {{ jwks_url = "http://127.0.0.1:{p0}/.well-known/jwks.json" }}
            [services.cart]
            http_addr = "127.0.0.1:{p4}"
            grpc_addr = "127.0.0.1:{p5}"
            database = {{ url = "{cart_db}" }}
            client_secret = "{CART_SECRET}"
            peers = {{ auth_http = "http://127.0.0.1:{p0}", auth_grpc = "http://127.0.0.1:{p1}", product_grpc = "http://127.0.0.1:{p3}", payment_grpc = "http://127.0.0.1:{p7}" }}
            redis_prefix = "{cart_prefix}"
            {cart_extra}
            [services.payment]
            http_addr = "127.0.0.1:{p6}"
            grpc_addr = "127.0.0.1:{p7}"
            database = {{ url = "{payment_db}" }}
            jwks_url = "http://127.0.0.1:{p0}/.well-known/jwks.json"
            {payment_extra}
            "#,
            cart_prefix = unique("cart"),
            kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
            redis = required_env("COMMERCE_TEST_REDIS_URL"),
            topic_prefix = unique("cart"),
            auth_db = auth_db.url,
            product_db = product_db.url,
            cart_db = cart_db.url,
            payment_db = payment_db.url,
            keys = keys.path().display(),
            auth_prefix = unique("auth"),
            product_prefix = unique("product"),
            p0 = ports[0],
            p1 = ports[1],
            p2 = ports[2],
            p3 = ports[3],
            p4 = ports[4],
            p5 = ports[5],
            p6 = ports[6],
            p7 = ports[7],
        );
        let config = Arc::new(Config::from_toml_str(&toml).unwrap());
        let shutdown = CancellationToken::new();
        let running = service::start(
            config,
            &[
                &commerce_auth::DEFINITION,
                &commerce_product::DEFINITION,
                &commerce_cart::DEFINITION,
                &commerce_payment::DEFINITION,
            ],
            shutdown.clone(),
        )
        .await
        .unwrap();
        Self {
            auth: format!("http://127.0.0.1:{}", ports[0]),
            product: format!("http://127.0.0.1:{}", ports[2]),
            cart: format!("http://127.0.0.1:{}", ports[4]),
            cart_grpc: format!("http://127.0.0.1:{}", ports[5]),
            auth_pool: auth_db.pool.clone(),
            cart_pool: cart_db.pool.clone(),
            _databases: [auth_db, product_db, cart_db, payment_db],
            client: reqwest::Client::new(),
            shutdown,
            running: Some(running),
            _keys: keys,
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await.unwrap();
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A verified user's access token (and id), through the real auth flow.
    async fn user(&self, role: &str) -> (String, String) {
        commerce_testkit::verified_user(&self.client, &self.auth, &self.auth_pool, role).await
    }

    async fn address(&self, token: &str) -> String {
        let (status, address) = self
            .send(self.client.post(format!("{}/v1/users/me/addresses", self.auth)).bearer_auth(token).json(&json!({
                "recipient": "Sam Shopper", "line1": "1 Market St", "city": "Springfield", "postalCode": "12345", "country": "US"
            })))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{address}");
        address["id"].as_str().unwrap().to_owned()
    }

    async fn product(&self, admin: &str, sku: &str, price: &str, stock: i64) -> String {
        let (status, product) = self
            .send(self.client.post(format!("{}/v1/products", self.product)).bearer_auth(admin).json(&json!({
                "sku": sku, "name": format!("Item {sku}"), "category": "test", "price": {"amount": price, "currency": "USD"}, "stock": stock
            })))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{product}");
        product["id"].as_str().unwrap().to_owned()
    }

    async fn add(&self, token: &str, product: &str, quantity: i64) -> (StatusCode, Value) {
        self.send(
            self.client
                .post(format!("{}/v1/cart/items", self.cart))
                .bearer_auth(token)
                .json(&json!({"productId": product, "quantity": quantity})),
        )
        .await
    }

    async fn checkout(&self, token: &str, address: &str) -> (StatusCode, Value) {
        self.checkout_with(token, address, "offline").await
    }

    async fn checkout_with(
        &self,
        token: &str,
        address: &str,
        gateway: &str,
    ) -> (StatusCode, Value) {
        self.send(
            self.client
                .post(format!("{}/v1/checkout", self.cart))
                .bearer_auth(token)
                .json(&json!({
                    "addressId": address, "courier": "standard", "paymentGateway": gateway
                })),
        )
        .await
    }

    async fn grpc(
        &self,
    ) -> (
        pb::cart_service_client::CartServiceClient<tonic::transport::Channel>,
        commerce_access::ServiceTokenSource,
    ) {
        (
            pb::cart_service_client::CartServiceClient::connect(self.cart_grpc.clone())
                .await
                .unwrap(),
            commerce_access::ServiceTokenSource::new(&self.auth, "order", ORDER_SECRET, "cart"),
        )
    }
}

#[tokio::test]
async fn carts_promo_codes_and_checkout_sessions() {
    let shop = Shop::start().await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let (bob, _) = shop.user("customer").await;
    let mug = shop
        .product(&admin, &unique("MUG").to_uppercase(), "12.50", 5)
        .await;
    let pen = shop
        .product(&admin, &unique("PEN").to_uppercase(), "3.00", 100)
        .await;

    // Who is asking: nobody → 401; a guest holds a cart token the shop issued, and an id
    // the client made up names no cart.
    let (status, _) = shop
        .send(shop.client.get(format!("{}/v1/cart", shop.cart)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = shop
        .send(
            shop.client
                .get(format!("{}/v1/cart", shop.cart))
                .header("x-guest-cart", uuid::Uuid::new_v4().to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-Guest-Cart"),
        "{body}"
    );
    let (status, issued) = shop
        .send(shop.client.post(format!("{}/v1/cart/guest", shop.cart)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let guest = issued["guestCart"].as_str().unwrap().to_owned();
    let (status, guest_cart) = shop
        .send(
            shop.client
                .post(format!("{}/v1/cart/items", shop.cart))
                .header("x-guest-cart", &guest)
                .json(&json!({"productId": pen, "quantity": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{guest_cart}");
    assert_eq!(guest_cart["subtotal"], "6.00");

    // Prices and availability come from the product service.
    let (status, cart) = shop.add(&alice, &mug, 2).await;
    assert_eq!(status, StatusCode::OK, "{cart}");
    assert_eq!(
        (
            cart["items"][0]["unitPrice"].as_str(),
            cart["subtotal"].as_str()
        ),
        (Some("12.50"), Some("25.00"))
    );
    let (status, body) = shop.add(&alice, &mug, 4).await;
    assert_eq!(status, StatusCode::CONFLICT, "only 5 exist: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only 5")
    );
    let (status, body) = shop.add(&alice, &uuid::Uuid::new_v4().to_string(), 1).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = shop.add(&alice, &pen, 0).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("quantity"))
    );

    // The guest cart joins Alice's at login, by its token only: Bob cannot take it with a
    // forged one (the cart's id under a signature of his own making).
    let (guest_id, _) = guest.split_once('.').unwrap();
    let (status, body) = shop
        .send(
            shop.client
                .post(format!("{}/v1/cart/merge", shop.cart))
                .bearer_auth(&bob)
                .json(&json!({"guestCart": format!("{guest_id}.AAAA")})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("guestCart")),
        "{body}"
    );
    let (status, merged) = shop
        .send(
            shop.client
                .post(format!("{}/v1/cart/merge", shop.cart))
                .bearer_auth(&alice)
                .json(&json!({"guestCart": guest})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{merged}");
    assert_eq!(merged["items"].as_array().unwrap().len(), 2);
    assert_eq!(merged["subtotal"], "31.00");

    // Promo codes: admins create them; a code that does not apply says why.
    let (status, _) = shop
        .send(
            shop.client
                .post(format!("{}/v1/admin/promo-codes", shop.cart))
                .bearer_auth(&alice)
                .json(&json!({"code": "X", "kind": "percent", "value": "10"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, promo) = shop
        .send(shop.client.post(format!("{}/v1/admin/promo-codes", shop.cart)).bearer_auth(&admin).json(&json!({
            "code": "save10", "kind": "percent", "value": "10", "minSubtotal": "40", "maxUsesPerUser": 1
        })))
        .await;
    assert_eq!(
        (status, promo["code"].as_str()),
        (StatusCode::CREATED, Some("SAVE10")),
        "{promo}"
    );
    let apply = |token: &str, code: &str| {
        shop.client
            .post(format!("{}/v1/cart/promo", shop.cart))
            .bearer_auth(token.to_owned())
            .json(&json!({"code": code}))
    };
    let (status, body) = shop.send(apply(&alice, "SAVE10")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least 40"),
        "{body}"
    );
    let (status, _) = shop.send(apply(&alice, "NOPE")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    shop.add(&alice, &pen, 3).await;
    let (status, discounted) = shop.send(apply(&alice, "save10")).await;
    assert_eq!(status, StatusCode::OK, "{discounted}");
    assert_eq!(
        (
            discounted["subtotal"].as_str(),
            discounted["discount"].as_str(),
            discounted["total"].as_str()
        ),
        (Some("40.00"), Some("4.00"), Some("36.00"))
    );

    // Checkout: the address must be Alice's own.
    let alice_address = shop.address(&alice).await;
    let bob_address = shop.address(&bob).await;
    let (status, body) = shop.checkout(&alice, &bob_address).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("addressId")),
        "{body}"
    );
    let (status, body) = shop
        .send(shop.client.post(format!("{}/v1/checkout", shop.cart)).bearer_auth(&alice).json(&json!({"addressId": alice_address, "courier": "standard", "paymentGateway": "cash"})))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("paymentGateway"))
    );
    let (status, session) = shop.checkout(&alice, &alice_address).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(
        (session["total"].as_str(), session["promoCode"].as_str()),
        (Some("36.00"), Some("SAVE10"))
    );
    assert_eq!(session["shippingAddress"]["city"], "Springfield");
    let session_id = session["id"].as_str().unwrap().to_owned();
    let (status, _) = shop
        .send(
            shop.client
                .get(format!("{}/v1/checkout/{session_id}", shop.cart))
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = shop
        .send(
            shop.client
                .get(format!("{}/v1/checkout/{session_id}", shop.cart))
                .bearer_auth(&bob),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "Bob cannot see Alice's checkout"
    );
    let (status, _) = shop.checkout(&bob, &bob_address).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an empty cart cannot check out"
    );

    // The order service's side: read and complete the session, idempotently.
    let (mut grpc, tokens) = shop.grpc().await;
    let anonymous = grpc
        .get_checkout_session(pb::GetCheckoutSessionRequest {
            session_id: session_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let read = grpc
        .get_checkout_session(
            tokens
                .authorize(tonic::Request::new(pb::GetCheckoutSessionRequest {
                    session_id: session_id.clone(),
                }))
                .await
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(
        (read.items.len(), read.discount.unwrap().amount.as_str()),
        (2, "4.00")
    );
    let order = uuid::Uuid::now_v7().to_string();
    let complete = |order: &str| pb::CompleteCheckoutSessionRequest {
        session_id: session_id.clone(),
        order_id: order.to_owned(),
    };
    for _ in 0..2 {
        let done = grpc
            .complete_checkout_session(
                tokens
                    .authorize(tonic::Request::new(complete(&order)))
                    .await
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(done.into_inner().session.unwrap().order_id, order);
    }
    let other = grpc
        .complete_checkout_session(
            tokens
                .authorize(tonic::Request::new(complete(
                    &uuid::Uuid::now_v7().to_string(),
                )))
                .await
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::FailedPrecondition);
    // The cart was checked out: Alice starts afresh; her one use of SAVE10 is spent.
    let (_, fresh) = shop
        .send(
            shop.client
                .get(format!("{}/v1/cart", shop.cart))
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(fresh["items"].as_array().unwrap().len(), 0);
    shop.add(&alice, &pen, 20).await;
    let (status, body) = shop.send(apply(&alice, "SAVE10")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
    shop.stop().await;
}

#[tokio::test]
async fn promo_usage_limits_hold_under_concurrency() {
    let shop = Shop::start().await;
    let (admin, _) = shop.user("admin").await;
    let pen = shop
        .product(&admin, &unique("PEN").to_uppercase(), "10.00", 1000)
        .await;
    let (status, _) = shop
        .send(
            shop.client
                .post(format!("{}/v1/admin/promo-codes", shop.cart))
                .bearer_auth(&admin)
                .json(&json!({
                    "code": "FIRST3", "kind": "fixed", "value": "5", "currency": "USD", "maxUses": 3
                })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut sessions = Vec::new();
    for _ in 0..8 {
        let (token, _) = shop.user("customer").await;
        let address = shop.address(&token).await;
        shop.add(&token, &pen, 1).await;
        let (status, body) = shop
            .send(
                shop.client
                    .post(format!("{}/v1/cart/promo", shop.cart))
                    .bearer_auth(&token)
                    .json(&json!({"code": "FIRST3"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, session) = shop.checkout(&token, &address).await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        sessions.push(session["id"].as_str().unwrap().to_owned());
    }
    let (grpc, tokens) = shop.grpc().await;
    let tokens = Arc::new(tokens);
    let attempts = futures::future::join_all(sessions.iter().map(|session| {
        let (mut grpc, tokens, session) = (grpc.clone(), tokens.clone(), session.clone());
        async move {
            let request = tokens
                .authorize(tonic::Request::new(pb::CompleteCheckoutSessionRequest {
                    session_id: session,
                    order_id: uuid::Uuid::now_v7().to_string(),
                }))
                .await
                .unwrap();
            grpc.complete_checkout_session(request).await
        }
    }))
    .await;
    let completed = attempts.iter().filter(|attempt| attempt.is_ok()).count();
    assert_eq!(completed, 3, "exactly the code's three uses");
    for refused in attempts.iter().filter_map(|attempt| attempt.as_ref().err()) {
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(
            refused.message().contains("used up"),
            "{}",
            refused.message()
        );
    }
    shop.stop().await;
}

async fn abandoned_events(shop: &Shop, cart: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events WHERE event_type = 'commerce.cart.v1.CartAbandoned' AND aggregate_id = $1",
    )
    .bind(cart)
    .fetch_one(&shop.cart_pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn idle_carts_are_announced_once_and_stale_ones_cleaned_up() {
    let shop = Shop::start_with(
        "abandon_after = \"1s\"\nretention = \"3s\"\ncleanup_interval = \"200ms\"",
    )
    .await;
    let (admin, _) = shop.user("admin").await;
    let (shopper, shopper_id) = shop.user("customer").await;
    let pen = shop
        .product(&admin, &unique("PEN").to_uppercase(), "2.00", 100)
        .await;
    let (_, cart) = shop.add(&shopper, &pen, 1).await;
    let cart_id = cart["id"].as_str().unwrap().to_owned();

    // A change restarts the idle clock.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (status, _) = shop
        .send(
            shop.client
                .put(format!("{}/v1/cart/items/{pen}", shop.cart))
                .bearer_auth(&shopper)
                .json(&json!({"quantity": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(
        abandoned_events(&shop, &cart_id).await,
        0,
        "announced before a full idle second"
    );

    commerce_testkit::eventually(
        std::time::Duration::from_secs(10),
        "CartAbandoned",
        || async { (abandoned_events(&shop, &cart_id).await == 1).then_some(()) },
    )
    .await;
    let payload: Vec<u8> = sqlx::query_scalar(
        "SELECT payload FROM outbox_events WHERE event_type = 'commerce.cart.v1.CartAbandoned' AND aggregate_id = $1",
    )
    .bind(&cart_id)
    .fetch_one(&shop.cart_pool)
    .await
    .unwrap();
    let event = pb::CartAbandoned::decode(payload.as_slice()).unwrap();
    assert_eq!(
        (event.user_id.as_str(), event.item_count),
        (shopper_id.as_str(), 3)
    );
    assert_eq!(event.subtotal.unwrap().amount, "6.00");

    // Left alone past the retention, the cart (never checked out) is deleted; once only
    // announced.
    commerce_testkit::eventually(
        std::time::Duration::from_secs(15),
        "the stale cart to be deleted",
        || async {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM carts WHERE id = $1::uuid")
                .bind(&cart_id)
                .fetch_one(&shop.cart_pool)
                .await
                .unwrap();
            (left == 0).then_some(())
        },
    )
    .await;
    assert_eq!(abandoned_events(&shop, &cart_id).await, 1);
    shop.stop().await;
}

#[tokio::test]
async fn cart_state_is_cached_and_writes_invalidate_it() {
    let shop = Shop::start().await;
    let (admin, _) = shop.user("admin").await;
    let (shopper, _) = shop.user("customer").await;
    let pen = shop
        .product(&admin, &unique("PEN").to_uppercase(), "1.00", 100)
        .await;
    let mug = shop
        .product(&admin, &unique("MUG").to_uppercase(), "2.00", 100)
        .await;
    shop.add(&shopper, &pen, 1).await;
    let view = || {
        shop.send(
            shop.client
                .get(format!("{}/v1/cart", shop.cart))
                .bearer_auth(&shopper),
        )
    };
    let (_, first) = view().await;
    assert_eq!(first["items"][0]["quantity"], 1);

    // Changed behind the service's back: the cached state is still served.
    sqlx::query("UPDATE cart_items SET quantity = 7")
        .execute(&shop.cart_pool)
        .await
        .unwrap();
    let (_, cached) = view().await;
    assert_eq!(
        cached["items"][0]["quantity"], 1,
        "the second view comes from the cache"
    );

    // Any write through the service drops it; the next view reads the database again.
    let (status, _) = shop.add(&shopper, &mug, 1).await;
    assert_eq!(status, StatusCode::OK);
    let (_, fresh) = view().await;
    let quantities: Vec<i64> = fresh["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["quantity"].as_i64().unwrap())
        .collect();
    assert_eq!(quantities, [7, 1]);
    shop.stop().await;
}

#[tokio::test]
async fn checkout_refuses_a_gateway_the_shop_does_not_offer() {
    // The payment service as a Shop runs it unless told otherwise: no offline gateway,
    // and here no provider configured either.
    let shop = Shop::start_configured("", "").await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop
        .product(&admin, &unique("MUG").to_uppercase(), "12.50", 5)
        .await;
    let (status, cart) = shop.add(&alice, &mug, 1).await;
    assert_eq!(status, StatusCode::OK, "{cart}");
    let address = shop.address(&alice).await;

    for gateway in ["offline", "stripe", "cash"] {
        let (status, body) = shop.checkout_with(&alice, &address, gateway).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("paymentGateway")),
            "{gateway}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("not offered"), "{message}");
    }
    // Nothing was frozen: the cart is still open and whole.
    let (status, cart) = shop
        .send(
            shop.client
                .get(format!("{}/v1/cart", shop.cart))
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cart}");
    assert_eq!(cart["items"].as_array().unwrap().len(), 1);
    shop.stop().await;
}
