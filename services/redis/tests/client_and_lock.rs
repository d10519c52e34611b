//! The Redis client and the lock against standalone Redis and a 6-node Redis Cluster.

use std::sync::Arc;
use std::time::Duration;

use commerce_redis::{RedisClient, RedisConfig, hash_tagged};
use commerce_testkit::{required_env, unique};

async fn standalone() -> RedisClient {
    RedisClient::connect(&RedisConfig::standalone(required_env(
        "COMMERCE_TEST_REDIS_URL",
    )))
    .await
    .expect("standalone redis")
}

async fn cluster() -> RedisClient {
    let urls = required_env("COMMERCE_TEST_REDIS_CLUSTER");
    let client = RedisClient::connect(&RedisConfig::cluster(urls.split(',')))
        .await
        .expect("redis cluster");
    assert!(client.is_cluster());
    client
}

/// Commands, pipelines and a two-key script: the same code on both deployments.
async fn commands_scripts_and_slots(client: RedisClient) {
    client.ping().await.unwrap();
    let mut connection = client.clone();
    let prefix = unique("kv");
    // Many keys, so a cluster spreads them over all three masters.
    for index in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:{index}"))
            .arg(index)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    for index in 0..50 {
        let value: i64 = redis::cmd("GET")
            .arg(format!("{prefix}:{index}"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(value, index);
    }
    // A script over two keys works on a cluster only when they share a slot.
    let tag = unique("order");
    let (a, b) = (hash_tagged("a", &tag, ""), hash_tagged("b", &tag, "x"));
    let moved: i64 = redis::Script::new(
        "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); return tonumber(redis.call('GET', KEYS[2]))",
    )
    .key(&a)
    .key(&b)
    .arg(7)
    .invoke_async(&mut connection)
    .await
    .unwrap();
    assert_eq!(moved, 7);
    let mut pipeline = redis::pipe();
    pipeline.cmd("INCR").arg(&a).cmd("INCR").arg(&a);
    let (first, second): (i64, i64) = pipeline.query_async(&mut connection).await.unwrap();
    assert_eq!((first, second), (8, 9));
}

#[tokio::test]
async fn standalone_commands_scripts_and_slots() {
    commands_scripts_and_slots(standalone().await).await;
}

#[tokio::test]
async fn cluster_commands_scripts_and_slots() {
    commands_scripts_and_slots(cluster().await).await;
}

async fn lock_contention(client: RedisClient) {
    let key = hash_tagged("lock", &unique("order"), "");
    let first = client
        .try_lock(&key, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("free lock is taken");
    assert!(
        client
            .try_lock(&key, Duration::from_secs(5))
            .await
            .unwrap()
            .is_none(),
        "a held lock cannot be taken twice"
    );
    // A waiter gets it once the holder releases.
    let waiter = {
        let client = client.clone();
        let key = key.clone();
        tokio::spawn(async move {
            client
                .lock(&key, Duration::from_secs(5), Duration::from_secs(5))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter must wait while the lock is held"
    );
    assert!(first.release().await.unwrap());
    let second = waiter
        .await
        .unwrap()
        .unwrap()
        .expect("waiter gets the lock");
    assert!(second.refresh(Duration::from_secs(5)).await.unwrap());
    assert!(second.release().await.unwrap());

    // An expired holder can neither refresh nor release what a new holder now owns.
    let stale = client
        .try_lock(&key, Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let fresh = client
        .try_lock(&key, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("expired lock is free");
    assert!(!stale.refresh(Duration::from_secs(5)).await.unwrap());
    assert!(!stale.release().await.unwrap());
    assert!(
        client
            .try_lock(&key, Duration::from_secs(5))
            .await
            .unwrap()
            .is_none(),
        "the stale holder's release must not free the new holder's lock"
    );
    assert!(fresh.release().await.unwrap());
    // Waiting has a deadline.
    let held = client
        .try_lock(&key, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let gave_up = client
        .lock(&key, Duration::from_secs(1), Duration::from_millis(150))
        .await
        .unwrap();
    assert!(gave_up.is_none());
    held.release().await.unwrap();
}

#[tokio::test]
async fn standalone_lock_contention() {
    lock_contention(standalone().await).await;
}

#[tokio::test]
async fn cluster_lock_contention() {
    lock_contention(cluster().await).await;
}

/// Eight workers do a read-modify-write under the lock; none of the increments is lost.
async fn lock_serialises_critical_sections(client: RedisClient) {
    let tag = unique("counter");
    let lock_key = Arc::new(hash_tagged("lock", &tag, ""));
    let counter_key = Arc::new(hash_tagged("counter", &tag, ""));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, lock_key, counter_key) =
            (client.clone(), lock_key.clone(), counter_key.clone());
        workers.push(tokio::spawn(async move {
            let lock = client
                .lock(&lock_key, Duration::from_secs(5), Duration::from_secs(20))
                .await
                .unwrap()
                .expect("lock within the wait");
            let mut connection = client.clone();
            let current: Option<i64> = redis::cmd("GET")
                .arg(&*counter_key)
                .query_async(&mut connection)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _: () = redis::cmd("SET")
                .arg(&*counter_key)
                .arg(current.unwrap_or(0) + 1)
                .query_async(&mut connection)
                .await
                .unwrap();
            assert!(lock.release().await.unwrap());
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let mut connection = client.clone();
    let total: i64 = redis::cmd("GET")
        .arg(&*counter_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(total, 8);
}

#[tokio::test]
async fn standalone_lock_serialises_critical_sections() {
    lock_serialises_critical_sections(standalone().await).await;
}

#[tokio::test]
async fn cluster_lock_serialises_critical_sections() {
    lock_serialises_critical_sections(cluster().await).await;
}

async fn rate_limit_windows(client: RedisClient) {
    use commerce_redis::{RateDecision, RateLimit};
    let limit = RateLimit {
        max: 3,
        window: Duration::from_millis(600),
    };
    let subject = unique("ip");
    for expected_remaining in [2, 1, 0] {
        let RateDecision::Allowed {
            remaining,
            resets_after,
        } = client.hit("login", &subject, limit).await.unwrap()
        else {
            panic!("hits within the limit are allowed");
        };
        assert_eq!(remaining, expected_remaining);
        assert!(
            resets_after > Duration::ZERO && resets_after <= limit.window,
            "{resets_after:?}"
        );
    }
    let RateDecision::Limited { retry_after } = client.hit("login", &subject, limit).await.unwrap()
    else {
        panic!("the fourth hit in the window must be limited");
    };
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_millis(600),
        "{retry_after:?}"
    );
    // Another subject and another scope have their own windows.
    assert!(matches!(
        client.hit("login", &unique("ip"), limit).await.unwrap(),
        RateDecision::Allowed { .. }
    ));
    assert!(matches!(
        client.hit("resend", &subject, limit).await.unwrap(),
        RateDecision::Allowed { .. }
    ));
    tokio::time::sleep(retry_after + Duration::from_millis(50)).await;
    assert!(matches!(
        client.hit("login", &subject, limit).await.unwrap(),
        RateDecision::Allowed { remaining: 2, .. }
    ));
    client.reset_hits("login", &subject).await.unwrap();
    assert!(matches!(
        client.hit("login", &subject, limit).await.unwrap(),
        RateDecision::Allowed { remaining: 2, .. }
    ));
}

#[tokio::test]
async fn standalone_rate_limit_windows() {
    rate_limit_windows(standalone().await).await;
}

#[tokio::test]
async fn cluster_rate_limit_windows() {
    rate_limit_windows(cluster().await).await;
}

/// A Redis with `requirepass` (as the operator runs one for a shop): the password from the
/// configuration gets in, no password does not, and the configuration never prints it.
#[tokio::test]
async fn a_password_protected_redis_takes_the_configured_password() {
    let port = commerce_testkit::free_port();
    let password = unique("password-of-at-least-24-characters");
    let _server = Stopped(
        std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--requirepass",
                &password,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/infra.sh installs it)"),
    );
    let url = format!("redis://127.0.0.1:{port}");
    commerce_testkit::eventually(Duration::from_secs(10), "redis-server listening", || {
        let url = url.clone();
        async move {
            tokio::net::TcpStream::connect(url.trim_start_matches("redis://"))
                .await
                .ok()
                .map(drop)
        }
    })
    .await;

    let refused = match RedisClient::connect(&RedisConfig::standalone(&url)).await {
        Err(error) => error.to_string(),
        Ok(client) => client.ping().await.unwrap_err().to_string(),
    };
    assert!(
        refused.contains("NOAUTH") || refused.contains("Authentication"),
        "{refused}"
    );
    let config = RedisConfig::standalone(&url).with_password(&password);
    assert!(!format!("{config:?}").contains(&password));
    let client = RedisClient::connect(&config).await.unwrap();
    client.ping().await.unwrap();
    let mut connection = client.clone();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut connection)
        .await
        .unwrap();
}

/// A server process stopped when the test ends, passed or not.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
