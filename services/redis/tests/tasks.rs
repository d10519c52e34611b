//! Delayed tasks against standalone Redis and a Redis Cluster.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commerce_redis::tasks::Backoff;
use commerce_redis::{
    Enqueued, NewTask, QueueCounts, RedisClient, RedisConfig, Revived, Task, TaskError,
    TaskHandler, TaskQueue, TaskWorker, WorkerSettings,
};
use commerce_testkit::{eventually, required_env, unique};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

async fn standalone() -> RedisClient {
    RedisClient::connect(&RedisConfig::standalone(required_env(
        "COMMERCE_TEST_REDIS_URL",
    )))
    .await
    .unwrap()
}

async fn cluster() -> RedisClient {
    let urls = required_env("COMMERCE_TEST_REDIS_CLUSTER");
    RedisClient::connect(&RedisConfig::cluster(urls.split(',')))
        .await
        .unwrap()
}

/// Records every run; fails the first `failures` attempts of each task; takes `work` time.
struct Recorder {
    runs: Mutex<Vec<(String, u32, Instant)>>,
    failures: u32,
    work: Duration,
    finished: Mutex<Vec<String>>,
}

impl Recorder {
    fn new(failures: u32, work: Duration) -> Arc<Self> {
        Arc::new(Self {
            runs: Mutex::new(Vec::new()),
            failures,
            work,
            finished: Mutex::new(Vec::new()),
        })
    }

    fn runs(&self) -> Vec<(String, u32, Instant)> {
        self.runs.lock().unwrap().clone()
    }
}

impl TaskHandler for Recorder {
    fn handle<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(async move {
            self.runs
                .lock()
                .unwrap()
                .push((task.id.clone(), task.attempt, Instant::now()));
            tokio::time::sleep(self.work).await;
            if task.attempt <= self.failures {
                return Err(TaskError(format!("attempt {} refused", task.attempt)));
            }
            self.finished.lock().unwrap().push(task.id.clone());
            Ok(())
        })
    }
}

fn fast_settings() -> WorkerSettings {
    WorkerSettings {
        concurrency: 4,
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(5),
        backoff: Backoff {
            base: Duration::from_millis(150),
            max: Duration::from_secs(1),
        },
    }
}

fn start(
    queue: &TaskQueue,
    handler: Arc<Recorder>,
    settings: WorkerSettings,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), commerce_redis::RedisError>>,
) {
    let shutdown = CancellationToken::new();
    let worker = TaskWorker::new(queue.clone(), settings).handle("remind", handler);
    (shutdown.clone(), tokio::spawn(worker.run(shutdown)))
}

async fn fires_after_its_delay_and_not_before(client: RedisClient) {
    let queue = TaskQueue::new(client, &unique("delay"));
    let recorder = Recorder::new(0, Duration::ZERO);
    let (shutdown, worker) = start(&queue, recorder.clone(), fast_settings());
    let enqueued_at = Instant::now();
    let delay = Duration::from_millis(800);
    let enqueued = queue
        .enqueue(NewTask::new("remind", serde_json::json!({"order": 1})).run_after(delay))
        .await
        .unwrap();
    assert!(matches!(enqueued, Enqueued::Scheduled(_)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(recorder.runs().is_empty(), "fired before its delay");
    eventually(Duration::from_secs(5), "the delayed task", || async {
        (!recorder.runs().is_empty()).then_some(())
    })
    .await;
    let fired_after = recorder.runs()[0].2 - enqueued_at;
    assert!(
        fired_after >= delay,
        "fired after {fired_after:?}, before {delay:?}"
    );
    assert!(
        fired_after < delay + Duration::from_secs(2),
        "fired late: {fired_after:?}"
    );
    assert_eq!(queue.pending().await.unwrap(), 0);
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn standalone_fires_after_its_delay_and_not_before() {
    fires_after_its_delay_and_not_before(standalone().await).await;
}

#[tokio::test]
async fn cluster_fires_after_its_delay_and_not_before() {
    fires_after_its_delay_and_not_before(cluster().await).await;
}

async fn retries_with_backoff_then_buries(client: RedisClient) {
    let queue = TaskQueue::new(client, &unique("retry"));
    let recorder = Recorder::new(2, Duration::ZERO);
    let (shutdown, worker) = start(&queue, recorder.clone(), fast_settings());
    queue
        .enqueue(
            NewTask::new("remind", serde_json::json!({}))
                .id("recovers")
                .max_attempts(5),
        )
        .await
        .unwrap();
    queue
        .enqueue(
            NewTask::new("remind", serde_json::json!({}))
                .id("gives-up")
                .max_attempts(2),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the retried task to succeed",
        || async {
            recorder
                .finished
                .lock()
                .unwrap()
                .contains(&"recovers".to_owned())
                .then_some(())
        },
    )
    .await;
    let runs: Vec<_> = recorder
        .runs()
        .into_iter()
        .filter(|run| run.0 == "recovers")
        .collect();
    assert_eq!(runs.iter().map(|run| run.1).collect::<Vec<_>>(), [1, 2, 3]);
    // Exponential backoff: at least 150 ms, then at least 300 ms between attempts.
    assert!(runs[1].2 - runs[0].2 >= Duration::from_millis(150));
    assert!(runs[2].2 - runs[1].2 >= Duration::from_millis(300));

    let dead = eventually(
        Duration::from_secs(10),
        "the exhausted task in the dead set",
        || {
            let queue = queue.clone();
            async move { queue.dead().await.ok().filter(|dead| !dead.is_empty()) }
        },
    )
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].task.id, "gives-up");
    assert_eq!(dead[0].task.attempt, 2);
    assert_eq!(dead[0].error, "attempt 2 refused");
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn standalone_retries_with_backoff_then_buries() {
    retries_with_backoff_then_buries(standalone().await).await;
}

#[tokio::test]
async fn cluster_retries_with_backoff_then_buries() {
    retries_with_backoff_then_buries(cluster().await).await;
}

/// What an operator sees and does (`commerce tasks`, the back office): counts per state,
/// a dead task run again from its first attempt, another dropped.
async fn an_operator_counts_retries_and_drops_dead_tasks(client: RedisClient) {
    let queue = TaskQueue::new(client, &unique("inspect"));
    let counts = || {
        let queue = queue.clone();
        async move { queue.counts().await.unwrap() }
    };
    assert_eq!(counts().await, QueueCounts::default());
    // Every first attempt fails; a retry waits a minute.
    let failing = Recorder::new(1, Duration::ZERO);
    let slow_retries = WorkerSettings {
        backoff: Backoff {
            base: Duration::from_secs(60),
            max: Duration::from_secs(60),
        },
        ..fast_settings()
    };
    let (shutdown, worker) = start(&queue, failing.clone(), slow_retries);
    let task = |id: &str, attempts: u32| {
        NewTask::new("remind", serde_json::json!({"n": 1}))
            .id(id)
            .max_attempts(attempts)
    };
    queue
        .enqueue(task("later", 3).run_after(Duration::from_secs(60)))
        .await
        .unwrap();
    queue.enqueue(task("patient", 3)).await.unwrap();
    queue.enqueue(task("flaky", 1)).await.unwrap();
    queue.enqueue(task("hopeless", 1)).await.unwrap();
    let expected = QueueCounts {
        scheduled: 1,
        retrying: 1,
        running: 0,
        dead: 2,
    };
    eventually(
        Duration::from_secs(10),
        "two dead, one retrying",
        || async { (counts().await == expected).then_some(()) },
    )
    .await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    let dead: Vec<(String, String)> = queue
        .dead()
        .await
        .unwrap()
        .into_iter()
        .map(|dead| (dead.task.id, dead.error))
        .collect();
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter().all(|(_, error)| error == "attempt 1 refused"),
        "{dead:?}"
    );

    assert_eq!(queue.retry_dead("nobody").await.unwrap(), Revived::NotDead);
    assert!(!queue.drop_dead("nobody").await.unwrap());
    // Its id was given to a new task since: the dead one stays until that one is gone.
    queue
        .enqueue(task("flaky", 1).run_after(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(queue.retry_dead("flaky").await.unwrap(), Revived::IdTaken);
    assert!(queue.cancel("flaky").await.unwrap());
    assert_eq!(queue.retry_dead("flaky").await.unwrap(), Revived::Scheduled);
    assert!(queue.drop_dead("hopeless").await.unwrap());
    assert!(!queue.drop_dead("hopeless").await.unwrap(), "dropped once");
    assert_eq!(
        counts().await,
        QueueCounts {
            scheduled: 2,
            retrying: 1,
            running: 0,
            dead: 0,
        }
    );

    // Run again, it starts from its first attempt (which this worker lets through).
    let succeeding = Recorder::new(0, Duration::ZERO);
    let (shutdown, worker) = start(&queue, succeeding.clone(), fast_settings());
    eventually(
        Duration::from_secs(10),
        "the revived task to run",
        || async { (succeeding.finished.lock().unwrap().as_slice() == ["flaky"]).then_some(()) },
    )
    .await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    assert_eq!(succeeding.runs()[0].1, 1, "counted from the first attempt");
    assert_eq!(counts().await.dead, 0);
    assert!(failing.finished.lock().unwrap().is_empty());
}

#[tokio::test]
async fn standalone_an_operator_counts_retries_and_drops_dead_tasks() {
    an_operator_counts_retries_and_drops_dead_tasks(standalone().await).await;
}

#[tokio::test]
async fn cluster_an_operator_counts_retries_and_drops_dead_tasks() {
    an_operator_counts_retries_and_drops_dead_tasks(cluster().await).await;
}

#[tokio::test]
async fn unique_ids_and_cancel_by_id() {
    let queue = TaskQueue::new(standalone().await, &unique("unique"));
    let task = || {
        NewTask::new("remind", serde_json::json!({}))
            .id("order-7:expire")
            .run_after(Duration::from_millis(400))
    };
    assert_eq!(
        queue.enqueue(task()).await.unwrap(),
        Enqueued::Scheduled("order-7:expire".into())
    );
    assert_eq!(
        queue.enqueue(task()).await.unwrap(),
        Enqueued::Duplicate("order-7:expire".into())
    );
    assert_eq!(queue.pending().await.unwrap(), 1);
    assert!(queue.due_at("order-7:expire").await.unwrap().is_some());
    assert!(queue.cancel("order-7:expire").await.unwrap());
    assert!(
        !queue.cancel("order-7:expire").await.unwrap(),
        "cancelling twice finds nothing"
    );
    assert_eq!(queue.pending().await.unwrap(), 0);

    // A cancelled task never runs; the id is free again.
    let recorder = Recorder::new(0, Duration::ZERO);
    let (shutdown, worker) = start(&queue, recorder.clone(), fast_settings());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(recorder.runs().is_empty(), "a cancelled task ran");
    assert_eq!(
        queue.enqueue(task()).await.unwrap(),
        Enqueued::Scheduled("order-7:expire".into())
    );
    eventually(Duration::from_secs(5), "the re-enqueued task", || async {
        (recorder.runs().len() == 1).then_some(())
    })
    .await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_waits_for_running_tasks() {
    let queue = TaskQueue::new(standalone().await, &unique("drain"));
    let recorder = Recorder::new(0, Duration::from_millis(600));
    let (shutdown, worker) = start(&queue, recorder.clone(), fast_settings());
    queue
        .enqueue(NewTask::new("remind", serde_json::json!({})).id("slow"))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "the slow task to start", || async {
        (!recorder.runs().is_empty()).then_some(())
    })
    .await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    assert_eq!(
        *recorder.finished.lock().unwrap(),
        ["slow"],
        "shutdown returned before the task finished"
    );
    assert_eq!(queue.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn a_dead_workers_task_runs_again_after_its_lease() {
    let queue = TaskQueue::new(standalone().await, &unique("lease"));
    let stuck = Recorder::new(0, Duration::from_secs(3600));
    let settings = WorkerSettings {
        lease: Duration::from_millis(600),
        ..fast_settings()
    };
    let (_never, crashed) = start(&queue, stuck.clone(), settings.clone());
    queue
        .enqueue(NewTask::new("remind", serde_json::json!({})).id("orphan"))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the first worker to take it",
        || async { (!stuck.runs().is_empty()).then_some(()) },
    )
    .await;
    crashed.abort(); // the process died: no completion, no more lease renewals

    let healthy = Recorder::new(0, Duration::ZERO);
    let (shutdown, worker) = start(&queue, healthy.clone(), settings);
    eventually(
        Duration::from_secs(5),
        "the orphan to run again",
        || async { (healthy.finished.lock().unwrap().len() == 1).then_some(()) },
    )
    .await;
    assert_eq!(healthy.runs()[0].0, "orphan");
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}
