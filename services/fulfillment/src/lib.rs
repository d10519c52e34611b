//! The fulfillment service: shipping costs from rate tables. Shipments, carriers and
//! delivery tracking come with the order lifecycle.

pub mod domain;
pub mod handler;
pub mod repository;
pub mod service;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/fulfillment");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "fulfillment",
    summary: "shipping cost and shipments",
    migrator: Some(&MIGRATOR),
    messaging: false,
    start: |context| Box::pin(handler::start(context)),
};
