//! The order service: orders placed from checkout sessions through a durable saga, with
//! payment, cancel, expiry and delivery-change sagas, and payment reminders and expiry as
//! delayed tasks.

pub mod consumers;
pub mod context;
pub mod delivery;
pub mod domain;
pub mod engine;
pub mod error;
pub mod events;
pub mod graphql;
pub mod grpc;
pub mod http;
pub mod lifecycle;
pub mod peers;
pub mod placement;
pub mod policy;
pub mod repository;
pub mod service;
pub mod settings;
pub mod startup;
pub mod status_feed;
pub mod worker;
pub mod workflow;
pub mod workflow_client;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/order");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "order",
    summary: "orders and the order saga",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(startup::start(context)),
};

/// The Temporal worker of the order workflows (saga engine `temporal`): it reads
/// `services.order` for everything but its own address and database.
pub const WORKER_DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "order-worker",
    summary: "the order workflows' Temporal worker (saga engine `temporal`)",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(worker::start(context)),
};
