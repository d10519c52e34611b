//! The commerce operator: custom resources, the pure "what does this resource want"
//! functions, and the controllers that apply them (ARCHITECTURE section 4).

pub mod catalog;
pub mod cnpg;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod kafka;
pub mod keys;
pub mod leader;
pub mod render;
pub mod run;
pub mod telemetry;
