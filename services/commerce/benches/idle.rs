//! What an idle shop costs: CPU seconds per minute of `commerce serve --target all` (built
//! in release) and of its one-node Kafka broker, read from /proc, with nobody shopping.
//! The baseline, measured first in the same run: the broker alone, before the shop
//! connects. Goal: the shop under 1 % of one core (0.6 CPU-s per minute), and the broker
//! with the shop connected close to the broker alone — nothing busy-polls.
//!
//! Needs the local infrastructure (`scripts/infra.sh up && eval "$(scripts/infra.sh env)"`),
//! then `cargo bench -p commerce --bench idle`. With `perf` installed it also records where
//! the idle shop's CPU goes (`target/bench-idle/perf.txt`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use commerce_testkit::PrivateKafka;
use support::LocalShop;

const WINDOW: Duration = Duration::from_secs(60);
const GOAL_SHOP_CORE_SHARE: f64 = 0.01;

/// CPU seconds per minute each of `pids` uses over `window`.
async fn cpu_per_minute(pids: &[u32], window: Duration) -> Vec<f64> {
    let before: Vec<Duration> = pids.iter().map(|&pid| support::cpu_time(pid)).collect();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = started.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .map(|(&pid, before)| (support::cpu_time(pid) - before).as_secs_f64() * 60.0 / elapsed)
        .collect()
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-idle");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::main]
async fn main() {
    let kafka = PrivateKafka::start(1);
    let broker = kafka.pids()[0];
    // The broker settles after start-up before it is measured alone.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let broker_alone = cpu_per_minute(&[broker], WINDOW).await[0];

    let mut shop = LocalShop::new("benchidle").await;
    shop.use_kafka(&kafka.brokers());
    shop.env.push((
        "COMMERCE_TELEMETRY__LOG_LEVEL".to_owned(),
        "warn".to_owned(),
    ));
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let services = shop.serve();
    shop.wait_until_ready().await;
    // Start-up work (topic creation, first relay passes, consumer joins) ends first.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let shop_pid = services.0.id();
    let measured = cpu_per_minute(&[shop_pid, broker], WINDOW).await;
    let (shop_cpu, broker_cpu) = (measured[0], measured[1]);

    println!(
        "baseline: the broker alone, idle: {broker_alone:.2} CPU-s per minute ({:.2} % of one core)",
        broker_alone / 60.0 * 100.0
    );
    println!(
        "idle shop: commerce {shop_cpu:.2} CPU-s per minute ({:.2} % of one core); broker beside it {broker_cpu:.2} ({:.2} % of one core, {:.2}× alone)",
        shop_cpu / 60.0 * 100.0,
        broker_cpu / 60.0 * 100.0,
        broker_cpu / broker_alone.max(0.001),
    );
    println!(
        "goal: the shop under {:.0} % of one core: {}",
        GOAL_SHOP_CORE_SHARE * 100.0,
        if shop_cpu / 60.0 < GOAL_SHOP_CORE_SHARE {
            "met"
        } else {
            "not met"
        }
    );

    match support::perf_profile(shop_pid, 20, &out_dir().join("perf")) {
        Some(report) => println!("where the idle shop's CPU goes: {}", report.display()),
        None => println!("perf is not available: no profile recorded"),
    }
}
