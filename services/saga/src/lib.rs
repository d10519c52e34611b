//! What a saga is, independent of the engine that runs it: an ordered list of steps, each
//! with a compensation, a point of no return after which steps only go forward, and a
//! policy saying how long a step may take and how often it is tried. The PostgreSQL
//! orchestrator (`postgres`) runs these definitions; a second engine runs the same ones.

pub mod policy;
pub mod postgres;
pub mod reload;
pub mod temporal;

use std::collections::HashSet;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use policy::{
    PolicyView, SAGA_POLICY_KEYS, SagaPolicy, ServicePolicy, SharedPolicy, StepPolicy,
};

/// Why a saga gave up, as the customer's answer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Something the request named does not exist (for this user).
    NotFound,
    /// The shop's state refuses it: out of stock, session used or expired, code exhausted.
    Conflict,
    /// The request itself is wrong.
    Invalid,
    /// A peer stayed unavailable through every attempt.
    Unavailable,
}

/// How a step (or its compensation) went wrong.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Worth another attempt: a timeout, an unavailable peer, a database hiccup. The error
    /// is the cause itself, or a sentence when there is none (`"...".into()`).
    #[error(transparent)]
    Retryable(Box<dyn std::error::Error + Send + Sync>),
    /// Will not succeed however often it is tried.
    #[error("{message}")]
    Rejected { kind: FailureKind, message: String },
}

impl StepError {
    pub fn rejected(kind: FailureKind, message: impl Into<String>) -> Self {
        Self::Rejected {
            kind,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for StepError {
    fn from(error: sqlx::Error) -> Self {
        Self::Retryable(error.into())
    }
}

/// The recorded reason a saga compensated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub step: String,
    pub kind: FailureKind,
    pub message: String,
}

/// One step. `run` may be called more than once for the same saga (after a crash, or
/// when an attempt timed out after the peer acted), so it must be idempotent; it writes
/// its results into `data` only once it has them. `compensate` must be safe to call for a
/// step that never ran or whose effect is already undone.
#[async_trait]
pub trait Step<D>: Send + Sync {
    fn name(&self) -> &'static str;
    async fn run(&self, data: &mut D) -> Result<(), StepError>;
    /// Whether the step has anything to undo; steps without are skipped when compensating.
    fn compensable(&self) -> bool {
        false
    }
    async fn compensate(&self, _data: &D) -> Result<(), StepError> {
        Ok(())
    }
}

/// A saga definition, shared by the engines.
#[async_trait]
pub trait SagaDefinition: Send + Sync + 'static {
    type Data: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// Stored with each saga; one definition per type.
    fn saga_type(&self) -> &'static str;
    fn steps(&self) -> &[Box<dyn Step<Self::Data>>];
    /// Steps from this index on are past the point of no return: they are retried until
    /// they succeed and never compensated.
    fn pivot(&self) -> usize;
    /// Runs once every completed step has been compensated. Idempotent.
    async fn compensated(&self, data: &Self::Data, failure: &Failure) -> Result<(), StepError>;
}

/// Panics unless `steps` are named `declared`, in order: a step added to a definition but
/// not to its published list would otherwise escape configuration and the crash tests.
pub fn assert_declared<D>(saga_type: &str, declared: &[&str], steps: &[Box<dyn Step<D>>]) {
    let names: Vec<&str> = steps.iter().map(|step| step.name()).collect();
    assert_eq!(
        names, declared,
        "saga `{saga_type}`: its steps differ from its published step list"
    );
}

/// The pivot of `steps`: the index of `first_forward_step`, the first one past the point
/// of no return. Definitions name that step rather than count to it.
///
/// # Panics
/// When no step has that name: a bug in the definition, hit by whatever builds it.
pub fn pivot_at<D>(steps: &[Box<dyn Step<D>>], first_forward_step: &str) -> usize {
    steps
        .iter()
        .position(|step| step.name() == first_forward_step)
        .unwrap_or_else(|| panic!("no step `{first_forward_step}` to be the pivot"))
}

/// Test hooks that abort the process at a named point, to prove a saga survives a crash
/// there: `before:<step>`, `after:<step>` (the step's effect happened, its record did
/// not), `compensated:<step>` (likewise for a compensation). Empty in production.
#[derive(Debug, Clone, Default)]
pub struct Failpoints(HashSet<String>);

impl Failpoints {
    pub fn new(points: impl IntoIterator<Item = String>) -> Self {
        Self(points.into_iter().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn hit(&self, point: &str) {
        if self.0.contains(point) {
            tracing::error!(failpoint = point, "failpoint reached: aborting the process");
            std::process::abort();
        }
    }
}
