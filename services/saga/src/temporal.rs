//! The second saga engine: the same `SagaDefinition`s run as Temporal workflows. Each step
//! (and each compensation) is a local activity that looks the definition up by saga type and
//! runs the step on the saga's data, serialised as JSON between the two; the workflow
//! walks the steps with the step's policy as the activity's timeout and retry policy,
//! compensates on a rejection (or when a step's attempts run out) before the point of no
//! return, and only goes forward after it. What the workflow needs to know (the plan) is
//! fixed when the saga starts, so a replay sees the same plan.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{LocalActivityOptions, WorkflowContext, WorkflowResult};

use super::{Failpoints, Failure, FailureKind, SagaDefinition, SagaPolicy, StepError};

/// A saga definition with its data as JSON, so one set of activities serves every type.
#[async_trait]
pub trait ErasedSaga: Send + Sync {
    fn saga_type(&self) -> &'static str;
    /// The steps' names and whether each has a compensation, in order.
    fn plan(&self) -> Vec<(&'static str, bool)>;
    fn pivot(&self) -> usize;
    async fn run_step(&self, step: &str, data: Value) -> Result<Value, StepError>;
    async fn compensate_step(&self, step: &str, data: Value) -> Result<(), StepError>;
    async fn compensated(&self, data: Value, failure: &Failure) -> Result<(), StepError>;
}

fn step_named<'a, S: SagaDefinition>(
    saga: &'a S,
    name: &str,
) -> Result<&'a dyn super::Step<S::Data>, StepError> {
    saga.steps()
        .iter()
        .find(|step| step.name() == name)
        .map(|step| step.as_ref())
        .ok_or_else(|| StepError::rejected(FailureKind::Invalid, format!("no step `{name}`")))
}

fn undecodable(error: serde_json::Error) -> StepError {
    StepError::rejected(FailureKind::Invalid, format!("saga data: {error}"))
}

#[async_trait]
impl<S: SagaDefinition> ErasedSaga for S {
    fn saga_type(&self) -> &'static str {
        SagaDefinition::saga_type(self)
    }

    fn plan(&self) -> Vec<(&'static str, bool)> {
        self.steps()
            .iter()
            .map(|step| (step.name(), step.compensable()))
            .collect()
    }

    fn pivot(&self) -> usize {
        SagaDefinition::pivot(self)
    }

    async fn run_step(&self, name: &str, data: Value) -> Result<Value, StepError> {
        let step = step_named(self, name)?;
        let mut data: S::Data = serde_json::from_value(data).map_err(undecodable)?;
        step.run(&mut data).await?;
        serde_json::to_value(&data).map_err(undecodable)
    }

    async fn compensate_step(&self, name: &str, data: Value) -> Result<(), StepError> {
        let step = step_named(self, name)?;
        let data: S::Data = serde_json::from_value(data).map_err(undecodable)?;
        step.compensate(&data).await
    }

    async fn compensated(&self, data: Value, failure: &Failure) -> Result<(), StepError> {
        let data: S::Data = serde_json::from_value(data).map_err(undecodable)?;
        SagaDefinition::compensated(self, &data, failure).await
    }
}

/// One step as the workflow runs it: its name and how it is tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    pub name: String,
    pub compensable: bool,
    pub timeout_ms: u64,
    pub attempts: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

/// A saga to run: its type, its data, and the plan fixed at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaRun {
    pub saga_type: String,
    pub data: Value,
    pub steps: Vec<PlannedStep>,
    pub pivot: usize,
}

impl SagaRun {
    /// The plan for `saga` under `policy`, starting from `data`.
    pub fn plan(saga: &dyn ErasedSaga, policy: &SagaPolicy, data: Value) -> Self {
        let millis = |duration: Duration| duration.as_millis().min(u64::MAX as u128) as u64;
        let steps = saga
            .plan()
            .into_iter()
            .map(|(name, compensable)| {
                let step = policy.steps.get(name).copied().unwrap_or(policy.step);
                PlannedStep {
                    name: name.to_owned(),
                    compensable,
                    timeout_ms: millis(step.timeout),
                    attempts: step.attempts,
                    backoff_ms: millis(step.backoff),
                    max_backoff_ms: millis(step.max_backoff),
                }
            })
            .collect();
        Self {
            saga_type: saga.saga_type().to_owned(),
            data,
            steps,
            pivot: saga.pivot(),
        }
    }

    /// The plan without the step `name` (a step another mechanism of this engine does).
    pub fn without(mut self, name: &str) -> Self {
        if let Some(index) = self.steps.iter().position(|step| step.name == name) {
            self.steps.remove(index);
            if index < self.pivot {
                self.pivot -= 1;
            }
        }
        self
    }
}

/// How a saga ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum SagaEnd {
    Completed { data: Value },
    Compensated { data: Value, failure: Failure },
}

/// A step to run or compensate, as the activity receives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepCall {
    pub saga_type: String,
    pub step: String,
    pub data: Value,
}

/// A step's answer: rejections are answers, not activity failures, so the workflow can
/// tell "will never work" from "ran out of attempts" without reading failure protos.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum StepAnswer {
    Done { data: Value },
    Rejected { kind: FailureKind, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompensatedCall {
    pub saga_type: String,
    pub data: Value,
    pub failure: Failure,
}

/// The activities: every registered saga definition, by type.
pub struct SagaActivities {
    sagas: HashMap<&'static str, Arc<dyn ErasedSaga>>,
    failpoints: Failpoints,
}

impl SagaActivities {
    pub fn new(sagas: impl IntoIterator<Item = Arc<dyn ErasedSaga>>) -> Self {
        Self {
            sagas: sagas
                .into_iter()
                .map(|saga| (saga.saga_type(), saga))
                .collect(),
            failpoints: Failpoints::default(),
        }
    }

    /// Runs one attempt of a step (or compensation) in a `saga.step` span, counted and timed
    /// under the same metrics as the PostgreSQL engine's (`saga_step_attempts_total`,
    /// `saga_step_duration_seconds`).
    async fn observed<T>(
        ctx: &ActivityContext,
        saga_type: &str,
        step: &str,
        phase: &'static str,
        attempt: impl std::future::Future<Output = Result<T, StepError>>,
    ) -> Result<T, StepError> {
        let info = ctx.info();
        let span = tracing::info_span!(
            "saga.step",
            saga.workflow = info.workflow_id.as_deref().unwrap_or_default(),
            saga.r#type = saga_type,
            step,
            phase,
            attempt = info.attempt
        );
        // Under the activity's span, which the tracing plugin made current from the
        // workflow's headers.
        let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(
            &span,
            opentelemetry::Context::current(),
        );
        let clock = std::time::Instant::now();
        let result = tracing::Instrument::instrument(attempt, span).await;
        let outcome = match &result {
            Ok(_) => "succeeded",
            Err(StepError::Rejected { .. }) => "failed",
            Err(StepError::Retryable(_)) => "retrying",
        };
        metrics::counter!("saga_step_attempts_total",
            "saga" => saga_type.to_owned(), "step" => step.to_owned(),
            "phase" => phase, "outcome" => outcome)
        .increment(1);
        metrics::histogram!("saga_step_duration_seconds",
            "saga" => saga_type.to_owned(), "step" => step.to_owned(), "phase" => phase)
        .record(clock.elapsed().as_secs_f64());
        if let Err(error) = &result {
            tracing::warn!(saga.r#type = saga_type, step, phase, attempt = ctx.info().attempt,
                %error, "saga step attempt failed");
        }
        result
    }

    /// Abort the process at these points, as the PostgreSQL engine does (tests only).
    pub fn with_failpoints(mut self, failpoints: Failpoints) -> Self {
        self.failpoints = failpoints;
        self
    }

    fn saga(&self, saga_type: &str) -> Result<&Arc<dyn ErasedSaga>, ActivityError> {
        self.sagas.get(saga_type).ok_or_else(|| {
            ActivityError::application(temporalio_sdk::ApplicationFailure::non_retryable(
                UnknownSaga(saga_type.to_owned()),
            ))
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no saga definition of type `{0}` on this worker")]
struct UnknownSaga(String);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Retryable(String);

fn retryable(message: String) -> ActivityError {
    ActivityError::application(temporalio_sdk::ApplicationFailure::new(Retryable(message)))
}

#[activities]
impl SagaActivities {
    /// Runs one step on the saga's data; its new data, or why it never will work.
    #[activity]
    pub async fn run_step(
        self: Arc<Self>,
        ctx: ActivityContext,
        call: StepCall,
    ) -> Result<StepAnswer, ActivityError> {
        let saga = self.saga(&call.saga_type)?;
        self.failpoints.hit(&format!("before:{}", call.step));
        let attempt = saga.run_step(&call.step, call.data);
        match Self::observed(&ctx, &call.saga_type, &call.step, "forward", attempt).await {
            Ok(data) => {
                self.failpoints.hit(&format!("after:{}", call.step));
                Ok(StepAnswer::Done { data })
            }
            Err(StepError::Rejected { kind, message }) => {
                Ok(StepAnswer::Rejected { kind, message })
            }
            Err(StepError::Retryable(cause)) => Err(retryable(cause.to_string())),
        }
    }

    /// Undoes one step; retried until it succeeds.
    #[activity]
    pub async fn compensate_step(
        self: Arc<Self>,
        ctx: ActivityContext,
        call: StepCall,
    ) -> Result<(), ActivityError> {
        let saga = self.saga(&call.saga_type)?;
        let attempt = saga.compensate_step(&call.step, call.data);
        Self::observed(&ctx, &call.saga_type, &call.step, "compensate", attempt)
            .await
            .map_err(|error| retryable(error.to_string()))?;
        self.failpoints.hit(&format!("compensated:{}", call.step));
        Ok(())
    }

    /// What the definition does once everything is undone; retried until it succeeds.
    #[activity]
    pub async fn finish_compensation(
        self: Arc<Self>,
        ctx: ActivityContext,
        call: CompensatedCall,
    ) -> Result<(), ActivityError> {
        let saga = self.saga(&call.saga_type)?;
        let attempt = saga.compensated(call.data, &call.failure);
        Self::observed(&ctx, &call.saga_type, "compensated", "compensate", attempt)
            .await
            .map_err(|error| retryable(error.to_string()))
    }
}

fn retry_policy(step: &PlannedStep, forever: bool) -> temporalio_common::RetryPolicy {
    temporalio_common::RetryPolicy::builder()
        .initial_interval(Duration::from_millis(step.backoff_ms.max(1)))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_millis(
            step.max_backoff_ms.max(step.backoff_ms).max(1),
        ))
        // 0: no limit.
        .maximum_attempts(if forever { 0 } else { step.attempts.max(1) })
        .build()
}

/// Steps run as local activities: in the worker that runs the workflow, within its workflow
/// task, recorded as one marker each. A regular activity costs the server a task to
/// schedule, dispatch and complete, and the workflow another task after it: under load the
/// Temporal dev server spent about 257 ms of CPU per order on eight of them. The marker
/// keeps the call (step and data) so history still says what ran.
fn step_options(step: &PlannedStep, forever: bool) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_millis(step.timeout_ms.max(1)))
        .retry_policy(retry_policy(step, forever))
        .summary(step.name.clone())
        .include_arguments_in_marker(true)
        .build()
}

/// Runs a saga inside any workflow: forward through the steps, compensating before the
/// point of no return, only forward after it.
pub async fn run_saga<W>(ctx: &WorkflowContext<W>, run: SagaRun) -> WorkflowResult<SagaEnd> {
    let mut data = run.data.clone();
    for (index, step) in run.steps.iter().enumerate() {
        let past_pivot = index >= run.pivot;
        loop {
            let call = StepCall {
                saga_type: run.saga_type.clone(),
                step: step.name.clone(),
                data: data.clone(),
            };
            let failure = match ctx
                .execute_local_activity(
                    SagaActivities::run_step,
                    call,
                    step_options(step, past_pivot),
                )
                .await
            {
                Ok(StepAnswer::Done { data: next }) => {
                    data = next;
                    break;
                }
                Ok(StepAnswer::Rejected { kind, message }) => Failure {
                    step: step.name.clone(),
                    kind,
                    message,
                },
                Err(error) => Failure {
                    step: step.name.clone(),
                    kind: FailureKind::Unavailable,
                    message: error.to_string(),
                },
            };
            if past_pivot {
                // Past the point of no return the saga only goes forward: try again later.
                ctx.timer(Duration::from_millis(step.max_backoff_ms.max(1000)))
                    .await;
                continue;
            }
            compensate(ctx, &run, index, &data, &failure).await?;
            return Ok(SagaEnd::Compensated { data, failure });
        }
    }
    Ok(SagaEnd::Completed { data })
}

/// Undoes steps `0..=failed` in reverse (the failed one too: an attempt that timed out may
/// have acted at the peer), then lets the definition record the failure.
async fn compensate<W>(
    ctx: &WorkflowContext<W>,
    run: &SagaRun,
    failed: usize,
    data: &Value,
    failure: &Failure,
) -> WorkflowResult<()> {
    for step in run.steps[..=failed]
        .iter()
        .rev()
        .filter(|step| step.compensable)
    {
        let call = StepCall {
            saga_type: run.saga_type.clone(),
            step: step.name.clone(),
            data: data.clone(),
        };
        ctx.execute_local_activity(
            SagaActivities::compensate_step,
            call,
            step_options(step, true),
        )
        .await
        .map_err(workflow_failure)?;
    }
    let last = &run.steps[failed];
    ctx.execute_local_activity(
        SagaActivities::finish_compensation,
        CompensatedCall {
            saga_type: run.saga_type.clone(),
            data: data.clone(),
            failure: failure.clone(),
        },
        step_options(last, true),
    )
    .await
    .map_err(workflow_failure)?;
    Ok(())
}

pub fn workflow_failure(
    error: impl std::error::Error + Send + Sync + 'static,
) -> temporalio_sdk::WorkflowTermination {
    temporalio_sdk::ApplicationFailure::new(error).into()
}

/// A saga on its own as a workflow (a service may also run sagas inside a workflow of its
/// own with `run_saga`).
#[workflow]
#[derive(Default)]
pub struct SagaWorkflow;

#[workflow_methods]
impl SagaWorkflow {
    #[run(name = "saga")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, run: SagaRun) -> WorkflowResult<SagaEnd> {
        run_saga(ctx, run).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("`{url}` is not a URL: {message}")]
    Url { url: String, message: String },
    #[error("the Temporal server at {url} does not answer: {message}")]
    Unreachable { url: String, message: String },
}

/// A client of the server at `url`, in `namespace`.
pub async fn connect(
    url: &str,
    namespace: &str,
) -> Result<temporalio_client::Client, ConnectError> {
    let parsed = url
        .parse::<temporalio_client::Url>()
        .map_err(|error| ConnectError::Url {
            url: url.to_owned(),
            message: error.to_string(),
        })?;
    let unreachable = |message: String| ConnectError::Unreachable {
        url: url.to_owned(),
        message,
    };
    let connection = temporalio_client::Connection::connect(
        temporalio_client::ConnectionOptions::new(parsed).build(),
    )
    .await
    .map_err(|error| unreachable(error.to_string()))?;
    // Trace context travels in workflow and activity headers (W3C, through the global
    // propagator), so a request's trace goes on into the workflow, its activities and the
    // peers they call; a worker built on this client gets the same plugin.
    let tracing = temporalio_sdk::opentelemetry::OpenTelemetryPlugin::builder()
        .global_propagator()
        .build();
    temporalio_client::Client::new(
        connection,
        temporalio_client::ClientOptions::new(namespace)
            .plugin(tracing)
            .build(),
    )
    .map_err(|error| unreachable(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(names: &[&str], pivot: usize) -> SagaRun {
        SagaRun {
            saga_type: "test".to_owned(),
            data: Value::Null,
            steps: names
                .iter()
                .map(|name| PlannedStep {
                    name: (*name).to_owned(),
                    compensable: false,
                    timeout_ms: 1,
                    attempts: 1,
                    backoff_ms: 1,
                    max_backoff_ms: 1,
                })
                .collect(),
            pivot,
        }
    }

    fn names(run: &SagaRun) -> Vec<&str> {
        run.steps.iter().map(|step| step.name.as_str()).collect()
    }

    #[test]
    fn leaving_out_a_step_keeps_the_pivot_on_the_same_step() {
        let before = run(&["a", "b", "c", "d"], 2).without("a");
        assert_eq!((names(&before), before.pivot), (vec!["b", "c", "d"], 1));
        let after = run(&["a", "b", "c", "d"], 2).without("d");
        assert_eq!((names(&after), after.pivot), (vec!["a", "b", "c"], 2));
        let absent = run(&["a", "b"], 1).without("z");
        assert_eq!((names(&absent), absent.pivot), (vec!["a", "b"], 1));
    }

    #[test]
    fn a_step_past_the_pivot_is_retried_without_limit() {
        let step = &run(&["a"], 0).steps[0];
        let limited = PlannedStep {
            attempts: 4,
            ..step.clone()
        };
        assert_eq!(retry_policy(&limited, false).maximum_attempts(), 4);
        assert_eq!(retry_policy(&limited, true).maximum_attempts(), 0);
    }

    #[tokio::test]
    async fn a_bad_server_url_is_named() {
        let Err(error) = connect("not a url", "default").await else {
            panic!("a bad URL is refused");
        };
        assert!(matches!(error, ConnectError::Url { .. }), "{error}");
        assert!(error.to_string().starts_with("`not a url`"), "{error}");
    }
}
