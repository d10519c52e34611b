//! What can go wrong in the order service, and how each edge reports it: REST (`ApiError`)
//! and gRPC (`tonic::Status`).

use commerce_runtime::ApiError;

use commerce_saga::postgres::EngineError;
use commerce_saga::{Failure, FailureKind, StepError};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Retry later (with the same Idempotency-Key, for placement).
    #[error("{0}")]
    Busy(String),
    /// A peer or a step's store stayed away; the cause, or a sentence.
    #[error(transparent)]
    Unavailable(commerce_runtime::BoxError),
    #[error("Temporal: {0}")]
    Temporal(#[source] commerce_runtime::BoxError),
    #[error("saga data: {0}")]
    SagaData(#[from] serde_json::Error),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("saga engine: {0}")]
    Engine(#[from] EngineError),
    #[error("redis: {0}")]
    Redis(#[from] commerce_redis::RedisError),
    #[error("outbox: {0}")]
    Outbox(#[from] commerce_messaging::MessagingError),
}

impl From<StepError> for OrderError {
    fn from(error: StepError) -> Self {
        match error {
            StepError::Retryable(cause) => Self::Unavailable(cause),
            StepError::Rejected { kind, message } => match kind {
                FailureKind::NotFound => Self::NotFound(message),
                FailureKind::Conflict | FailureKind::Invalid => Self::Conflict(message),
                FailureKind::Unavailable => Self::Unavailable(message.into()),
            },
        }
    }
}

impl OrderError {
    /// What a compensated saga tells the customer.
    pub fn refusal(failure: Failure) -> Self {
        match failure.kind {
            FailureKind::NotFound => Self::NotFound(failure.message),
            FailureKind::Unavailable => Self::Unavailable(failure.message.into()),
            _ => Self::Conflict(failure.message),
        }
    }
}

/// How long a client waits before retrying a placement that is still running.
const BUSY_RETRY_SECS: u64 = 1;
/// How long a client waits while a peer or the saga engine is away.
pub const UNAVAILABLE_RETRY_SECS: u64 = 2;

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::Invalid { field, message } => ApiError::invalid(field, message),
            OrderError::NotFound(_) => ApiError::not_found(error.to_string()),
            OrderError::Conflict(_) => ApiError::conflict(error.to_string()),
            OrderError::Busy(_) => ApiError {
                retry_after: Some(BUSY_RETRY_SECS),
                ..ApiError::conflict(error.to_string())
            },
            OrderError::Unavailable(_) | OrderError::Temporal(_) | OrderError::Outbox(_) => {
                ApiError::unavailable(UNAVAILABLE_RETRY_SECS, error.to_string())
            }
            OrderError::Storage(_)
            | OrderError::Engine(_)
            | OrderError::Redis(_)
            | OrderError::SagaData(_) => ApiError::storage(&error),
        }
    }
}

impl From<OrderError> for tonic::Status {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::Invalid { .. } => tonic::Status::invalid_argument(error.to_string()),
            OrderError::NotFound(_) => tonic::Status::not_found(error.to_string()),
            other => commerce_runtime::api::storage_status(&other),
        }
    }
}
