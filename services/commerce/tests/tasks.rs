//! The delayed-task queues as an operator meets them, through the gateway and at the
//! command line: counts per state, a dead task with its last error, run again or dropped;
//! staff read, only an admin acts, customers see nothing.

use std::time::Duration;

use commerce_redis::{NewTask, RedisClient, RedisConfig, TaskQueue};
use commerce_testkit::{eventually, required_env};
use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;
use support::{LocalShop, demo_login};

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn staff_see_the_task_queues_and_an_admin_runs_a_dead_task_again_or_drops_it() {
    let shop = LocalShop::new("tasks").await;
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let _running = shop.serve();
    shop.wait_until_ready().await;
    let gateway = shop.url(8080);
    let client = reqwest::Client::new();
    let admin = demo_login(&client, &gateway, "admin").await;
    let support = demo_login(&client, &gateway, "support").await;
    let customer = demo_login(&client, &gateway, "customer").await;

    // Tasks of a kind the order service has no handler for die at their only attempt:
    // what an operator has to look at.
    let redis = RedisClient::connect(&RedisConfig::standalone(required_env(
        "COMMERCE_TEST_REDIS_URL",
    )))
    .await
    .unwrap();
    let order_queue = TaskQueue::new(
        redis,
        &format!(
            "{}-tasks",
            shop.env_value("COMMERCE_SERVICES__ORDER__REDIS_PREFIX")
        ),
    );
    for id in ["stray-1", "stray-2"] {
        order_queue
            .enqueue(
                NewTask::new("retired-kind", json!({"orderId": id}))
                    .id(id)
                    .max_attempts(1),
            )
            .await
            .unwrap();
    }
    let queue_view = |token: String| {
        let request = client
            .get(format!("{gateway}/v1/admin/tasks/order"))
            .bearer_auth(token);
        async move { send(request).await }
    };
    let view = eventually(Duration::from_secs(20), "two dead tasks", || async {
        let (status, view) = queue_view(admin.clone()).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        (view["counts"]["dead"] == 2).then_some(view)
    })
    .await;
    let dead = view["dead"].as_array().unwrap();
    assert_eq!(dead[0]["id"], "stray-1", "{view}");
    assert_eq!(dead[0]["kind"], "retired-kind");
    assert_eq!(
        (
            dead[0]["attempts"].as_u64(),
            dead[0]["maxAttempts"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("no handler for task kind `retired-kind`"),
        "{view}"
    );
    // The cart's queue is there too, empty of dead tasks.
    let (status, cart) = send(
        client
            .get(format!("{gateway}/v1/admin/tasks/cart"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cart}");
    assert_eq!(cart["counts"]["dead"], 0, "{cart}");

    // Support reads but does not act; a customer does not even read.
    let (status, _) = queue_view(support.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = queue_view(customer.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let retry = |token: &str, id: &str| {
        client
            .post(format!("{gateway}/v1/admin/tasks/order/dead/{id}/retry"))
            .bearer_auth(token)
    };
    let (status, _) = send(retry(&support, "stray-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(retry(&admin, "nobody")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Run again, it dies again (still no handler) with a fresh attempt count.
    let (status, body) = send(retry(&admin, "stray-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "scheduled");
    let attempts = eventually(
        Duration::from_secs(20),
        "the retried task's run",
        || async {
            let dead = order_queue.dead().await.unwrap();
            (dead.len() == 2)
                .then(|| dead.into_iter().find(|dead| dead.task.id == "stray-1"))
                .flatten()
                .map(|dead| dead.task.attempt)
        },
    )
    .await;
    assert_eq!(attempts, 1, "counted from the first attempt again");

    // The command line sees the same and drops one.
    let listed = shop.run(&["tasks"]);
    let order_line = listed
        .lines()
        .find(|line| line.starts_with(order_queue.name()))
        .unwrap_or_else(|| panic!("no order queue in:\n{listed}"));
    let columns: Vec<&str> = order_line.split_whitespace().collect();
    assert_eq!(columns.last(), Some(&"2"), "two dead: {order_line}");
    let dead_listing = shop.run(&["tasks", "dead", "order"]);
    assert!(
        dead_listing.contains("stray-2\tretired-kind\tattempt 1/1"),
        "{dead_listing}"
    );
    assert!(
        shop.run(&["tasks", "drop", "order", "stray-2"])
            .contains("dropped")
    );
    let (status, _) = send(
        client
            .delete(format!("{gateway}/v1/admin/tasks/order/dead/stray-2"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "dropped already");
    let (status, _) = send(
        client
            .delete(format!("{gateway}/v1/admin/tasks/order/dead/stray-1"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, view) = queue_view(admin.clone()).await;
    assert_eq!(view["counts"]["dead"], 0, "{view}");
    assert!(view["dead"].as_array().unwrap().is_empty());
}
