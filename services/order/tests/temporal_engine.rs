//! The Temporal saga engine on a real Temporal dev server (`scripts/infra.sh up` starts one;
//! `COMMERCE_TEST_TEMPORAL_URL` says where): a saga definition written for the engine-free
//! `SagaDefinition` trait runs as a workflow whose steps are activities — forward to the
//! end; a rejection compensates the steps done (the failed one too) in reverse and records
//! the failure; a step that keeps failing is retried as its policy says, then compensated;
//! past the point of no return a failing step is retried until it succeeds. (A worker
//! killed mid-saga is tested on the real order workflows: `services/commerce/tests/order.rs`
//! aborts the process running the worker after every step, on both engines.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use commerce_saga::temporal::{ErasedSaga, SagaActivities, SagaEnd, SagaRun, SagaWorkflow};
use commerce_saga::{
    Failure, FailureKind, SagaDefinition, SagaPolicy, Step, StepError, StepPolicy,
};
use commerce_testkit::required_env;
use opentelemetry::trace::{FutureExt as _, TraceContextExt as _};
use serde::{Deserialize, Serialize};
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use uuid::Uuid;

/// A trip: what each step did is in the data; what each compensation did is in `undone`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Trip {
    done: Vec<String>,
    /// The step that refuses, if any.
    refuse_at: Option<String>,
}

#[derive(Default)]
struct Log {
    undone: Mutex<Vec<String>>,
    failures: Mutex<Vec<Failure>>,
    /// Attempts of the flaky step.
    flaky_attempts: AtomicU32,
    /// The flaky step fails until this many attempts have been made.
    flaky_until: AtomicU32,
    /// The trace each step ran in.
    trace_ids: Mutex<Vec<String>>,
    /// Attempts of the step past the pivot.
    forward_attempts: AtomicU32,
    forward_fails: AtomicU32,
}

struct Named {
    name: &'static str,
    compensable: bool,
    log: Arc<Log>,
}

#[async_trait]
impl Step<Trip> for Named {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run(&self, data: &mut Trip) -> Result<(), StepError> {
        self.log.trace_ids.lock().unwrap().push(
            tracing::Span::current()
                .context()
                .span()
                .span_context()
                .trace_id()
                .to_string(),
        );
        if data.refuse_at.as_deref() == Some(self.name) {
            return Err(StepError::rejected(
                FailureKind::Conflict,
                format!("{} refused", self.name),
            ));
        }
        match self.name {
            "flaky" => {
                let attempt = self.log.flaky_attempts.fetch_add(1, Ordering::SeqCst) + 1;
                if attempt < self.log.flaky_until.load(Ordering::SeqCst) {
                    return Err(StepError::Retryable(
                        format!("flaky attempt {attempt}").into(),
                    ));
                }
            }
            "ship" => {
                let attempt = self.log.forward_attempts.fetch_add(1, Ordering::SeqCst) + 1;
                if attempt <= self.log.forward_fails.load(Ordering::SeqCst) {
                    return Err(StepError::rejected(
                        FailureKind::Unavailable,
                        "carrier closed",
                    ));
                }
            }
            _ => {}
        }
        data.done.push(self.name.to_owned());
        Ok(())
    }

    fn compensable(&self) -> bool {
        self.compensable
    }

    async fn compensate(&self, _data: &Trip) -> Result<(), StepError> {
        self.log.undone.lock().unwrap().push(self.name.to_owned());
        Ok(())
    }
}

struct TripSaga {
    steps: Vec<Box<dyn Step<Trip>>>,
    log: Arc<Log>,
}

impl TripSaga {
    fn new(log: Arc<Log>) -> Self {
        let step = |name, compensable| -> Box<dyn Step<Trip>> {
            Box::new(Named {
                name,
                compensable,
                log: log.clone(),
            })
        };
        Self {
            steps: vec![
                step("reserve", true),
                step("charge", true),
                step("flaky", false),
                step("slow", false),
                step("ship", false),
            ],
            log,
        }
    }
}

#[async_trait]
impl SagaDefinition for TripSaga {
    type Data = Trip;

    fn saga_type(&self) -> &'static str {
        "trip"
    }

    fn steps(&self) -> &[Box<dyn Step<Trip>>] {
        &self.steps
    }

    fn pivot(&self) -> usize {
        4
    }

    async fn compensated(&self, _data: &Trip, failure: &Failure) -> Result<(), StepError> {
        self.log.failures.lock().unwrap().push(failure.clone());
        Ok(())
    }
}

/// A client as the order service makes one (with the tracing plugin).
async fn client() -> Client {
    commerce_saga::temporal::connect(&required_env("COMMERCE_TEST_TEMPORAL_URL"), "default")
        .await
        .expect("the Temporal dev server answers (scripts/infra.sh up)")
}

/// A worker for the trip saga on `task_queue`, on a thread of its own (workflow code runs
/// on one thread), until the test process ends.
fn start_worker(task_queue: &str, log: Arc<Log>) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let task_queue = task_queue.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let temporal = Runtime::from_current_tokio(Default::default()).unwrap();
            let activities =
                SagaActivities::new([Arc::new(TripSaga::new(log)) as Arc<dyn ErasedSaga>]);
            let options = WorkerOptions::new(task_queue)
                .register_workflow::<SagaWorkflow>()
                .unwrap()
                .register_activities(activities)
                .build();
            let mut worker = Worker::new(&temporal, client().await, options).unwrap();
            ready_tx.send(()).unwrap();
            worker.run().await.unwrap();
        });
    });
    ready_rx.recv().expect("the worker starts");
}

fn policy(attempts: u32, timeout: Duration) -> SagaPolicy {
    let step = StepPolicy {
        timeout,
        attempts,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    SagaPolicy {
        step,
        steps: HashMap::new(),
        ..SagaPolicy::default()
    }
}

async fn run_trip(
    client: &Client,
    task_queue: &str,
    log: &Arc<Log>,
    trip: Trip,
    policy: &SagaPolicy,
) -> SagaEnd {
    let saga = TripSaga::new(log.clone());
    let run = SagaRun::plan(&saga, policy, serde_json::to_value(trip).unwrap());
    let handle = client
        .start_workflow(
            SagaWorkflow::run,
            run,
            WorkflowStartOptions::new(task_queue, format!("trip-{}", Uuid::now_v7())).build(),
        )
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        handle.get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("the saga ends within a minute")
    .unwrap()
}

fn done(end: &SagaEnd) -> Vec<String> {
    let data = match end {
        SagaEnd::Completed { data } | SagaEnd::Compensated { data, .. } => data,
    };
    serde_json::from_value::<Trip>(data.clone()).unwrap().done
}

#[tokio::test]
async fn sagas_run_forward_compensate_and_retry_as_their_policy_says() {
    let client = client().await;
    let task_queue = format!("trips-{}", Uuid::now_v7());
    let log = Arc::new(Log::default());
    log.flaky_until.store(3, Ordering::SeqCst);
    start_worker(&task_queue, log.clone());
    let patient = policy(5, Duration::from_secs(5));

    // Forward to the end; the flaky step's first two failures are retried.
    let end = run_trip(&client, &task_queue, &log, Trip::default(), &patient).await;
    assert!(matches!(end, SagaEnd::Completed { .. }), "{end:?}");
    assert_eq!(done(&end), ["reserve", "charge", "flaky", "slow", "ship"]);
    assert_eq!(log.flaky_attempts.load(Ordering::SeqCst), 3);
    assert!(log.undone.lock().unwrap().is_empty());

    // A refusal compensates what was done, the refusing step too, newest first.
    let refused = Trip {
        refuse_at: Some("charge".into()),
        ..Trip::default()
    };
    let end = run_trip(&client, &task_queue, &log, refused, &patient).await;
    let SagaEnd::Compensated { failure, .. } = &end else {
        panic!("{end:?}")
    };
    assert_eq!(
        (
            failure.step.as_str(),
            failure.kind,
            failure.message.as_str()
        ),
        ("charge", FailureKind::Conflict, "charge refused")
    );
    assert_eq!(done(&end), ["reserve"]);
    assert_eq!(*log.undone.lock().unwrap(), ["charge", "reserve"]);
    assert_eq!(log.failures.lock().unwrap().len(), 1);

    // A step that keeps failing gets its attempts, then the saga compensates.
    log.undone.lock().unwrap().clear();
    log.flaky_attempts.store(0, Ordering::SeqCst);
    log.flaky_until.store(u32::MAX, Ordering::SeqCst);
    let end = run_trip(
        &client,
        &task_queue,
        &log,
        Trip::default(),
        &policy(2, Duration::from_secs(5)),
    )
    .await;
    let SagaEnd::Compensated { failure, .. } = &end else {
        panic!("{end:?}")
    };
    assert_eq!(
        (failure.step.as_str(), failure.kind),
        ("flaky", FailureKind::Unavailable)
    );
    assert_eq!(log.flaky_attempts.load(Ordering::SeqCst), 2);
    assert_eq!(*log.undone.lock().unwrap(), ["charge", "reserve"]);

    // Past the point of no return a refusal is not final: the step is tried again.
    log.undone.lock().unwrap().clear();
    log.flaky_until.store(0, Ordering::SeqCst);
    log.forward_attempts.store(0, Ordering::SeqCst);
    log.forward_fails.store(2, Ordering::SeqCst);
    let end = run_trip(&client, &task_queue, &log, Trip::default(), &patient).await;
    assert!(matches!(end, SagaEnd::Completed { .. }), "{end:?}");
    assert_eq!(
        log.forward_attempts.load(Ordering::SeqCst),
        3,
        "2 refused, then done"
    );
    assert!(log.undone.lock().unwrap().is_empty());
}

/// A trace goes on from the code that starts a saga into every step it runs: the tracing
/// plugin carries W3C trace context in the workflow's and the activities' headers, and
/// each step's `saga.step` span hangs under its activity's span.
#[tokio::test]
async fn the_steps_continue_the_trace_that_started_the_saga() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    opentelemetry::global::set_tracer_provider(provider.clone());
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test"))),
    )
    .unwrap();

    let client = client().await;
    let task_queue = format!("trips-{}", Uuid::now_v7());
    let log = Arc::new(Log::default());
    start_worker(&task_queue, log.clone());
    let request = tracing::info_span!("checkout request");
    let context = request.context();
    let trace_id = context.span().span_context().trace_id().to_string();
    let run = SagaRun::plan(
        &TripSaga::new(log.clone()),
        &policy(3, Duration::from_secs(5)),
        serde_json::to_value(Trip::default()).unwrap(),
    );
    let handle = client
        .start_workflow(
            SagaWorkflow::run,
            run,
            WorkflowStartOptions::new(&task_queue, format!("trip-{}", Uuid::now_v7())).build(),
        )
        .with_context(context)
        .await
        .unwrap();
    let end = tokio::time::timeout(
        Duration::from_secs(60),
        handle.get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("the saga ends within a minute")
    .unwrap();
    assert!(matches!(end, SagaEnd::Completed { .. }), "{end:?}");
    let seen = log.trace_ids.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(
        seen.iter().all(|seen| *seen == trace_id),
        "{trace_id}: {seen:?}"
    );
}
