//! Starts the auth service on free ports against a fresh database.

#![allow(dead_code)]

use std::sync::Arc;

use commerce_proto::auth::v1 as pb;
use commerce_runtime::Config;
use commerce_runtime::service::{self, Running};
use commerce_testkit::{fresh_database, required_env};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "correct horse battery 9";
pub const GATEWAY_SECRET: &str = "gateway-secret-for-tests-0001";

pub struct TestAuth {
    pub http: String,
    pub grpc: String,
    pub pool: sqlx::PgPool,
    /// Held for the test's length: dropped, it is marked finished (`commerce_testkit`).
    _database: commerce_testkit::TestDatabase,
    pub keys_dir: tempfile::TempDir,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<Running>,
}

impl TestAuth {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// `extra` is TOML appended to `[services.auth]` (limits, TTLs).
    pub async fn start_with(extra: &str) -> Self {
        let database = fresh_database("auth").await;
        let keys_dir = tempfile::tempdir().unwrap();
        let toml = format!(
            r#"
            shutdown_grace = "5s"
            [kafka]
            brokers = "{kafka}"
            [redis]
            urls = ["{redis}"]
            [services.auth]
            http_addr = "127.0.0.1:0"
            grpc_addr = "127.0.0.1:0"
            database = {{ url = "{db}" }}
            keys = {{ dir = "{keys}", generate = true }}
            service_clients = {{ gateway = "{GATEWAY_SECRET}" }}
            client_audiences = {{ gateway = ["auth", "product"] }}
            redis_prefix = "{prefix}"
            {extra}
            "#,
            kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
            redis = required_env("COMMERCE_TEST_REDIS_URL"),
            db = database.url,
            keys = keys_dir.path().display(),
            prefix = commerce_testkit::unique("auth"),
        );
        let config = Arc::new(Config::from_toml_str(&toml).expect("test config"));
        let shutdown = CancellationToken::new();
        let running = service::start(config, &[&commerce_auth::DEFINITION], shutdown.clone())
            .await
            .expect("auth starts");
        Self {
            http: format!("http://{}", running.http_addrs[0].1),
            grpc: format!("http://{}", running.grpc_addrs[0].1),
            pool: database.pool.clone(),
            _database: database,
            keys_dir,
            client: reqwest::Client::new(),
            shutdown,
            running: Some(running),
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await.expect("clean shutdown");
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.client.post(format!("{}{path}", self.http)).json(&body))
            .await
    }

    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.client
                .post(format!("{}{path}", self.http))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(
            self.client
                .get(format!("{}{path}", self.http))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn put_as(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.client
                .put(format!("{}{path}", self.http))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    pub async fn delete_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(
            self.client
                .delete(format!("{}{path}", self.http))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Signs up; the account as stored (`id`, `email`, `status`), since the answer names
    /// only the address.
    pub async fn register(&self, email: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/auth/register",
                json!({"email": email, "password": PASSWORD, "firstName": "Ada", "lastName": "Lovelace"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let (id, email, status): (String, String, String) =
            sqlx::query_as("SELECT id::text, email, status FROM users WHERE email = $1")
                .bind(body["email"].as_str().unwrap())
                .fetch_one(&self.pool)
                .await
                .unwrap();
        json!({ "id": id, "email": email, "status": status })
    }

    /// The newest verification token sent to `user_id`, read from the outbox the way the
    /// notification service would receive it.
    pub async fn verification_token(&self, user_id: &str) -> String {
        let payloads: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT event_type, payload FROM outbox_events WHERE aggregate_id = $1 ORDER BY seq",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .unwrap();
        payloads
            .iter()
            .rev()
            .find_map(|(event_type, payload)| match event_type.as_str() {
                "commerce.auth.v1.UserRegistered" => Some(
                    pb::UserRegistered::decode(payload.as_slice())
                        .unwrap()
                        .verification_token,
                ),
                "commerce.auth.v1.EmailVerificationRequested" => Some(
                    pb::EmailVerificationRequested::decode(payload.as_slice())
                        .unwrap()
                        .verification_token,
                ),
                _ => None,
            })
            .expect("a verification event")
    }

    /// The newest password-reset token sent to `user_id`, from the outbox.
    pub async fn reset_token(&self, user_id: &str) -> String {
        let payload: Vec<u8> = sqlx::query_scalar(
            "SELECT payload FROM outbox_events WHERE aggregate_id = $1
             AND event_type = 'commerce.auth.v1.PasswordResetRequested' ORDER BY seq DESC LIMIT 1",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .expect("a password-reset event");
        pb::PasswordResetRequested::decode(payload.as_slice())
            .unwrap()
            .reset_token
    }

    /// Registers, verifies and logs in; returns the login response.
    pub async fn verified_login(&self, email: &str) -> Value {
        let user = self.register(email).await;
        let token = self.verification_token(user["id"].as_str().unwrap()).await;
        let (status, body) = self
            .post("/v1/auth/verify-email", json!({ "token": token }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.login(email, PASSWORD).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/auth/login",
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Makes the user an admin directly in the database (as a first-admin bootstrap would).
    pub async fn promote(&self, email: &str, role: &str) {
        sqlx::query("UPDATE users SET role = $2 WHERE email = $1")
            .bind(email)
            .bind(role)
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

pub fn unique_email(prefix: &str) -> String {
    format!("{}@example.com", commerce_testkit::unique(prefix))
}
