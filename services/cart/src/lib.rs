//! The cart service: carts for users and guests, promo codes, and checkout sessions the
//! order service turns into orders.

pub mod consumers;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod peers;
pub mod repository;
pub mod service;
pub mod settings;
pub mod startup;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/cart");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "cart",
    summary: "carts, promo codes, checkout sessions",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(startup::start(context)),
};
