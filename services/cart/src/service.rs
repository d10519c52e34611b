//! Cart use cases: lines priced against the catalogue, promo codes, guest carts merging at
//! login, checkout sessions, and their completion by an order.

use std::time::Duration;

use chrono::Utc;
use commerce_messaging::NewEvent;
use commerce_proto::cart::v1 as pb;
use commerce_runtime::ApiError;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use commerce_redis::{CacheLookup, CacheWrite, VersionedCache};

use crate::domain::{self, Invalid, PricedLine, PromoCode, Totals};
use crate::peers::{PeerError, Peers};
use crate::repository::{self as repo, CheckoutSession, Owner};

pub const TOPIC: &str = "commerce.cart.events";
pub const ABANDON_TASK: &str = "cart.abandon";

/// Announces carts left idle: every change (re)schedules one delayed task per cart.
#[derive(Clone)]
pub struct Abandonment {
    pub queue: commerce_redis::TaskQueue,
    pub after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    /// A peer or the cache is away: retry later.
    #[error(transparent)]
    Unavailable(commerce_messaging::BoxError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] commerce_messaging::MessagingError),
}

impl From<PeerError> for CartError {
    fn from(error: PeerError) -> Self {
        match error {
            PeerError::NotFound(what) => Self::NotFound(what),
            unavailable => Self::Unavailable(unavailable.into()),
        }
    }
}

impl From<CartError> for ApiError {
    fn from(error: CartError) -> Self {
        match error {
            CartError::Invalid(invalid) => ApiError::invalid(invalid.field, invalid.message),
            CartError::NotFound(_) => ApiError::not_found(error.to_string()),
            CartError::Conflict(_) => ApiError::conflict(error.to_string()),
            CartError::Forbidden(_) => ApiError::forbidden(error.to_string()),
            CartError::Unavailable(_) => ApiError::unavailable(2, error.to_string()),
            CartError::Database(_) | CartError::Outbox(_) => ApiError::storage(&error),
        }
    }
}

/// A promo code on a cart, and whether it applies right now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedPromo {
    pub code: String,
    pub applies: bool,
    /// Why not, when it does not.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CartView {
    pub id: Uuid,
    pub items: Vec<PricedLine>,
    pub promo: Option<AppliedPromo>,
    #[serde(flatten)]
    pub totals: Totals,
}

pub struct CheckoutRequest {
    pub address_id: Uuid,
    pub courier: String,
    pub payment_gateway: String,
}

#[derive(Clone)]
pub struct CartService {
    pool: PgPool,
    peers: Peers,
    session_ttl: Duration,
    abandonment: Option<Abandonment>,
    cache: Option<VersionedCache>,
}

/// A cart as cached: lines and code, never prices (those are asked for live).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
struct CartState {
    id: Uuid,
    promo_code: Option<String>,
    items: Vec<(Uuid, i64)>,
}

fn cache_tag(owner: Owner) -> String {
    match owner {
        Owner::User(id) => format!("user-{id}"),
        Owner::Guest(id) => format!("guest-{id}"),
    }
}

impl CartService {
    pub fn new(
        pool: PgPool,
        peers: Peers,
        session_ttl: Duration,
        abandonment: Option<Abandonment>,
        cache: Option<VersionedCache>,
    ) -> Self {
        Self {
            pool,
            peers,
            session_ttl,
            abandonment,
            cache,
        }
    }

    /// Runs a write under the cache's writer protocol for each owner it touches, so no
    /// reader caches what the write is replacing.
    async fn invalidating<T>(
        &self,
        owners: &[Owner],
        work: impl std::future::Future<Output = Result<T, CartError>>,
    ) -> Result<T, CartError> {
        if let Some(cache) = &self.cache {
            for owner in owners {
                cache
                    .begin_write(&cache_tag(*owner))
                    .await
                    .map_err(|error| {
                        CartError::Unavailable(format!("cart cache: {error}").into())
                    })?;
            }
        }
        let outcome = work.await;
        if let Some(cache) = &self.cache {
            for owner in owners {
                if let Err(error) = cache
                    .end_write(&cache_tag(*owner), CacheWrite::Nothing)
                    .await
                {
                    // The entry was dropped at begin_write; the count expires by itself.
                    tracing::warn!(%error, "cart cache end_write failed");
                }
            }
        }
        outcome
    }

    /// The owner's cart lines: from the cache, or the database (filling the cache).
    async fn state(&self, owner: Owner) -> Result<Option<CartState>, CartError> {
        let Some(cache) = &self.cache else {
            return self.load_state(owner).await.map(|(state, _)| state);
        };
        let tag = cache_tag(owner);
        match cache.read(&tag).await {
            Ok(CacheLookup::Hit { body, .. }) => {
                if let Ok(state) = serde_json::from_str(&body) {
                    return Ok(state);
                }
            }
            Ok(CacheLookup::Miss) if cache.try_fill_lock(&tag).await.unwrap_or(false) => {
                let (state, revision) = self.load_state(owner).await?;
                let body = serde_json::to_string(&state).unwrap_or_default();
                if let Err(error) = cache.fill(&tag, revision, &body).await {
                    tracing::warn!(%error, "cart cache fill failed");
                }
                return Ok(state);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cart cache unavailable; reading the database"),
        }
        self.load_state(owner).await.map(|(state, _)| state)
    }

    async fn load_state(&self, owner: Owner) -> Result<(Option<CartState>, i64), CartError> {
        let Some(cart) = repo::active_cart(&self.pool, owner).await? else {
            return Ok((None, 0));
        };
        let items = repo::items(&self.pool, cart.id).await?;
        let state = CartState {
            id: cart.id,
            promo_code: cart.promo_code,
            items,
        };
        Ok((Some(state), cart.revision))
    }

    /// Restarts the cart's idle clock. A failure here only delays an announcement.
    async fn changed(&self, cart_id: Uuid) {
        let Some(abandonment) = &self.abandonment else {
            return;
        };
        let id = format!("cart:{cart_id}:abandon");
        let task =
            commerce_redis::NewTask::new(ABANDON_TASK, serde_json::json!({ "cartId": cart_id }))
                .id(id.clone())
                .run_after(abandonment.after)
                .max_attempts(5);
        let rescheduled = async {
            abandonment.queue.cancel(&id).await?;
            abandonment.queue.enqueue(task).await
        }
        .await;
        if let Err(error) = rescheduled {
            tracing::warn!(%error, cart = %cart_id, "could not schedule the abandonment check");
        }
    }

    /// The delayed task: still idle, with items, not yet announced → `CartAbandoned`.
    pub async fn announce_if_idle(&self, cart_id: Uuid) -> Result<bool, CartError> {
        let Some(abandonment) = &self.abandonment else {
            return Ok(false);
        };
        let idle_since = Utc::now() - abandonment.after + chrono::Duration::milliseconds(50);
        let mut tx = self.pool.begin().await?;
        let Some((user_id, lines)) = repo::lock_idle_cart(&mut tx, cart_id, idle_since).await?
        else {
            return Ok(false);
        };
        let priced = self.price(&lines).await?;
        let totals = domain::totals(&priced, Decimal::ZERO)?;
        let event = pb::CartAbandoned {
            cart_id: cart_id.to_string(),
            user_id: user_id.map(|id| id.to_string()).unwrap_or_default(),
            item_count: lines.iter().map(|(_, quantity)| quantity).sum(),
            subtotal: Some(money(totals.subtotal, &totals.currency)),
        };
        commerce_messaging::enqueue(&mut tx, NewEvent::of(TOPIC, cart_id.to_string(), &event))
            .await?;
        repo::mark_abandoned(&mut tx, cart_id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A cart announced abandoned and untouched since, priced now; `None` once it changed,
    /// was emptied or ordered.
    pub async fn abandoned(&self, cart_id: Uuid) -> Result<Option<AbandonedCart>, CartError> {
        let mut connection = self.pool.acquire().await?;
        let (user_id, lines) = match repo::abandonment(&mut connection, cart_id).await? {
            repo::Abandonment::UnknownCart => {
                return Err(CartError::NotFound(format!("cart {cart_id}")));
            }
            repo::Abandonment::Over => return Ok(None),
            repo::Abandonment::Ongoing { user_id, lines } => (user_id, lines),
        };
        drop(connection);
        let lines = self.price(&lines).await?;
        let totals = domain::totals(&lines, Decimal::ZERO)?;
        Ok(Some(AbandonedCart {
            user_id,
            lines,
            subtotal: totals.subtotal,
            currency: totals.currency,
        }))
    }

    /// Deletes carts idle for longer than `retention` that no checkout refers to.
    pub async fn clean_up(&self, retention: Duration) -> Result<u64, CartError> {
        Ok(repo::delete_stale_carts(&self.pool, Utc::now() - retention).await?)
    }

    /// The cart with every line priced now; lines of products gone from the catalogue are
    /// shown with nothing available.
    pub async fn view(&self, owner: Owner) -> Result<CartView, CartError> {
        let Some(cart) = self.state(owner).await? else {
            return Ok(CartView {
                id: Uuid::nil(),
                items: Vec::new(),
                promo: None,
                totals: domain::totals(&[], Decimal::ZERO)?,
            });
        };
        let lines = self.price(&cart.items).await?;
        let (promo, discount) = match (&cart.promo_code, owner) {
            (Some(code), Owner::User(user)) => self.evaluate_promo(code, &lines, user).await?,
            _ => (None, Decimal::ZERO),
        };
        Ok(CartView {
            id: cart.id,
            totals: domain::totals(&lines, discount)?,
            items: lines,
            promo,
        })
    }

    async fn price(&self, items: &[(Uuid, i64)]) -> Result<Vec<PricedLine>, CartError> {
        let ids: Vec<Uuid> = items.iter().map(|(id, _)| *id).collect();
        let catalogue = self.peers.products(&ids).await?;
        Ok(items
            .iter()
            .map(
                |(id, quantity)| match catalogue.iter().find(|item| item.id == *id) {
                    Some(item) => PricedLine {
                        product_id: *id,
                        sku: item.sku.clone(),
                        name: item.name.clone(),
                        quantity: *quantity,
                        unit_price: item.price,
                        currency: item.currency.clone(),
                        available: if item.active { item.available } else { 0 },
                    },
                    None => PricedLine {
                        product_id: *id,
                        sku: String::new(),
                        name: "no longer sold".to_owned(),
                        quantity: *quantity,
                        unit_price: Decimal::ZERO,
                        currency: catalogue
                            .first()
                            .map_or("USD".to_owned(), |item| item.currency.clone()),
                        available: 0,
                    },
                },
            )
            .collect())
    }

    async fn evaluate_promo(
        &self,
        code: &str,
        lines: &[PricedLine],
        user: Uuid,
    ) -> Result<(Option<AppliedPromo>, Decimal), CartError> {
        let Some(promo) = repo::promo(&self.pool, code).await? else {
            return Ok((None, Decimal::ZERO));
        };
        let totals = domain::totals(lines, Decimal::ZERO)?;
        let uses = repo::user_redemptions(&self.pool, code, user).await?;
        Ok(
            match promo.discount(totals.subtotal, &totals.currency, Utc::now(), uses) {
                Ok(discount) => (
                    Some(AppliedPromo {
                        code: promo.code,
                        applies: true,
                        reason: None,
                    }),
                    discount,
                ),
                Err(reason) => (
                    Some(AppliedPromo {
                        code: promo.code,
                        applies: false,
                        reason: Some(reason),
                    }),
                    Decimal::ZERO,
                ),
            },
        )
    }

    /// Adds `quantity` of a product (on top of what the cart holds).
    pub async fn add(
        &self,
        owner: Owner,
        product_id: Uuid,
        quantity: i64,
    ) -> Result<CartView, CartError> {
        self.invalidating(&[owner], async {
            domain::check_quantity(quantity)?;
            let mut tx = self.pool.begin().await?;
            let cart = repo::lock_or_create_cart(&mut tx, owner).await?;
            let items = repo::items(&mut *tx, cart.id).await?;
            let current = items
                .iter()
                .find(|(id, _)| *id == product_id)
                .map_or(0, |(_, q)| *q);
            if current == 0 && items.len() >= domain::MAX_LINES {
                return Err(domain::invalid(
                    "productId",
                    format!("a cart holds at most {} products", domain::MAX_LINES),
                )
                .into());
            }
            let wanted = current + quantity;
            domain::check_quantity(wanted)?;
            self.check_available(product_id, wanted).await?;
            repo::set_quantity(&mut tx, cart.id, product_id, wanted).await?;
            tx.commit().await?;
            self.changed(cart.id).await;
            self.view(owner).await
        })
        .await
    }

    pub async fn set_quantity(
        &self,
        owner: Owner,
        product_id: Uuid,
        quantity: i64,
    ) -> Result<CartView, CartError> {
        self.invalidating(&[owner], async {
            domain::check_quantity(quantity)?;
            let mut tx = self.pool.begin().await?;
            let cart = repo::lock_or_create_cart(&mut tx, owner).await?;
            if !repo::items(&mut *tx, cart.id)
                .await?
                .iter()
                .any(|(id, _)| *id == product_id)
            {
                return Err(CartError::NotFound(format!(
                    "product {product_id} in the cart"
                )));
            }
            self.check_available(product_id, quantity).await?;
            repo::set_quantity(&mut tx, cart.id, product_id, quantity).await?;
            tx.commit().await?;
            self.changed(cart.id).await;
            self.view(owner).await
        })
        .await
    }

    async fn check_available(&self, product_id: Uuid, quantity: i64) -> Result<(), CartError> {
        let product = self
            .peers
            .products(&[product_id])
            .await?
            .into_iter()
            .find(|item| item.active)
            .ok_or_else(|| CartError::NotFound(format!("product {product_id}")))?;
        if product.available < quantity {
            return Err(CartError::Conflict(format!(
                "only {} of {} left",
                product.available.max(0),
                product.name
            )));
        }
        Ok(())
    }

    pub async fn remove(&self, owner: Owner, product_id: Uuid) -> Result<CartView, CartError> {
        self.invalidating(&[owner], async {
            let mut tx = self.pool.begin().await?;
            let cart = repo::lock_or_create_cart(&mut tx, owner).await?;
            if !repo::remove_item(&mut tx, cart.id, product_id).await? {
                return Err(CartError::NotFound(format!(
                    "product {product_id} in the cart"
                )));
            }
            tx.commit().await?;
            self.changed(cart.id).await;
            self.view(owner).await
        })
        .await
    }

    pub async fn clear(&self, owner: Owner) -> Result<CartView, CartError> {
        self.invalidating(&[owner], async {
            let mut tx = self.pool.begin().await?;
            let cart = repo::lock_or_create_cart(&mut tx, owner).await?;
            repo::clear(&mut tx, cart.id).await?;
            tx.commit().await?;
            self.changed(cart.id).await;
            self.view(owner).await
        })
        .await
    }

    /// Attaches a code to the user's cart if it applies now, else says why not.
    pub async fn apply_promo(&self, user: Uuid, code: &str) -> Result<CartView, CartError> {
        self.invalidating(&[Owner::User(user)], async {
            let code = PromoCode::normalize(code);
            let promo = repo::promo(&self.pool, &code)
                .await?
                .ok_or_else(|| CartError::NotFound(format!("promo code {code}")))?;
            let owner = Owner::User(user);
            let mut tx = self.pool.begin().await?;
            let cart = repo::lock_or_create_cart(&mut tx, owner).await?;
            let lines = self.price(&repo::items(&mut *tx, cart.id).await?).await?;
            let totals = domain::totals(&lines, Decimal::ZERO)?;
            let uses = repo::user_redemptions(&mut *tx, &code, user).await?;
            promo
                .discount(totals.subtotal, &totals.currency, Utc::now(), uses)
                .map_err(CartError::Conflict)?;
            repo::set_promo(&mut tx, cart.id, Some(&code)).await?;
            tx.commit().await?;
            self.changed(cart.id).await;
            self.view(owner).await
        })
        .await
    }

    pub async fn remove_promo(&self, user: Uuid) -> Result<CartView, CartError> {
        self.invalidating(&[Owner::User(user)], async {
            let owner = Owner::User(user);
            let mut tx = self.pool.begin().await?;
            let cart = repo::lock_or_create_cart(&mut tx, owner).await?;
            repo::set_promo(&mut tx, cart.id, None).await?;
            tx.commit().await?;
            self.changed(cart.id).await;
            self.view(owner).await
        })
        .await
    }

    /// At login: the guest cart's lines join the user's cart (quantities add up, capped).
    pub async fn merge_guest(&self, user: Uuid, guest: Uuid) -> Result<CartView, CartError> {
        self.invalidating(&[Owner::User(user), Owner::Guest(guest)], async {
            let mut tx = self.pool.begin().await?;
            if let Some(guest_cart) = repo::active_cart(&mut *tx, Owner::Guest(guest)).await? {
                let cart = repo::lock_or_create_cart(&mut tx, Owner::User(user)).await?;
                let mine = repo::items(&mut *tx, cart.id).await?;
                for (product, quantity) in repo::items(&mut *tx, guest_cart.id).await? {
                    let current = mine
                        .iter()
                        .find(|(id, _)| *id == product)
                        .map_or(0, |(_, q)| *q);
                    let merged = (current + quantity).min(domain::MAX_QUANTITY);
                    repo::set_quantity(&mut tx, cart.id, product, merged).await?;
                }
                repo::set_status(&mut *tx, guest_cart.id, "merged").await?;
                tx.commit().await?;
                self.changed(cart.id).await;
                return self.view(Owner::User(user)).await;
            }
            tx.commit().await?;
            self.view(Owner::User(user)).await
        })
        .await
    }

    /// Freezes the cart into a checkout session the order service can place.
    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn checkout(
        &self,
        user: Uuid,
        request: CheckoutRequest,
    ) -> Result<CheckoutSession, CartError> {
        let courier = request.courier.trim().to_lowercase();
        if courier.is_empty() || courier.len() > 50 {
            return Err(domain::invalid("courier", "must be 1 to 50 characters").into());
        }
        let gateway = request.payment_gateway.trim().to_lowercase();
        let offered = self.peers.offered_gateways().await?;
        if !offered.contains(&gateway) {
            return Err(domain::invalid(
                "paymentGateway",
                format!(
                    "`{gateway}` is not offered by this shop; it offers: {}",
                    offered.join(", ")
                ),
            )
            .into());
        }
        let address = self
            .peers
            .address(user, request.address_id)
            .await
            .map_err(|error| match error {
                PeerError::NotFound(_) => {
                    CartError::Invalid(domain::invalid("addressId", "is not one of your addresses"))
                }
                other => other.into(),
            })?;
        let view = self.view(Owner::User(user)).await?;
        if view.items.is_empty() {
            return Err(CartError::Conflict("the cart is empty".to_owned()));
        }
        if let Some(short) = view
            .items
            .iter()
            .find(|line| line.available < line.quantity)
        {
            return Err(CartError::Conflict(format!(
                "only {} of {} ({}) left",
                short.available.max(0),
                short.name,
                short.product_id
            )));
        }
        if let Some(AppliedPromo {
            applies: false,
            reason,
            ..
        }) = &view.promo
        {
            return Err(CartError::Conflict(reason.clone().unwrap_or_default()));
        }
        let session = CheckoutSession {
            id: Uuid::now_v7(),
            user_id: user,
            cart_id: view.id,
            subtotal: view.totals.subtotal,
            discount: view.totals.discount,
            total: view.totals.total,
            currency: view.totals.currency.clone(),
            promo_code: view.promo.as_ref().map(|promo| promo.code.clone()),
            items: view.items,
            shipping_address: address,
            courier,
            payment_gateway: gateway,
            status: "open".to_owned(),
            order_id: None,
            expires_at: Utc::now() + self.session_ttl,
        };
        let mut tx = self.pool.begin().await?;
        repo::insert_session(&mut tx, &session).await?;
        let event = pb::CheckoutSessionCreated {
            session: Some(session_to_proto(&session)),
        };
        commerce_messaging::enqueue(&mut tx, NewEvent::of(TOPIC, session.id.to_string(), &event))
            .await?;
        tx.commit().await?;
        Ok(session)
    }

    /// A session as its owner sees it; anyone else is told it does not exist.
    pub async fn session_for(&self, user: Uuid, id: Uuid) -> Result<CheckoutSession, CartError> {
        repo::session(&self.pool, id)
            .await?
            .filter(|session| session.user_id == user)
            .ok_or_else(|| CartError::NotFound(format!("checkout session {id}")))
    }

    /// For the order service: an open, unexpired session (or one already completed).
    pub async fn session(&self, id: Uuid) -> Result<CheckoutSession, CartError> {
        let session = repo::session(&self.pool, id)
            .await?
            .ok_or_else(|| CartError::NotFound(format!("checkout session {id}")))?;
        if session.status == "open" && session.expires_at <= Utc::now() {
            return Err(CartError::Conflict(format!(
                "checkout session {id} has expired"
            )));
        }
        Ok(session)
    }

    /// Marks the session used by `order_id` and redeems its promo code, inside the code's
    /// row lock so usage limits hold however many orders complete at once.
    #[tracing::instrument(skip_all, fields(session = %id, order = %order_id))]
    pub async fn complete(&self, id: Uuid, order_id: Uuid) -> Result<CheckoutSession, CartError> {
        // The cart is checked out: its owner's cached cart must go with it.
        let owner = repo::session(&self.pool, id)
            .await?
            .ok_or_else(|| CartError::NotFound(format!("checkout session {id}")))?
            .user_id;
        self.invalidating(&[Owner::User(owner)], self.complete_locked(id, order_id))
            .await
    }

    async fn complete_locked(
        &self,
        id: Uuid,
        order_id: Uuid,
    ) -> Result<CheckoutSession, CartError> {
        let mut tx = self.pool.begin().await?;
        let session = repo::lock_session(&mut tx, id)
            .await?
            .ok_or_else(|| CartError::NotFound(format!("checkout session {id}")))?;
        match (session.status.as_str(), session.order_id) {
            ("completed", Some(existing)) if existing == order_id => return Ok(session),
            ("completed", _) => {
                return Err(CartError::Conflict(format!(
                    "checkout session {id} belongs to another order"
                )));
            }
            _ if session.expires_at <= Utc::now() => {
                return Err(CartError::Conflict(format!(
                    "checkout session {id} has expired"
                )));
            }
            _ => {}
        }
        if let Some(code) = &session.promo_code {
            let promo = repo::lock_promo(&mut tx, code).await?.ok_or_else(|| {
                CartError::Conflict(format!("promo code {code} no longer exists"))
            })?;
            let uses = repo::user_redemptions(&mut *tx, code, session.user_id).await?;
            promo
                .discount(session.subtotal, &session.currency, Utc::now(), uses)
                .map_err(CartError::Conflict)?;
            repo::redeem(&mut tx, code, session.user_id, order_id).await?;
        }
        repo::complete_session(&mut tx, id, order_id).await?;
        repo::set_status(&mut *tx, session.cart_id, "checked_out").await?;
        tx.commit().await?;
        Ok(CheckoutSession {
            status: "completed".to_owned(),
            order_id: Some(order_id),
            ..session
        })
    }

    pub async fn create_promo(&self, promo: PromoCode) -> Result<PromoCode, CartError> {
        promo.validate()?;
        if !repo::insert_promo(&self.pool, &promo).await? {
            return Err(CartError::Conflict(format!(
                "promo code {} already exists",
                promo.code
            )));
        }
        Ok(repo::promo(&self.pool, &promo.code).await?.unwrap_or(promo))
    }

    pub async fn promos(&self) -> Result<Vec<PromoCode>, CartError> {
        Ok(repo::list_promos(&self.pool).await?)
    }
}

/// An abandoned cart as the recovery e-mail shows it.
#[derive(Debug, Clone)]
pub struct AbandonedCart {
    pub user_id: Option<Uuid>,
    pub lines: Vec<PricedLine>,
    pub subtotal: Decimal,
    pub currency: String,
}

impl AbandonedCart {
    pub fn to_proto(&self) -> pb::GetAbandonedCartResponse {
        pb::GetAbandonedCartResponse {
            abandoned: true,
            user_id: self.user_id.map(|id| id.to_string()).unwrap_or_default(),
            items: self.lines.iter().map(checkout_item).collect(),
            subtotal: Some(money(self.subtotal, &self.currency)),
        }
    }
}

/// A priced line as checkout sessions and abandoned carts carry it.
fn checkout_item(line: &PricedLine) -> pb::CheckoutItem {
    pb::CheckoutItem {
        product_id: line.product_id.to_string(),
        sku: line.sku.clone(),
        name: line.name.clone(),
        quantity: line.quantity,
        unit_price: Some(money(line.unit_price, &line.currency)),
    }
}

fn money(amount: Decimal, currency: &str) -> commerce_proto::common::v1::Money {
    commerce_proto::common::v1::Money {
        amount: amount.to_string(),
        currency: currency.to_owned(),
    }
}

pub fn session_to_proto(session: &CheckoutSession) -> pb::CheckoutSession {
    let address = &session.shipping_address;
    pb::CheckoutSession {
        id: session.id.to_string(),
        user_id: session.user_id.to_string(),
        items: session.items.iter().map(checkout_item).collect(),
        subtotal: Some(money(session.subtotal, &session.currency)),
        discount: Some(money(session.discount, &session.currency)),
        promo_code: session.promo_code.clone().unwrap_or_default(),
        shipping_address: Some(pb::ShippingAddress {
            recipient: address.recipient.clone(),
            line1: address.line1.clone(),
            line2: address.line2.clone(),
            city: address.city.clone(),
            region: address.region.clone(),
            postal_code: address.postal_code.clone(),
            country: address.country.clone(),
            phone: address.phone.clone(),
        }),
        courier: session.courier.clone(),
        payment_gateway: session.payment_gateway.clone(),
        status: session.status.clone(),
        expires_at: Some(prost_types::Timestamp {
            seconds: session.expires_at.timestamp(),
            nanos: 0,
        }),
        order_id: session
            .order_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}
