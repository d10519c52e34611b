//! Shoppers buying through a fault: each round lists products, buys one (checkout, order,
//! offline payment) and edits a product, so every consumer group has events. A round the
//! fault cuts short (shop down, 5xx) is tried again, as a person would; a refusal (4xx) is
//! the test's own mistake and fails it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use commerce_testkit::eventually;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{LocalShop, demo_login};

/// Why a shopper's round did not complete.
#[derive(Debug)]
enum Interrupted {
    /// The shop was down or answered 5xx: the shopper tries again.
    Unavailable(String),
    /// The shop refused the request (4xx).
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

struct Round {
    client: reqwest::Client,
    gateway: String,
    customer: String,
    admin: String,
    address: Value,
}

impl Round {
    /// One purchase, paid offline, and one catalogue edit. The order id once the payment
    /// is accepted.
    async fn buy_and_edit(&self, round: usize) -> Result<String, Interrupted> {
        let (client, gateway) = (&self.client, &self.gateway);
        let listing = call(client.get(format!(
            "{gateway}/v1/products?inStock=true&pageSize=5&sort=name"
        )))
        .await?;
        let product = &listing["items"][round % 5];
        call(
            client
                .post(format!("{gateway}/v1/cart/items"))
                .bearer_auth(&self.customer)
                .json(&json!({"productId": product["id"], "quantity": 1})),
        )
        .await?;
        let session = call(
            client
                .post(format!("{gateway}/v1/checkout"))
                .bearer_auth(&self.customer)
                .json(
                    &json!({"addressId": self.address["id"], "courier": "standard",
                              "paymentGateway": "offline"}),
                ),
        )
        .await?;
        let placed = call(
            client
                .post(format!("{gateway}/v1/orders"))
                .bearer_auth(&self.customer)
                .header("Idempotency-Key", format!("shopper-{}", session["id"]))
                .json(&json!({"checkoutSessionId": session["id"]})),
        )
        .await?;
        let order = &placed["order"];
        let payment = order["paymentId"].as_str().expect("an order has a payment");
        call(
            client
                .post(format!("{gateway}/v1/payments/{payment}/offline/pay"))
                .bearer_auth(&self.customer),
        )
        .await?;
        let product_id = product["id"].as_str().expect("a listed product has an id");
        let current = call(client.get(format!("{gateway}/v1/products/{product_id}"))).await?;
        call(
            client
                .patch(format!("{gateway}/v1/products/{product_id}"))
                .bearer_auth(&self.admin)
                .json(&json!({"description": format!("edited in round {round}"),
                              "version": current["version"]})),
        )
        .await?;
        Ok(order["id"].as_str().expect("an order has an id").to_owned())
    }
}

/// The demo customer buying in a loop on a seeded shop until [`Shoppers::finish`].
pub struct Shoppers {
    paid: Arc<Mutex<Vec<String>>>,
    refusal: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Shoppers {
    pub async fn start(shop: &LocalShop) -> Self {
        let gateway = shop.url(8080);
        // No idle connections: a restarted shop is reached on fresh ones.
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
                .json(&json!({"recipient": "Casey", "line1": "1 Main St",
                              "city": "Springfield", "postalCode": "12345", "country": "US"})),
        )
        .await
        .unwrap();
        let round = Round {
            client,
            gateway,
            customer,
            admin,
            address,
        };
        let paid: Arc<Mutex<Vec<String>>> = Arc::default();
        let refusal: Arc<Mutex<Option<String>>> = Arc::default();
        let stop = CancellationToken::new();
        let task = {
            let (paid, refusal, stop) = (paid.clone(), refusal.clone(), stop.clone());
            tokio::spawn(async move {
                let mut number = 0;
                while !stop.is_cancelled() {
                    match round.buy_and_edit(number).await {
                        Ok(order) => paid.lock().unwrap().push(order),
                        Err(Interrupted::Refused(why)) => *refusal.lock().unwrap() = Some(why),
                        Err(Interrupted::Unavailable(why)) => {
                            // Shown with the test's output if it fails.
                            eprintln!("round {number} cut short: {why}");
                            tokio::time::sleep(Duration::from_millis(200)).await
                        }
                    }
                    number += 1;
                }
            })
        };
        Self {
            paid,
            refusal,
            stop,
            task,
        }
    }

    /// How many orders have been paid so far.
    pub fn paid(&self) -> usize {
        self.paid.lock().unwrap().len()
    }

    /// The order paid last.
    pub fn last_paid(&self) -> Option<String> {
        self.paid.lock().unwrap().last().cloned()
    }

    /// Waits until `more` orders beyond those paid now are paid.
    pub async fn wait_for_more_paid(&self, more: usize, within: Duration, what: &str) {
        let target = self.paid() + more;
        eventually(within, what, || async {
            if let Some(why) = self.refusal.lock().unwrap().as_ref() {
                panic!("a purchase was refused: {why}");
            }
            (self.paid() >= target).then_some(())
        })
        .await;
    }

    /// Stops buying and checks nothing paid was left behind: every paid order is
    /// confirmed. The ids of the paid orders.
    pub async fn finish(self, order_pool: &PgPool) -> Vec<String> {
        self.stop.cancel();
        self.task.await.unwrap();
        if let Some(why) = self.refusal.lock().unwrap().as_ref() {
            panic!("a purchase was refused: {why}");
        }
        let paid = self.paid.lock().unwrap().clone();
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
                (statuses.len() == paid.len()
                    && statuses.iter().all(|status| status == "CONFIRMED"))
                .then_some(())
            },
        )
        .await;
        paid
    }
}
