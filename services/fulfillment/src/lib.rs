//! The fulfillment service: shipping costs from rate tables, and shipments for confirmed
//! orders through a carrier (local, or EasyPost) with tracking updates.

pub mod carrier;
pub mod consumers;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod repository;
pub mod service;
pub mod settings;
pub mod shipments;
pub mod startup;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/fulfillment");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "fulfillment",
    summary: "shipping cost and shipments",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(startup::start(context)),
};
