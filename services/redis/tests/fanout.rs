//! The Pub/Sub fan-out against standalone Redis and a 6-node Redis Cluster: a message
//! published through one process's client reaches listeners held by another process's
//! fan-out, a slow listener is told it missed messages, the last listener to leave
//! unsubscribes.

use std::time::Duration;

use commerce_redis::{Delivery, Fanout, RedisClient, RedisConfig, hash_tagged};
use commerce_testkit::{required_env, unique};
use tokio_util::sync::CancellationToken;

fn standalone() -> RedisConfig {
    RedisConfig::standalone(required_env("COMMERCE_TEST_REDIS_URL"))
}

fn cluster() -> RedisConfig {
    RedisConfig::cluster(required_env("COMMERCE_TEST_REDIS_CLUSTER").split(','))
}

async fn next(listener: &mut commerce_redis::Listener) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .expect("a delivery within 5 s")
        .expect("fan-out running")
}

async fn crosses_processes(config: RedisConfig) {
    let shutdown = CancellationToken::new();
    // Two fan-outs stand for two service instances; the publisher is a third client.
    let instance_a = Fanout::start(&config, 16, shutdown.clone());
    let instance_b = Fanout::start(&config, 16, shutdown.clone());
    let publisher = RedisClient::connect(&config).await.unwrap();
    let user = uuid::Uuid::new_v4().to_string();
    let channel = hash_tagged(&unique("fanout"), &user, "push");
    let other_channel = hash_tagged(&unique("fanout"), "someone-else", "push");

    let mut on_a = instance_a.subscribe(&channel).await.unwrap();
    let mut also_on_a = instance_a.subscribe(&channel).await.unwrap();
    let mut on_b = instance_b.subscribe(&channel).await.unwrap();
    let mut elsewhere = instance_b.subscribe(&other_channel).await.unwrap();

    Fanout::publish(&publisher, &channel, b"first")
        .await
        .unwrap();
    Fanout::publish(&publisher, &channel, b"second")
        .await
        .unwrap();
    for listener in [&mut on_a, &mut also_on_a, &mut on_b] {
        assert_eq!(next(listener).await, Delivery::Message(b"first"[..].into()));
        assert_eq!(
            next(listener).await,
            Delivery::Message(b"second"[..].into())
        );
    }
    // Nothing leaks to another channel.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), elsewhere.next())
            .await
            .is_err()
    );
    shutdown.cancel();
}

#[tokio::test]
async fn messages_cross_processes_on_standalone_redis() {
    crosses_processes(standalone()).await;
}

#[tokio::test]
async fn messages_cross_processes_on_a_redis_cluster() {
    crosses_processes(cluster()).await;
}

#[tokio::test]
async fn a_slow_listener_gets_a_gap_and_does_not_hold_back_the_others() {
    let config = standalone();
    let shutdown = CancellationToken::new();
    let fanout = Fanout::start(&config, 2, shutdown.clone());
    let publisher = RedisClient::connect(&config).await.unwrap();
    let channel = unique("fanout-slow");
    let mut slow = fanout.subscribe(&channel).await.unwrap();
    let mut fast = fanout.subscribe(&channel).await.unwrap();
    for index in 0..6u8 {
        Fanout::publish(&publisher, &channel, &[index])
            .await
            .unwrap();
        assert_eq!(next(&mut fast).await, Delivery::Message(vec![index].into()));
    }
    // The slow one read nothing while six went by with room for two: it is told so, then
    // gets what is still buffered.
    assert_eq!(next(&mut slow).await, Delivery::Gap);
    assert_eq!(next(&mut slow).await, Delivery::Message(vec![4].into()));
    assert_eq!(next(&mut slow).await, Delivery::Message(vec![5].into()));
    shutdown.cancel();
}

#[tokio::test]
async fn the_last_listener_to_leave_unsubscribes() {
    let config = standalone();
    let shutdown = CancellationToken::new();
    let fanout = Fanout::start(&config, 8, shutdown.clone());
    let publisher = RedisClient::connect(&config).await.unwrap();
    let channel = unique("fanout-leave");
    let subscribers = || {
        let mut connection = publisher.clone();
        let channel = channel.clone();
        async move {
            let answer: (String, usize) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut connection)
                .await
                .unwrap();
            answer.1
        }
    };
    let first = fanout.subscribe(&channel).await.unwrap();
    let second = fanout.subscribe(&channel).await.unwrap();
    assert_eq!(subscribers().await, 1, "one connection for every listener");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(subscribers().await, 1, "a listener is still there");
    drop(second);
    commerce_testkit::eventually(Duration::from_secs(5), "unsubscribed", || async {
        (subscribers().await == 0).then_some(())
    })
    .await;
    shutdown.cancel();
}
