//! The search service: a full-text index of the catalogue, fed by product events through
//! the inbox, with fuzzy matching, facets, completion, suggestions and popular queries.

pub mod consumers;
pub mod domain;
pub mod http;
pub mod peers;
pub mod repository;
pub mod service;
pub mod settings;
pub mod startup;

use commerce_runtime::ServiceDefinition;

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "search",
    summary: "full-text catalogue search",
    migrator: None,
    messaging: true,
    start: |context| Box::pin(startup::start(context)),
};
