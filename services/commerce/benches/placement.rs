//! Order placement at volume: 32 simulated shoppers buying through the gateway (cart,
//! checkout, order, offline payment) on a whole shop built in release, once per saga
//! engine (the PostgreSQL orchestrator, then Temporal). Next to them, in the same run and
//! on the same PostgreSQL server, `pgbench` (TPC-B-like, scale 10, 8 clients) as the
//! baseline: what this server commits per second on this machine. Prints orders/s, the
//! placement step's p50/p99, the commits each placed order costs (pg_stat_database over
//! the shop's databases, background work included) and the ratios.
//!
//! Then, on the PostgreSQL engine's shop, figures measured alone elsewhere are measured
//! again idle and under the same load (a second run of 32 shoppers): search freshness
//! (product commit → searchable) and chat delivery through the gateway on 1,024 sockets
//! (32 people in 16 conversations, 32 devices each, one message a second per
//! conversation: 512 deliveries a second), and the outbox relay against Kafka's
//! ProducerPerformance on the shop's broker. Each prints its ratio loaded ÷ idle.
//!
//! Needs the local infrastructure and MailDev (`make test` sets both up):
//! `scripts/infra.sh up && eval "$(scripts/infra.sh env)"`, then
//! `cargo bench -p commerce --bench placement` (`-- postgres` or `-- temporal` for one
//! engine). The shop's log, the JSON reports and charts land in `target/bench-placement/`.

#[path = "../../messaging/benches/support/relay_rate.rs"]
mod relay_rate;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use commerce_simulator::Simulation;
use commerce_simulator::report::Report;
use commerce_testkit::{MailSink, fresh_database, required_env, unique};
use support::LocalShop;
use support::probes::{self, ChatPerson, Latencies};

const SHOPPERS: &str = "32";
const DURATION: &str = "40s";
/// Goals of the placement benchmark (README, "Load, faults and invariants").
const GOAL_ORDERS_PER_SECOND: f64 = 150.0;
const GOAL_P99_MS: f64 = 300.0;
/// The Temporal engine's goals, against the PostgreSQL engine in the same run.
const GOAL_TEMPORAL_RATIO: f64 = 0.5;
const GOAL_TEMPORAL_P99_MS: f64 = 1000.0;
/// Sockets each chat person opens in the probe: 32 people × 32 = 1,024 sockets.
const CHAT_SOCKETS_EACH: usize = 32;
const FRESHNESS_SAMPLES: usize = 40;
const FRESHNESS_PACE: Duration = Duration::from_millis(250);
const CHAT_FOR: Duration = Duration::from_secs(12);
const RELAY_RECORDS: usize = 20_000;

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-placement");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `pgbench` TPS on a scratch database of the test server: scale 10, 8 clients, 20 s.
async fn pgbench_tps() -> f64 {
    let database = fresh_database("pgbench").await;
    let run = |args: &[&str]| {
        let output = Command::new("pgbench")
            .args(args)
            .arg(&database.url)
            .output()
            .expect("pgbench (Debian's postgresql-client; `make test` installs it)");
        assert!(
            output.status.success(),
            "pgbench {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(&["-i", "-s", "10", "-q"]);
    let printed = run(&["-c", "8", "-j", "2", "-T", "20", "-n"]);
    printed
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's output:\n{printed}"))
}

/// Commits in each of the shop's databases so far, by service (pg_stat_database; flushed
/// about once a second).
async fn commits(shop: &LocalShop) -> std::collections::BTreeMap<String, i64> {
    let names: Vec<String> = shop.databases.values().map(|db| db.name.clone()).collect();
    let by_database: Vec<(String, i64)> = sqlx::query_as(
        "SELECT datname::text, xact_commit::bigint FROM pg_stat_database WHERE datname = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&shop.database("order").pool)
    .await
    .unwrap();
    shop.databases
        .iter()
        .map(|(service, database)| {
            let commits = by_database
                .iter()
                .find(|(name, _)| *name == database.name)
                .map_or(0, |(_, commits)| *commits);
            (service.to_string(), commits)
        })
        .collect()
}

/// A connection as the server's superuser, for pg_stat_statements (which
/// `scripts/infra.sh` loads): every database's statements, and the right to reset them.
async fn statistics_pool() -> sqlx::PgPool {
    sqlx::PgPool::connect(&required_env("COMMERCE_TEST_DATABASE_URL"))
        .await
        .expect("the test server as its superuser")
}

/// Starts counting statements afresh; `false` (and why) when the server does not load
/// pg_stat_statements.
async fn reset_statements(pool: &sqlx::PgPool) -> bool {
    let ready = async {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(pool)
            .await?;
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(pool)
            .await
    };
    match ready.await {
        Ok(_) => true,
        Err(error) => {
            println!(
                "no statement statistics (scripts/infra.sh up loads pg_stat_statements): {error}"
            );
            false
        }
    }
}

/// The statements the shop's databases ran most often since the reset: (database, calls,
/// mean ms, statement).
async fn busiest_statements(
    pool: &sqlx::PgPool,
    shop: &LocalShop,
) -> Vec<(String, i64, f64, String)> {
    let names: Vec<String> = shop.databases.values().map(|db| db.name.clone()).collect();
    sqlx::query_as(
        "SELECT d.datname::text, s.calls, s.mean_exec_time, s.query
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = ANY($1) ORDER BY s.calls DESC LIMIT 25",
    )
    .bind(&names)
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}

struct Placement {
    engine: &'static str,
    report: Report,
    commits_per_order: f64,
    /// Commits per placed order in each service's database.
    commits_by_service: Vec<(String, f64)>,
    /// The shop's own latency histograms over the run: (series, count, mean ms).
    time_spent: Vec<(String, f64, f64)>,
    /// The statements run most often: (service, calls per placed order, mean ms, text).
    statements: Vec<(String, f64, f64, String)>,
    /// CPU milliseconds per placed order, per program on the machine, most first.
    cpu_per_order: Vec<(String, f64)>,
    /// Search freshness and chat delivery idle and under load (PostgreSQL engine only).
    probes: Option<Probes>,
}

struct Probes {
    idle: [Latencies; 3],
    loaded: [Latencies; 3],
    /// Records per second: (ProducerPerformance, the outbox relay).
    relay_idle: (f64, f64),
    relay_loaded: (f64, f64),
    loaded_paid_per_second: f64,
}

/// (product commit, searchable after the commit, chat delivery) on the shop as it is now.
async fn probe(shop: &LocalShop, admin: &str, people: &[ChatPerson]) -> [Latencies; 3] {
    let (commits, freshness) =
        probes::search_freshness(shop, admin, FRESHNESS_SAMPLES, FRESHNESS_PACE).await;
    let chat = probes::chat_delivery(&shop.url(8080), people, CHAT_SOCKETS_EACH, CHAT_FOR).await;
    [commits, freshness, chat]
}

/// The probes on the idle shop, then again while a second run of shoppers buys.
async fn probes_idle_and_loaded(
    shop: &LocalShop,
    mut args: commerce_simulator::SimulateArgs,
    people: &[ChatPerson],
) -> Probes {
    let client = reqwest::Client::new();
    let admin = support::demo_login(&client, &shop.url(8080), "admin").await;
    let brokers = shop.env_value("COMMERCE_KAFKA__BROKERS");
    let idle = probe(shop, &admin, people).await;
    let relay_idle = relay_rate::relay_and_native_rates(&brokers, RELAY_RECORDS).await;
    // Shopping until every probe is done.
    args.duration = Duration::from_secs(600);
    let running = Simulation::prepare(args)
        .await
        .expect("shoppers signed up")
        .start();
    // Past the first visits' ramp.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let loaded = probe(shop, &admin, people).await;
    let relay_loaded = relay_rate::relay_and_native_rates(&brokers, RELAY_RECORDS).await;
    let report = running.stop().await;
    Probes {
        idle,
        loaded,
        relay_idle,
        relay_loaded,
        loaded_paid_per_second: report.paid_per_second(),
    }
}

/// `<name>_sum` and `<name>_count` of every series of the shop's Prometheus histograms
/// (all services share one registry; the order service's operational port serves it).
async fn histogram_totals(shop: &LocalShop) -> std::collections::HashMap<String, (f64, f64)> {
    let text = reqwest::get(format!("{}/metrics", shop.url(8184)))
        .await
        .and_then(|response| response.error_for_status())
        .expect("the order service's metrics")
        .text()
        .await
        .unwrap();
    let mut totals = std::collections::HashMap::<String, (f64, f64)>::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        let labels = labels.trim_end_matches('}');
        let key = |base: &str| format!("{base}{{{labels}}}");
        if let Some(base) = name.strip_suffix("_sum") {
            totals.entry(key(base)).or_default().0 += value;
        } else if let Some(base) = name.strip_suffix("_count") {
            totals.entry(key(base)).or_default().1 += value;
        }
    }
    totals
}

/// The series that took the most time between two snapshots, longest first.
fn time_spent(
    before: &std::collections::HashMap<String, (f64, f64)>,
    after: &std::collections::HashMap<String, (f64, f64)>,
) -> Vec<(String, f64, f64)> {
    let mut spent: Vec<(String, f64, f64, f64)> = after
        .iter()
        .filter(|(series, _)| series.contains("duration_seconds"))
        .filter_map(|(series, (sum, count))| {
            let (sum_before, count_before) = before.get(series).copied().unwrap_or_default();
            let calls = count - count_before;
            (calls > 0.0).then(|| {
                let total = sum - sum_before;
                (series.clone(), calls, total * 1000.0 / calls, total)
            })
        })
        .collect();
    spent.sort_by(|a, b| b.3.total_cmp(&a.3));
    spent
        .into_iter()
        .take(25)
        .map(|(series, calls, mean, _)| (series, calls, mean))
        .collect()
}

async fn placement(engine: &'static str, mail: &MailSink, with_probes: bool) -> Placement {
    let mut shop = LocalShop::new(&format!("bench{engine}")).await;
    shop.env.extend(
        [
            (
                "COMMERCE_SERVICES__NOTIFICATION__SMTP__PORT",
                mail.smtp_port.to_string(),
            ),
            (
                "COMMERCE_SERVICES__GATEWAY__CLIENT_IP_HEADER",
                "x-forwarded-for".to_owned(),
            ),
            ("COMMERCE_SERVICES__ORDER__SAGA__ENGINE", engine.to_owned()),
            (
                "COMMERCE_SERVICES__ORDER__TEMPORAL__TASK_QUEUE",
                unique("bench-orders"),
            ),
            ("COMMERCE_TELEMETRY__LOG_LEVEL", "warn".to_owned()),
        ]
        .map(|(key, value)| (key.to_owned(), value)),
    );
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let services = shop.serve();
    shop.wait_until_ready().await;
    let out = out_dir();
    let args = support::simulate_args(&[
        "--gateway",
        &shop.url(8080),
        "--mail",
        &mail.web,
        "--shoppers",
        SHOPPERS,
        "--duration",
        DURATION,
        "--mix",
        "buy=100",
        "--promo-share",
        "0",
        "--forwarded-for",
        "--quiet",
    ]);
    let simulation = Simulation::prepare(args.clone())
        .await
        .expect("shoppers signed up");
    // The probes' chat people are the shoppers, read before they start shopping.
    let mut people = Vec::new();
    if with_probes {
        let client = reqwest::Client::new();
        for shopper in simulation.shoppers() {
            let token = shopper.caller.token.clone().expect("a signed-in shopper");
            let me = support::me(&client, &shop.url(8080), &token).await;
            people.push(ChatPerson {
                user_id: me["id"].as_str().expect("the shopper's id").to_owned(),
                token,
                address: shopper.caller.address.clone(),
            });
        }
    }
    // Every sign-up settles before the count starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let statistics = statistics_pool().await;
    let counting_statements = reset_statements(&statistics).await;
    let before = commits(&shop).await;
    let histograms_before = histogram_totals(&shop).await;
    let cpu_before = support::cpu_by_program();
    let running = simulation.start();
    // A profile of the shop's process from 10 s into the run, for 15 s.
    let shop_pid = services.0.id();
    let profile_to = out.join(format!("{engine}-perf"));
    let profile = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(10));
        support::perf_profile(shop_pid, 15, &profile_to)
    });
    let report = running.finish().await;
    let cpu_after = support::cpu_by_program();
    if let Ok(Some(profile)) = profile.await {
        println!("{engine}: where the shop's CPU went: {}", profile.display());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = commits(&shop).await;
    let statements = if counting_statements {
        busiest_statements(&statistics, &shop).await
    } else {
        Vec::new()
    };
    let time_spent = time_spent(&histograms_before, &histogram_totals(&shop).await);

    let placed = report
        .summary
        .events
        .get("orders_placed")
        .copied()
        .unwrap_or(0);
    report
        .write_json(&out.join(format!("{engine}.json")))
        .unwrap();
    report
        .write_chart(&out.join(format!("{engine}.html")))
        .unwrap();
    let probes = if with_probes {
        Some(probes_idle_and_loaded(&shop, args, &people).await)
    } else {
        None
    };
    let _ = std::fs::copy(
        shop.scratch("shop.log"),
        out.join(format!("{engine}-shop.log")),
    );
    let mut cpu_per_order: Vec<(String, f64)> = cpu_after
        .iter()
        .map(|(program, after)| {
            let before = cpu_before.get(program).copied().unwrap_or_default();
            let spent = after.saturating_sub(before).as_secs_f64() * 1000.0;
            (program.clone(), spent / placed.max(1) as f64)
        })
        .filter(|(_, per_order)| *per_order >= 0.5)
        .collect();
    cpu_per_order.sort_by(|a, b| b.1.total_cmp(&a.1));
    let service_of = |database: &str| {
        shop.databases
            .iter()
            .find(|(_, db)| db.name == database)
            .map_or(database.to_owned(), |(service, _)| service.to_string())
    };
    let statements = statements
        .into_iter()
        .map(|(database, calls, mean, query)| {
            let query = query.split_whitespace().collect::<Vec<_>>().join(" ");
            (
                service_of(&database),
                calls as f64 / placed.max(1) as f64,
                mean,
                query.chars().take(110).collect(),
            )
        })
        .collect();
    Placement {
        engine,
        probes,
        statements,
        cpu_per_order,
        commits_per_order: (after.values().sum::<i64>() - before.values().sum::<i64>()) as f64
            / placed.max(1) as f64,
        commits_by_service: after
            .iter()
            .map(|(service, commits)| {
                let spent = commits - before.get(service).copied().unwrap_or_default();
                (service.clone(), spent as f64 / placed.max(1) as f64)
            })
            .collect(),
        report,
        time_spent,
    }
}

/// `name figure, name figure, …` with `decimals` digits after the point.
fn listed(figures: &[(String, f64)], decimals: usize) -> String {
    figures
        .iter()
        .map(|(name, figure)| format!("{name} {figure:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let engines: Vec<&'static str> = ["postgres", "temporal"]
        .into_iter()
        .filter(|engine| wanted.is_empty() || wanted.iter().any(|w| w == engine))
        .collect();
    let mail = MailSink::start();
    let tps = pgbench_tps().await;
    println!(
        "baseline: pgbench (TPC-B-like, scale 10, 8 clients, 20 s) {tps:.0} TPS on the same PostgreSQL"
    );
    let mut results = Vec::new();
    for engine in engines {
        let result = placement(engine, &mail, engine == "postgres").await;
        let place = &result.report.summary.steps["place_order"];
        let per_second = place.ok as f64 / result.report.summary.elapsed_s;
        println!(
            "{engine:>9}: {per_second:.1} orders/s placed ({:.1} paid/s) with {SHOPPERS} shoppers; place_order p50 {:.0} ms p99 {:.0} ms; {:.1} commits per order; orders/s ÷ pgbench TPS = {:.3}; failures {:?}",
            result.report.paid_per_second(),
            place.latency_ms.p50,
            place.latency_ms.p99,
            result.commits_per_order,
            per_second / tps,
            place.failures,
        );
        let cpu_total: f64 = result.cpu_per_order.iter().map(|(_, ms)| ms).sum();
        println!(
            "{engine}: CPU per placed order {cpu_total:.0} ms: {}",
            listed(&result.cpu_per_order, 0)
        );
        println!(
            "{engine}: commits per placed order by database: {}",
            listed(&result.commits_by_service, 1)
        );
        println!("{engine}: the statements run most often (per placed order, mean ms):");
        for (service, per_order, mean, query) in &result.statements {
            println!("  {per_order:>6.1} × {mean:>6.2} ms  {service:<12} {query}");
        }
        println!(
            "{engine}: where the requests' time went (calls, mean ms; most total time first):"
        );
        for (series, calls, mean) in &result.time_spent {
            println!("  {calls:>7.0} × {mean:>8.1} ms  {series}");
        }
        if let Some(probes) = &result.probes {
            println!(
                "{engine}: idle, then under a second run of {SHOPPERS} shoppers ({:.1} paid/s meanwhile); loaded ÷ idle at p99:",
                probes.loaded_paid_per_second
            );
            let names = [
                "product commit",
                "searchable after the commit",
                "chat delivery, 1,024 sockets",
            ];
            let ((native_idle, relay_idle), (native_loaded, relay_loaded)) =
                (probes.relay_idle, probes.relay_loaded);
            println!(
                "  outbox relay ({RELAY_RECORDS} records)  idle {relay_idle:.0}/s vs ProducerPerformance {native_idle:.0}/s ({:.2}); loaded {relay_loaded:.0}/s vs {native_loaded:.0}/s ({:.2})",
                relay_idle / native_idle,
                relay_loaded / native_loaded,
            );
            for ((name, idle), loaded) in names.iter().zip(&probes.idle).zip(&probes.loaded) {
                println!(
                    "  {name:<30} idle {}; loaded {}; {:.1}×",
                    idle.summary(),
                    loaded.summary(),
                    loaded.percentile_ms(99.0) / idle.percentile_ms(99.0).max(0.001)
                );
            }
        }
        results.push((result, per_second));
    }
    if let [(postgres, postgres_rate), (temporal, temporal_rate)] = &results[..] {
        let ratio = temporal_rate / postgres_rate;
        let p99 = temporal.report.summary.steps["place_order"].latency_ms.p99;
        println!(
            "temporal ÷ postgres: {ratio:.2} of the rate, p99 {p99:.0} ms vs {:.0} ms; goal ≥ {GOAL_TEMPORAL_RATIO} of the rate with p99 < {GOAL_TEMPORAL_P99_MS} ms: {}",
            postgres.report.summary.steps["place_order"].latency_ms.p99,
            if ratio >= GOAL_TEMPORAL_RATIO && p99 < GOAL_TEMPORAL_P99_MS {
                "met"
            } else {
                "not met"
            }
        );
    }
    for (result, per_second) in &results {
        let p99 = result.report.summary.steps["place_order"].latency_ms.p99;
        println!(
            "{}: goal ≥ {GOAL_ORDERS_PER_SECOND} orders/s with p99 < {GOAL_P99_MS} ms: {}",
            result.engine,
            if *per_second >= GOAL_ORDERS_PER_SECOND && p99 < GOAL_P99_MS {
                "met"
            } else {
                "not met"
            }
        );
    }
    println!("reports and charts: {}", out_dir().display());
}
