//! The auth service: identities, e-mail verification, RS256 access tokens with rotating
//! refresh tokens, sessions, addresses and service-to-service tokens.

pub mod domain;
pub mod graphql;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod repository;
pub mod service;
pub mod settings;
pub mod startup;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/auth");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "auth",
    summary: "identity, e-mail verification, RS256 tokens",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(startup::start(context)),
};
