//! The payment service: payment intents, refunds and provider webhooks through a gateway
//! interface; the offline gateway for local runs. Stripe and Xendit clients: next.

pub mod domain;
pub mod gateway;
pub mod handler;
pub mod repository;
pub mod service;
pub mod signature;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/payment");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "payment",
    summary: "payment intents, webhooks, refunds",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(handler::start(context)),
};
