//! The REST gateway, the shop's single public entry: configured routes to the services,
//! the JWT check at the edge, rate limits shared through Redis, per-upstream timeouts,
//! retries and circuit breakers, CORS and security headers, and WebSocket / SSE passing
//! straight through.

pub mod domain;
pub mod http;
pub mod local_limit;
pub mod openapi;
pub mod service;
pub mod settings;
pub mod startup;

use commerce_runtime::ServiceDefinition;

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "gateway",
    summary: "the public REST entry point",
    migrator: None,
    messaging: false,
    start: |context| Box::pin(startup::start(context)),
};
