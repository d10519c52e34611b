//! The chat service: support conversations (a customer and the first free agent), groups
//! and channels over a WebSocket with a typed JSON protocol; messages are stored first,
//! then fanned out through Redis Pub/Sub to every instance.

pub mod attachments;
pub mod domain;
pub mod http;
pub mod repository;
pub mod service;
pub mod settings;
pub mod socket;
pub mod startup;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/chat");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "chat",
    summary: "support chat, groups and channels over WebSocket",
    migrator: Some(&MIGRATOR),
    messaging: false,
    start: |context| Box::pin(startup::start(context)),
};
