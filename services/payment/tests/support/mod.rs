//! One payment service per test, on its own database and topic prefix, with a test issuer
//! for service tokens.

use std::sync::Arc;

use commerce_runtime::Config;
use commerce_runtime::service::{self, Running};
use commerce_testkit::{TestDatabase, TestIssuer, fresh_database, required_env, unique};
use tokio_util::sync::CancellationToken;

pub struct PaymentUnderTest {
    pub database: TestDatabase,
    pub issuer: TestIssuer,
    pub http: String,
    pub grpc: String,
    shutdown: CancellationToken,
    running: Running,
}

impl PaymentUnderTest {
    /// `extra` is TOML added to `[services.payment]`.
    pub async fn start(extra: &str) -> Self {
        let database = fresh_database("payment").await;
        let issuer = TestIssuer::start().await;
        let toml = format!(
            r#"
            [kafka]
            brokers = "{kafka}"
            topic_prefix = "{prefix}."
            [redis]
            urls = ["{redis}"]
            [services.payment]
            http_addr = "127.0.0.1:0"
            grpc_addr = "127.0.0.1:0"
            database = {{ url = "{db}" }}
            jwks_url = "{jwks}"
            {extra}
            "#,
            kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
            redis = required_env("COMMERCE_TEST_REDIS_URL"),
            prefix = unique("payment"),
            db = database.url,
            jwks = issuer.jwks_url,
        );
        let shutdown = CancellationToken::new();
        let running = service::start(
            Arc::new(Config::from_toml_str(&toml).unwrap()),
            &[&commerce_payment::DEFINITION],
            shutdown.clone(),
        )
        .await
        .unwrap();
        Self {
            http: format!("http://{}", running.http_addrs[0].1),
            grpc: format!("http://{}", running.grpc_addrs[0].1),
            database,
            issuer,
            shutdown,
            running,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.running.wait().await.unwrap();
    }
}

pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}
