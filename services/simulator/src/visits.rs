//! What a shopper does on one visit, and what staff do with the orders it leaves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, seq::IndexedRandom};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::accounts::{Shopper, sign_in};
use crate::args::Visit;
use crate::client::{Caller, Failure, Shop, text};
use crate::stripe::StripeServer;

/// Everything a visit may use, shared by all shoppers.
pub struct World {
    pub shop: Shop,
    /// Words of product names, for searches.
    pub words: Vec<String>,
    pub categories: Vec<String>,
    /// Pages of in-stock products at the start, for random browsing.
    pub pages: u32,
    pub promo: Option<String>,
    pub promo_share: f64,
    /// The simulated Stripe, when some orders are paid by card.
    pub stripe: Option<Arc<StripeServer>>,
    pub card_share: f64,
    pub password: String,
    pub staff: Staff,
}

/// How many times a person tries an idempotent step again after the shop was briefly away.
const TRIES: u32 = 4;

/// `attempt` once, and again with the same request while the failure is transient.
async fn persist<F, Fut>(mut attempt: F) -> Result<Value, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Value, Failure>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(failure) if failure.is_transient() && tries < TRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250 * u64::from(tries))).await;
            }
            answer => return answer,
        }
    }
}

impl World {
    /// One visit of `kind` by `shopper`, due at `due`. Counted as completed or failed;
    /// a failure is what the shopper saw, already recorded per request.
    pub async fn visit(&self, shopper: &mut Shopper, kind: Visit, rng: &mut StdRng, due: Instant) {
        let outcome = match kind {
            Visit::Browse => self.browse(shopper, rng, due).await,
            Visit::Buy | Visit::Cancel | Visit::Abandon => {
                self.order(shopper, kind, rng, due).await
            }
        };
        let recorder = self.shop.recorder();
        match outcome {
            Ok(()) => recorder.count(match kind {
                Visit::Browse => "visits_browse_completed",
                Visit::Buy => "visits_buy_completed",
                Visit::Cancel => "visits_cancel_completed",
                Visit::Abandon => "visits_abandon_completed",
            }),
            Err(failure) => {
                recorder.count(match kind {
                    Visit::Browse => "visits_browse_failed",
                    Visit::Buy => "visits_buy_failed",
                    Visit::Cancel => "visits_cancel_failed",
                    Visit::Abandon => "visits_abandon_failed",
                });
                tracing::debug!(shopper = %shopper.email, %failure, "visit cut short");
                if failure.is_transient() || failure.status().is_some_and(|status| status >= 500) {
                    // A person whose shop is away waits a moment before trying again.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if failure.status() == Some(401) {
                    // The access token ran out: sign in again for the next visit.
                    let mut caller = shopper.caller.clone();
                    caller.token = None;
                    if let Ok(token) =
                        sign_in(&self.shop, &caller, &shopper.email, &self.password).await
                    {
                        shopper.caller.token = Some(token);
                    }
                }
            }
        }
    }

    async fn list_products(
        &self,
        who: &Caller,
        rng: &mut StdRng,
        due: Instant,
    ) -> Result<Vec<Value>, Failure> {
        let page = rng.random_range(1..=self.pages.max(1));
        let sort = *["newest", "price_asc", "price_desc", "name"]
            .choose(rng)
            .expect("sorts");
        let mut path = format!("/v1/products?inStock=true&pageSize=20&page={page}&sort={sort}");
        if rng.random_bool(0.3)
            && let Some(category) = self.categories.choose(rng)
        {
            path.push_str(&format!("&category={category}"));
        }
        let listing = self
            .shop
            .call(
                "list_products",
                due,
                self.shop.request(Method::GET, &path, who),
            )
            .await?;
        Ok(listing["items"].as_array().cloned().unwrap_or_default())
    }

    async fn browse(
        &self,
        shopper: &Shopper,
        rng: &mut StdRng,
        due: Instant,
    ) -> Result<(), Failure> {
        let who = &shopper.caller;
        let products = self.list_products(who, rng, due).await?;
        if let Some(product) = products.choose(rng) {
            let id = text(product, "list_products", "id")?;
            self.shop
                .call_now(
                    "get_product",
                    self.shop
                        .request(Method::GET, &format!("/v1/products/{id}"), who),
                )
                .await?;
        }
        if let Some(word) = self.words.choose(rng) {
            self.shop
                .call_now(
                    "search",
                    self.shop
                        .request(Method::GET, "/v1/search", who)
                        .query(&[("q", word)]),
                )
                .await?;
        }
        Ok(())
    }

    async fn order(
        &self,
        shopper: &mut Shopper,
        kind: Visit,
        rng: &mut StdRng,
        due: Instant,
    ) -> Result<(), Failure> {
        let shop = &self.shop;
        let who = shopper.caller.clone();
        if shopper.cart_in_use {
            shop.call(
                "empty_cart",
                due,
                shop.request(Method::DELETE, "/v1/cart", &who),
            )
            .await?;
            shopper.cart_in_use = false;
        }
        let products = self.list_products(&who, rng, due).await?;
        let lines = rng.random_range(1..=3).min(products.len());
        let chosen: Vec<&Value> = products.choose_multiple(rng, lines).collect();
        if chosen.is_empty() {
            return Ok(());
        }
        shopper.cart_in_use = true;
        for product in &chosen {
            let id = text(product, "list_products", "id")?;
            let added = shop
                .call_now(
                    "add_to_cart",
                    shop.request(Method::POST, "/v1/cart/items", &who)
                        .json(&json!({"productId": id, "quantity": rng.random_range(1..=2)})),
                )
                .await;
            if let Err(failure) = added {
                if failure.status() == Some(409) {
                    self.staff.restock(id);
                }
                return Err(failure);
            }
        }
        if let Some(code) = &self.promo
            && rng.random_bool(self.promo_share)
        {
            shop.call_now(
                "apply_promo",
                shop.request(Method::POST, "/v1/cart/promo", &who)
                    .json(&json!({"code": code})),
            )
            .await?;
        }
        // Drawn only when cards are in the mix, so an offline run's seed makes the same visits.
        let card = self
            .stripe
            .as_ref()
            .filter(|_| rng.random_bool(self.card_share));
        let session = shop
            .call_now(
                "checkout",
                shop.request(Method::POST, "/v1/checkout", &who)
                    .json(&json!({
                    "addressId": shopper.address_id, "courier": "standard",
                    "paymentGateway": if card.is_some() { "stripe" } else { "offline" }})),
            )
            .await?;
        let session = text(&session, "checkout", "id")?.to_owned();
        let key = uuid::Uuid::new_v4().to_string();
        let placed = persist(|| {
            shop.call_now(
                "place_order",
                shop.request(Method::POST, "/v1/orders", &who)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"checkoutSessionId": session})),
            )
        })
        .await;
        let placed = match placed {
            Ok(placed) => placed,
            Err(failure) => {
                if matches!(failure.status(), Some(409 | 422)) {
                    for product in &chosen {
                        if let Some(id) = product["id"].as_str() {
                            self.staff.restock(id);
                        }
                    }
                }
                return Err(failure);
            }
        };
        // The order closes the cart it came from.
        shopper.cart_in_use = false;
        shop.recorder().count("orders_placed");
        let order = text(&placed, "place_order", "orderId")?.to_owned();
        let payment = placed["order"]["paymentId"]
            .as_str()
            .ok_or(Failure::Answer {
                step: "place_order",
                what: "order.paymentId",
            })?
            .to_owned();
        let pays = match kind {
            Visit::Buy => true,
            Visit::Cancel => rng.random_bool(0.5),
            Visit::Browse | Visit::Abandon => false,
        };
        if pays {
            match card {
                // The browser confirms the intent with Stripe; Stripe tells the shop.
                Some(stripe) => {
                    let secret = text(&placed, "place_order", "clientSecret")?;
                    persist(|| shop.call_now("pay", stripe.confirm(shop.http(), secret))).await?;
                    shop.recorder().count("orders_paid_by_card");
                }
                None => {
                    persist(|| {
                        shop.call_now(
                            "pay",
                            shop.request(
                                Method::POST,
                                &format!("/v1/payments/{payment}/offline/pay"),
                                &who,
                            ),
                        )
                    })
                    .await?;
                }
            }
            shop.recorder().count("orders_paid");
        }
        match kind {
            Visit::Cancel => {
                persist(|| {
                    shop.call_now(
                        "cancel_order",
                        shop.request(Method::POST, &format!("/v1/orders/{order}/cancel"), &who)
                            .json(&json!({"reason": "changed my mind"})),
                    )
                })
                .await?;
                shop.recorder().count("orders_canceled");
            }
            Visit::Buy => self.staff.ship(order),
            Visit::Browse | Visit::Abandon => shop.recorder().count("orders_abandoned"),
        }
        Ok(())
    }
}

/// Staff: restock what shoppers found sold out, ship and deliver what they paid for.
#[derive(Clone)]
pub struct Staff {
    shop: Shop,
    caller: Caller,
    /// At most this many staff requests at once.
    desks: Arc<Semaphore>,
    stop: CancellationToken,
    restocking: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
}

/// How long staff keep trying to ship an order that is not confirmed yet.
const SHIP_PATIENCE: Duration = Duration::from_secs(120);
/// How many units a restock adds.
const RESTOCK_UNITS: i64 = 50;

impl Staff {
    pub fn new(shop: Shop, caller: Caller, stop: CancellationToken) -> Self {
        Self {
            shop,
            caller,
            desks: Arc::new(Semaphore::new(8)),
            stop,
            restocking: Arc::default(),
        }
    }

    /// Adds stock to `product` unless it was restocked in the last ten seconds.
    pub fn restock(&self, product: &str) {
        {
            let mut recent = self.restocking.lock().expect("restock lock");
            if recent
                .get(product)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(10))
            {
                return;
            }
            recent.insert(product.to_owned(), Instant::now());
        }
        let (staff, product) = (self.clone(), product.to_owned());
        tokio::spawn(async move {
            let _desk = staff.desks.acquire().await;
            let path = format!("/v1/products/{product}/stock-adjustments");
            let request = staff
                .shop
                .request(Method::POST, &path, &staff.caller)
                .json(&json!({"delta": RESTOCK_UNITS, "reason": "simulated restock"}));
            if staff.shop.call_now("restock", request).await.is_ok() {
                staff.shop.recorder().count("restocks");
            }
        });
    }

    /// Ships `order` once fulfillment has it, then delivers it.
    pub fn ship(&self, order: String) {
        let staff = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut pause = Duration::from_millis(500);
            for (step, status, event) in [
                ("ship", "SHIPPED", "orders_shipped"),
                ("deliver", "DELIVERED", "orders_delivered"),
            ] {
                loop {
                    tokio::select! {
                        _ = staff.stop.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    let answer = {
                        let _desk = staff.desks.acquire().await;
                        let request = staff
                            .shop
                            .request(
                                Method::PATCH,
                                &format!("/v1/admin/fulfillments/{order}"),
                                &staff.caller,
                            )
                            .json(&json!({"status": status}));
                        staff.shop.call_now(step, request).await
                    };
                    match answer {
                        Ok(_) => {
                            staff.shop.recorder().count(event);
                            pause = Duration::from_millis(500);
                            break;
                        }
                        // Not confirmed or handed to the carrier yet, or the shop was away:
                        // staff look again later, less often the longer it takes.
                        Err(_) if started.elapsed() < SHIP_PATIENCE => {
                            pause = (pause * 2).min(Duration::from_secs(8));
                        }
                        Err(_) => return,
                    }
                }
            }
        });
    }
}
