//! Order placement across the real services: auth, product, cart, fulfillment and payment
//! run in this process; the order service runs as the real `commerce` binary, so a test can
//! kill it at any saga step (a failpoint aborts the process) and start it again.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use commerce_proto::order::v1 as order_pb;
use commerce_runtime::Config;
use commerce_runtime::service::{self, Running};
use commerce_testkit::{eventually, free_port, fresh_database, required_env, unique};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const CART_SECRET: &str = "cart-secret-for-tests-00001";
const ORDER_SECRET: &str = "order-secret-for-tests-0001";
const OFFLINE_SECRET: &str = "offline-webhook-secret-for-tests";
const STEPS: &[&str] = &[
    "get_checkout_session",
    "reserve_stock",
    "quote_shipping",
    "price_order",
    "create_payment_intent",
    "complete_checkout_session",
    "await_payment",
    "schedule_payment_reminders",
];

/// Which saga engine the shop runs its orders on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    Temporal,
}

struct Shop {
    engine: Engine,
    auth: String,
    product: String,
    cart: String,
    order: String,
    order_grpc: String,
    payment: String,
    fulfillment: String,
    auth_pool: sqlx::PgPool,
    product_pool: sqlx::PgPool,
    cart_pool: sqlx::PgPool,
    fulfillment_pool: sqlx::PgPool,
    payment_pool: sqlx::PgPool,
    order_pool: sqlx::PgPool,
    config_file: tempfile::NamedTempFile,
    order_process: Option<Child>,
    client: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<Running>,
    _keys: tempfile::TempDir,
    order_env: Vec<(String, String)>,
}

async fn temporal_client() -> temporalio_client::Client {
    let url = required_env("COMMERCE_TEST_TEMPORAL_URL");
    let connection = temporalio_client::Connection::connect(
        temporalio_client::ConnectionOptions::new(url.parse::<temporalio_client::Url>().unwrap())
            .build(),
    )
    .await
    .unwrap();
    temporalio_client::Client::new(
        connection,
        temporalio_client::ClientOptions::new("default").build(),
    )
    .unwrap()
}

/// One activity of an order workflow, as its history tells it.
struct Activity {
    kind: String,
    step: String,
    attempts: i32,
    completed: bool,
}

/// Saga timings short enough for tests; `saga_extra` is TOML for `[services.order.saga]`.
const FAST_SAGA: &str = r#"
    lease = "3s"
    recovery_interval = "200ms"
    step = { timeout = "2s", attempts = 3, backoff = "50ms", max_backoff = "200ms" }
"#;

impl Drop for Shop {
    // A failing test must not leave the order service running.
    fn drop(&mut self) {
        if let Some(mut child) = self.order_process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Shop {
    async fn start(engine: Engine) -> Self {
        Self::start_with(engine, "").await
    }

    async fn start_with(engine: Engine, saga_extra: &str) -> Self {
        Self::start_with_env(engine, saga_extra, &[]).await
    }

    /// `order_env`: extra environment for the order process. On Temporal the order process
    /// runs the `order-worker` target too, on a task queue of the test's own.
    async fn start_with_env(engine: Engine, saga_extra: &str, order_env: &[(&str, &str)]) -> Self {
        let auth_db = fresh_database("ordauth").await;
        let product_db = fresh_database("ordproduct").await;
        let cart_db = fresh_database("ordcart").await;
        let fulfillment_db = fresh_database("ordfulfil").await;
        let payment_db = fresh_database("ordpayment").await;
        let order_db = fresh_database("ordorder").await;
        let keys = tempfile::tempdir().unwrap();
        let p: Vec<u16> = (0..13).map(|_| free_port()).collect();
        let temporal = match engine {
            Engine::Postgres => String::new(),
            Engine::Temporal => format!(
                r#"
                [services.order.temporal]
                url = "{url}"
                task_queue = "{queue}"
                sticky_timeout = "1s"
                [services.order_worker]
                http_addr = "127.0.0.1:{port}"
                database = {{ url = "{order_db}" }}
                "#,
                url = required_env("COMMERCE_TEST_TEMPORAL_URL"),
                queue = unique("orders"),
                port = p[12],
                order_db = order_db.url,
            ),
        };
        let engine_name = match engine {
            Engine::Postgres => "postgres",
            Engine::Temporal => "temporal",
        };
        let jwks = format!("http://127.0.0.1:{}/.well-known/jwks.json", p[0]);
        let toml = format!(
            r#"
            shutdown_grace = "3s"
            [telemetry]
            log_format = "pretty"
            log_level = "warn,commerce_order=info"
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
            # As shipped, plus `order` for cart: the tests read orders over gRPC as cart.
            client_audiences = {{ cart = ["product", "auth", "payment", "order"], order = ["cart", "product", "fulfillment", "payment"] }}
            [services.product]
            http_addr = "127.0.0.1:{p2}"
            grpc_addr = "127.0.0.1:{p3}"
            database = {{ url = "{product_db}" }}
            redis_prefix = "{product_prefix}"
            auth = {{ jwks_url = "{jwks}" }}
            [services.cart]
            http_addr = "127.0.0.1:{p4}"
            grpc_addr = "127.0.0.1:{p5}"
            database = {{ url = "{cart_db}" }}
            client_secret = "{CART_SECRET}"
            peers = {{ auth_http = "http://127.0.0.1:{p0}", auth_grpc = "http://127.0.0.1:{p1}", product_grpc = "http://127.0.0.1:{p3}", payment_grpc = "http://127.0.0.1:{p9}" }}
            redis_prefix = "{cart_prefix}"
            [services.fulfillment]
            http_addr = "127.0.0.1:{p6}"
            grpc_addr = "127.0.0.1:{p7}"
            database = {{ url = "{fulfillment_db}" }}
            jwks_url = "{jwks}"
            [services.payment]
            http_addr = "127.0.0.1:{p8}"
            grpc_addr = "127.0.0.1:{p9}"
            database = {{ url = "{payment_db}" }}
            jwks_url = "{jwks}"
            offline = {{ enabled = true, webhook_secret = "{OFFLINE_SECRET}" }}
            [services.order]
            http_addr = "127.0.0.1:{p10}"
            grpc_addr = "127.0.0.1:{p11}"
            database = {{ url = "{order_db}" }}
            client_secret = "{ORDER_SECRET}"
            redis_prefix = "{order_prefix}"
            request_wait = "20s"
            peers = {{ auth_http = "http://127.0.0.1:{p0}", cart_grpc = "http://127.0.0.1:{p5}", product_grpc = "http://127.0.0.1:{p3}", fulfillment_grpc = "http://127.0.0.1:{p7}", payment_grpc = "http://127.0.0.1:{p9}" }}
            [services.order.saga]
            engine = "{engine_name}"
            {FAST_SAGA}
            {saga_extra}
            {temporal}
            "#,
            kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
            redis = required_env("COMMERCE_TEST_REDIS_URL"),
            topic_prefix = unique("order"),
            auth_db = auth_db.url,
            product_db = product_db.url,
            cart_db = cart_db.url,
            fulfillment_db = fulfillment_db.url,
            payment_db = payment_db.url,
            order_db = order_db.url,
            keys = keys.path().display(),
            auth_prefix = unique("auth"),
            product_prefix = unique("product"),
            cart_prefix = unique("cart"),
            order_prefix = unique("order"),
            p0 = p[0],
            p1 = p[1],
            p2 = p[2],
            p3 = p[3],
            p4 = p[4],
            p5 = p[5],
            p6 = p[6],
            p7 = p[7],
            p8 = p[8],
            p9 = p[9],
            p10 = p[10],
            p11 = p[11],
        );
        let config_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(config_file.path(), &toml).unwrap();
        let config = Arc::new(Config::from_toml_str(&toml).unwrap());
        let shutdown = CancellationToken::new();
        let running = service::start(
            config,
            &[
                &commerce_auth::DEFINITION,
                &commerce_product::DEFINITION,
                &commerce_cart::DEFINITION,
                &commerce_fulfillment::DEFINITION,
                &commerce_payment::DEFINITION,
            ],
            shutdown.clone(),
        )
        .await
        .unwrap();
        let mut shop = Self {
            engine,
            auth: format!("http://127.0.0.1:{}", p[0]),
            product: format!("http://127.0.0.1:{}", p[2]),
            cart: format!("http://127.0.0.1:{}", p[4]),
            order: format!("http://127.0.0.1:{}", p[10]),
            order_grpc: format!("http://127.0.0.1:{}", p[11]),
            payment: format!("http://127.0.0.1:{}", p[8]),
            fulfillment: format!("http://127.0.0.1:{}", p[6]),
            auth_pool: auth_db.pool,
            product_pool: product_db.pool,
            cart_pool: cart_db.pool,
            fulfillment_pool: fulfillment_db.pool,
            payment_pool: payment_db.pool,
            order_pool: order_db.pool,
            config_file,
            order_process: None,
            // No pooled connections: the order service is killed and restarted on the same
            // port, and a kept-alive connection to the dead process could be picked for
            // the next request before its close is noticed (IncompleteMessage).
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            shutdown,
            running: Some(running),
            _keys: keys,
            order_env: order_env
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        };
        shop.start_order(&[]).await;
        shop
    }

    /// Starts the order service binary; it aborts at any of `failpoints`.
    async fn start_order(&mut self, failpoints: &[&str]) {
        let failpoints = serde_json::to_string(failpoints).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_commerce"))
            .arg("--config")
            .arg(self.config_file.path())
            .args([
                "serve",
                "--target",
                match self.engine {
                    Engine::Postgres => "order",
                    Engine::Temporal => "order,order-worker",
                },
            ])
            .env("COMMERCE_SERVICES__ORDER__FAILPOINTS", failpoints)
            .envs(self.order_env.iter().map(|(key, value)| (key, value)))
            // Its logs land in the test's output, shown when the test fails.
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.order_process = Some(child);
        let ready = format!("{}/readyz", self.order);
        let client = self.client.clone();
        eventually(
            Duration::from_secs(30),
            "the order service to be ready",
            || {
                let (client, ready) = (client.clone(), ready.clone());
                async move {
                    client
                        .get(ready)
                        .send()
                        .await
                        .ok()
                        .filter(|response| response.status() == 200)
                        .map(|_| ())
                }
            },
        )
        .await;
    }

    /// Stops the order service as an operator would (SIGTERM), so its consumer leaves the
    /// group at once instead of being waited out.
    fn stop_order(&mut self) {
        if let Some(mut child) = self.order_process.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Waits for the order process to die at its failpoint.
    async fn await_order_crash(&mut self) {
        let mut child = self.order_process.take().expect("order service running");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the order service did not reach its failpoint within 60s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!status.success(), "the order service should have aborted");
    }

    async fn stop(mut self) {
        if let Some(mut child) = self.order_process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

    async fn product(&self, admin: &str, price: &str, stock: i64) -> String {
        let (status, product) = self
            .send(self.client.post(format!("{}/v1/products", self.product)).bearer_auth(admin).json(&json!({
                "sku": unique("SKU"), "name": "Thing", "category": "test", "price": {"amount": price, "currency": "USD"}, "stock": stock
            })))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{product}");
        product["id"].as_str().unwrap().to_owned()
    }

    /// Fills the user's (emptied) cart and checks it out; returns the checkout session id.
    async fn checkout(&self, token: &str, items: &[(&str, i64)], promo: Option<&str>) -> String {
        let (status, cart) = self
            .send(
                self.client
                    .delete(format!("{}/v1/cart", self.cart))
                    .bearer_auth(token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{cart}");
        for (product, quantity) in items {
            let (status, cart) = self
                .send(
                    self.client
                        .post(format!("{}/v1/cart/items", self.cart))
                        .bearer_auth(token)
                        .json(&json!({"productId": product, "quantity": quantity})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{cart}");
        }
        if let Some(code) = promo {
            let (status, cart) = self
                .send(
                    self.client
                        .post(format!("{}/v1/cart/promo", self.cart))
                        .bearer_auth(token)
                        .json(&json!({"code": code})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{cart}");
        }
        let (status, address) = self
            .send(self.client.post(format!("{}/v1/users/me/addresses", self.auth)).bearer_auth(token).json(&json!({
                "recipient": "Olly Order", "line1": "1 Market St", "city": "Springfield", "postalCode": "12345", "country": "US"
            })))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{address}");
        let (status, session) = self
            .send(
                self.client
                    .post(format!("{}/v1/checkout", self.cart))
                    .bearer_auth(token)
                    .json(&json!({
                        "addressId": address["id"], "courier": "standard", "paymentGateway": "offline"
                    })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        session["id"].as_str().unwrap().to_owned()
    }

    fn place_request(
        &self,
        token: &str,
        key: Option<&str>,
        session: &str,
    ) -> reqwest::RequestBuilder {
        let request = self
            .client
            .post(format!("{}/v1/orders", self.order))
            .bearer_auth(token)
            .json(&json!({"checkoutSessionId": session}));
        match key {
            Some(key) => request.header("Idempotency-Key", key),
            None => request,
        }
    }

    async fn place(&self, token: &str, key: &str, session: &str) -> (StatusCode, Value) {
        self.send(self.place_request(token, Some(key), session))
            .await
    }

    /// The customer pays (or fails to) through the offline gateway.
    async fn pay(&self, token: &str, order: &str, outcome: &str) -> (StatusCode, Value) {
        let payment: uuid::Uuid =
            sqlx::query_scalar("SELECT id FROM payments WHERE order_id = $1::uuid")
                .bind(order)
                .fetch_one(&self.payment_pool)
                .await
                .unwrap();
        self.send(
            self.client
                .post(format!(
                    "{}/v1/payments/{payment}/offline/pay",
                    self.payment
                ))
                .bearer_auth(token)
                .json(&json!({"outcome": outcome})),
        )
        .await
    }

    /// Delivers a webhook as the offline provider would, signed with `secret` at `at`.
    async fn webhook(&self, body: &Value, secret: &str, at: i64) -> (StatusCode, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let signature = commerce_payment::signature::sign(secret, at, &body);
        self.send(
            self.client
                .post(format!("{}/v1/payments/webhooks/offline", self.payment))
                .header("offline-signature", signature)
                .body(body),
        )
        .await
    }

    async fn reference(&self, order: &str) -> String {
        sqlx::query_scalar("SELECT provider_reference FROM payments WHERE order_id = $1::uuid")
            .bind(order)
            .fetch_one(&self.payment_pool)
            .await
            .unwrap()
    }

    async fn await_status(&self, order: &str, status: &str) {
        await_scalar(
            &self.order_pool,
            "SELECT status FROM orders WHERE id = $1::uuid",
            order,
            status.to_owned(),
        )
        .await;
    }

    /// Waits until the order's sagas have all ended (a step still running would otherwise
    /// run in the next process a test starts, at that process's failpoints).
    async fn await_sagas_done(&self, order: &str) {
        match self.engine {
            Engine::Postgres => {
                await_scalar(
                    &self.order_pool,
                    "SELECT count(*) FROM saga_states
                     WHERE order_id = $1::uuid AND status IN ('running', 'compensating')",
                    order,
                    0i64,
                )
                .await
            }
            Engine::Temporal => {
                let client = temporal_client().await;
                let workflow_id = format!("order-{order}");
                eventually(
                    Duration::from_secs(30),
                    "the order workflow to complete",
                    || {
                        let handle = client
                            .get_workflow_handle::<commerce_order::workflow::OrderWorkflow>(
                                workflow_id.clone(),
                            );
                        async move {
                            let description = handle.describe(Default::default()).await.ok()?;
                            (description.status()
                                == temporalio_client::WorkflowExecutionStatus::Completed)
                                .then_some(())
                        }
                    },
                )
                .await
            }
        }
    }

    async fn await_reserved(&self, product: &str, reserved: i64) {
        await_scalar(
            &self.product_pool,
            "SELECT reserved FROM products WHERE id = $1::uuid",
            product,
            reserved,
        )
        .await;
    }

    async fn await_payment_status(&self, order: &str, status: &str) {
        await_scalar(
            &self.payment_pool,
            "SELECT status FROM payments WHERE order_id = $1::uuid",
            order,
            status.to_owned(),
        )
        .await;
    }

    /// Waits until the order's history has exactly one line whose reason starts so.
    async fn await_note(&self, order: &str, reason_prefix: &str) {
        let query = format!(
            "SELECT count(*) FROM order_status_history WHERE order_id = $1::uuid AND reason LIKE '{reason_prefix}%'"
        );
        await_scalar(&self.order_pool, &query, order, 1i64).await;
    }

    async fn payment_status(&self, order: &str) -> String {
        sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1::uuid")
            .bind(order)
            .fetch_one(&self.payment_pool)
            .await
            .unwrap()
    }

    async fn payment_events(&self, event_type: &str, order: &str) -> usize {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox_events WHERE event_type = $1 AND aggregate_id = $2",
        )
        .bind(event_type)
        .bind(order)
        .fetch_one(&self.payment_pool)
        .await
        .unwrap();
        count as usize
    }

    /// (stock, reserved) of a product.
    async fn stock(&self, product: &str) -> (i64, i64) {
        sqlx::query_as("SELECT stock, reserved FROM products WHERE id = $1::uuid")
            .bind(product)
            .fetch_one(&self.product_pool)
            .await
            .unwrap()
    }

    async fn order_status(&self, order: &str) -> String {
        sqlx::query_scalar("SELECT status FROM orders WHERE id = $1::uuid")
            .bind(order)
            .fetch_one(&self.order_pool)
            .await
            .unwrap()
    }

    async fn payment_statuses(&self) -> Vec<(String, String)> {
        sqlx::query_as("SELECT order_id::text, status FROM payments ORDER BY created_at")
            .fetch_all(&self.payment_pool)
            .await
            .unwrap()
    }

    async fn events(&self, event_type: &str, order: &str) -> Vec<Vec<u8>> {
        sqlx::query_scalar(
            "SELECT payload FROM outbox_events WHERE event_type = $1 AND aggregate_id = $2 ORDER BY id",
        )
        .bind(event_type)
        .bind(order)
        .fetch_all(&self.order_pool)
        .await
        .unwrap()
    }

    /// What the order's saga undid, in order, then `compensated` once it recorded the failure.
    /// The placement saga's steps on this engine: on Temporal the order workflow's timers
    /// do what `schedule_payment_reminders` does.
    fn placement_steps(&self) -> Vec<&'static str> {
        STEPS
            .iter()
            .copied()
            .filter(|step| self.engine == Engine::Postgres || *step != "schedule_payment_reminders")
            .collect()
    }

    /// The placement steps that succeeded, in order.
    async fn steps_done(&self, order: &str) -> Vec<String> {
        if self.engine == Engine::Temporal {
            return self
                .activities(order)
                .await
                .into_iter()
                .filter(|activity| activity.completed && activity.kind == "run_step")
                .map(|activity| activity.step)
                .collect();
        }
        self.succeeded_steps(order, "forward").await
    }

    /// On the PostgreSQL engine: the order's steps of `phase` that succeeded, in order.
    async fn succeeded_steps(&self, order: &str, phase: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT s.step_name FROM saga_steps s JOIN saga_states st ON st.id = s.saga_id
             WHERE st.order_id = $1::uuid AND s.phase = $2 AND s.outcome = 'succeeded'
             ORDER BY s.id",
        )
        .bind(order)
        .bind(phase)
        .fetch_all(&self.order_pool)
        .await
        .unwrap()
    }

    /// How often the placement step `step` was tried.
    async fn attempts(&self, order: &str, step: &str) -> i64 {
        if self.engine == Engine::Temporal {
            return self
                .activities(order)
                .await
                .into_iter()
                .filter(|activity| activity.kind == "run_step" && activity.step == step)
                .map(|activity| i64::from(activity.attempts))
                .sum();
        }
        sqlx::query_scalar(
            "SELECT count(*) FROM saga_steps s JOIN saga_states st ON st.id = s.saga_id
             WHERE st.order_id = $1::uuid AND s.step_name = $2 AND s.phase = 'forward'",
        )
        .bind(order)
        .bind(step)
        .fetch_one(&self.order_pool)
        .await
        .unwrap()
    }

    /// The activities of the order's workflow, from its history on the Temporal server.
    async fn activities(&self, order: &str) -> Vec<Activity> {
        use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
        let events = temporal_client()
            .await
            .get_workflow_handle::<commerce_order::workflow::OrderWorkflow>(format!(
                "order-{order}"
            ))
            .fetch_history(Default::default())
            .into_events()
            .await
            .unwrap();
        let mut activities: Vec<(i64, Activity)> = Vec::new();
        for event in events {
            match event.attributes {
                Some(Attributes::ActivityTaskScheduledEventAttributes(scheduled)) => {
                    let input: Value = scheduled
                        .input
                        .and_then(|input| input.payloads.into_iter().next())
                        .map(|payload| serde_json::from_slice(&payload.data).unwrap())
                        .unwrap_or_default();
                    activities.push((
                        event.event_id,
                        Activity {
                            // `SagaActivities::run_step` → `run_step`.
                            kind: scheduled
                                .activity_type
                                .unwrap_or_default()
                                .name
                                .rsplit("::")
                                .next()
                                .unwrap_or_default()
                                .to_owned(),
                            step: input["step"].as_str().unwrap_or_default().to_owned(),
                            attempts: 0,
                            completed: false,
                        },
                    ));
                }
                Some(Attributes::ActivityTaskStartedEventAttributes(started)) => {
                    if let Some((_, activity)) = activities
                        .iter_mut()
                        .find(|(id, _)| *id == started.scheduled_event_id)
                    {
                        activity.attempts = started.attempt;
                    }
                }
                Some(Attributes::ActivityTaskCompletedEventAttributes(completed)) => {
                    if let Some((_, activity)) = activities
                        .iter_mut()
                        .find(|(id, _)| *id == completed.scheduled_event_id)
                    {
                        activity.completed = true;
                    }
                }
                _ => {}
            }
        }
        activities
            .into_iter()
            .map(|(_, activity)| activity)
            .collect()
    }

    async fn compensations(&self, order: &str) -> Vec<String> {
        if self.engine == Engine::Temporal {
            return self
                .activities(order)
                .await
                .into_iter()
                .filter(|activity| activity.completed)
                .filter_map(|activity| match activity.kind.as_str() {
                    "compensate_step" => Some(activity.step),
                    "finish_compensation" => Some("compensated".to_owned()),
                    _ => None,
                })
                .collect();
        }
        self.succeeded_steps(order, "compensate").await
    }
}

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
        .send(shop.client.get(format!("{}/readyz", shop.order)))
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
    let shipping: f64 = order["totals"]["shipping"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(shipping > 0.0, "{order}");
    let total: f64 = order["totals"]["total"].as_str().unwrap().parse().unwrap();
    assert!((total - (55.0 + shipping)).abs() < 1e-9, "{order}");
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
    assert_eq!(amount.to_string().parse::<f64>().unwrap(), total);
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
    let tokens = commerce_access::ServiceTokenSource::new(&shop.auth, "cart", CART_SECRET, "order");
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
        let runs = match shop.engine {
            Engine::Postgres => sqlx::query_scalar(
                "SELECT count(*) FROM saga_steps s JOIN saga_states st ON st.id = s.saga_id
                 WHERE st.order_id = $1::uuid AND s.step_name = $2 AND s.outcome = 'succeeded'",
            )
            .bind(&order)
            .bind(step)
            .fetch_one(&shop.order_pool)
            .await
            .unwrap(),
            Engine::Temporal => shop.attempts(&order, step).await,
        };
        assert_eq!(runs, 2, "{step}: ran before the crash and again after it");
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

async fn reminders_go_out_while_unpaid_and_the_order_expires(engine: Engine) {
    let shop = Shop::start_with(
        engine,
        r#"reminders = ["1s", "2s"]
        payment_window = "4s""#,
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
    // Payment is the next issue's; here the order is simply no longer waiting for it.
    sqlx::query("UPDATE orders SET status = 'PAID' WHERE id = $1::uuid")
        .bind(&paid)
        .execute(&shop.order_pool)
        .await
        .unwrap();

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
    // canceled; the paid one is untouched.
    shop.await_reserved(&mug, 2).await;
    assert_eq!(shop.stock(&mug).await, (10, 2));
    let payments: std::collections::HashMap<String, String> =
        shop.payment_statuses().await.into_iter().collect();
    assert_eq!(payments[&unpaid], "canceled");
    assert_eq!(payments[&paid], "requires_payment");
    assert!(
        shop.events("commerce.order.v1.PaymentReminderDue", &paid)
            .await
            .is_empty()
    );
    assert!(
        shop.events("commerce.order.v1.OrderExpired", &paid)
            .await
            .is_empty()
    );
    assert_eq!(shop.order_status(&paid).await, "PAID");
    shop.stop().await;
}

#[tokio::test]
async fn a_bad_saga_policy_stops_the_service_naming_the_key() {
    let shop = Shop::start(Engine::Postgres).await;
    let output = Command::new(env!("CARGO_BIN_EXE_commerce"))
        .arg("--config")
        .arg(shop.config_file.path())
        .args(["serve", "--target", "order"])
        .env(
            "COMMERCE_SERVICES__ORDER__HTTP_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "COMMERCE_SERVICES__ORDER__GRPC_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("COMMERCE_SERVICES__ORDER__SAGA__REMINDERS", r#"["30h"]"#)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("services.order.saga.reminders"), "{stderr}");
    shop.stop().await;
}

/// Waits until `sql` (one scalar, `param` bound as $1) yields `expected`.
async fn await_scalar<T>(pool: &sqlx::PgPool, sql: &str, param: &str, expected: T)
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + PartialEq
        + Clone
        + std::fmt::Debug
        + Send
        + Unpin,
{
    let what = format!("`{sql}` with {param} to be {expected:?}");
    eventually(Duration::from_secs(30), &what, || {
        let (pool, expected) = (pool.clone(), expected.clone());
        async move {
            let value: T = sqlx::query_scalar(sql)
                .bind(param)
                .fetch_one(&pool)
                .await
                .ok()?;
            (value == expected).then_some(())
        }
    })
    .await;
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn paying_confirms_the_order_deducts_stock_and_stops_reminders(engine: Engine) {
    // Long enough for the payment below to come first on a loaded machine.
    let shop = Shop::start_with(
        engine,
        r#"reminders = ["8s"]
        payment_window = "10s""#,
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
    let (status, _) = shop.pay(&bob, &order, "succeeded").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A declined attempt: noted, the order keeps waiting.
    let (status, body) = shop.pay(&alice, &order, "failed").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "applied");
    assert_eq!(
        shop.payment_events("commerce.payment.v1.PaymentFailed", &order)
            .await,
        1
    );
    shop.await_note(&order, "payment attempt failed").await;
    assert_eq!(shop.order_status(&order).await, "PENDING_PAYMENT");

    let (status, body) = shop.pay(&alice, &order, "succeeded").await;
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
    let (status, _) = shop.pay(&alice, &order, "succeeded").await;
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
    let shop = Shop::start_with(
        engine,
        r#"reminders = []
        payment_window = "2s""#,
    )
    .await;
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
    let (status, _) = shop.pay(&alice, &order, "succeeded").await;
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
    shop.pay(&alice, &paid, "succeeded").await;
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
    sqlx::query("UPDATE orders SET status = 'SHIPPED' WHERE id = $1::uuid")
        .bind(&shipped)
        .execute(&shop.order_pool)
        .await
        .unwrap();
    let (status, body) = shop.send(cancel(&alice, &shipped)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SHIPPED")
    );
    assert_eq!(shop.order_status(&shipped).await, "SHIPPED");
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
    for step in [
        "record_payment",
        "refund_unwanted_payment",
        "deduct_stock",
        "confirm_order",
        "cancel_payment_reminders",
    ] {
        shop.stop_order();
        shop.start_order(&[&format!("after:{step}")]).await;
        let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
        let (status, placed) = shop
            .place(&alice, &format!("paycrash-{step}"), &session)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        let order = placed["orderId"].as_str().unwrap().to_owned();
        shop.pay(&alice, &order, "succeeded").await;
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
    }
    shop.stop().await;
}

/// The same for the cancel saga, on paid and confirmed orders.
async fn a_crash_at_every_cancel_step_resumes_after_restart(engine: Engine) {
    let mut shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "15.00", 100).await;
    let steps = [
        "claim_cancel",
        "cancel_unpaid_intent",
        "refund_canceled_payment",
        "return_stock",
        "drop_reminders",
    ];
    let mut confirmed = Vec::new();
    for step in steps {
        let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
        let (_, placed) = shop
            .place(&alice, &format!("cancelcrash-{step}"), &session)
            .await;
        let order = placed["orderId"].as_str().unwrap().to_owned();
        shop.pay(&alice, &order, "succeeded").await;
        shop.await_status(&order, "CONFIRMED").await;
        confirmed.push(order);
    }
    let mut sold = 2 * steps.len() as i64;
    assert_eq!(shop.stock(&mug).await, (100 - sold, 0));
    for (step, order) in steps.into_iter().zip(confirmed) {
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
    let mut shop = Shop::start_with(
        engine,
        r#"reminders = []
        payment_window = "2s""#,
    )
    .await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "15.00", 100).await;
    for step in [
        "claim_expiry",
        "cancel_expired_intent",
        "release_expired_stock",
    ] {
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

fn decimal(value: &Value) -> rust_decimal::Decimal {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a decimal string"))
        .parse()
        .unwrap()
}

impl Shop {
    fn change_delivery(&self, token: &str, order: &str, body: Value) -> reqwest::RequestBuilder {
        self.client
            .patch(format!("{}/v1/orders/{order}/delivery", self.order))
            .bearer_auth(token.to_owned())
            .json(&body)
    }

    /// The payment's amount and revision, and how many intents it has retired.
    async fn payment_pricing(&self, order: &str) -> (rust_decimal::Decimal, i32, i64) {
        sqlx::query_as(
            "SELECT amount, revision,
                    (SELECT count(*) FROM retired_intents r WHERE r.payment_id = p.id)
             FROM payments p WHERE order_id = $1::uuid",
        )
        .bind(order)
        .fetch_one(&self.payment_pool)
        .await
        .unwrap()
    }
}

fn berlin() -> Value {
    json!({"recipient": "Olly Order", "line1": "Unter den Linden 1", "city": "Berlin", "postalCode": "10117", "country": "de"})
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
    shop.pay(&alice, &order, "succeeded").await;
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

/// Kills the order service after each step of the delivery-change saga and checks the
/// change is applied exactly once after a restart (the customer asking again).
async fn a_crash_at_every_delivery_change_step_resumes_after_restart(engine: Engine) {
    let mut shop = Shop::start(engine).await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "10.00", 100).await;
    for step in [
        "claim_delivery_change",
        "quote_delivery",
        "reprice_payment",
        "apply_delivery_change",
    ] {
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
        shop.pay(&alice, &order, "succeeded").await;
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
    shop.pay(&alice, &order, "succeeded").await;
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

/// The SagaPolicy resource's path: the operator writes the policy into a mounted file and
/// the running order service takes it up; orders placed after the change get the new
/// payment window, and a broken file changes nothing.
async fn a_changed_saga_policy_file_applies_without_a_restart(engine: Engine) {
    let policy_dir = tempfile::tempdir().unwrap();
    let file = policy_dir.path().join("saga.toml");
    let write = |window: &str, reminder: &str| {
        // As the kubelet does: the new content appears at once (write, then rename).
        let next = policy_dir.path().join(".saga.toml.next");
        std::fs::write(
            &next,
            format!("payment_window = \"{window}\"\nreminders = [\"{reminder}\"]\n"),
        )
        .unwrap();
        std::fs::rename(&next, &file).unwrap();
    };
    write("1h", "10m");
    let path = file.display().to_string();
    let shop = Shop::start_with_env(
        engine,
        "",
        &[
            ("COMMERCE_SERVICES__ORDER__SAGA_FILE", path.as_str()),
            ("COMMERCE_SERVICES__ORDER__SAGA_RELOAD_INTERVAL", "100ms"),
        ],
    )
    .await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "15.00", 10).await;
    let pool = shop.order_pool.clone();
    let window_of = move |placed: Value| {
        let pool = pool.clone();
        async move {
            let hours: f64 = sqlx::query_scalar(
                "SELECT (extract(epoch FROM payment_due_at - created_at) / 3600)::float8
                 FROM orders WHERE id = $1::uuid",
            )
            .bind(placed["orderId"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
            hours
        }
    };

    let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
    let (status, first) = shop.place(&alice, "policy-1", &session).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(
        (window_of(first.clone()).await - 1.0).abs() < 0.01,
        "{first}"
    );

    write("3h", "1h");
    // Reloaded within a few intervals; an order placed after that gets three hours.
    let mut window = 0.0;
    for attempt in 0..50 {
        let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
        let (status, placed) = shop
            .place(&alice, &format!("policy-2-{attempt}"), &session)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        window = window_of(placed).await;
        if (window - 3.0).abs() < 0.01 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        (window - 3.0).abs() < 0.01,
        "the new window never applied: {window}h"
    );

    // A reminder after the window's end is refused; the three-hour policy stays.
    write("3h", "4h");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
    let (status, placed) = shop.place(&alice, "policy-3", &session).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert!(
        (window_of(placed.clone()).await - 3.0).abs() < 0.01,
        "{placed}"
    );
    shop.stop().await;
}

/// The scenarios that hold on either saga engine, once per engine.
macro_rules! on_both_engines {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Engine::Postgres).await
                }
            )*
        }
        mod temporal {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Engine::Temporal).await
                }
            )*
        }
    };
}

on_both_engines!(
    an_order_is_placed_across_the_real_services,
    the_same_idempotency_key_gets_the_same_answer,
    each_failing_step_compensates_and_leaves_stock_as_it_was,
    promo_code_limits_hold_when_orders_race,
    a_crash_at_every_step_resumes_after_restart,
    reminders_go_out_while_unpaid_and_the_order_expires,
    paying_confirms_the_order_deducts_stock_and_stops_reminders,
    a_payment_after_expiry_is_refunded_not_confirmed,
    orders_are_canceled_before_shipping_with_stock_and_money_returned,
    a_crash_at_every_payment_step_resumes_after_restart,
    a_crash_at_every_cancel_step_resumes_after_restart,
    a_crash_at_every_expiry_step_resumes_after_restart,
    an_order_travels_from_cart_to_doorstep,
    the_delivery_changes_while_unpaid_and_the_payment_follows,
    a_crash_at_every_delivery_change_step_resumes_after_restart,
    a_changed_saga_policy_file_applies_without_a_restart,
    an_order_cut_off_before_its_saga_began_is_placed_without_a_retry,
);
