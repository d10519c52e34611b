//! The built-in saga engine: saga state and a step log in PostgreSQL.
//!
//! A saga row says which step runs next (or how many are left to compensate) and carries
//! the saga's data. A process drives a saga while it holds the row's lease; every write of
//! progress is fenced on that lease, so a process that lost it (it stalled, another took
//! over) stops instead of writing over the new owner. A process that dies mid-step leaves
//! the lease to expire; the recovery loop (in any process, including the restarted one)
//! then takes the saga over and re-runs the step it was in, which is why steps are
//! idempotent.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::{Failpoints, Failure, FailureKind, PolicyView, SagaDefinition, SagaPolicy, StepError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("saga storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("saga data: {0}")]
    Data(#[from] serde_json::Error),
    #[error("saga {0} not found")]
    NotFound(Uuid),
}

/// Where a saga stands.
#[derive(Debug, Clone)]
pub enum Outcome<D> {
    /// Every step ran.
    Completed(D),
    /// A step failed and every completed step was compensated.
    Compensated(D, Failure),
    /// Still running: in another process, or waiting for its next attempt.
    InProgress,
}

struct Record {
    id: Uuid,
    status: String,
    step: i32,
    data: Value,
    failure: Option<Value>,
    /// When our lease ends at the latest, by this process's clock (measured from before
    /// the statement that set it, so never later than the database's).
    lease_until: Instant,
}

/// One attempt of a step, logged in `saga_steps` with the state change it led to.
struct StepLog {
    index: i32,
    name: &'static str,
    phase: &'static str,
    attempt: i32,
    outcome: &'static str,
    error: Option<String>,
    started_at: chrono::DateTime<Utc>,
}

impl StepLog {
    /// Binds an entry's columns (`saga_steps` order, after `saga_id`) to the next
    /// parameters of `query`; all NULL when there is no entry.
    fn bind<'q>(
        log: Option<&'q Self>,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(log.map(|log| log.index))
            .bind(log.map(|log| log.name))
            .bind(log.map(|log| log.phase))
            .bind(log.map(|log| log.attempt))
            .bind(log.map(|log| log.outcome))
            .bind(log.and_then(|log| log.error.as_deref()))
            .bind(log.map(|log| log.started_at))
    }
}

/// How an action's attempts ended: its result and the last attempt's log entry, which is
/// written together with the progress it leads to.
type Attempted = (Result<(), Failure>, StepLog);

#[derive(Clone, Copy)]
enum Action {
    Run(usize),
    Compensate(usize),
    Finalize,
}

impl Action {
    fn phase(self) -> &'static str {
        match self {
            Self::Run(_) => "forward",
            Self::Compensate(_) | Self::Finalize => "compensate",
        }
    }
}

/// The lease was taken from us: stop driving.
struct LeaseLost;

pub struct Orchestrator<S: SagaDefinition> {
    pool: PgPool,
    definition: Arc<S>,
    policy: Arc<dyn PolicyView>,
    failpoints: Failpoints,
    /// This process, as the holder of saga leases.
    owner: Uuid,
    /// Sagas a task of this process is driving right now: the lease tells processes apart,
    /// this tells this process's own tasks (a request and the recovery loop) apart.
    driving: Arc<Mutex<HashSet<Uuid>>>,
}

/// Marks a saga as driven by this task until dropped.
struct Driving {
    sagas: Arc<Mutex<HashSet<Uuid>>>,
    saga_id: Uuid,
}

impl Driving {
    fn take(sagas: &Arc<Mutex<HashSet<Uuid>>>, saga_id: Uuid) -> Option<Self> {
        let mut held = sagas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        held.insert(saga_id).then(|| Self {
            sagas: sagas.clone(),
            saga_id,
        })
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        self.sagas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.saga_id);
    }
}

impl<S: SagaDefinition> Orchestrator<S> {
    pub fn new(
        pool: PgPool,
        definition: Arc<S>,
        policy: impl PolicyView,
        failpoints: Failpoints,
    ) -> Self {
        Self {
            pool,
            definition,
            policy: Arc::new(policy),
            failpoints,
            owner: Uuid::new_v4(),
            driving: Arc::default(),
        }
    }

    pub fn policy(&self) -> Arc<SagaPolicy> {
        self.policy.saga()
    }

    /// Records a new saga inside the caller's transaction, leased to this process so the
    /// caller can drive it at once.
    pub async fn create(
        &self,
        connection: &mut PgConnection,
        saga_id: Uuid,
        subject_id: Uuid,
        data: &S::Data,
    ) -> Result<(), EngineError> {
        sqlx::query(
            "INSERT INTO saga_states (id, saga_type, subject_id, status, step, data, lease_owner, lease_until)
             VALUES ($1, $2, $3, 'running', 0, $4, $5, now() + make_interval(secs => $6))",
        )
        .bind(saga_id)
        .bind(self.definition.saga_type())
        .bind(subject_id)
        .bind(serde_json::to_value(data)?)
        .bind(self.owner)
        .bind(self.policy.saga().lease.as_secs_f64())
        .execute(connection)
        .await?;
        Ok(())
    }

    /// The subject's saga of this type, created unleased if it does not exist yet (inside
    /// the caller's transaction, e.g. an inbox handler's). Whoever drives it next — a kick
    /// after the commit or the recovery loop — runs it.
    pub async fn create_or_get(
        &self,
        connection: &mut PgConnection,
        subject_id: Uuid,
        data: &S::Data,
    ) -> Result<Uuid, EngineError> {
        let created: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO saga_states (id, saga_type, subject_id, status, step, data)
             VALUES ($1, $2, $3, 'running', 0, $4)
             ON CONFLICT (saga_type, subject_id) DO NOTHING RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(self.definition.saga_type())
        .bind(subject_id)
        .bind(serde_json::to_value(data)?)
        .fetch_optional(&mut *connection)
        .await?;
        match created {
            Some(id) => Ok(id),
            None => Ok(sqlx::query_scalar(
                "SELECT id FROM saga_states WHERE saga_type = $1 AND subject_id = $2",
            )
            .bind(self.definition.saga_type())
            .bind(subject_id)
            .fetch_one(connection)
            .await?),
        }
    }

    /// Drives a saga created in a transaction that is about to commit: retries briefly
    /// until the row is visible. The recovery loop is the safety net if this gives up.
    pub async fn kick(self: Arc<Self>, saga_id: Uuid) {
        for _ in 0..50 {
            match self.drive(saga_id).await {
                Err(EngineError::NotFound(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => {
                    tracing::warn!(%saga_id, %error, "driving a new saga failed; recovery will retry");
                    return;
                }
                Ok(_) => return,
            }
        }
    }

    /// Deletes a compensated saga (and its log), so the same subject can start one again.
    pub async fn forget(&self, saga_id: Uuid) -> Result<(), EngineError> {
        sqlx::query("DELETE FROM saga_states WHERE id = $1 AND status = 'compensated'")
            .bind(saga_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The saga of this definition's type for a subject.
    pub async fn saga_of(&self, subject_id: Uuid) -> Result<Uuid, EngineError> {
        sqlx::query_scalar("SELECT id FROM saga_states WHERE saga_type = $1 AND subject_id = $2")
            .bind(self.definition.saga_type())
            .bind(subject_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(EngineError::NotFound(subject_id))
    }

    /// The saga's state, without driving it.
    pub async fn outcome(&self, saga_id: Uuid) -> Result<Outcome<S::Data>, EngineError> {
        let record = sqlx::query_as::<_, (Uuid, String, i32, Value, Option<Value>)>(
            "SELECT id, status, step, data, failure FROM saga_states WHERE id = $1",
        )
        .bind(saga_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(EngineError::NotFound(saga_id))?;
        let record = Record {
            id: record.0,
            status: record.1,
            step: record.2,
            data: record.3,
            failure: record.4,
            lease_until: Instant::now(),
        };
        Self::outcome_of(&record)
    }

    fn outcome_of(record: &Record) -> Result<Outcome<S::Data>, EngineError> {
        Ok(match record.status.as_str() {
            "completed" => Outcome::Completed(serde_json::from_value(record.data.clone())?),
            "compensated" => Outcome::Compensated(
                serde_json::from_value(record.data.clone())?,
                serde_json::from_value(record.failure.clone().unwrap_or_default())?,
            ),
            _ => Outcome::InProgress,
        })
    }

    /// Drives the saga as far as it goes now: to its end, to the end of its compensation,
    /// or until a step must wait for a later attempt. A saga another live process is
    /// driving is left to it (`InProgress`).
    pub async fn drive(&self, saga_id: Uuid) -> Result<Outcome<S::Data>, EngineError> {
        let Some(_driving) = Driving::take(&self.driving, saga_id) else {
            return self.outcome(saga_id).await;
        };
        let Some(mut record) = self.claim(saga_id).await? else {
            return self.outcome(saga_id).await;
        };
        let mut data: S::Data = serde_json::from_value(record.data.clone())?;
        let steps = self.definition.steps();
        loop {
            match record.status.as_str() {
                "running" => {
                    let index = record.step as usize;
                    if index >= steps.len() {
                        // Only a saga stored with every step done (by an older version) is
                        // here; a last step's progress is written as completed.
                        if self
                            .advance(&mut record, "completed", index as i32, None, None)
                            .await?
                            .is_err()
                        {
                            return self.outcome(saga_id).await;
                        }
                        continue;
                    }
                    let name = steps[index].name();
                    self.failpoints.hit(&format!("before:{name}"));
                    let Ok((result, log)) = self
                        .attempts(&mut record, Action::Run(index), &mut data)
                        .await?
                    else {
                        return self.outcome(saga_id).await;
                    };
                    let advanced = match result {
                        Ok(()) => {
                            self.failpoints.hit(&format!("after:{name}"));
                            record.data = serde_json::to_value(&data)?;
                            let status = if index + 1 == steps.len() {
                                "completed"
                            } else {
                                "running"
                            };
                            self.advance(&mut record, status, index as i32 + 1, None, Some(&log))
                                .await?
                        }
                        Err(failure) if index >= self.definition.pivot() => {
                            // Past the point of no return the saga only goes forward.
                            tracing::error!(saga_id = %record.id, step = name, error = %failure.message,
                                "step past the point of no return failed; retrying later");
                            self.defer(&record, &log).await?;
                            return Ok(Outcome::InProgress);
                        }
                        Err(failure) => {
                            tracing::warn!(saga_id = %record.id, step = name, error = %failure.message,
                                "saga step failed; compensating");
                            // The failed step is compensated too: an attempt that timed out may
                            // have acted at the peer.
                            let failure_value = serde_json::to_value(&failure)?;
                            record.data = serde_json::to_value(&data)?;
                            self.advance(
                                &mut record,
                                "compensating",
                                index as i32 + 1,
                                Some(failure_value),
                                Some(&log),
                            )
                            .await?
                        }
                    };
                    if advanced.is_err() {
                        return self.outcome(saga_id).await;
                    }
                }
                "compensating" => {
                    let action = match record.step {
                        0 => Action::Finalize,
                        left => Action::Compensate(left as usize - 1),
                    };
                    let (result, log) = match action {
                        // Nothing to undo: move past the step without trying anything.
                        Action::Compensate(index) if !steps[index].compensable() => (Ok(()), None),
                        _ => match self.attempts(&mut record, action, &mut data).await? {
                            Ok((result, log)) => (result, Some(log)),
                            Err(LeaseLost) => return self.outcome(saga_id).await,
                        },
                    };
                    if let Err(failure) = result {
                        tracing::error!(saga_id = %record.id, step = %failure.step, error = %failure.message,
                            "compensation failed; retrying later");
                        if let Some(log) = &log {
                            self.defer(&record, log).await?;
                        }
                        return Ok(Outcome::InProgress);
                    }
                    if let Action::Compensate(index) = action
                        && steps[index].compensable()
                    {
                        self.failpoints
                            .hit(&format!("compensated:{}", steps[index].name()));
                    }
                    let (status, step) = match action {
                        Action::Finalize => ("compensated", 0),
                        _ => ("compensating", record.step - 1),
                    };
                    let failure = record.failure.clone();
                    if self
                        .advance(&mut record, status, step, failure, log.as_ref())
                        .await?
                        .is_err()
                    {
                        return self.outcome(saga_id).await;
                    }
                }
                _ => {
                    let outcome = Self::outcome_of(&record)?;
                    let label = match &outcome {
                        Outcome::Completed(_) => "completed",
                        Outcome::Compensated(..) => "compensated",
                        Outcome::InProgress => "in_progress",
                    };
                    metrics::counter!("saga_finished_total",
                        "saga" => self.definition.saga_type(), "outcome" => label)
                    .increment(1);
                    return Ok(outcome);
                }
            }
        }
    }

    /// Runs one step, compensation or the final hook under the step's policy: each attempt
    /// limited by the timeout, retryable errors tried again after a growing pause. Attempts
    /// that will be retried are logged at once; the last one's log entry is returned.
    async fn attempts(
        &self,
        record: &mut Record,
        action: Action,
        data: &mut S::Data,
    ) -> Result<Result<Attempted, LeaseLost>, EngineError> {
        let steps = self.definition.steps();
        let (index, name) = match action {
            Action::Run(index) | Action::Compensate(index) => (index as i32, steps[index].name()),
            Action::Finalize => (steps.len() as i32, "compensated"),
        };
        let policy = self.policy.saga().for_step(name);
        let failure: Option<Failure> = record
            .failure
            .clone()
            .and_then(|value| serde_json::from_value(value).ok());
        let attempts = policy.attempts.max(1);
        for attempt in 1..=attempts {
            // An attempt starts only with the lease lasting past its timeout.
            if Instant::now() + policy.timeout >= record.lease_until && !self.renew(record).await? {
                return Ok(Err(LeaseLost));
            }
            let started_at = Utc::now();
            let clock = Instant::now();
            let mut working = data.clone();
            let span = tracing::info_span!("saga.step", saga.id = %record.id,
                saga.r#type = self.definition.saga_type(), step = name, phase = action.phase(), attempt);
            let run = async {
                match action {
                    Action::Run(index) => steps[index].run(&mut working).await,
                    Action::Compensate(index) => steps[index].compensate(&working).await,
                    Action::Finalize => {
                        let failure = failure.clone().unwrap_or(Failure {
                            step: String::new(),
                            kind: FailureKind::Unavailable,
                            message: String::new(),
                        });
                        self.definition.compensated(&working, &failure).await
                    }
                }
            };
            let result = match tokio::time::timeout(policy.timeout, run.instrument(span)).await {
                Ok(result) => result,
                Err(_) => Err(StepError::Retryable(
                    format!("timed out after {:?}", policy.timeout).into(),
                )),
            };
            let (outcome, error) = match &result {
                Ok(()) => ("succeeded", None),
                Err(StepError::Rejected { message, .. }) => ("failed", Some(message.clone())),
                Err(StepError::Retryable(cause)) if attempt < attempts => {
                    ("retrying", Some(cause.to_string()))
                }
                Err(StepError::Retryable(cause)) => ("failed", Some(cause.to_string())),
            };
            metrics::counter!("saga_step_attempts_total",
                "saga" => self.definition.saga_type(), "step" => name,
                "phase" => action.phase(), "outcome" => outcome)
            .increment(1);
            metrics::histogram!("saga_step_duration_seconds",
                "saga" => self.definition.saga_type(), "step" => name, "phase" => action.phase())
            .record(clock.elapsed().as_secs_f64());
            let log = StepLog {
                index,
                name,
                phase: action.phase(),
                attempt: attempt as i32,
                outcome,
                error,
                started_at,
            };
            match result {
                Ok(()) => {
                    *data = working;
                    return Ok(Ok((Ok(()), log)));
                }
                Err(StepError::Rejected { kind, message }) => {
                    let failure = Failure {
                        step: name.to_owned(),
                        kind,
                        message,
                    };
                    return Ok(Ok((Err(failure), log)));
                }
                Err(StepError::Retryable(cause)) if attempt < attempts => {
                    tracing::warn!(saga_id = %record.id, step = name, attempt, error = %cause, "saga step attempt failed");
                    self.log(record.id, &log).await?;
                    tokio::time::sleep(policy.delay_after(attempt)).await;
                }
                Err(StepError::Retryable(cause)) => {
                    tracing::warn!(saga_id = %record.id, step = name, attempt, error = %cause, "saga step attempt failed");
                    let failure = Failure {
                        step: name.to_owned(),
                        kind: FailureKind::Unavailable,
                        message: format!("{name} failed after {attempts} attempts: {cause}"),
                    };
                    return Ok(Ok((Err(failure), log)));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Takes the saga's lease if it is free, expired or already ours.
    async fn claim(&self, saga_id: Uuid) -> Result<Option<Record>, EngineError> {
        let lease = self.policy.saga().lease;
        let sent = Instant::now();
        let row = sqlx::query_as::<_, (Uuid, String, i32, Value, Option<Value>)>(
            "UPDATE saga_states
             SET lease_owner = $2, lease_until = now() + make_interval(secs => $3), updated_at = now()
             WHERE id = $1 AND status IN ('running', 'compensating')
               AND (lease_owner = $2 OR lease_until IS NULL OR lease_until < now())
             RETURNING id, status, step, data, failure",
        )
        .bind(saga_id)
        .bind(self.owner)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, status, step, data, failure)| Record {
            id,
            status,
            step,
            data,
            failure,
            lease_until: sent + lease,
        }))
    }

    async fn renew(&self, record: &mut Record) -> Result<bool, EngineError> {
        let lease = self.policy.saga().lease;
        let sent = Instant::now();
        let renewed = sqlx::query(
            "UPDATE saga_states SET lease_until = now() + make_interval(secs => $3)
             WHERE id = $1 AND lease_owner = $2 AND status IN ('running', 'compensating')",
        )
        .bind(record.id)
        .bind(self.owner)
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await?;
        record.lease_until = sent + lease;
        Ok(renewed.rows_affected() == 1)
    }

    /// Writes the saga's progress, with the log entry of the attempt that made it, in one
    /// statement fenced on our lease (which it extends; a final status releases it).
    async fn advance(
        &self,
        record: &mut Record,
        status: &'static str,
        step: i32,
        failure: Option<Value>,
        log: Option<&StepLog>,
    ) -> Result<Result<(), LeaseLost>, EngineError> {
        let lease = self.policy.saga().lease;
        let sent = Instant::now();
        let query = sqlx::query(
            "WITH progress AS (
                 UPDATE saga_states
                 SET status = $3, step = $4, data = $5, failure = $6, updated_at = now(),
                     finished_at = CASE WHEN $3 IN ('completed', 'compensated') THEN now() END,
                     lease_owner = CASE WHEN $3 IN ('completed', 'compensated') THEN NULL
                                        ELSE lease_owner END,
                     lease_until = CASE WHEN $3 IN ('completed', 'compensated') THEN NULL
                                        ELSE now() + make_interval(secs => $7) END
                 WHERE id = $1 AND lease_owner = $2
                 RETURNING id),
             logged AS (
                 INSERT INTO saga_steps
                     (saga_id, step_index, step_name, phase, attempt, outcome, error, started_at)
                 SELECT id, $8, $9, $10, $11, $12, $13, $14 FROM progress WHERE $9::text IS NOT NULL)
             SELECT count(*) FROM progress",
        )
        .bind(record.id)
        .bind(self.owner)
        .bind(status)
        .bind(step)
        .bind(&record.data)
        .bind(&failure)
        .bind(lease.as_secs_f64());
        let written: i64 = StepLog::bind(log, query)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        if written != 1 {
            return Ok(Err(LeaseLost));
        }
        record.status = status.to_owned();
        record.step = step;
        record.failure = failure;
        record.lease_until = sent + lease;
        Ok(Ok(()))
    }

    /// Logs an attempt that changed nothing yet (it will be tried again).
    async fn log(&self, saga_id: Uuid, log: &StepLog) -> Result<(), EngineError> {
        let query = sqlx::query(
            "INSERT INTO saga_steps (saga_id, step_index, step_name, phase, attempt, outcome, error, started_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(saga_id);
        StepLog::bind(Some(log), query).execute(&self.pool).await?;
        Ok(())
    }

    /// Gives the saga back until its next attempt is due, logging the attempt that failed.
    async fn defer(&self, record: &Record, log: &StepLog) -> Result<(), EngineError> {
        let policy = self.policy.saga();
        let pause = policy.step.max_backoff.max(policy.recovery_interval);
        let query = sqlx::query(
            "WITH deferred AS (
                 UPDATE saga_states
                 SET next_attempt_at = now() + make_interval(secs => $3), lease_owner = NULL,
                     lease_until = NULL, updated_at = now()
                 WHERE id = $1 AND lease_owner = $2
                 RETURNING id)
             INSERT INTO saga_steps
                 (saga_id, step_index, step_name, phase, attempt, outcome, error, started_at)
             VALUES ($1, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(record.id)
        .bind(self.owner)
        .bind(pause.as_secs_f64());
        StepLog::bind(Some(log), query).execute(&self.pool).await?;
        Ok(())
    }

    /// Drives the unfinished sagas nobody holds; returns how many it looked at.
    pub async fn recover_once(&self) -> Result<usize, EngineError> {
        let due: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM saga_states
             WHERE saga_type = $1 AND status IN ('running', 'compensating')
               AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now())
             ORDER BY next_attempt_at LIMIT 32",
        )
        .bind(self.definition.saga_type())
        .fetch_all(&self.pool)
        .await?;
        let count = due.len();
        let results = futures::future::join_all(due.into_iter().map(|id| async move {
            tracing::info!(saga_id = %id, saga = self.definition.saga_type(), "resuming saga");
            (id, self.drive(id).await)
        }))
        .await;
        for (id, result) in results {
            if let Err(error) = result {
                tracing::warn!(saga_id = %id, %error, "resuming saga failed");
            }
        }
        Ok(count)
    }

    /// Resumes abandoned sagas until `shutdown`: at once (a restarted process picks up
    /// what it was doing when it died, once the lease runs out), then every interval.
    pub async fn run_recovery(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> Result<(), EngineError> {
        let interval: Duration = self.policy.saga().recovery_interval;
        loop {
            if let Err(error) = self.recover_once().await {
                tracing::warn!(%error, saga = self.definition.saga_type(), "saga recovery pass failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
