//! The shop the order scenarios run against: `config/commerce.toml` as shipped, through the
//! whole-shop harness (`LocalShop`), with the saga's timings made short. Auth, product,
//! cart, fulfillment and payment run as one `commerce` process; the order service runs as
//! another, so a test can kill it at any saga step (a failpoint aborts the process) and
//! start it again.

use std::time::Duration;

use commerce_testkit::{eventually, free_port, required_env, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{LocalShop, Process, commerce, not_ready};

/// The offline gateway's webhook secret in these shops.
pub const OFFLINE_SECRET: &str = "offline-webhook-secret-for-tests";

/// The peers of the order service, in one process.
const PEERS: &str = "auth,product,cart,fulfillment,payment";

/// Which saga engine the shop runs its orders on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Temporal,
}

/// `[services.order.saga]` keys the tests set, as `(key, value)`: timings short enough for
/// a test, whatever the shipped policy says.
const FAST_SAGA: &[(&str, &str)] = &[
    ("LEASE", "3s"),
    ("RECOVERY_INTERVAL", "200ms"),
    ("STEP__TIMEOUT", "2s"),
    ("STEP__ATTEMPTS", "3"),
    ("STEP__BACKOFF", "50ms"),
    ("STEP__MAX_BACKOFF", "200ms"),
];

pub struct Shop {
    pub engine: Engine,
    pub local: LocalShop,
    pub auth: String,
    pub product: String,
    pub cart: String,
    pub order: String,
    pub order_grpc: String,
    /// The order service's operational endpoints (`/readyz`, `/metrics`).
    pub order_ops: String,
    pub payment: String,
    pub fulfillment: String,
    pub auth_pool: sqlx::PgPool,
    pub product_pool: sqlx::PgPool,
    pub cart_pool: sqlx::PgPool,
    pub fulfillment_pool: sqlx::PgPool,
    pub payment_pool: sqlx::PgPool,
    pub order_pool: sqlx::PgPool,
    pub client: reqwest::Client,
    peers: Option<Process>,
    order_process: Option<Process>,
}

pub async fn temporal_client() -> temporalio_client::Client {
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
pub struct Activity {
    pub kind: String,
    pub step: String,
    pub attempts: i32,
    pub completed: bool,
}

impl Shop {
    pub async fn start(engine: Engine) -> Self {
        Self::start_with(engine, &[]).await
    }

    /// `saga`: `[services.order.saga]` keys to set beyond the fast timings, as
    /// `(KEY, value)` (`("PAYMENT_WINDOW", "4s")`, `("REMINDERS", r#"["1s"]"#)`).
    pub async fn start_with(engine: Engine, saga: &[(&str, &str)]) -> Self {
        let saga: Vec<(String, String)> = saga
            .iter()
            .map(|(key, value)| {
                (
                    format!("COMMERCE_SERVICES__ORDER__SAGA__{key}"),
                    (*value).to_owned(),
                )
            })
            .collect();
        Self::start_with_env(engine, saga).await
    }

    /// `env`: configuration for the shop as `COMMERCE_…` variables, over the fast saga
    /// timings.
    pub async fn start_with_env(engine: Engine, env: Vec<(String, String)>) -> Self {
        let mut local = LocalShop::new("ord").await;
        let setting = |key: &str, value: &str| (key.to_owned(), value.to_owned());
        local.env.extend([
            setting("COMMERCE_TELEMETRY__LOG_FORMAT", "pretty"),
            setting("COMMERCE_TELEMETRY__LOG_LEVEL", "warn,commerce_order=info"),
            setting("COMMERCE_SHUTDOWN_GRACE", "3s"),
            setting("COMMERCE_SERVICES__ORDER__REQUEST_WAIT", "20s"),
            setting(
                "COMMERCE_SERVICES__PAYMENT__OFFLINE__WEBHOOK_SECRET",
                OFFLINE_SECRET,
            ),
            // As shipped, plus `order` for cart: the tests read orders over gRPC as cart.
            setting(
                "COMMERCE_SERVICES__AUTH__CLIENT_AUDIENCES__CART",
                r#"["product", "auth", "payment", "order"]"#,
            ),
            setting(
                "COMMERCE_SERVICES__ORDER__SAGA__ENGINE",
                match engine {
                    Engine::Postgres => "postgres",
                    Engine::Temporal => "temporal",
                },
            ),
            setting(
                "COMMERCE_SERVICES__ORDER__TEMPORAL__URL",
                &required_env("COMMERCE_TEST_TEMPORAL_URL"),
            ),
            setting(
                "COMMERCE_SERVICES__ORDER__TEMPORAL__TASK_QUEUE",
                &unique("orders"),
            ),
            setting("COMMERCE_SERVICES__ORDER__TEMPORAL__STICKY_TIMEOUT", "1s"),
        ]);
        local.env.extend(FAST_SAGA.iter().map(|(key, value)| {
            (
                format!("COMMERCE_SERVICES__ORDER__SAGA__{key}"),
                (*value).to_owned(),
            )
        }));
        local.env.extend(env);
        let pool = |service: &str| local.database(service).pool.clone();
        let mut shop = Self {
            engine,
            auth: local.url(8081),
            product: local.url(8082),
            cart: local.url(8083),
            order: local.url(8084),
            order_grpc: local.url(9084),
            order_ops: local.url(8184),
            payment: local.url(8085),
            fulfillment: local.url(8086),
            auth_pool: pool("auth"),
            product_pool: pool("product"),
            cart_pool: pool("cart"),
            fulfillment_pool: pool("fulfillment"),
            payment_pool: pool("payment"),
            order_pool: pool("order"),
            // No pooled connections: the order service is killed and restarted on the same
            // port, and a kept-alive connection to the dead process could be picked for
            // the next request before its close is noticed (IncompleteMessage).
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            local,
            peers: None,
            order_process: None,
        };
        shop.peers = Some(shop.spawn(PEERS, &[]));
        // Auth first: it writes the shop's service credentials the others read.
        for ops in [8181, 8182, 8183, 8185, 8186] {
            shop.await_ready(ops).await;
        }
        shop.start_order(&[]).await;
        shop
    }

    /// `commerce serve --target <targets>` on this shop; its logs land in the test's output,
    /// shown when the test fails.
    fn spawn(&self, targets: &str, extra: &[(&str, &str)]) -> Process {
        Process(
            commerce()
                .args(["serve", "--target", targets])
                .envs(self.local.env.iter().map(|(key, value)| (key, value)))
                .envs(extra.iter().copied())
                .spawn()
                .unwrap(),
        )
    }

    /// Waits until the service whose shipped ops port is `ops` answers `/readyz` with 200.
    async fn await_ready(&self, ops: u16) {
        let urls = [format!("{}/readyz", self.local.url(ops))];
        eventually(
            Duration::from_secs(60),
            &format!("{} to answer 200", urls[0]),
            || async {
                not_ready(&self.client, &urls)
                    .await
                    .is_empty()
                    .then_some(())
            },
        )
        .await;
    }

    /// Starts the order service; it aborts at any of `failpoints`. On Temporal the process
    /// runs the `order-worker` target too, on a task queue of the test's own.
    pub async fn start_order(&mut self, failpoints: &[&str]) {
        let failpoints = serde_json::to_string(failpoints).unwrap();
        let targets = match self.engine {
            Engine::Postgres => "order",
            Engine::Temporal => "order,order-worker",
        };
        self.order_process = Some(self.spawn(
            targets,
            &[("COMMERCE_SERVICES__ORDER__FAILPOINTS", failpoints.as_str())],
        ));
        self.await_ready(8184).await;
    }

    /// Stops the order service as an operator would (SIGTERM), so its consumer leaves the
    /// group at once instead of being waited out.
    pub fn stop_order(&mut self) {
        if let Some(mut process) = self.order_process.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &process.0.id().to_string()])
                .status();
            let _ = process.0.wait();
        }
    }

    /// Waits for the order process to die at its failpoint.
    pub async fn await_order_crash(&mut self) {
        let mut process = self.order_process.take().expect("order service running");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = process.0.try_wait().unwrap() {
                break status;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the order service did not reach its failpoint within 60s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!status.success(), "the order service should have aborted");
    }

    /// Runs `commerce serve --target order` on this shop with `env` on top, on ports of its
    /// own, to the end; its exit status and standard error.
    pub fn order_once(&self, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
        let (http, grpc, ops) = (free_port(), free_port(), free_port());
        let output = commerce()
            .args(["serve", "--target", "order"])
            .envs(self.local.env.iter().map(|(key, value)| (key, value)))
            .env(
                "COMMERCE_SERVICES__ORDER__HTTP_ADDR",
                format!("127.0.0.1:{http}"),
            )
            .env(
                "COMMERCE_SERVICES__ORDER__GRPC_ADDR",
                format!("127.0.0.1:{grpc}"),
            )
            .env(
                "COMMERCE_SERVICES__ORDER__OPS_ADDR",
                format!("127.0.0.1:{ops}"),
            )
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// The credential this shop generated for service client `client`.
    pub fn client_secret(&self, client: &str) -> String {
        self.local.client_secret(client)
    }

    pub async fn stop(mut self) {
        self.stop_order();
        if let Some(mut peers) = self.peers.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &peers.0.id().to_string()])
                .status();
            let status = peers.0.wait().unwrap();
            assert!(
                status.success(),
                "the peer services stopped cleanly: {status}"
            );
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A verified user's access token (and id), through the real auth flow.
    pub async fn user(&self, role: &str) -> (String, String) {
        commerce_testkit::verified_user(&self.client, &self.auth, &self.auth_pool, role).await
    }

    pub async fn product(&self, admin: &str, price: &str, stock: i64) -> String {
        let (status, product) = self
            .send(self.client.post(format!("{}/v1/products", self.product)).bearer_auth(admin).json(&json!({
                "sku": unique("SKU"), "name": "Thing", "category": "test", "price": {"amount": price, "currency": "USD"}, "stock": stock
            })))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{product}");
        product["id"].as_str().unwrap().to_owned()
    }

    /// Fills the user's (emptied) cart and checks it out; returns the checkout session id.
    pub async fn checkout(
        &self,
        token: &str,
        items: &[(&str, i64)],
        promo: Option<&str>,
    ) -> String {
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

    pub fn place_request(
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

    pub async fn place(&self, token: &str, key: &str, session: &str) -> (StatusCode, Value) {
        self.send(self.place_request(token, Some(key), session))
            .await
    }

    /// The customer pays the order through the offline gateway, and the payment is taken.
    pub async fn pay(&self, token: &str, order: &str) {
        let (status, body) = self.pay_attempt(token, order, "succeeded").await;
        assert_eq!(
            (status, body["outcome"].as_str()),
            (StatusCode::OK, Some("applied")),
            "paying {order}: {body}"
        );
    }

    /// `token` tries to pay (`outcome` "succeeded") or fails to pay ("failed") through the
    /// offline gateway; what the payment service answered.
    pub async fn pay_attempt(
        &self,
        token: &str,
        order: &str,
        outcome: &str,
    ) -> (StatusCode, Value) {
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
    pub async fn webhook(&self, body: &Value, secret: &str, at: i64) -> (StatusCode, Value) {
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

    pub async fn reference(&self, order: &str) -> String {
        sqlx::query_scalar("SELECT provider_reference FROM payments WHERE order_id = $1::uuid")
            .bind(order)
            .fetch_one(&self.payment_pool)
            .await
            .unwrap()
    }

    pub async fn await_status(&self, order: &str, status: &str) {
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
    pub async fn await_sagas_done(&self, order: &str) {
        match self.engine {
            Engine::Postgres => {
                await_scalar(
                    &self.order_pool,
                    "SELECT count(*) FROM saga_states
                     WHERE subject_id = $1::uuid AND status IN ('running', 'compensating')",
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

    pub async fn await_reserved(&self, product: &str, reserved: i64) {
        await_scalar(
            &self.product_pool,
            "SELECT reserved FROM products WHERE id = $1::uuid",
            product,
            reserved,
        )
        .await;
    }

    pub async fn await_payment_status(&self, order: &str, status: &str) {
        await_scalar(
            &self.payment_pool,
            "SELECT status FROM payments WHERE order_id = $1::uuid",
            order,
            status.to_owned(),
        )
        .await;
    }

    /// Waits until the order's history has exactly one line whose reason starts so.
    pub async fn await_note(&self, order: &str, reason_prefix: &str) {
        let query = format!(
            "SELECT count(*) FROM order_status_history WHERE order_id = $1::uuid AND reason LIKE '{reason_prefix}%'"
        );
        await_scalar(&self.order_pool, &query, order, 1i64).await;
    }

    pub async fn payment_status(&self, order: &str) -> String {
        sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1::uuid")
            .bind(order)
            .fetch_one(&self.payment_pool)
            .await
            .unwrap()
    }

    pub async fn payment_events(&self, event_type: &str, order: &str) -> usize {
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
    pub async fn stock(&self, product: &str) -> (i64, i64) {
        sqlx::query_as("SELECT stock, reserved FROM products WHERE id = $1::uuid")
            .bind(product)
            .fetch_one(&self.product_pool)
            .await
            .unwrap()
    }

    pub async fn order_status(&self, order: &str) -> String {
        sqlx::query_scalar("SELECT status FROM orders WHERE id = $1::uuid")
            .bind(order)
            .fetch_one(&self.order_pool)
            .await
            .unwrap()
    }

    pub async fn payment_statuses(&self) -> Vec<(String, String)> {
        sqlx::query_as("SELECT order_id::text, status FROM payments ORDER BY created_at")
            .fetch_all(&self.payment_pool)
            .await
            .unwrap()
    }

    pub async fn events(&self, event_type: &str, order: &str) -> Vec<Vec<u8>> {
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
    pub fn placement_steps(&self) -> Vec<&'static str> {
        commerce_order::placement::STEP_NAMES
            .iter()
            .copied()
            .filter(|step| {
                self.engine == Engine::Postgres
                    || *step != commerce_order::workflow::SCHEDULING_STEP
            })
            .collect()
    }

    /// The placement steps that succeeded, in order.
    pub async fn steps_done(&self, order: &str) -> Vec<String> {
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
    pub async fn succeeded_steps(&self, order: &str, phase: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT s.step_name FROM saga_steps s JOIN saga_states st ON st.id = s.saga_id
             WHERE st.subject_id = $1::uuid AND s.phase = $2 AND s.outcome = 'succeeded'
             ORDER BY s.id",
        )
        .bind(order)
        .bind(phase)
        .fetch_all(&self.order_pool)
        .await
        .unwrap()
    }

    /// How often the placement step `step` was tried.
    pub async fn attempts(&self, order: &str, step: &str) -> i64 {
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
             WHERE st.subject_id = $1::uuid AND s.step_name = $2 AND s.phase = 'forward'",
        )
        .bind(order)
        .bind(step)
        .fetch_one(&self.order_pool)
        .await
        .unwrap()
    }

    /// The activities of the order's workflow, from its history on the Temporal server.
    pub async fn activities(&self, order: &str) -> Vec<Activity> {
        self.activities_in(&format!("order-{order}")).await
    }

    /// The activities of one workflow, from its history on the Temporal server.
    pub async fn activities_in(&self, workflow_id: &str) -> Vec<Activity> {
        use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
        let events = temporal_client()
            .await
            .get_workflow_handle::<commerce_order::workflow::OrderWorkflow>(workflow_id)
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
                // Saga steps are local activities: one marker each, written when it resolved,
                // with the call (`include_arguments_in_marker`) and its last attempt.
                Some(Attributes::MarkerRecordedEventAttributes(marker))
                    if marker.marker_name == "core_local_activity" =>
                {
                    let detail = |key: &str| -> Value {
                        marker
                            .details
                            .get(key)
                            .and_then(|payloads| payloads.payloads.first())
                            .map(|payload| serde_json::from_slice(&payload.data).unwrap())
                            .unwrap_or_default()
                    };
                    let data = detail("data");
                    // A failed attempt to be tried again after a timer: the marker after it
                    // carries the attempts so far.
                    if !data["backoff"].is_null() {
                        continue;
                    }
                    activities.push((
                        event.event_id,
                        Activity {
                            kind: data["activity_type"]
                                .as_str()
                                .unwrap_or_default()
                                .rsplit("::")
                                .next()
                                .unwrap_or_default()
                                .to_owned(),
                            step: detail("input")["step"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            attempts: data["attempt"].as_i64().unwrap_or_default() as i32,
                            completed: marker.failure.is_none(),
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

    /// What `step_runs` reads for a step that acted, was cut off by a crash before its
    /// progress was stored, and ran again after the restart: only the run after the restart.
    /// The orchestrator logs an attempt with the progress it made (one write per step), and
    /// a local activity's marker is written when it resolves.
    pub fn runs_recorded_across_a_crash(&self) -> i64 {
        1
    }

    /// How often `step` of the order's saga ran to its end: on PostgreSQL its succeeded
    /// attempts; on Temporal the attempts of its activity in `workflow_id`'s history (the
    /// saga's workflow: `order-{id}` for placement, `order-{id}-payment` after payment).
    pub async fn step_runs(&self, order: &str, workflow_id: &str, step: &str) -> i64 {
        match self.engine {
            Engine::Postgres => sqlx::query_scalar(
                "SELECT count(*) FROM saga_steps s JOIN saga_states st ON st.id = s.saga_id
                 WHERE st.subject_id = $1::uuid AND s.step_name = $2 AND s.outcome = 'succeeded'",
            )
            .bind(order)
            .bind(step)
            .fetch_one(&self.order_pool)
            .await
            .unwrap(),
            Engine::Temporal => self
                .activities_in(workflow_id)
                .await
                .into_iter()
                .filter(|activity| activity.kind == "run_step" && activity.step == step)
                .map(|activity| i64::from(activity.attempts))
                .sum(),
        }
    }

    pub async fn compensations(&self, order: &str) -> Vec<String> {
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

    /// Staff ship the (confirmed) order once fulfillment has made its shipment, and the
    /// order hears of it.
    pub async fn ship(&self, admin: &str, order: &str) {
        let url = format!("{}/v1/admin/fulfillments/{order}", self.fulfillment);
        let client = self.client.clone();
        let admin = admin.to_owned();
        eventually(
            Duration::from_secs(30),
            "the shipment to be shipped",
            || {
                let (client, url, admin) = (client.clone(), url.clone(), admin.clone());
                async move {
                    let response = client
                        .patch(url)
                        .bearer_auth(admin)
                        .json(&json!({"status": "SHIPPED"}))
                        .send()
                        .await
                        .ok()?;
                    (response.status() == StatusCode::OK).then_some(())
                }
            },
        )
        .await;
        self.await_status(order, "SHIPPED").await;
    }
}

/// Waits until `sql` (one scalar, `param` bound as $1) yields `expected`.
pub async fn await_scalar<T>(pool: &sqlx::PgPool, sql: &str, param: &str, expected: T)
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

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn decimal(value: &Value) -> rust_decimal::Decimal {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a decimal string"))
        .parse()
        .unwrap()
}

impl Shop {
    pub fn change_delivery(
        &self,
        token: &str,
        order: &str,
        body: Value,
    ) -> reqwest::RequestBuilder {
        self.client
            .patch(format!("{}/v1/orders/{order}/delivery", self.order))
            .bearer_auth(token.to_owned())
            .json(&body)
    }

    /// The payment's amount and revision, and how many intents it has retired.
    pub async fn payment_pricing(&self, order: &str) -> (rust_decimal::Decimal, i32, i64) {
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

pub fn berlin() -> Value {
    json!({"recipient": "Olly Order", "line1": "Unter den Linden 1", "city": "Berlin", "postalCode": "10117", "country": "de"})
}
