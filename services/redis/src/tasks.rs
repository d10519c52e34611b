//! Delayed tasks on Redis (the role Asynq plays in the Go design): enqueue to run at or
//! after a time, unique task ids, cancel by id, retries with exponential backoff, a dead
//! set for tasks that ran out of attempts, and a worker pool that drains on shutdown.
//!
//! Every key of a queue carries the queue's hash tag, and each state change is one Lua
//! script over declared keys, so a queue works the same on standalone Redis and on a
//! cluster. A running task holds a lease that its worker renews; a task whose worker died
//! is handed out again when the lease runs out (at-least-once: handlers are idempotent).
//!
//! apalis-redis was considered: it has no cancel-by-id and schedules in whole seconds,
//! both of which the order saga's reminders and expiry need.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use redis::Script;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{RedisClient, RedisError};

/// A task as stored and as handed to its handler.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Task {
    pub id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub max_attempts: u32,
    /// Milliseconds since the epoch when it was first due.
    pub run_at_ms: u64,
    /// 1 on the first run.
    #[serde(default)]
    pub attempt: u32,
}

/// A task to enqueue.
#[derive(Debug, Clone)]
pub struct NewTask {
    id: Option<String>,
    kind: String,
    payload: serde_json::Value,
    run_at: SystemTime,
    max_attempts: u32,
}

impl NewTask {
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            id: None,
            kind: kind.into(),
            payload,
            run_at: SystemTime::now(),
            max_attempts: 5,
        }
    }

    /// A caller-chosen id: while a task with this id is pending or running, enqueueing
    /// another with the same id is refused (`order:<id>:expire` is scheduled once).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn run_at(mut self, at: SystemTime) -> Self {
        self.run_at = at;
        self
    }

    pub fn run_after(mut self, delay: Duration) -> Self {
        self.run_at = SystemTime::now() + delay;
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Scheduled(String),
    /// A task with this id is already pending or running; nothing was added.
    Duplicate(String),
}

/// A task that ran out of attempts, with its last error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadTask {
    pub task: Task,
    pub error: String,
}

/// Retry timing for failed tasks.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// `base * 2^(attempt-1)`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

// KEYS: scheduled zset, data hash. ARGV: id, run_at_ms, task json.
const ENQUEUE: &str = r#"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"#;

// KEYS: scheduled, data, retrying. ARGV: id. Only a task that has not started can be
// cancelled.
const CANCEL: &str = r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"#;

// KEYS: scheduled, active, data, retrying. ARGV: now_ms, lease_until_ms, limit.
// First hands expired leases back (their worker died), then leases due tasks.
const CLAIM: &str = r#"
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], ARGV[1], id)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local claimed = {}
for _, id in ipairs(due) do
  local body = redis.call('HGET', KEYS[3], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('SREM', KEYS[4], id)
  if body then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    table.insert(claimed, body)
  end
end
return claimed
"#;

// KEYS: active. ARGV: id, lease_until_ms. Extends a lease we still hold.
const RENEW: &str = r#"
return redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[2], ARGV[1])
"#;

// KEYS: active, data. ARGV: id.
const COMPLETE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"#;

// KEYS: active, scheduled, data, retrying. ARGV: id, retry_at_ms, task json (attempt
// counted).
const RETRY: &str = r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return 1
"#;

// KEYS: active, data, dead. ARGV: id, dead json.
const BURY: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1
"#;

// KEYS: dead, data, scheduled. ARGV: id, now_ms, task json (attempts reset).
// A dead task runs again from its first attempt, unless a live task took its id meanwhile.
const REVIVE: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"#;

// KEYS: scheduled, retrying, active, dead. How many tasks are in each state.
const COUNTS: &str = r#"
return {
  redis.call('ZCARD', KEYS[1]),
  redis.call('SCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
  redis.call('HLEN', KEYS[4]),
}
"#;

/// How many tasks of a queue are in each state (what `commerce tasks` and the back office
/// show).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct QueueCounts {
    /// Waiting for their first run.
    pub scheduled: u64,
    /// Failed at least once, waiting for their next attempt.
    pub retrying: u64,
    /// Held by a worker right now.
    pub running: u64,
    /// Out of attempts; kept until an operator retries or drops them.
    pub dead: u64,
}

/// What became of a request to run a dead task again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revived {
    /// Scheduled to run now, from its first attempt.
    Scheduled,
    /// No dead task has this id.
    NotDead,
    /// A live task holds the id (enqueued again since it died); the dead one stays.
    IdTaken,
}

/// A named queue of delayed tasks.
#[derive(Clone)]
pub struct TaskQueue {
    client: RedisClient,
    name: String,
    scheduled: String,
    active: String,
    data: String,
    dead: String,
    retrying: String,
}

impl TaskQueue {
    pub fn new(client: RedisClient, name: &str) -> Self {
        let key = |suffix: &str| crate::hash_tagged("tasks", name, suffix);
        Self {
            client,
            name: name.to_owned(),
            scheduled: key("scheduled"),
            active: key("active"),
            data: key("data"),
            dead: key("dead"),
            retrying: key("retrying"),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn enqueue(&self, task: NewTask) -> Result<Enqueued, RedisError> {
        let id = task.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let run_at_ms = epoch_millis(task.run_at);
        let stored = Task {
            id: id.clone(),
            kind: task.kind,
            payload: task.payload,
            max_attempts: task.max_attempts,
            run_at_ms,
            attempt: 0,
        };
        let added: i64 = Script::new(ENQUEUE)
            .key(&self.scheduled)
            .key(&self.data)
            .arg(&id)
            .arg(run_at_ms)
            .arg(serde_json::to_string(&stored)?)
            .invoke_async(&mut self.client.clone())
            .await?;
        if added == 1 {
            metrics::counter!("tasks_enqueued_total", "queue" => self.name.clone(), "kind" => stored.kind)
                .increment(1);
            Ok(Enqueued::Scheduled(id))
        } else {
            Ok(Enqueued::Duplicate(id))
        }
    }

    /// Removes a task that has not started; `false` when it is running, done or unknown.
    pub async fn cancel(&self, id: &str) -> Result<bool, RedisError> {
        let removed: i64 = Script::new(CANCEL)
            .key(&self.scheduled)
            .key(&self.data)
            .key(&self.retrying)
            .arg(id)
            .invoke_async(&mut self.client.clone())
            .await?;
        Ok(removed == 1)
    }

    /// Tasks waiting for their time (or a retry).
    pub async fn pending(&self) -> Result<u64, RedisError> {
        Ok(redis::cmd("ZCARD")
            .arg(&self.scheduled)
            .query_async(&mut self.client.clone())
            .await?)
    }

    /// When the task with `id` is next due, if it is waiting.
    pub async fn due_at(&self, id: &str) -> Result<Option<SystemTime>, RedisError> {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(&self.scheduled)
            .arg(id)
            .query_async(&mut self.client.clone())
            .await?;
        Ok(score.map(|ms| UNIX_EPOCH + Duration::from_millis(ms as u64)))
    }

    /// Every dead task, oldest due first.
    pub async fn dead(&self) -> Result<Vec<DeadTask>, RedisError> {
        let bodies: Vec<String> = redis::cmd("HVALS")
            .arg(&self.dead)
            .query_async(&mut self.client.clone())
            .await?;
        let mut dead = bodies
            .iter()
            .map(|body| Ok(serde_json::from_str(body)?))
            .collect::<Result<Vec<DeadTask>, RedisError>>()?;
        dead.sort_by(|a, b| (a.task.run_at_ms, &a.task.id).cmp(&(b.task.run_at_ms, &b.task.id)));
        Ok(dead)
    }

    /// How many tasks are scheduled, retrying, running and dead, read at one instant.
    pub async fn counts(&self) -> Result<QueueCounts, RedisError> {
        let (scheduled, retrying, running, dead): (u64, u64, u64, u64) = Script::new(COUNTS)
            .key(&self.scheduled)
            .key(&self.retrying)
            .key(&self.active)
            .key(&self.dead)
            .invoke_async(&mut self.client.clone())
            .await?;
        Ok(QueueCounts {
            // The scheduled set holds retries too.
            scheduled: scheduled.saturating_sub(retrying),
            retrying,
            running,
            dead,
        })
    }

    /// Runs a dead task again now, from its first attempt.
    pub async fn retry_dead(&self, id: &str) -> Result<Revived, RedisError> {
        let body: Option<String> = redis::cmd("HGET")
            .arg(&self.dead)
            .arg(id)
            .query_async(&mut self.client.clone())
            .await?;
        let Some(body) = body else {
            return Ok(Revived::NotDead);
        };
        let DeadTask { mut task, .. } = serde_json::from_str(&body)?;
        task.attempt = 0;
        let now = epoch_millis(SystemTime::now());
        task.run_at_ms = now;
        let revived: i64 = Script::new(REVIVE)
            .key(&self.dead)
            .key(&self.data)
            .key(&self.scheduled)
            .arg(id)
            .arg(now)
            .arg(serde_json::to_string(&task)?)
            .invoke_async(&mut self.client.clone())
            .await?;
        Ok(match revived {
            1 => Revived::Scheduled,
            -1 => Revived::IdTaken,
            _ => Revived::NotDead,
        })
    }

    /// Forgets a dead task; `false` when no dead task has this id.
    pub async fn drop_dead(&self, id: &str) -> Result<bool, RedisError> {
        let removed: i64 = redis::cmd("HDEL")
            .arg(&self.dead)
            .arg(id)
            .query_async(&mut self.client.clone())
            .await?;
        Ok(removed == 1)
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Task>, RedisError> {
        let now = epoch_millis(SystemTime::now());
        let bodies: Vec<String> = Script::new(CLAIM)
            .key(&self.scheduled)
            .key(&self.active)
            .key(&self.data)
            .key(&self.retrying)
            .arg(now)
            .arg(now + lease.as_millis() as u64)
            .arg(limit)
            .invoke_async(&mut self.client.clone())
            .await?;
        let mut tasks = Vec::with_capacity(bodies.len());
        for body in bodies {
            let mut task: Task = serde_json::from_str(&body)?;
            task.attempt += 1;
            tasks.push(task);
        }
        Ok(tasks)
    }

    async fn renew(&self, id: &str, lease: Duration) -> Result<(), RedisError> {
        let until = epoch_millis(SystemTime::now()) + lease.as_millis() as u64;
        let _: i64 = Script::new(RENEW)
            .key(&self.active)
            .arg(id)
            .arg(until)
            .invoke_async(&mut self.client.clone())
            .await?;
        Ok(())
    }

    async fn complete(&self, id: &str) -> Result<(), RedisError> {
        let _: i64 = Script::new(COMPLETE)
            .key(&self.active)
            .key(&self.data)
            .arg(id)
            .invoke_async(&mut self.client.clone())
            .await?;
        Ok(())
    }

    async fn fail(&self, task: &Task, error: &str, backoff: Backoff) -> Result<bool, RedisError> {
        if task.attempt >= task.max_attempts {
            let dead = DeadTask {
                task: task.clone(),
                error: error.to_owned(),
            };
            let _: i64 = Script::new(BURY)
                .key(&self.active)
                .key(&self.data)
                .key(&self.dead)
                .arg(&task.id)
                .arg(serde_json::to_string(&dead)?)
                .invoke_async(&mut self.client.clone())
                .await?;
            return Ok(false);
        }
        let retry_at = epoch_millis(SystemTime::now() + backoff.delay(task.attempt));
        let _: i64 = Script::new(RETRY)
            .key(&self.active)
            .key(&self.scheduled)
            .key(&self.data)
            .key(&self.retrying)
            .arg(&task.id)
            .arg(retry_at)
            .arg(serde_json::to_string(task)?)
            .invoke_async(&mut self.client.clone())
            .await?;
        Ok(true)
    }
}

fn epoch_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Why a task run failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TaskError(pub String);

/// Runs tasks of one kind.
pub trait TaskHandler: Send + Sync + 'static {
    fn handle<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<(), TaskError>>;
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub poll_interval: Duration,
    /// How long a claimed task is ours before another worker may take it.
    pub lease: Duration,
    pub backoff: Backoff,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            poll_interval: Duration::from_millis(200),
            lease: Duration::from_secs(30),
            backoff: Backoff::default(),
        }
    }
}

/// A pool of workers for one queue.
pub struct TaskWorker {
    queue: TaskQueue,
    handlers: HashMap<String, Arc<dyn TaskHandler>>,
    settings: WorkerSettings,
}

impl TaskWorker {
    pub fn new(queue: TaskQueue, settings: WorkerSettings) -> Self {
        Self {
            queue,
            handlers: HashMap::new(),
            settings,
        }
    }

    pub fn handle(mut self, kind: impl Into<String>, handler: Arc<dyn TaskHandler>) -> Self {
        self.handlers.insert(kind.into(), handler);
        self
    }

    /// Runs until `shutdown`; then claims nothing new and waits for running tasks.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RedisError> {
        let worker = Arc::new(self);
        let mut running: JoinSet<()> = JoinSet::new();
        tracing::info!(queue = %worker.queue.name, "task worker started");
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            let free = worker.settings.concurrency.saturating_sub(running.len());
            let claimed = if free > 0 {
                match worker.queue.claim(free, worker.settings.lease).await {
                    Ok(tasks) => tasks,
                    Err(error) => {
                        tracing::warn!(queue = %worker.queue.name, %error, "claiming tasks failed");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            let idle = claimed.is_empty();
            for task in claimed {
                let worker = worker.clone();
                running.spawn(async move { worker.execute(task).await });
            }
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(worker.settings.poll_interval) => {}
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            }
        }
        // Drain: what started finishes; the runtime's grace period bounds the wait.
        while running.join_next().await.is_some() {}
        tracing::info!(queue = %worker.queue.name, "task worker stopped");
        Ok(())
    }

    async fn execute(&self, task: Task) {
        let span = tracing::info_span!("task.run", queue = %self.queue.name, kind = %task.kind, id = %task.id, attempt = task.attempt);
        self.run_and_record(task).instrument(span).await
    }

    async fn run_and_record(&self, task: Task) {
        let outcome = match self.handlers.get(&task.kind) {
            None => Err(TaskError(format!(
                "no handler for task kind `{}`",
                task.kind
            ))),
            Some(handler) => {
                let renew_every = self.settings.lease / 3;
                let work = handler.handle(&task);
                tokio::pin!(work);
                loop {
                    tokio::select! {
                        outcome = &mut work => break outcome,
                        _ = tokio::time::sleep(renew_every) => {
                            if let Err(error) = self.queue.renew(&task.id, self.settings.lease).await {
                                tracing::warn!(%error, "lease renewal failed");
                            }
                        }
                    }
                }
            }
        };
        let labels = |outcome: &'static str| {
            [
                ("queue", self.queue.name.clone()),
                ("kind", task.kind.clone()),
                ("outcome", outcome.to_owned()),
            ]
        };
        let recorded = match outcome {
            Ok(()) => {
                metrics::counter!("tasks_processed_total", &labels("done")).increment(1);
                self.queue.complete(&task.id).await
            }
            Err(error) => {
                let unknown = !self.handlers.contains_key(&task.kind);
                let mut task = task.clone();
                if unknown {
                    task.attempt = task.max_attempts;
                }
                match self
                    .queue
                    .fail(&task, &error.0, self.settings.backoff)
                    .await
                {
                    Ok(true) => {
                        tracing::warn!(error = %error.0, "task failed; will retry");
                        metrics::counter!("tasks_processed_total", &labels("retry")).increment(1);
                        Ok(())
                    }
                    Ok(false) => {
                        tracing::error!(error = %error.0, "task failed for the last time");
                        metrics::counter!("tasks_processed_total", &labels("dead")).increment(1);
                        Ok(())
                    }
                    Err(redis_error) => Err(redis_error),
                }
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and the task is handed out again.
            tracing::error!(%error, "could not record the task's outcome");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(backoff.delay(1), Duration::from_millis(100));
        assert_eq!(backoff.delay(2), Duration::from_millis(200));
        assert_eq!(backoff.delay(4), Duration::from_millis(800));
        assert_eq!(backoff.delay(5), Duration::from_secs(1));
        assert_eq!(backoff.delay(60), Duration::from_secs(1));
    }
}
