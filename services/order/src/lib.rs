//! The order service: orders placed from checkout sessions through a durable saga, with
//! payment, cancel, expiry and delivery-change sagas, and payment reminders and expiry as
//! delayed tasks.

pub mod delivery;
pub mod domain;
pub mod graphql;
pub mod handler;
pub mod lifecycle;
pub mod peers;
pub mod placement;
pub mod repository;
pub mod saga;
pub mod service;
pub mod status_feed;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/order");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "order",
    summary: "orders and the order saga",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(handler::start(context)),
};
