//! The PostgreSQL saga engine on a real database, with a test saga whose steps do what each
//! test tells them: retries and timeouts under the policy, compensation in reverse order,
//! the point of no return, lease fencing between processes, and recovery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use commerce_saga::postgres::{Orchestrator, Outcome};
use commerce_saga::{
    Failpoints, Failure, FailureKind, SagaDefinition, SagaPolicy, Step, StepError, StepPolicy,
};
use commerce_testkit::{eventually, fresh_database};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a step does on its next calls.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Fail retryably this many times, then succeed.
    FailTimes(u32),
    /// Refuse for good.
    Reject,
    /// Sleep this long on the first call only.
    StallOnce(Duration),
}

#[derive(Default)]
struct Board {
    scripts: HashMap<(&'static str, &'static str), Script>,
    /// (step, "run" | "compensate") in call order.
    calls: Vec<(&'static str, &'static str)>,
    finalized: Vec<String>,
}

type Shared = Arc<Mutex<Board>>;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Trail {
    done: Vec<String>,
}

struct Scripted {
    name: &'static str,
    compensable: bool,
    board: Shared,
}

impl Scripted {
    async fn act(&self, phase: &'static str) -> Result<(), StepError> {
        let script = {
            let mut board = self.board.lock().unwrap();
            board.calls.push((self.name, phase));
            let script = board.scripts.get(&(self.name, phase)).copied();
            if let Some(Script::FailTimes(left)) = script {
                if left == 0 {
                    board.scripts.remove(&(self.name, phase));
                } else {
                    board
                        .scripts
                        .insert((self.name, phase), Script::FailTimes(left - 1));
                }
            }
            if let Some(Script::StallOnce(_)) = script {
                board.scripts.remove(&(self.name, phase));
            }
            script
        };
        match script {
            Some(Script::FailTimes(left)) if left > 0 => Err(StepError::Retryable(
                format!("{} {phase} hiccup", self.name).into(),
            )),
            Some(Script::Reject) => Err(StepError::rejected(
                FailureKind::Conflict,
                format!("{} refused", self.name),
            )),
            Some(Script::StallOnce(pause)) => {
                tokio::time::sleep(pause).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Step<Trail> for Scripted {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run(&self, data: &mut Trail) -> Result<(), StepError> {
        self.act("run").await?;
        data.done.push(self.name.to_owned());
        Ok(())
    }

    fn compensable(&self) -> bool {
        self.compensable
    }

    async fn compensate(&self, _data: &Trail) -> Result<(), StepError> {
        self.act("compensate").await
    }
}

struct TestSaga {
    steps: Vec<Box<dyn Step<Trail>>>,
    pivot: usize,
    board: Shared,
}

#[async_trait]
impl SagaDefinition for TestSaga {
    type Data = Trail;

    fn saga_type(&self) -> &'static str {
        "test"
    }

    fn steps(&self) -> &[Box<dyn Step<Trail>>] {
        &self.steps
    }

    fn pivot(&self) -> usize {
        self.pivot
    }

    async fn compensated(&self, _data: &Trail, failure: &Failure) -> Result<(), StepError> {
        self.board
            .lock()
            .unwrap()
            .finalized
            .push(failure.step.clone());
        Ok(())
    }
}

struct Setup {
    pool: sqlx::PgPool,
    /// Held for the test's length: dropped, it is marked finished (`commerce_testkit`).
    _database: commerce_testkit::TestDatabase,
    board: Shared,
    saga: Arc<TestSaga>,
    policy: Arc<SagaPolicy>,
}

/// Steps a, b (compensable), c, d (compensable); the point of no return is `pivot`.
async fn setup(pivot: usize) -> Setup {
    let database = fresh_database("saga").await;
    commerce_order::MIGRATOR.run(&database.pool).await.unwrap();
    let board: Shared = Arc::default();
    let step = |name, compensable| -> Box<dyn Step<Trail>> {
        Box::new(Scripted {
            name,
            compensable,
            board: board.clone(),
        })
    };
    let saga = Arc::new(TestSaga {
        steps: vec![
            step("a", true),
            step("b", false),
            step("c", true),
            step("d", false),
        ],
        pivot,
        board: board.clone(),
    });
    let policy = Arc::new(SagaPolicy {
        step: StepPolicy {
            timeout: Duration::from_millis(300),
            attempts: 3,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        },
        lease: Duration::from_secs(1),
        recovery_interval: Duration::from_millis(100),
        ..SagaPolicy::default()
    });
    policy.validate(&["a", "b", "c", "d"]).unwrap();
    Setup {
        pool: database.pool.clone(),
        _database: database,
        board,
        saga,
        policy,
    }
}

impl Setup {
    fn engine(&self) -> Orchestrator<TestSaga> {
        Orchestrator::new(
            self.pool.clone(),
            self.saga.clone(),
            self.policy.clone(),
            Failpoints::default(),
        )
    }

    fn script(&self, step: &'static str, phase: &'static str, script: Script) {
        self.board
            .lock()
            .unwrap()
            .scripts
            .insert((step, phase), script);
    }

    fn calls(&self) -> Vec<(&'static str, &'static str)> {
        self.board.lock().unwrap().calls.clone()
    }

    async fn create(&self, engine: &Orchestrator<TestSaga>) -> Uuid {
        let saga_id = Uuid::now_v7();
        let mut connection = self.pool.acquire().await.unwrap();
        engine
            .create(&mut connection, saga_id, Uuid::now_v7(), &Trail::default())
            .await
            .unwrap();
        saga_id
    }

    async fn log(&self, saga_id: Uuid) -> Vec<(String, String, String)> {
        sqlx::query_as(
            "SELECT step_name, phase, outcome FROM saga_steps WHERE saga_id = $1 ORDER BY id",
        )
        .bind(saga_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

fn entry(step: &str, phase: &str, outcome: &str) -> (String, String, String) {
    (step.to_owned(), phase.to_owned(), outcome.to_owned())
}

#[tokio::test]
async fn retryable_errors_and_timeouts_are_retried_under_the_policy() {
    let setup = setup(4).await;
    let engine = setup.engine();
    setup.script("b", "run", Script::FailTimes(2));
    setup.script("c", "run", Script::StallOnce(Duration::from_millis(600)));
    let saga_id = setup.create(&engine).await;
    let Outcome::Completed(trail) = engine.drive(saga_id).await.unwrap() else {
        panic!("the saga should complete");
    };
    assert_eq!(trail.done, vec!["a", "b", "c", "d"]);
    assert_eq!(
        setup.log(saga_id).await,
        vec![
            entry("a", "forward", "succeeded"),
            entry("b", "forward", "retrying"),
            entry("b", "forward", "retrying"),
            entry("b", "forward", "succeeded"),
            // The stalled first attempt timed out.
            entry("c", "forward", "retrying"),
            entry("c", "forward", "succeeded"),
            entry("d", "forward", "succeeded"),
        ]
    );
}

#[tokio::test]
async fn a_refusal_compensates_the_completed_steps_in_reverse() {
    let setup = setup(4).await;
    let engine = setup.engine();
    setup.script("d", "run", Script::Reject);
    let saga_id = setup.create(&engine).await;
    let Outcome::Compensated(trail, failure) = engine.drive(saga_id).await.unwrap() else {
        panic!("the saga should compensate");
    };
    assert_eq!(trail.done, vec!["a", "b", "c"]);
    assert_eq!(
        (failure.step.as_str(), failure.kind),
        ("d", FailureKind::Conflict)
    );
    // A refusal is not retried; steps without a compensation are skipped.
    assert_eq!(
        setup.calls(),
        vec![
            ("a", "run"),
            ("b", "run"),
            ("c", "run"),
            ("d", "run"),
            ("c", "compensate"),
            ("a", "compensate"),
        ]
    );
    assert_eq!(setup.board.lock().unwrap().finalized, vec!["d"]);
    // Driving a finished saga changes nothing.
    assert!(matches!(
        engine.drive(saga_id).await.unwrap(),
        Outcome::Compensated(..)
    ));
    assert_eq!(setup.calls().len(), 6);
}

#[tokio::test]
async fn running_out_of_attempts_fails_the_step_as_unavailable() {
    let setup = setup(4).await;
    let engine = setup.engine();
    setup.script("c", "run", Script::FailTimes(10));
    let saga_id = setup.create(&engine).await;
    let Outcome::Compensated(_, failure) = engine.drive(saga_id).await.unwrap() else {
        panic!("the saga should compensate");
    };
    assert_eq!(failure.kind, FailureKind::Unavailable);
    assert!(failure.message.contains("after 3 attempts"), "{failure:?}");
    // The failed step itself is compensated: a timed-out attempt may have acted.
    let compensated: Vec<&str> = setup
        .calls()
        .into_iter()
        .filter(|(_, phase)| *phase == "compensate")
        .map(|(step, _)| step)
        .collect();
    assert_eq!(compensated, vec!["c", "a"]);
}

#[tokio::test]
async fn past_the_point_of_no_return_a_failing_step_is_retried_not_compensated() {
    let setup = setup(2).await;
    let engine = setup.engine();
    setup.script("c", "run", Script::FailTimes(4));
    let saga_id = setup.create(&engine).await;
    assert!(matches!(
        engine.drive(saga_id).await.unwrap(),
        Outcome::InProgress
    ));
    assert!(
        setup.calls().iter().all(|(_, phase)| *phase == "run"),
        "nothing is compensated"
    );
    // The recovery loop tries again once the step's pause is over, and finishes.
    let recovery = Arc::new(setup.engine());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let loop_task = tokio::spawn(recovery.clone().run_recovery(shutdown.clone()));
    let pool = setup.pool.clone();
    eventually(Duration::from_secs(10), "the saga to complete", || {
        let pool = pool.clone();
        async move {
            let status: String = sqlx::query_scalar("SELECT status FROM saga_states WHERE id = $1")
                .bind(saga_id)
                .fetch_one(&pool)
                .await
                .ok()?;
            (status == "completed").then_some(())
        }
    })
    .await;
    shutdown.cancel();
    loop_task.await.unwrap().unwrap();
    assert!(matches!(
        engine.outcome(saga_id).await.unwrap(),
        Outcome::Completed(trail) if trail.done == vec!["a", "b", "c", "d"]
    ));
}

#[tokio::test]
async fn a_saga_leased_to_a_live_process_is_left_to_it() {
    let setup = setup(4).await;
    let first = setup.engine();
    let second = setup.engine();
    let saga_id = setup.create(&first).await;
    // The creator holds the lease: another process does not touch the saga.
    assert!(matches!(
        second.drive(saga_id).await.unwrap(),
        Outcome::InProgress
    ));
    assert!(setup.calls().is_empty());
    assert_eq!(second.recover_once().await.unwrap(), 0);
    // Once the lease runs out (its holder died), the other process takes over.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        second.drive(saga_id).await.unwrap(),
        Outcome::Completed(_)
    ));
    // The old holder comes back: it cannot write over the new owner's work.
    assert!(matches!(
        first.drive(saga_id).await.unwrap(),
        Outcome::Completed(_)
    ));
    assert_eq!(setup.calls().len(), 4, "every step ran once");
}

#[tokio::test]
async fn a_failing_compensation_is_retried_until_it_succeeds() {
    let setup = setup(4).await;
    let engine = setup.engine();
    setup.script("d", "run", Script::Reject);
    setup.script("a", "compensate", Script::FailTimes(5));
    let saga_id = setup.create(&engine).await;
    assert!(matches!(
        engine.drive(saga_id).await.unwrap(),
        Outcome::InProgress
    ));
    let status: String = sqlx::query_scalar("SELECT status FROM saga_states WHERE id = $1")
        .bind(saga_id)
        .fetch_one(&setup.pool)
        .await
        .unwrap();
    assert_eq!(status, "compensating");
    let engine = &engine;
    let outcome = eventually(
        Duration::from_secs(10),
        "the compensation to finish",
        || async move {
            engine.recover_once().await.unwrap();
            match engine.outcome(saga_id).await.unwrap() {
                Outcome::Compensated(_, failure) => Some(failure),
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    None
                }
            }
        },
    )
    .await;
    assert_eq!(outcome.step, "d");
    let a_compensations = setup
        .calls()
        .iter()
        .filter(|call| **call == ("a", "compensate"))
        .count();
    assert_eq!(a_compensations, 6, "five failures, then success");
    assert_eq!(setup.board.lock().unwrap().finalized, vec!["d"]);
}
