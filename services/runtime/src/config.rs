//! Typed configuration: one TOML file plus `COMMERCE_`-prefixed environment variables
//! (`__` separates levels: `COMMERCE_SERVICES__PRODUCT__HTTP_ADDR`). Every error names the
//! key it is about, so a bad deployment stops with a message an operator can act on.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use commerce_messaging::KafkaConfig;
use commerce_redis::RedisConfig;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::secret::LocalSecrets;

/// A configuration problem, always tied to the key that caused it.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    fn from_figment(prefix: &str, error: figment::Error) -> Self {
        let mut path: Vec<String> = Vec::new();
        if !prefix.is_empty() {
            path.push(prefix.to_owned());
        }
        path.extend(error.path.iter().cloned());
        let message = match &error.kind {
            // figment reports a missing field at its parent; name the field itself.
            figment::error::Kind::MissingField(field) => {
                path.push(field.to_string());
                "is required but missing".to_owned()
            }
            other => other.to_string(),
        };
        let source = error
            .metadata
            .as_ref()
            .map(|metadata| format!(" (from {})", metadata.name))
            .unwrap_or_default();
        Self {
            key: path.join("."),
            message: format!("{message}{source}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub log_format: LogFormat,
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// OTLP/gRPC collector endpoint (`http://127.0.0.1:4317`); traces are exported only when set.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_level: default_log_level(),
            otlp_endpoint: None,
        }
    }
}

fn default_log_level() -> String {
    "info".to_owned()
}

/// A service's own PostgreSQL database.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    pub url: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_acquire_timeout", with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

fn default_max_connections() -> u32 {
    10
}

fn default_acquire_timeout() -> Duration {
    Duration::from_secs(5)
}

/// What the runtime itself needs of every service: where it listens and its database.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceEndpoints {
    pub http_addr: SocketAddr,
    /// Required of services that serve gRPC (checked when they start); edges have none.
    #[serde(default)]
    pub grpc_addr: Option<SocketAddr>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served, apart from the API; without
    /// it they are served on `http_addr`.
    #[serde(default)]
    pub ops_addr: Option<SocketAddr>,
    pub database: Option<DatabaseConfig>,
}

/// The process-wide part of the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct AppConfig {
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    /// How long SIGTERM waits for in-flight requests and consumers before giving up.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(20)
}

/// The loaded configuration: the process-wide part, and the source to read each service's
/// own typed section from.
#[derive(Debug, Clone)]
pub struct Config {
    pub app: AppConfig,
    figment: Figment,
}

impl Config {
    /// Loads `file` (which may be absent) and then the environment on top of it.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::new(
                    "config",
                    format!("file {} does not exist", file.display()),
                ));
            }
            figment = figment.merge(Toml::file(file));
        }
        let environment = || Env::prefixed("COMMERCE_").split("__");
        let layered = figment.clone().merge(environment());
        if layered.contains("local_secrets") {
            let local: LocalSecrets = layered
                .extract_inner("local_secrets")
                .map_err(|error| ConfigError::from_figment("local_secrets", error))?;
            // `join`: a credential the file sets keeps its value.
            figment = figment.join(
                local
                    .provider()
                    .map_err(|error| ConfigError::new(error.key(), error.to_string()))?,
            );
        }
        Self::from_figment(figment.merge(environment()))
    }

    /// Builds the configuration from any figment; tests use this with inline TOML.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let app: AppConfig = figment
            .extract()
            .map_err(|error| ConfigError::from_figment("", error))?;
        let config = Self { app, figment };
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(toml)))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.app
            .kafka
            .validate()
            .map_err(|(key, message)| ConfigError::new(format!("kafka.{key}"), message))?;
        self.app
            .redis
            .validate()
            .map_err(|(key, message)| ConfigError::new(format!("redis.{key}"), message))?;
        if let Some(endpoint) = &self.app.telemetry.otlp_endpoint
            && !endpoint.is_empty()
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        Ok(())
    }

    /// The runtime's part of `services.<name>`.
    pub fn endpoints(&self, service: &str) -> Result<ServiceEndpoints, ConfigError> {
        let endpoints: ServiceEndpoints = self.service_section(service)?;
        if let Some(database) = &endpoints.database {
            if !(database.url.starts_with("postgres://")
                || database.url.starts_with("postgresql://"))
            {
                return Err(ConfigError::new(
                    format!("services.{}.database.url", service.replace('-', "_")),
                    "must be a postgres:// URL",
                ));
            }
            if database.max_connections == 0 {
                return Err(ConfigError::new(
                    format!(
                        "services.{}.database.max_connections",
                        service.replace('-', "_")
                    ),
                    "must be at least 1",
                ));
            }
        }
        Ok(endpoints)
    }

    /// Extracts `services.<name>` into a service's own typed settings. A `-` in a target's
    /// name is `_` in its section (`order-worker` → `services.order_worker`), as in the
    /// environment (`COMMERCE_SERVICES__ORDER_WORKER__…`), where `-` cannot be written.
    pub fn service_section<T: DeserializeOwned>(&self, service: &str) -> Result<T, ConfigError> {
        let key = format!("services.{}", service.replace('-', "_"));
        if !self.figment.contains(&key) {
            return Err(ConfigError::new(key, "section is missing"));
        }
        // `focus` keeps error paths relative to the section (extract_inner appends the
        // section after the field, which garbles the key).
        self.figment
            .focus(&key)
            .extract()
            .map_err(|error| ConfigError::from_figment(&key, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [kafka]
        brokers = "127.0.0.1:9092"
        [redis]
        urls = ["redis://127.0.0.1:6379"]
        [services.product]
        http_addr = "127.0.0.1:8082"
        grpc_addr = "127.0.0.1:9082"
        database = { url = "postgres://product:product@127.0.0.1:5432/product" }
    "#;

    #[test]
    fn local_secrets_fill_what_the_file_leaves_unset() {
        let directory = tempfile::tempdir().unwrap();
        let secrets = directory.path().join("local-secrets.toml");
        let file = directory.path().join("commerce.toml");
        let set_by_hand = "a-credential-set-by-hand-0123456789";
        std::fs::write(
            &file,
            format!(
                "{BASE}\n[services.cart]\nhttp_addr = \"127.0.0.1:8083\"\n\
                 [services.order]\nclient_secret = \"{set_by_hand}\"\n\
                 [local_secrets]\nfile = {secrets:?}\nclients = [\"cart\", \"order\"]\n"
            ),
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        let secret_of = |service: &str| -> String {
            config
                .figment
                .extract_inner(&format!("services.{service}.client_secret"))
                .unwrap()
        };
        let auth_knows = |client: &str| -> String {
            config
                .figment
                .extract_inner(&format!("services.auth.service_clients.{client}"))
                .unwrap()
        };
        assert_eq!(secret_of("cart").len(), 64);
        assert_eq!(auth_knows("cart"), secret_of("cart"));
        assert_eq!(secret_of("order"), set_by_hand);
        // The section's own keys are still there.
        assert_eq!(config.endpoints("cart").unwrap().http_addr.port(), 8083);
        assert_eq!(
            Config::load(Some(&file))
                .unwrap()
                .figment
                .extract_inner::<String>("services.cart.client_secret")
                .unwrap(),
            secret_of("cart")
        );
    }

    #[test]
    fn valid_configuration_loads_with_defaults() {
        let config = Config::from_toml_str(BASE).expect("valid");
        assert_eq!(config.app.shutdown_grace, Duration::from_secs(20));
        assert_eq!(config.app.telemetry.log_format, LogFormat::Json);
        let endpoints = config.endpoints("product").expect("product section");
        assert_eq!(endpoints.http_addr.port(), 8082);
        assert_eq!(endpoints.database.expect("database").max_connections, 10);
    }

    #[test]
    fn missing_top_level_key_is_named() {
        let error = Config::from_toml_str("[redis]\nurls = [\"redis://x\"]").unwrap_err();
        assert_eq!(error.key, "kafka");
        assert!(error.to_string().contains("`kafka`"), "{error}");
    }

    #[test]
    fn missing_nested_key_is_named() {
        let toml = BASE.replace("http_addr = \"127.0.0.1:8082\"", "");
        let config = Config::from_toml_str(&toml).expect("top level is fine");
        let error = config.endpoints("product").unwrap_err();
        assert_eq!(error.key, "services.product.http_addr");
        assert!(error.message.contains("missing"), "{error}");
    }

    #[test]
    fn malformed_value_is_named() {
        let toml = BASE.replace("127.0.0.1:8082", "not-an-address");
        let config = Config::from_toml_str(&toml).expect("top level is fine");
        let error = config.endpoints("product").unwrap_err();
        assert_eq!(error.key, "services.product.http_addr");
    }

    #[test]
    fn semantic_validation_names_the_key() {
        let toml = BASE.replace("postgres://product", "mysql://product");
        let config = Config::from_toml_str(&toml).expect("top level is fine");
        assert_eq!(
            config.endpoints("product").unwrap_err().key,
            "services.product.database.url"
        );
        let toml = BASE.replace("brokers = \"127.0.0.1:9092\"", "brokers = \"\"");
        assert_eq!(
            Config::from_toml_str(&toml).unwrap_err().key,
            "kafka.brokers"
        );
        let toml = BASE.replace("[\"redis://127.0.0.1:6379\"]", "[]");
        assert_eq!(Config::from_toml_str(&toml).unwrap_err().key, "redis.urls");
    }

    #[test]
    fn missing_service_section_is_named() {
        let config = Config::from_toml_str(BASE).expect("valid");
        assert_eq!(config.endpoints("cart").unwrap_err().key, "services.cart");
    }

    #[test]
    // figment's Jail fixes the closure's error type; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("commerce.toml", BASE)?;
            jail.set_env("COMMERCE_SERVICES__PRODUCT__HTTP_ADDR", "127.0.0.1:18082");
            jail.set_env("COMMERCE_SHUTDOWN_GRACE", "3s");
            let config = Config::load(Some(Path::new("commerce.toml"))).expect("loads");
            assert_eq!(config.endpoints("product").unwrap().http_addr.port(), 18082);
            assert_eq!(config.app.shutdown_grace, Duration::from_secs(3));
            jail.set_env("COMMERCE_SERVICES__PRODUCT__GRPC_ADDR", "nonsense");
            let config = Config::load(Some(Path::new("commerce.toml"))).expect("loads");
            let error = config.endpoints("product").unwrap_err();
            assert_eq!(error.key, "services.product.grpc_addr");
            assert!(error.message.contains("COMMERCE_"), "{error}");
            Ok(())
        });
    }

    #[test]
    // figment's Jail fixes the closure's error type; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    fn a_hyphenated_target_reads_its_underscored_section_and_environment() {
        figment::Jail::expect_with(|jail| {
            let toml = format!("{BASE}\n[services.order_worker]\nhttp_addr = \"127.0.0.1:8091\"\n");
            jail.create_file("commerce.toml", &toml)?;
            let config = Config::load(Some(Path::new("commerce.toml"))).expect("loads");
            assert_eq!(
                config.endpoints("order-worker").unwrap().http_addr.port(),
                8091
            );
            jail.set_env(
                "COMMERCE_SERVICES__ORDER_WORKER__DATABASE__URL",
                "mysql://nope",
            );
            let config = Config::load(Some(Path::new("commerce.toml"))).expect("loads");
            assert_eq!(
                config.endpoints("order-worker").unwrap_err().key,
                "services.order_worker.database.url"
            );
            Ok(())
        });
    }

    #[test]
    fn absent_file_is_an_error_naming_it() {
        let error = Config::load(Some(Path::new("/nonexistent/commerce.toml"))).unwrap_err();
        assert_eq!(error.key, "config");
    }
}
