//! The shopper simulator against the whole shop, with faults while it runs, and the shop's
//! invariants proven afterwards from its databases and topics.
//!
//! Shoppers sign up through the real path (MailDev catches the links), then browse, buy
//! (paying offline or by card through the Stripe the simulator plays), cancel and walk
//! away while staff restock, ship and deliver. Mid-run a Kafka broker is
//! SIGKILLed and started again, the shop's PostgreSQL server restarts, its answers are
//! delayed by 40 ms (the shop reaches it through Toxiproxy), a master of its Redis Cluster
//! is SIGKILLed (its replica takes over), then the `commerce` process itself is SIGKILLed
//! and started again. Afterwards every
//! invariant must hold within a minute: no oversell, stock conserved, every order final or
//! waiting, money following orders, every outbox row published, every consumer caught up.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use commerce_messaging::KafkaConfig;
use commerce_simulator::invariants::ShopState;
use commerce_simulator::{SimulateArgs, Simulation};
use commerce_testkit::{
    MailSink, PrivateKafka, PrivatePostgres, PrivateRedisCluster, Toxiproxy, free_port,
};
use support::LocalShop;

/// The phase in which every answer of PostgreSQL comes 40 ± 10 ms late.
const DELAYED: &str = "PostgreSQL 40 ms away";

/// How long the shop may take to settle after the shoppers stop.
const SETTLE: Duration = Duration::from_secs(60);

fn args(shop: &LocalShop, mail: &MailSink, stripe_port: u16) -> SimulateArgs {
    support::simulate_args(&[
        "--gateway",
        &shop.url(8080),
        "--mail",
        &mail.web,
        // Half the orders are paid by card: the simulator plays Stripe, whose webhooks
        // must reach the shop through every fault.
        "--card-share",
        "0.5",
        "--stripe-listen",
        &format!("127.0.0.1:{stripe_port}"),
        "--shoppers",
        "6",
        // Stopped by the test once the faults are over.
        "--duration",
        "10m",
        "--seed",
        "7",
        "--forwarded-for",
        "--quiet",
    ])
}

/// Waits `seconds` while shoppers shop, then says how many orders were paid meanwhile.
async fn shop_for(running: &commerce_simulator::Running, seconds: u64) -> u64 {
    let before = running.recorder().events("orders_paid");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    running.recorder().events("orders_paid") - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoppers_keep_buying_through_broker_database_redis_and_shop_crashes_and_every_invariant_holds()
 {
    let mut kafka = PrivateKafka::start(3);
    let mail = MailSink::start();
    let postgres = PrivatePostgres::start();
    let mut redis = PrivateRedisCluster::start();
    // The shop (and the invariants' reads) reach PostgreSQL through a proxy that can slow it.
    let toxiproxy = Toxiproxy::start();
    let postgres_port = toxiproxy.proxy("postgres", postgres.port()).await;
    let stripe_port = free_port();
    let mut shop = LocalShop::on_server(
        "sim",
        &format!("postgres://postgres@127.0.0.1:{postgres_port}/postgres"),
    )
    .await;
    shop.use_kafka(&kafka.brokers());
    shop.env.extend([
        (
            "COMMERCE_SERVICES__NOTIFICATION__SMTP__PORT".to_owned(),
            mail.smtp_port.to_string(),
        ),
        ("COMMERCE_REDIS__MODE".to_owned(), "cluster".to_owned()),
        (
            "COMMERCE_REDIS__URLS".to_owned(),
            serde_json::to_string(&redis.urls()).unwrap(),
        ),
        (
            "COMMERCE_SERVICES__PAYMENT__STRIPE__BASE_URL".to_owned(),
            format!("http://127.0.0.1:{stripe_port}"),
        ),
        // The simulated Stripe's keys (`commerce simulate --help`).
        (
            "COMMERCE_SERVICES__PAYMENT__STRIPE__SECRET_KEY".to_owned(),
            "sk_test_simulated".to_owned(),
        ),
        (
            "COMMERCE_SERVICES__PAYMENT__STRIPE__PUBLISHABLE_KEY".to_owned(),
            "pk_test_simulated".to_owned(),
        ),
        (
            "COMMERCE_SERVICES__PAYMENT__STRIPE__WEBHOOK_SECRET".to_owned(),
            "whsec_simulated".to_owned(),
        ),
        // Shoppers come from their own addresses (X-Forwarded-For), as behind a load
        // balancer, so the per-address limits apply per shopper.
        (
            "COMMERCE_SERVICES__GATEWAY__CLIENT_IP_HEADER".to_owned(),
            "x-forwarded-for".to_owned(),
        ),
    ]);
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let mut services = shop.serve();
    shop.wait_until_ready().await;

    let mut state_kafka = KafkaConfig::new(kafka.brokers());
    state_kafka.topic_prefix = shop.env_value("COMMERCE_KAFKA__TOPIC_PREFIX");
    let state = ShopState::from_pools(
        ShopState::services()
            .iter()
            .map(|service| (*service, shop.database(service).pool.clone()))
            .collect::<BTreeMap<_, _>>(),
        state_kafka,
    );
    let baseline = state.baseline().await.unwrap();

    let running = Simulation::prepare(args(&shop, &mail, stripe_port))
        .await
        .expect("shoppers signed up")
        .start();
    // Stripe stays up while the shop settles: it still refunds what was canceled.
    let stripe = running.stripe().expect("cards are in the mix");
    let mut paid = BTreeMap::new();
    paid.insert("steady", shop_for(&running, 20).await);

    running.begin_phase("kafka node 1 SIGKILLed");
    tokio::task::block_in_place(|| kafka.kill(1));
    paid.insert("broker down", shop_for(&running, 15).await);
    tokio::task::block_in_place(|| kafka.start_node(1));
    running.begin_phase("kafka node 1 back");
    paid.insert("broker back", shop_for(&running, 15).await);

    running.begin_phase("PostgreSQL restarted");
    tokio::task::block_in_place(|| postgres.restart());
    running.begin_phase("PostgreSQL back");
    paid.insert("PostgreSQL back", shop_for(&running, 15).await);

    running.begin_phase(DELAYED);
    toxiproxy
        .delay(
            "postgres",
            Duration::from_millis(40),
            Duration::from_millis(10),
        )
        .await;
    paid.insert(DELAYED, shop_for(&running, 20).await);
    toxiproxy.undelay("postgres").await;
    running.begin_phase("PostgreSQL near again");

    running.begin_phase("a Redis master SIGKILLed");
    let master = tokio::task::block_in_place(|| redis.kill_a_master());
    running.begin_phase("Redis failed over");
    paid.insert("Redis failed over", shop_for(&running, 15).await);
    tokio::task::block_in_place(|| redis.start_node(master));

    running.begin_phase("commerce SIGKILLed and restarted");
    services.0.kill().unwrap();
    services.0.wait().unwrap();
    let restarted = shop.serve();
    shop.wait_until_ready().await;
    running.begin_phase("after the restart");
    paid.insert("after the restart", shop_for(&running, 25).await);

    let mut report = running.stop().await;
    report.invariants = state.settle(Some(&baseline), SETTLE).await.unwrap();
    drop(stripe);
    report.write_json(&shop.scratch("simulation.json")).unwrap();
    let chart = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("simulation-faults.html");
    report.write_chart(&chart).unwrap();
    println!("{}", report.table());
    println!(
        "orders paid per phase: {paid:?}; chart: {}",
        chart.display()
    );

    for (phase, count) in &paid {
        assert!(*count > 0, "no order was paid in phase `{phase}`: {paid:?}");
    }
    let broken: Vec<String> = report
        .invariants
        .iter()
        .filter(|finding| !finding.holds())
        .map(ToString::to_string)
        .collect();
    assert!(
        broken.is_empty(),
        "invariants broken {SETTLE:?} after the run:\n{}",
        broken.join("\n")
    );
    assert!(report.invariants.len() >= 14, "{:?}", report.invariants);
    // A dependency that is briefly away makes the shop answer 503 with Retry-After (or the
    // connection fails while the process restarts); a 500 is a defect.
    for phase in &report.summary.phases {
        assert!(
            !phase.failures.contains_key("500"),
            "500s in phase `{}`: {:?}",
            phase.name,
            phase.failures
        );
    }
    // 40 ms more per round trip to the database slows the shop down; nothing may fail.
    let delayed = report
        .summary
        .phases
        .iter()
        .find(|phase| phase.name == DELAYED)
        .expect("the delay phase is reported");
    assert!(
        delayed
            .failures
            .keys()
            .all(|status| status.starts_with('4')),
        "failures while PostgreSQL was slow: {:?}",
        delayed.failures
    );
    let placed = report
        .summary
        .events
        .get("orders_placed")
        .copied()
        .unwrap_or(0);
    let steps = &report.summary.steps;
    assert!(placed > 0 && steps["place_order"].ok >= placed, "{steps:?}");
    let events = &report.summary.events;
    assert!(
        events.get("orders_paid_by_card").copied().unwrap_or(0) > 0
            && events["orders_paid_by_card"] < events["orders_paid"],
        "both gateways take payments: {events:?}"
    );
    assert!(
        steps["search"].ok > 0 && steps["checkout"].ok > 0,
        "{steps:?}"
    );

    // The command-line check reads the same shop through its configuration.
    shop.run(&["invariants"]);

    // Each check can fail, and names what breaks it: a unit of stock from nowhere, an
    // event not published, a paid order stuck unconfirmed. (The shop is stopped first, or
    // its relay would publish the reopened row again, as it should.)
    drop(restarted);
    let product: String = sqlx::query_scalar(
        "UPDATE products SET stock = stock + 1
          WHERE id = (SELECT id FROM products ORDER BY id LIMIT 1) RETURNING id::text",
    )
    .fetch_one(&shop.database("product").pool)
    .await
    .unwrap();
    let event: String = sqlx::query_scalar(
        "UPDATE outbox_events SET published_at = NULL
          WHERE seq = (SELECT max(seq) FROM outbox_events) RETURNING id::text",
    )
    .fetch_one(&shop.database("cart").pool)
    .await
    .unwrap();
    let order: String = sqlx::query_scalar(
        "UPDATE orders SET status = 'PAID'
          WHERE id = (SELECT id FROM orders WHERE status = 'DELIVERED' LIMIT 1) RETURNING id::text",
    )
    .fetch_one(&shop.database("order").pool)
    .await
    .unwrap();
    let findings = state.check(Some(&baseline)).await.unwrap();
    let named = |invariant: &str, id: &str| {
        findings.iter().any(|finding| {
            finding.invariant.starts_with(invariant)
                && finding.broken_by.iter().any(|broken| broken.contains(id))
        })
    };
    assert!(named("stock + units sold", &product), "{findings:#?}");
    assert!(named("every outbox row", &event), "{findings:#?}");
    assert!(named("every order is final", &order), "{findings:#?}");
    let output = support::commerce()
        .arg("invariants")
        .envs(shop.env.clone())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{printed}");
    assert!(printed.contains(&format!("cart: {event}")), "{printed}");
    assert!(
        printed.contains("BROKEN  every order is final") && printed.contains(&order),
        "{printed}"
    );
}
