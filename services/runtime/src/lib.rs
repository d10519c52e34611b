//! The service runtime every commerce service runs on: configuration, telemetry, the
//! database pool and migrations, the HTTP and gRPC servers, health and graceful shutdown.

pub mod api;
pub mod config;
pub mod grpc_metrics;
pub mod health;
pub mod http;
pub mod secret;
pub mod service;
pub mod telemetry;

pub use api::ApiError;
pub use config::{Config, ConfigError};
pub use secret::{ExposeSecret, Secret, SecretString};
pub use service::{
    BackgroundTask, BoxError, RuntimeError, ServiceContext, ServiceDefinition, ServiceParts,
};
