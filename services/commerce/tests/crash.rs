//! The whole shop SIGKILLed under traffic and started again with the same consumer groups:
//! every group consumes again within the consumer session timeout (the dead process's
//! members are expired, the new ones take their partitions), and every order paid before,
//! during or after the crash is confirmed.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commerce_testkit::eventually;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::types::chrono::{DateTime, Utc};
use support::{LocalShop, demo_login};
use tokio_util::sync::CancellationToken;

/// What `KafkaConfig::consumer_config` sets: a dead member is expired after this long.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The services with an inbox consumer, each in its own consumer group.
const CONSUMERS: [&str; 5] = ["cart", "fulfillment", "notification", "order", "search"];

/// Why a shopper's round did not complete.
#[derive(Debug)]
enum Interrupted {
    /// The shop was down or answered 5xx (the crash): the shopper tries again.
    Unavailable(String),
    /// The shop refused the request (4xx): the test's own mistake, reported at once.
    Refused(String),
}

async fn call(request: reqwest::RequestBuilder) -> Result<Value, Interrupted> {
    let response = request
        .send()
        .await
        .map_err(|error| Interrupted::Unavailable(error.to_string()))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match status.as_u16() {
        200..=299 => Ok(body),
        400..=499 => Err(Interrupted::Refused(format!("{status}: {body}"))),
        _ => Err(Interrupted::Unavailable(format!("{status}: {body}"))),
    }
}

/// One shopper's purchase, paid offline; and one catalogue edit, so the search service's
/// group has events too. Returns the order id once the payment is accepted.
async fn buy_and_edit(
    client: &reqwest::Client,
    gateway: &str,
    customer: &str,
    admin: &str,
    address: &Value,
    round: usize,
) -> Result<String, Interrupted> {
    let listing = call(client.get(format!(
        "{gateway}/v1/products?inStock=true&pageSize=5&sort=name"
    )))
    .await?;
    let product = &listing["items"][round % 5];
    call(
        client
            .post(format!("{gateway}/v1/cart/items"))
            .bearer_auth(customer)
            .json(&json!({"productId": product["id"], "quantity": 1})),
    )
    .await?;
    let session = call(
        client
            .post(format!("{gateway}/v1/checkout"))
            .bearer_auth(customer)
            .json(&json!({"addressId": address["id"], "courier": "standard",
                          "paymentGateway": "offline"})),
    )
    .await?;
    let placed = call(
        client
            .post(format!("{gateway}/v1/orders"))
            .bearer_auth(customer)
            .header("Idempotency-Key", format!("crash-{}", session["id"]))
            .json(&json!({"checkoutSessionId": session["id"]})),
    )
    .await?;
    let order = &placed["order"];
    let payment = order["paymentId"].as_str().expect("an order has a payment");
    call(
        client
            .post(format!("{gateway}/v1/payments/{payment}/offline/pay"))
            .bearer_auth(customer),
    )
    .await?;
    let product_id = product["id"].as_str().expect("a listed product has an id");
    let current = call(client.get(format!("{gateway}/v1/products/{product_id}"))).await?;
    call(
        client
            .patch(format!("{gateway}/v1/products/{product_id}"))
            .bearer_auth(admin)
            .json(&json!({"description": format!("edited in round {round}"),
                          "version": current["version"]})),
    )
    .await?;
    Ok(order["id"].as_str().expect("an order has an id").to_owned())
}

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
    let gateway = shop.url(8080);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let customer = demo_login(&client, &gateway, "customer").await;
    let admin = demo_login(&client, &gateway, "admin").await;
    let address = call(
        client
            .post(format!("{gateway}/v1/users/me/addresses"))
            .bearer_auth(&customer)
            .json(
                &json!({"recipient": "Casey", "line1": "1 Main St", "city": "Springfield",
                          "postalCode": "12345", "country": "US"}),
            ),
    )
    .await
    .unwrap();

    // Shoppers keep buying through the crash; a round cut short by it is simply tried
    // again, as a person would.
    let paid: Arc<Mutex<Vec<String>>> = Arc::default();
    let refusal: Arc<Mutex<Option<String>>> = Arc::default();
    let stop = CancellationToken::new();
    let traffic = {
        let (client, gateway, paid, refusal, stop) = (
            client.clone(),
            gateway.clone(),
            paid.clone(),
            refusal.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut round = 0;
            while !stop.is_cancelled() {
                match buy_and_edit(&client, &gateway, &customer, &admin, &address, round).await {
                    Ok(order) => paid.lock().unwrap().push(order),
                    Err(Interrupted::Refused(why)) => *refusal.lock().unwrap() = Some(why),
                    Err(Interrupted::Unavailable(why)) => {
                        // Shown with the test's output if it fails.
                        eprintln!("round {round} cut short: {why}");
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                }
                round += 1;
            }
        })
    };
    let paid_count = |at_least: usize| {
        let (paid, refusal) = (paid.clone(), refusal.clone());
        async move {
            if let Some(why) = refusal.lock().unwrap().as_ref() {
                panic!("a purchase was refused: {why}");
            }
            (paid.lock().unwrap().len() >= at_least).then_some(())
        }
    };
    eventually(
        Duration::from_secs(120),
        "orders paid before the crash",
        || paid_count(4),
    )
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
    let orders_before_restart = paid.lock().unwrap().len();

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

    eventually(
        Duration::from_secs(120),
        "orders paid after the restart",
        || paid_count(orders_before_restart + 3),
    )
    .await;
    stop.cancel();
    traffic.await.unwrap();

    // Nothing paid was left behind: every paid order is confirmed.
    let paid = paid.lock().unwrap().clone();
    let order_pool = &shop.database("order").pool;
    eventually(
        Duration::from_secs(120),
        "every paid order confirmed",
        || async {
            let statuses: Vec<String> =
                sqlx::query_scalar("SELECT status FROM orders WHERE id::text = ANY($1)")
                    .bind(&paid)
                    .fetch_all(order_pool)
                    .await
                    .unwrap();
            (statuses.len() == paid.len() && statuses.iter().all(|status| status == "CONFIRMED"))
                .then_some(())
        },
    )
    .await;
}
