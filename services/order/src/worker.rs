//! The `order-worker` target: the Temporal worker that runs the order workflows and their
//! activities (the saga steps, over the same peers and database as the order service).
//! Workflow code runs on one thread (the SDK's worker is not `Send`), so the worker has a
//! thread and a single-threaded runtime of its own; activities share the service's pool
//! and gRPC channels.

use std::sync::Arc;
use std::time::Duration;

use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
use temporalio_sdk::runtime::PollerBehavior;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

use crate::policy::SharedOrderPolicy;
use commerce_saga::temporal::{ErasedSaga, SagaActivities, SagaWorkflow};

use crate::settings::TemporalSettings;
use crate::settings::load_settings;
use crate::startup::{Foundation, foundation};
use crate::workflow::{OrderActivities, OrderWorkflow};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the Temporal worker: {0}")]
    Temporal(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the Temporal worker's thread: {0}")]
    Thread(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn temporal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> WorkerError {
    WorkerError::Temporal(error.into())
}

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let (settings, policy_file_text, step_names) = load_settings(&context.config)?;
    if settings.saga.engine() == commerce_saga::policy::Engine::Postgres {
        tracing::info!("saga engine is postgres: the order worker has nothing to run");
        return Ok(ServiceParts::default());
    }
    let pool = context.database()?;
    let policy = SharedOrderPolicy::new(settings.saga.clone());
    let Foundation { sagas, .. } = foundation(&context, &settings, &pool, &policy).await?;
    // Connecting here makes a wrong URL or a missing server a start-up error; the worker
    // and the readiness check share the connection.
    let client = crate::settings::connect_temporal(&settings.temporal).await?;
    let saga_activities = SagaActivities::new([
        sagas.placement as Arc<dyn ErasedSaga>,
        sagas.payment,
        sagas.expiry,
        sagas.cancel,
        sagas.delivery,
    ])
    .with_failpoints(commerce_saga::Failpoints::new(settings.failpoints.clone()));
    let order_activities = OrderActivities { pool };
    let shutdown = context.shutdown.clone();
    let temporal_settings = settings.temporal.clone();
    let worker_client = client.clone();
    let task: commerce_runtime::service::BackgroundTask = Box::pin(async move {
        run_on_own_thread(
            temporal_settings,
            worker_client,
            saga_activities,
            order_activities,
            shutdown,
        )
        .await
        .map_err(BoxError::from)
    });
    let mut background = vec![task];
    // Steps read the policy when they start (the payment window, for one), so the worker
    // follows the policy file as the service does.
    background.extend(crate::startup::policy_watcher(
        &settings,
        &policy,
        step_names,
        policy_file_text,
        context.shutdown.clone(),
    ));
    Ok(ServiceParts {
        http: axum::Router::new(),
        grpc: None,
        background,
        readiness: vec![Arc::new(crate::workflow_client::TemporalCheck(client))],
    })
}

async fn run_on_own_thread(
    settings: TemporalSettings,
    client: temporalio_client::Client,
    saga_activities: SagaActivities,
    order_activities: OrderActivities,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread_shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name("temporal-worker".to_owned())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(temporal)
                .and_then(|runtime| {
                    runtime.block_on(run_worker(
                        settings,
                        client,
                        saga_activities,
                        order_activities,
                        thread_shutdown,
                    ))
                });
            let _ = done_tx.send(result);
        })
        .map_err(|error| WorkerError::Thread(error.into()))?;
    tokio::select! {
        result = done_rx => result.map_err(|error| WorkerError::Thread(error.into()))?,
        () = async {
            shutdown.cancelled().await;
            // In-flight polls end on the server's schedule; the process does not wait for
            // them beyond this.
            tokio::time::sleep(Duration::from_secs(10)).await;
        } => {
            tracing::warn!("the Temporal worker did not stop within 10s of shutdown; leaving it");
            Ok(())
        }
    }
}

async fn run_worker(
    settings: TemporalSettings,
    client: temporalio_client::Client,
    saga_activities: SagaActivities,
    order_activities: OrderActivities,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let runtime = Runtime::from_current_tokio(Default::default()).map_err(temporal)?;
    let options = WorkerOptions::new(settings.task_queue.clone())
        .register_workflow::<OrderWorkflow>()
        .map_err(temporal)?
        .register_workflow::<SagaWorkflow>()
        .map_err(temporal)?
        .register_activities(saga_activities)
        .register_activities(order_activities)
        .sticky_queue_schedule_to_start_timeout(settings.sticky_timeout)
        // At least two: one for the sticky queue, one for the shared one.
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(
            settings.workflow_task_pollers.max(2),
        ))
        .build();
    let mut worker = Worker::new(&runtime, client, options).map_err(temporal)?;
    let stop = worker.shutdown_handle();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop();
    });
    tracing::info!(task_queue = %settings.task_queue, url = %settings.url, "Temporal worker polling");
    worker.run().await.map_err(temporal)
}
