//! The notification service: the shop's events (and gRPC `Send` requests) become logged
//! notifications, rendered from templates stored per kind, channel and locale, and sent by
//! e-mail (SMTP), SMS (providers with failover) and in-app push (Redis Pub/Sub → SSE).

pub mod consumers;
pub mod delivery;
pub mod domain;
pub mod email;
pub mod grpc;
pub mod http;
pub mod peers;
pub mod repository;
pub mod service;
pub mod settings;
pub mod sms;
pub mod startup;
pub mod stream;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/notification");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "notification",
    summary: "e-mail, SMS and in-app (SSE) notifications",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(startup::start(context)),
};
