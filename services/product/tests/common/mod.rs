//! Starts the product service on free ports against a fresh database, with a test issuer
//! standing in for the auth service's key set.

#![allow(dead_code)]

use std::sync::Arc;

use commerce_proto::product::v1 as pb;
use commerce_runtime::Config;
use commerce_runtime::service::{self, Running};
use commerce_testkit::{TestIssuer, fresh_database, required_env, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct TestProduct {
    pub http: String,
    pub grpc: String,
    pub pool: sqlx::PgPool,
    /// Held for the test's length: dropped, it is marked finished (`commerce_testkit`).
    _database: commerce_testkit::TestDatabase,
    pub issuer: TestIssuer,
    pub admin: String,
    pub customer: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<Running>,
}

impl TestProduct {
    pub async fn start() -> Self {
        let database = fresh_database("product").await;
        let issuer = TestIssuer::start().await;
        let toml = format!(
            r#"
            shutdown_grace = "5s"
            [kafka]
            brokers = "{kafka}"
            [redis]
            urls = ["{redis}"]
            [services.product]
            http_addr = "127.0.0.1:0"
            grpc_addr = "127.0.0.1:0"
            database = {{ url = "{db}", max_connections = 30 }}
            redis_prefix = "{prefix}"
            auth = {{ jwks_url = "{jwks}" }}
            "#,
            kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
            redis = required_env("COMMERCE_TEST_REDIS_URL"),
            db = database.url,
            prefix = unique("product"),
            jwks = issuer.jwks_url,
        );
        let config = Arc::new(Config::from_toml_str(&toml).expect("test config"));
        let shutdown = CancellationToken::new();
        let running = service::start(config, &[&commerce_product::DEFINITION], shutdown.clone())
            .await
            .expect("product starts");
        Self {
            http: format!("http://{}", running.http_addrs[0].1),
            grpc: format!("http://{}", running.grpc_addrs[0].1),
            pool: database.pool.clone(),
            _database: database,
            admin: issuer.user_token(Uuid::new_v4(), "admin"),
            customer: issuer.user_token(Uuid::new_v4(), "customer"),
            issuer,
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

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// Creates a product as admin; returns its JSON.
    pub async fn create(&self, sku: &str, category: &str, price: &str, stock: i64) -> Value {
        let (status, body) = self
            .send(
                self.client
                    .post(self.url("/v1/products"))
                    .bearer_auth(&self.admin)
                    .json(&json!({
                        "sku": sku, "name": format!("Product {sku}"), "category": category,
                        "price": {"amount": price, "currency": "USD"}, "stock": stock,
                    })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn grpc(
        &self,
    ) -> pb::product_service_client::ProductServiceClient<tonic::transport::Channel> {
        pb::product_service_client::ProductServiceClient::connect(self.grpc.clone())
            .await
            .unwrap()
    }

    /// A request carrying a service token for the product service.
    pub fn authorized<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let token = self.issuer.service_token("order", "product");
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    }

    pub async fn stock(&self, id: &str) -> (i64, i64) {
        sqlx::query_as("SELECT stock, reserved FROM products WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}
