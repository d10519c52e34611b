//! The delayed-task queue's back-office endpoints, for each service that owns a queue
//! (order, cart): counts per state and the dead tasks (admin, support), a dead task run
//! again or dropped (admin). They live here because they are access-checked routes over
//! `commerce_redis`'s queue and every such service already depends on this crate. The
//! service puts its queue on the router with `.layer(Extension(queue))`.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use commerce_redis::{DeadTask, QueueCounts, Revived, TaskQueue};
use commerce_runtime::ApiError;
use commerce_runtime::api::ApiRoutes;
use serde::Serialize;

use crate::{Principal, Role};

/// Where one service serves its queue: `/v1/admin/tasks/<name>` and below.
pub struct TaskAdminPaths {
    /// `GET`: counts and dead tasks.
    pub queue: &'static str,
    /// `POST`: run a dead task again.
    pub retry: &'static str,
    /// `DELETE`: forget a dead task.
    pub drop: &'static str,
}

/// Adds the queue's endpoints at `paths` to a service's routes.
pub fn with_task_admin<S: Clone + Send + Sync + 'static>(
    routes: ApiRoutes<S>,
    paths: &TaskAdminPaths,
) -> ApiRoutes<S> {
    routes
        .get(paths.queue, show_queue)
        .post(paths.retry, retry_dead)
        .delete(paths.drop, drop_dead)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueView {
    queue: String,
    counts: QueueCounts,
    dead: Vec<DeadView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeadView {
    id: String,
    kind: String,
    attempts: u32,
    max_attempts: u32,
    /// When it was first due (RFC 3339).
    due_at: String,
    error: String,
    payload: serde_json::Value,
}

impl From<DeadTask> for DeadView {
    fn from(dead: DeadTask) -> Self {
        let due_at = chrono::DateTime::from_timestamp_millis(dead.task.run_at_ms as i64)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Self {
            id: dead.task.id,
            kind: dead.task.kind,
            attempts: dead.task.attempt,
            max_attempts: dead.task.max_attempts,
            due_at,
            error: dead.error,
            payload: dead.task.payload,
        }
    }
}

fn redis_unavailable(error: commerce_redis::RedisError) -> ApiError {
    ApiError::unavailable(2, format!("the task queue cannot be read: {error}"))
}

async fn show_queue(
    principal: Principal,
    Extension(queue): Extension<TaskQueue>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let (counts, dead) =
        tokio::try_join!(queue.counts(), queue.dead()).map_err(redis_unavailable)?;
    Ok(Json(QueueView {
        queue: queue.name().to_owned(),
        counts,
        dead: dead.into_iter().map(DeadView::from).collect(),
    }))
}

async fn retry_dead(
    principal: Principal,
    Extension(queue): Extension<TaskQueue>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin])?;
    match queue.retry_dead(&id).await.map_err(redis_unavailable)? {
        Revived::Scheduled => {
            tracing::info!(queue = queue.name(), task = %id, by = %principal.actor(), "dead task run again");
            Ok(Json(
                serde_json::json!({ "id": id, "outcome": "scheduled" }),
            ))
        }
        Revived::NotDead => Err(ApiError::not_found(format!("no dead task {id}"))),
        Revived::IdTaken => Err(ApiError::conflict(format!(
            "a live task holds the id {id}; drop the dead one or wait for the live one"
        ))),
    }
}

async fn drop_dead(
    principal: Principal,
    Extension(queue): Extension<TaskQueue>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin])?;
    if queue.drop_dead(&id).await.map_err(redis_unavailable)? {
        tracing::info!(queue = queue.name(), task = %id, by = %principal.actor(), "dead task dropped");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no dead task {id}")))
    }
}
