//! The payment service: payment intents, refunds and provider webhooks through a gateway
//! interface: Stripe, Xendit, and the offline gateway for local runs.

pub mod domain;
pub mod gateway;
pub mod grpc;
pub mod http;
pub mod report;
pub mod repository;
pub mod service;
pub mod settings;
pub mod signature;
pub mod startup;
pub mod stripe;
pub mod xendit;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/payment");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "payment",
    summary: "payment intents, webhooks, refunds",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(startup::start(context)),
};
