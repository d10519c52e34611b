//! Faults under traffic on the whole shop.
//!
//! - The shop SIGKILLed and started again with the same consumer groups: every group
//!   consumes again within the consumer session timeout (the dead process's members are
//!   expired, the new ones take their partitions).
//! - Its Kafka cluster (three nodes, replication factor 3, `min.insync.replicas` 2)
//!   restarted one node at a time: every service stays ready, and says so, while a node
//!   is gone, and events keep flowing.
//!
//! Either way every order paid before, during or after the fault is confirmed.

mod support;

use std::time::{Duration, Instant};

use commerce_testkit::{PrivateKafka, eventually};
use sqlx::PgPool;
use sqlx::types::chrono::{DateTime, Utc};
use support::LocalShop;
use support::shoppers::Shoppers;
use tokio_util::sync::CancellationToken;

/// What `KafkaConfig::consumer_config` sets: a dead member is expired after this long.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The services with an inbox consumer, each in its own consumer group.
const CONSUMERS: [&str; 5] = ["cart", "fulfillment", "notification", "order", "search"];

async fn latest_inbox_row(pool: &PgPool) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT max(received_at) FROM inbox_events")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_killed_shop_restarts_and_every_consumer_group_consumes_again() {
    let shop = LocalShop::new("crash").await;
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let mut services = shop.serve();
    shop.wait_until_ready().await;
    let shoppers = Shoppers::start(&shop).await;
    shoppers
        .wait_for_more_paid(4, Duration::from_secs(120), "orders paid before the crash")
        .await;

    // SIGKILL: no consumer leaves its group; the broker still counts the dead members.
    services.0.kill().unwrap();
    services.0.wait().unwrap();
    let before: Vec<_> = futures::future::join_all(
        CONSUMERS.map(|service| latest_inbox_row(&shop.database(service).pool)),
    )
    .await;
    let restarted_at = Instant::now();
    let restarted_db_time: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&shop.database("order").pool)
        .await
        .unwrap();
    let _services = shop.serve();
    shop.wait_until_ready().await;
    let startup = restarted_at.elapsed();

    // Each group consumes again, and soon: within the session timeout of its members'
    // expiry (plus the process's own start-up).
    let mut resumed = Vec::new();
    for (service, before) in CONSUMERS.iter().zip(before) {
        let pool = &shop.database(service).pool;
        let latest = eventually(
            Duration::from_secs(90),
            &format!("{service}'s consumer group to consume again"),
            || async {
                latest_inbox_row(pool)
                    .await
                    .filter(|latest| Some(*latest) > before && *latest > restarted_db_time)
            },
        )
        .await;
        let first_after: DateTime<Utc> =
            sqlx::query_scalar("SELECT min(received_at) FROM inbox_events WHERE received_at > $1")
                .bind(restarted_db_time)
                .fetch_one(pool)
                .await
                .unwrap();
        assert!(first_after <= latest);
        let delay = (first_after - restarted_db_time).to_std().unwrap();
        resumed.push((*service, delay));
    }
    println!(
        "consumption resumed after the restart (process start to first event applied): {}",
        resumed
            .iter()
            .map(|(service, delay)| format!("{service} {:.1} s", delay.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (service, delay) in &resumed {
        assert!(
            *delay <= SESSION_TIMEOUT + startup + Duration::from_secs(5),
            "{service} took {delay:?} to consume again (session timeout {SESSION_TIMEOUT:?}, start-up {startup:?})"
        );
    }

    shoppers
        .wait_for_more_paid(3, Duration::from_secs(120), "orders paid after the restart")
        .await;
    shoppers.finish(&shop.database("order").pool).await;
}

async fn order_status(pool: &PgPool, order: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM orders WHERE id::text = $1")
        .bind(order)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_its_kafka_cluster_keeps_the_shop_ready_and_selling() {
    let mut kafka = PrivateKafka::start(3);
    let mut shop = LocalShop::new("rolling").await;
    shop.use_kafka(&kafka.brokers());
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let _services = shop.serve();
    shop.wait_until_ready().await;
    let order_pool = &shop.database("order").pool;
    let shoppers = Shoppers::start(&shop).await;
    shoppers
        .wait_for_more_paid(
            2,
            Duration::from_secs(120),
            "orders paid before the restart",
        )
        .await;

    // Every service's /readyz, asked four times a second for as long as the restart lasts.
    let restart_done = CancellationToken::new();
    let watcher = {
        let (urls, done) = (shop.readyz_urls(), restart_done.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut rounds, mut refusals) = (0, Vec::new());
            while !done.is_cancelled() {
                refusals.extend(support::not_ready(&client, &urls).await);
                rounds += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (rounds, refusals)
        })
    };
    for node in 0..3 {
        // A controlled shutdown (SIGTERM) hands leadership to the other two, which still
        // make min.insync.replicas: the shop can do everything, so it is ready.
        tokio::task::block_in_place(|| kafka.stop(node));
        shoppers
            .wait_for_more_paid(
                2,
                Duration::from_secs(60),
                &format!("orders paid while node {node} is down"),
            )
            .await;
        let paid_while_down = shoppers.last_paid().expect("an order was paid");
        eventually(
            Duration::from_secs(60),
            &format!("an order paid while node {node} is down to be confirmed"),
            || async {
                (order_status(order_pool, &paid_while_down).await.as_deref() == Some("CONFIRMED"))
                    .then_some(())
            },
        )
        .await;
        tokio::task::block_in_place(|| kafka.start_node(node));
        // The next node goes only once this one has caught up.
        kafka.wait_fully_replicated().await;
    }
    restart_done.cancel();
    let (rounds, refusals) = watcher.await.unwrap();
    assert!(rounds >= 12, "readiness was asked only {rounds} times");
    assert!(
        refusals.is_empty(),
        "a service was not ready while one broker of three was away:\n{}",
        refusals.join("\n")
    );
    shoppers.finish(order_pool).await;
}
