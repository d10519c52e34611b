//! How soon a catalogue change is searchable: product service commit → outbox relay →
//! broker → search inbox → index commit → visible to a search. Prints p50/p99/max and the
//! ratio against the commit itself (the baseline, measured in the same run).
//!
//! Needs the local infrastructure: `scripts/infra.sh up && eval "$(scripts/infra.sh env)"`,
//! then `cargo bench -p commerce-search --bench freshness`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_runtime::Config;
use commerce_runtime::service;
use commerce_testkit::{TestIssuer, fresh_database, required_env, unique};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SAMPLES: usize = 200;
const TARGET: Duration = Duration::from_secs(1);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let product_db = fresh_database("benchproduct").await;
    let search_db = fresh_database("benchsearch").await;
    let index_dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::start().await;
    let toml = format!(
        r#"
        [kafka]
        brokers = "{kafka}"
        topic_prefix = "{prefix}."
        [redis]
        urls = ["{redis}"]
        [telemetry]
        log_level = "warn"
        [services.product]
        http_addr = "127.0.0.1:0"
        grpc_addr = "127.0.0.1:0"
        database = {{ url = "{product_db}" }}
        redis_prefix = "{product_redis}"
        auth = {{ jwks_url = "{jwks}" }}
        [services.search]
        http_addr = "127.0.0.1:0"
        grpc_addr = "127.0.0.1:0"
        database = {{ url = "{search_db}" }}
        index_dir = "{index}"
        redis_prefix = "{search_redis}"
        jwks_url = "{jwks}"
        "#,
        kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
        redis = required_env("COMMERCE_TEST_REDIS_URL"),
        prefix = unique("bench"),
        product_db = product_db.url,
        search_db = search_db.url,
        product_redis = unique("product"),
        search_redis = unique("search"),
        jwks = issuer.jwks_url,
        index = index_dir.path().display(),
    );
    let config = Arc::new(Config::from_toml_str(&toml).unwrap());
    let shutdown = CancellationToken::new();
    let running = service::start(
        config,
        &[&commerce_product::DEFINITION, &commerce_search::DEFINITION],
        shutdown.clone(),
    )
    .await
    .unwrap();
    let product = format!("http://{}", running.http_addrs[0].1);
    let search = format!("http://{}", running.http_addrs[1].1);
    let client = reqwest::Client::new();
    let admin = issuer.user_token(uuid::Uuid::new_v4(), "admin");

    let mut commits = Vec::with_capacity(SAMPLES);
    let mut freshness = Vec::with_capacity(SAMPLES);
    let run = unique("run");
    for sample in 0..SAMPLES {
        let sku = format!("FRESH-{sample}-{}", &run[4..12]).to_uppercase();
        let started = Instant::now();
        let response = client
            .post(format!("{product}/v1/products"))
            .bearer_auth(&admin)
            .json(
                &json!({"sku": sku, "name": format!("Bench item {sample}"), "category": "bench",
                          "price": {"amount": "1.00", "currency": "USD"}, "stock": 1}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let committed = Instant::now();
        commits.push(committed - started);
        loop {
            let results: Value = client
                .get(format!("{search}/v1/search?q={}", sku.to_lowercase()))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let found = results["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|item| item["sku"] == sku.as_str());
            if found {
                freshness.push(committed.elapsed());
                break;
            }
            assert!(
                committed.elapsed() < Duration::from_secs(30),
                "sample {sample} never became searchable"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    shutdown.cancel();
    running.wait().await.unwrap();

    commits.sort();
    freshness.sort();
    let (commit_p99, fresh_p99) = (percentile(&commits, 0.99), percentile(&freshness, 0.99));
    println!("search freshness over {SAMPLES} product creations (product commit → searchable)");
    println!(
        "  baseline, product commit: p50 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}",
        percentile(&commits, 0.5),
        commit_p99,
        commits.last().unwrap()
    );
    println!(
        "  searchable after commit:  p50 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}",
        percentile(&freshness, 0.5),
        fresh_p99,
        freshness.last().unwrap()
    );
    println!(
        "  ratio p99 freshness / p99 commit: {:.1}x; target p99 < {TARGET:?}: {}",
        fresh_p99.as_secs_f64() / commit_p99.as_secs_f64(),
        if fresh_p99 < TARGET { "met" } else { "MISSED" }
    );
}
