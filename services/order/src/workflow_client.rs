//! The order service's side of the Temporal engine: starting, signalling and asking the
//! order workflows (`workflow.rs`), and the server's readiness. All of it does I/O; none
//! of it is replayed.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::FutureExt as _;
use temporalio_client::errors::{WorkflowInteractionError, WorkflowQueryError, WorkflowStartError};
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy,
    WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use uuid::Uuid;

use crate::error::OrderError;
use crate::lifecycle::{Expiry, PaymentReceived};
use crate::placement::PlacementData;
use crate::policy::SharedOrderPolicy;
use crate::workflow::{
    OrderRun, OrderWorkflow, SCHEDULING_STEP, order_workflow_id, payment_workflow_id,
};
use commerce_saga::temporal::{ErasedSaga, SagaEnd, SagaRun, SagaWorkflow};

/// The order service's side of the engine: starting, signalling and asking order
/// workflows.
#[derive(Clone)]
pub struct TemporalOrders {
    client: Client,
    failpoints: commerce_saga::Failpoints,
    task_queue: String,
    placement: Arc<dyn ErasedSaga>,
    payment: Arc<dyn ErasedSaga>,
    expiry: Arc<dyn ErasedSaga>,
    policy: SharedOrderPolicy,
}

/// Readiness: the Temporal server answers in the namespace (asking for a workflow that
/// does not exist is enough).
pub struct TemporalCheck(pub Client);

#[async_trait::async_trait]
impl commerce_runtime::health::ReadinessCheck for TemporalCheck {
    fn name(&self) -> &str {
        "temporal"
    }

    async fn check(&self) -> Result<(), String> {
        let handle = self
            .0
            .get_workflow_handle::<OrderWorkflow>("commerce-readiness-probe");
        match tokio::time::timeout(Duration::from_secs(3), handle.describe(Default::default()))
            .await
        {
            Ok(Ok(_)) | Ok(Err(WorkflowInteractionError::NotFound(_))) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("no answer within 3s".to_owned()),
        }
    }
}

/// The trace context of the request (or event) being handled, for the Temporal client's
/// tracing plugin, which reads OpenTelemetry's current context rather than tracing's.
fn request_context() -> opentelemetry::Context {
    tracing_opentelemetry::OpenTelemetrySpanExt::context(&tracing::Span::current())
}

fn unavailable(error: impl Into<commerce_runtime::BoxError>) -> OrderError {
    OrderError::Temporal(error.into())
}

impl TemporalOrders {
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn order_handle(
        &self,
        order_id: Uuid,
    ) -> temporalio_client::WorkflowHandle<Client, OrderWorkflow> {
        self.client
            .get_workflow_handle::<OrderWorkflow>(order_workflow_id(order_id))
    }

    pub fn new(
        client: Client,
        failpoints: commerce_saga::Failpoints,
        task_queue: String,
        placement: Arc<dyn ErasedSaga>,
        payment: Arc<dyn ErasedSaga>,
        expiry: Arc<dyn ErasedSaga>,
        policy: SharedOrderPolicy,
    ) -> Self {
        Self {
            client,
            failpoints,
            task_queue,
            placement,
            payment,
            expiry,
            policy,
        }
    }

    /// Starts the order's workflow, or finds it running: the workflow id is the order's, so
    /// a retried request never starts a second one.
    pub async fn start(&self, placement: &PlacementData) -> Result<(), OrderError> {
        // A test hook: the order is stored, its workflow not started yet.
        self.failpoints.hit("before:start_workflow");
        let policy = self.policy.current();
        let order_id = placement.order_id;
        let run = OrderRun {
            order_id,
            placement: SagaRun::plan(
                self.placement.as_ref(),
                &policy.saga,
                serde_json::to_value(placement)?,
            )
            .without(SCHEDULING_STEP),
            payment: SagaRun::plan(self.payment.as_ref(), &policy.saga, serde_json::Value::Null),
            expiry: SagaRun::plan(
                self.expiry.as_ref(),
                &policy.saga,
                serde_json::to_value(Expiry {
                    order_id,
                    expired: None,
                })?,
            ),
            reminder_offsets_ms: policy
                .reminder_offsets()
                .iter()
                .map(|offset| offset.as_millis().min(u64::MAX as u128) as u64)
                .collect(),
        };
        self.start_once(OrderWorkflow::run, run, order_workflow_id(order_id))
            .await
    }

    /// Starts workflow `workflow_id` unless it runs or ran already (then its outcome
    /// stands): one workflow per id, ever.
    async fn start_once<W>(
        &self,
        workflow: W,
        input: W::Input,
        workflow_id: String,
    ) -> Result<(), OrderError>
    where
        W: temporalio_common::HasWorkflowDefinition,
        W::Input: Send,
    {
        let options = WorkflowStartOptions::new(&self.task_queue, workflow_id)
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .build();
        match self
            .client
            .start_workflow(workflow, input, options)
            .with_context(request_context())
            .await
        {
            Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Starts the workflows of orders stored but never started (the process died between
    /// the two, and nobody retried the request), every `recovery_interval`.
    pub async fn run_recovery(
        self,
        pool: sqlx::PgPool,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<(), OrderError> {
        loop {
            let policy = self.policy.current();
            match crate::repository::stale_placing_orders(&pool, policy.saga.lease).await {
                Ok(orders) => {
                    for (order_id, user_id, checkout_session_id, created_at) in orders {
                        let mut placement =
                            PlacementData::new(order_id, user_id, checkout_session_id);
                        placement.placed_at = created_at;
                        if let Err(error) = self.start(&placement).await {
                            tracing::warn!(%order_id, %error, "starting an order's workflow failed; trying again");
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "looking for orders without a workflow failed")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(policy.saga.recovery_interval) => {}
            }
        }
    }

    /// How the order's placement ended, waiting up to `wait` for it: the workflow's
    /// `placed` update answers as soon as it ends. Updates reach running workflows only, so
    /// when the workflow has ended already (or the update is refused) the query is asked
    /// until the time is up.
    pub async fn wait_for_placement(
        &self,
        order_id: Uuid,
        wait: Duration,
    ) -> Result<Option<SagaEnd>, OrderError> {
        let deadline = tokio::time::Instant::now() + wait;
        let handle = self.order_handle(order_id);
        let update = handle
            .execute_update(
                OrderWorkflow::placed,
                (),
                WorkflowExecuteUpdateOptions::default(),
            )
            .with_context(request_context());
        match tokio::time::timeout(wait, update).await {
            Ok(Ok(Some(end))) => return Ok(Some(end)),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::debug!(%order_id, %error, "the placed update was not answered; asking the query");
            }
            Err(_) => return Ok(None),
        }
        loop {
            if let Some(end) = self.placement(order_id).await? {
                return Ok(Some(end));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How the order's placement ended; `None` while it runs (or while no worker answers).
    pub async fn placement(&self, order_id: Uuid) -> Result<Option<SagaEnd>, OrderError> {
        let handle = self.order_handle(order_id);
        let query = handle.query(
            OrderWorkflow::placement,
            (),
            WorkflowQueryOptions::default(),
        );
        match tokio::time::timeout(Duration::from_secs(5), query).await {
            Ok(Ok(end)) => Ok(end),
            Ok(Err(WorkflowQueryError::NotFound(_))) => {
                Err(OrderError::NotFound(format!("order {order_id}")))
            }
            Ok(Err(error)) => {
                tracing::debug!(%order_id, %error, "placement query failed; asking again");
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }

    /// A payment succeeded: the order's workflow is told. When it has ended (the order
    /// expired, was canceled or never placed), the payment saga runs on its own, and
    /// refunds a payment the order does not take.
    pub async fn paid(&self, order_id: Uuid, payment_id: String) -> Result<(), OrderError> {
        let handle = self.order_handle(order_id);
        match handle
            .signal(
                OrderWorkflow::paid,
                payment_id.clone(),
                WorkflowSignalOptions::default(),
            )
            .with_context(request_context())
            .await
        {
            Ok(()) => return Ok(()),
            Err(WorkflowInteractionError::NotFound(_)) => {}
            Err(error) => return Err(unavailable(error)),
        }
        let policy = self.policy.current();
        let run = SagaRun::plan(
            self.payment.as_ref(),
            &policy.saga,
            serde_json::to_value(PaymentReceived::new(order_id, payment_id))?,
        );
        self.start_once(SagaWorkflow::run, run, payment_workflow_id(order_id))
            .await
    }

    /// The order was canceled: its workflow stops waiting (an ended one has nothing to stop).
    pub async fn canceled(&self, order_id: Uuid) -> Result<(), OrderError> {
        let handle = self.order_handle(order_id);
        match handle
            .signal(
                OrderWorkflow::canceled,
                (),
                WorkflowSignalOptions::default(),
            )
            .with_context(request_context())
            .await
        {
            Ok(()) | Err(WorkflowInteractionError::NotFound(_)) => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }
}
