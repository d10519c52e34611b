//! An order on the Temporal engine: one workflow per order, `order-{id}`, runs the
//! placement saga, then waits for payment with a selector over the payment signal, the
//! reminder timers and the expiry timer (no delayed-task queue on this engine), and ends
//! with the post-payment saga as a child workflow (`order-{id}-payment`) or the expiry
//! saga. The same saga definitions run here as on the PostgreSQL engine; only
//! `schedule_payment_reminders` is left out, since the timers do its work.
//!
//! Deterministic: Temporal replays the workflow code here, so it does no I/O of its own;
//! everything else happens in activities (`OrderActivities`, the saga steps). Starting,
//! signalling and asking workflows is the order service's side, in `workflow_client.rs`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, ChildWorkflowOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};
use temporalio_workflow::workflows::select;
use uuid::Uuid;

use crate::domain;
use crate::lifecycle::PaymentReceived;
use crate::placement::PlacementData;
use commerce_saga::Failure;
use commerce_saga::temporal::{SagaEnd, SagaRun, SagaWorkflow, run_saga, workflow_failure};

/// The placement step whose work the workflow's timers do on this engine.
pub const SCHEDULING_STEP: &str = "schedule_payment_reminders";

pub fn order_workflow_id(order_id: Uuid) -> String {
    format!("order-{order_id}")
}

pub fn payment_workflow_id(order_id: Uuid) -> String {
    format!("order-{order_id}-payment")
}

/// What an order workflow starts with: the sagas' plans, fixed at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRun {
    pub order_id: Uuid,
    pub placement: SagaRun,
    /// Its data is filled in from the payment signal.
    pub payment: SagaRun,
    pub expiry: SagaRun,
    /// Reminder times after placement, as `services.order.saga.reminders` says.
    pub reminder_offsets_ms: Vec<u64>,
}

/// How an order workflow ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "end", rename_all = "camelCase")]
pub enum OrderEnd {
    /// The placement saga compensated.
    NotPlaced {
        failure: Failure,
    },
    Paid,
    Expired,
    Canceled,
}

/// A payment reminder to publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReminderCall {
    pub order_id: Uuid,
    pub reminder: i32,
}

/// Activities of the order workflow beyond saga steps.
pub struct OrderActivities {
    pub pool: sqlx::PgPool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ActivityFailed(String);

#[activities]
impl OrderActivities {
    /// Publishes `PaymentReminderDue` once, if the order still waits for payment.
    #[activity]
    pub async fn remind(
        self: Arc<Self>,
        _ctx: ActivityContext,
        call: ReminderCall,
    ) -> Result<bool, ActivityError> {
        crate::events::publish_reminder(&self.pool, call.order_id, call.reminder)
            .await
            .map_err(|error| {
                ActivityError::application(temporalio_sdk::ApplicationFailure::new(ActivityFailed(
                    error.to_string(),
                )))
            })
    }
}

#[workflow]
#[derive(Default)]
pub struct OrderWorkflow {
    placement: Option<SagaEnd>,
    payment_id: Option<String>,
    canceled: bool,
}

fn at(time: Option<std::time::SystemTime>) -> DateTime<Utc> {
    time.map(DateTime::<Utc>::from).unwrap_or_default()
}

#[workflow_methods]
impl OrderWorkflow {
    #[run(name = "order")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, run: OrderRun) -> WorkflowResult<OrderEnd> {
        let placed = run_saga(ctx, run.placement.clone()).await?;
        ctx.state_mut(|state| state.placement = Some(placed.clone()));
        let placement: PlacementData = match placed {
            SagaEnd::Completed { data } => {
                serde_json::from_value(data).map_err(workflow_failure)?
            }
            SagaEnd::Compensated { failure, .. } => {
                settle_payment(ctx, &run).await?;
                return Ok(OrderEnd::NotPlaced { failure });
            }
        };
        let due = placement.payment_due_at.unwrap_or(placement.placed_at);
        let offsets: Vec<Duration> = run
            .reminder_offsets_ms
            .iter()
            .map(|millis| Duration::from_millis(*millis))
            .collect();
        let reminders = domain::reminder_times(placement.placed_at, due, &offsets);
        let mut sent = 0;
        let end = loop {
            let (next, reminder) = match reminders.get(sent) {
                Some(time) => (*time, Some(sent as i32 + 1)),
                None => (due, None),
            };
            let wait = (next - at(ctx.workflow_time()))
                .to_std()
                .unwrap_or_default()
                .max(Duration::from_millis(1));
            let woken = select! {
                _ = ctx.wait_condition(|state| state.payment_id.is_some() || state.canceled) => false,
                _ = ctx.timer(wait) => true,
            };
            if !woken {
                break if ctx.state(|state| state.payment_id.is_some()) {
                    OrderEnd::Paid
                } else {
                    OrderEnd::Canceled
                };
            }
            match reminder {
                Some(reminder) => {
                    ctx.execute_activity(
                        OrderActivities::remind,
                        ReminderCall {
                            order_id: run.order_id,
                            reminder,
                        },
                        ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                            .build(),
                    )
                    .await
                    .map_err(workflow_failure)?;
                    sent += 1;
                }
                None => {
                    run_saga(ctx, run.expiry.clone()).await?;
                    break OrderEnd::Expired;
                }
            }
        };
        // Paid — or a payment that came for an expired or canceled order, which the payment
        // saga refunds.
        settle_payment(ctx, &run).await?;
        Ok(end)
    }

    /// A payment succeeded for the order (from Kafka's `PaymentSucceeded`); the first counts.
    #[signal(name = "paid")]
    pub fn paid(&mut self, _ctx: &mut SyncWorkflowContext<Self>, payment_id: String) {
        self.payment_id.get_or_insert(payment_id);
    }

    /// The order was canceled: stop waiting for its payment.
    #[signal(name = "canceled")]
    pub fn canceled(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.canceled = true;
    }

    /// Answers once placement has ended (`None` if the workflow is canceled first): the
    /// order service's request waits on this one update instead of asking the query again
    /// and again, each answer of which costs the server and the worker a workflow task.
    #[update(name = "placed")]
    pub async fn placed(ctx: &mut WorkflowContext<Self>) -> Option<SagaEnd> {
        ctx.wait_condition(|state| state.placement.is_some())
            .await
            .ok()?;
        ctx.state(|state| state.placement.clone())
    }

    /// How placement ended, once it has.
    #[query(name = "placement")]
    pub fn placement(&self, _ctx: &WorkflowContextView) -> Option<SagaEnd> {
        self.placement.clone()
    }
}

/// Runs the post-payment saga as a child workflow when a payment came.
async fn settle_payment(
    ctx: &WorkflowContext<OrderWorkflow>,
    run: &OrderRun,
) -> WorkflowResult<()> {
    let Some(payment_id) = ctx.state(|state| state.payment_id.clone()) else {
        return Ok(());
    };
    let mut payment = run.payment.clone();
    payment.data = serde_json::to_value(PaymentReceived::new(run.order_id, payment_id))
        .map_err(workflow_failure)?;
    let child = ctx
        .start_child_workflow(
            SagaWorkflow::run,
            payment,
            ChildWorkflowOptions::builder()
                .workflow_id(payment_workflow_id(run.order_id))
                .build(),
        )
        .await
        .map_err(workflow_failure)?;
    child.result().await.map_err(workflow_failure)?;
    Ok(())
}
