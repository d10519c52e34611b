//! The saga policy: a bad one stops the service naming the key; a changed policy file
//! applies without a restart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::shop::*;

#[tokio::test]
async fn a_bad_saga_policy_stops_the_service_naming_the_key() {
    let shop = Shop::start(Engine::Postgres).await;
    let (status, stderr) =
        shop.order_once(&[("COMMERCE_SERVICES__ORDER__SAGA__REMINDERS", r#"["30h"]"#)]);
    assert!(!status.success());
    assert!(stderr.contains("services.order.saga.reminders"), "{stderr}");
    shop.stop().await;
}

/// The SagaPolicy resource's path: the operator writes the policy into a mounted file and
/// the running order service takes it up; orders placed after the change get the new
/// payment window, and a broken file changes nothing.
async fn a_changed_saga_policy_file_applies_without_a_restart(engine: Engine) {
    let policy_dir = tempfile::tempdir().unwrap();
    let file = policy_dir.path().join("saga.toml");
    let write = |window: &str, reminder: &str| {
        // As the kubelet does: the new content appears at once (write, then rename).
        let next = policy_dir.path().join(".saga.toml.next");
        std::fs::write(
            &next,
            format!("payment_window = \"{window}\"\nreminders = [\"{reminder}\"]\n"),
        )
        .unwrap();
        std::fs::rename(&next, &file).unwrap();
    };
    write("1h", "10m");
    let path = file.display().to_string();
    let shop = Shop::start_with_env(
        engine,
        vec![
            ("COMMERCE_SERVICES__ORDER__SAGA_FILE".to_owned(), path),
            (
                "COMMERCE_SERVICES__ORDER__SAGA_RELOAD_INTERVAL".to_owned(),
                "100ms".to_owned(),
            ),
        ],
    )
    .await;
    let (admin, _) = shop.user("admin").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "15.00", 10).await;
    let pool = shop.order_pool.clone();
    let window_of = move |placed: Value| {
        let pool = pool.clone();
        async move {
            let hours: f64 = sqlx::query_scalar(
                "SELECT (extract(epoch FROM payment_due_at - created_at) / 3600)::float8
                 FROM orders WHERE id = $1::uuid",
            )
            .bind(placed["orderId"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
            hours
        }
    };

    let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
    let (status, first) = shop.place(&alice, "policy-1", &session).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(
        (window_of(first.clone()).await - 1.0).abs() < 0.01,
        "{first}"
    );

    write("3h", "1h");
    // Reloaded within a few intervals; an order placed after that gets three hours.
    let mut window = 0.0;
    for attempt in 0..50 {
        let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
        let (status, placed) = shop
            .place(&alice, &format!("policy-2-{attempt}"), &session)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        window = window_of(placed).await;
        if (window - 3.0).abs() < 0.01 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        (window - 3.0).abs() < 0.01,
        "the new window never applied: {window}h"
    );

    // A reminder after the window's end is refused; the three-hour policy stays.
    write("3h", "4h");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let session = shop.checkout(&alice, &[(&mug, 1)], None).await;
    let (status, placed) = shop.place(&alice, "policy-3", &session).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert!(
        (window_of(placed.clone()).await - 3.0).abs() < 0.01,
        "{placed}"
    );
    shop.stop().await;
}

on_both_engines!(a_changed_saga_policy_file_applies_without_a_restart,);
