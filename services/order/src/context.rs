//! What every order saga's steps share (placement, payment, expiry, cancel, delivery).

use commerce_redis::TaskQueue;
use sqlx::PgPool;
use uuid::Uuid;

use crate::events::{expiry_task_id, reminder_task_id};
use crate::peers::Peers;
use commerce_saga::{FailureKind, StepError};

use crate::policy::SharedOrderPolicy;

/// The order database, the peers, the task queue and the live saga policy.
pub struct SagaContext {
    pub pool: PgPool,
    pub peers: Peers,
    pub queue: TaskQueue,
    pub policy: SharedOrderPolicy,
}

impl SagaContext {
    /// Refunds whatever is left of the order's payment; nothing left counts as done (the
    /// cancel and payment sagas may both see a paid order they do not want).
    pub async fn refund_rest(
        &self,
        order_id: Uuid,
        reason: &str,
        key: &str,
    ) -> Result<(), StepError> {
        match self.peers.refund(order_id, None, reason, key).await {
            Ok(_) => Ok(()),
            Err(StepError::Rejected {
                kind: FailureKind::Conflict,
                message,
            }) if message.contains("fully refunded") => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Cancels the order's pending reminder and expiry tasks.
    pub async fn drop_tasks(&self, order_id: Uuid) -> Result<(), StepError> {
        let redis = |error: commerce_redis::RedisError| StepError::Retryable(error.into());
        for reminder in 1..=self.policy.current().reminders.len() as i32 {
            self.queue
                .cancel(&reminder_task_id(order_id, reminder))
                .await
                .map_err(redis)?;
        }
        self.queue
            .cancel(&expiry_task_id(order_id))
            .await
            .map_err(redis)?;
        Ok(())
    }
}
