//! The payment service: payment intents through a gateway interface. Webhooks, refunds,
//! Stripe and Xendit come with the order lifecycle (issue 6).

pub mod domain;
pub mod gateway;
pub mod handler;
pub mod repository;
pub mod service;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/payment");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "payment",
    summary: "payment intents, webhooks, refunds",
    migrator: Some(&MIGRATOR),
    messaging: false,
    start: |context| Box::pin(handler::start(context)),
};
