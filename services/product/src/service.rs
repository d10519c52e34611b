//! Catalogue and inventory use cases. Every change writes its event to the outbox in the
//! same transaction, and goes through the cache's write protocol.

use std::time::Duration;

use commerce_messaging::NewEvent;
use commerce_proto::product::v1 as pb;
use commerce_runtime::ApiError;
use sqlx::PgPool;
use uuid::Uuid;

use crate::cache::{Lookup, ProductCache, Written};
use crate::domain::{
    self, NewProduct, Page, Product, ProductDetails, ReservationLine, ReservationStatus,
    ValidationError,
};
use crate::repository::{
    self as repo, ListFilter, PricePoint, RepositoryError, ReservationRow, StockAdjustment,
};

pub const TOPIC: &str = "commerce.product.events";

#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("a product with sku `{0}` already exists")]
    DuplicateSku(String),
    #[error("version {expected} is stale; the product is at version {current}")]
    StaleVersion { expected: i64, current: i64 },
    #[error("not enough stock for product {product}: {available} available, {requested} requested")]
    InsufficientStock {
        product: Uuid,
        available: i64,
        requested: i64,
    },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] commerce_messaging::MessagingError),
    #[error("cache: {0}")]
    Cache(#[from] commerce_redis::RedisError),
}

impl From<RepositoryError> for ProductError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::DuplicateSku(sku) => Self::DuplicateSku(sku),
            RepositoryError::Database(error) => Self::Database(error),
        }
    }
}

impl From<ProductError> for ApiError {
    fn from(error: ProductError) -> Self {
        match error {
            ProductError::Invalid(invalid) => ApiError::invalid(invalid.field, invalid.message),
            ProductError::NotFound(_) => ApiError::not_found(error.to_string()),
            ProductError::DuplicateSku(_) | ProductError::StaleVersion { .. } => {
                ApiError::conflict(error.to_string())
            }
            ProductError::InsufficientStock { .. } | ProductError::FailedPrecondition(_) => {
                ApiError::conflict(error.to_string())
            }
            ProductError::Database(_) | ProductError::Outbox(_) | ProductError::Cache(_) => {
                ApiError::storage(&error)
            }
        }
    }
}

#[derive(Clone)]
pub struct ProductService {
    pool: PgPool,
    cache: ProductCache,
}

impl ProductService {
    pub fn new(pool: PgPool, cache: ProductCache) -> Self {
        Self { pool, cache }
    }

    #[tracing::instrument(skip_all, fields(sku = %product.sku))]
    pub async fn create(&self, product: NewProduct, actor: &str) -> Result<Product, ProductError> {
        let mut tx = self.pool.begin().await?;
        let created = repo::insert(&mut tx, &product).await?;
        repo::record_price(&mut tx, created.id, &created.price, actor).await?;
        let event = pb::ProductCreated {
            product: Some(to_proto(&created)),
        };
        commerce_messaging::enqueue(&mut tx, NewEvent::of(TOPIC, created.id.to_string(), &event))
            .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Read-through: cache first, the database on a miss (one loader per cold key).
    pub async fn get(&self, id: Uuid) -> Result<Product, ProductError> {
        match self.cache.read(id).await {
            Ok(Lookup::Hit(product)) => return Ok(*product),
            Ok(Lookup::Gone) => return Err(ProductError::NotFound(format!("product {id}"))),
            Ok(Lookup::Bypass) => {}
            Ok(Lookup::Miss) => return self.load_and_fill(id).await,
            Err(error) => tracing::warn!(%error, "product cache unavailable; reading the database"),
        }
        self.load(id).await
    }

    async fn load(&self, id: Uuid) -> Result<Product, ProductError> {
        repo::get(&self.pool, id)
            .await?
            .ok_or_else(|| ProductError::NotFound(format!("product {id}")))
    }

    async fn load_and_fill(&self, id: Uuid) -> Result<Product, ProductError> {
        if !self.cache.try_fill_lock(id).await.unwrap_or(false) {
            // Someone else is loading it: give them a moment, then read the database.
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if let Ok(Lookup::Hit(product)) = self.cache.read(id).await {
                    return Ok(*product);
                }
            }
            return self.load(id).await;
        }
        let product = self.load(id).await?;
        if let Err(error) = self.cache.fill(&product).await {
            tracing::warn!(%error, "product cache fill failed");
        }
        metrics::counter!("product_cache_fills_total").increment(1);
        Ok(product)
    }

    pub async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Product>, ProductError> {
        Ok(repo::get_many(&self.pool, ids).await?)
    }

    /// One page of the active catalogue in id order, after `after`.
    pub async fn catalogue_page(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Product>, ProductError> {
        Ok(repo::catalogue_page(&self.pool, after, limit).await?)
    }

    pub async fn list(
        &self,
        filter: &ListFilter,
        page: Page,
    ) -> Result<(Vec<Product>, i64), ProductError> {
        Ok(repo::list(&self.pool, filter, page).await?)
    }

    /// Runs `change` on the locked product inside a transaction wrapped in the cache's
    /// write protocol; `change` returns the product as it should be after the commit.
    async fn write_products<T>(
        &self,
        ids: &[Uuid],
        change: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<(T, Vec<Product>), ProductError>,
    ) -> Result<T, ProductError> {
        for id in ids {
            self.cache.begin_write(*id).await?;
        }
        let outcome = async {
            let mut tx = self.pool.begin().await?;
            let (value, written) = change(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, ProductError>((value, written))
        }
        .await;
        let written = match &outcome {
            Ok((_, written)) => written.as_slice(),
            Err(_) => &[],
        };
        for id in ids {
            let state = match written.iter().find(|product| product.id == *id) {
                Some(product) => Written::Product(product),
                None => Written::Nothing,
            };
            if let Err(error) = self.cache.end_write(*id, state).await {
                // The entry was dropped at begin_write; the count expires by itself.
                tracing::warn!(%error, product = %id, "product cache end_write failed");
            }
        }
        outcome.map(|(value, _)| value)
    }

    /// Replaces a product's details if `expected_version` is still current.
    #[tracing::instrument(skip_all, fields(product = %id))]
    pub async fn replace(
        &self,
        id: Uuid,
        expected_version: i64,
        details: ProductDetails,
        actor: &str,
    ) -> Result<Product, ProductError> {
        let details = details.validate()?;
        self.write_products(&[id], async |tx| {
            let current = repo::lock(tx, id)
                .await?
                .ok_or_else(|| ProductError::NotFound(format!("product {id}")))?;
            if current.version != expected_version {
                return Err(ProductError::StaleVersion {
                    expected: expected_version,
                    current: current.version,
                });
            }
            let updated = repo::update_details(tx, id, &details).await?;
            if updated.price != current.price {
                repo::record_price(tx, id, &updated.price, actor).await?;
            }
            announce_updates(tx, std::slice::from_ref(&updated)).await?;
            Ok((updated.clone(), vec![updated]))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(product = %id))]
    pub async fn delete(&self, id: Uuid, expected_version: i64) -> Result<(), ProductError> {
        self.cache.begin_write(id).await?;
        let outcome = async {
            let mut tx = self.pool.begin().await?;
            let current = repo::lock(&mut tx, id)
                .await?
                .ok_or_else(|| ProductError::NotFound(format!("product {id}")))?;
            if current.version != expected_version {
                return Err(ProductError::StaleVersion {
                    expected: expected_version,
                    current: current.version,
                });
            }
            let revision = repo::soft_delete(&mut tx, id).await?;
            let event = pb::ProductDeleted {
                product_id: id.to_string(),
                version: current.version + 1,
            };
            commerce_messaging::enqueue(&mut tx, NewEvent::of(TOPIC, id.to_string(), &event))
                .await?;
            tx.commit().await?;
            Ok(revision)
        }
        .await;
        let written = match &outcome {
            Ok(revision) => Written::Deleted {
                revision: *revision,
            },
            Err(_) => Written::Nothing,
        };
        if let Err(error) = self.cache.end_write(id, written).await {
            tracing::warn!(%error, product = %id, "product cache end_write failed");
        }
        outcome.map(|_| ())
    }

    pub async fn price_history(&self, id: Uuid) -> Result<Vec<PricePoint>, ProductError> {
        self.load(id).await?;
        Ok(repo::price_history(&self.pool, id).await?)
    }

    /// Changes stock on hand by `delta`, never below what is reserved, with an audit record.
    #[tracing::instrument(skip_all, fields(product = %id, delta))]
    pub async fn adjust_stock(
        &self,
        id: Uuid,
        delta: i64,
        reason: &str,
        actor: &str,
    ) -> Result<Product, ProductError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 {
            return Err(ValidationError {
                field: "reason",
                message: "must be 1 to 500 characters".to_owned(),
            }
            .into());
        }
        if delta == 0 || delta.abs() > crate::domain::MAX_STOCK {
            return Err(ValidationError {
                field: "delta",
                message: format!(
                    "must not be zero and at most {} either way",
                    crate::domain::MAX_STOCK
                ),
            }
            .into());
        }
        self.write_products(&[id], async |tx| {
            let current = repo::lock(tx, id)
                .await?
                .ok_or_else(|| ProductError::NotFound(format!("product {id}")))?;
            if current.stock + delta > crate::domain::MAX_STOCK {
                return Err(ValidationError {
                    field: "delta",
                    message: format!(
                        "would leave {} on hand, more than {}",
                        current.stock + delta,
                        crate::domain::MAX_STOCK
                    ),
                }
                .into());
            }
            if current.stock + delta < current.reserved {
                return Err(ValidationError {
                    field: "delta",
                    message: format!(
                        "would leave {} on hand with {} reserved",
                        current.stock + delta,
                        current.reserved
                    ),
                }
                .into());
            }
            let updated = repo::adjust_stock(tx, id, delta, reason, actor).await?;
            announce_updates(tx, std::slice::from_ref(&updated)).await?;
            Ok((updated.clone(), vec![updated]))
        })
        .await
    }

    pub async fn stock_adjustments(&self, id: Uuid) -> Result<Vec<StockAdjustment>, ProductError> {
        self.load(id).await?;
        Ok(repo::stock_adjustments(&self.pool, id).await?)
    }

    /// Holds stock for an order, all lines or none. A repeated call with the same lines
    /// returns the existing reservation; different lines for the same order are refused.
    #[tracing::instrument(skip_all, fields(order = %order_id))]
    pub async fn reserve(
        &self,
        order_id: Uuid,
        lines: &[ReservationLine],
    ) -> Result<Vec<(Product, i64)>, ProductError> {
        let lines = domain::normalize_lines(lines)?;
        let ids: Vec<Uuid> = lines.iter().map(|line| line.product_id).collect();
        self.write_products(&ids, async |tx| {
            let existing = repo::lock_order(tx, order_id).await?;
            if !existing.is_empty() {
                let same = existing.len() == lines.len()
                    && existing.iter().zip(&lines).all(|(row, line)| {
                        row.product_id == line.product_id && row.quantity == line.quantity
                    });
                if !same {
                    return Err(ProductError::FailedPrecondition(format!(
                        "order {order_id} already holds a different reservation"
                    )));
                }
                if existing
                    .iter()
                    .any(|row| row.status == ReservationStatus::Released)
                {
                    return Err(ProductError::FailedPrecondition(format!(
                        "the reservation of order {order_id} was released"
                    )));
                }
                let products = repo::get_many(&mut *tx, &ids).await?;
                let reserved = pair_with_quantities(products, &lines);
                return Ok((reserved, Vec::new()));
            }
            let products = repo::lock_products(tx, &ids).await?;
            for line in &lines {
                let product = products
                    .iter()
                    .find(|product| product.id == line.product_id && product.active)
                    .ok_or_else(|| {
                        ProductError::NotFound(format!("product {}", line.product_id))
                    })?;
                if product.available() < line.quantity {
                    return Err(ProductError::InsufficientStock {
                        product: product.id,
                        available: product.available(),
                        requested: line.quantity,
                    });
                }
            }
            for line in &lines {
                repo::insert_reservation(tx, order_id, line).await?;
            }
            let updated = repo::get_many(&mut *tx, &ids).await?;
            announce_updates(tx, &updated).await?;
            metrics::counter!("product_reservations_total").increment(1);
            Ok((pair_with_quantities(updated.clone(), &lines), updated))
        })
        .await
    }

    /// After payment: the reserved stock leaves the warehouse. Idempotent.
    pub async fn deduct(&self, order_id: Uuid) -> Result<Vec<ReservationRow>, ProductError> {
        self.settle(order_id, ReservationStatus::Deducted).await
    }

    /// On expiry or cancel: the reserved stock is available again. Idempotent.
    pub async fn release(&self, order_id: Uuid) -> Result<Vec<ReservationRow>, ProductError> {
        self.settle(order_id, ReservationStatus::Released).await
    }

    /// An order canceled after payment: its deducted stock comes back. Idempotent; an
    /// order whose stock is still only reserved must be released instead.
    pub async fn restock(&self, order_id: Uuid) -> Result<Vec<ReservationRow>, ProductError> {
        self.settle(order_id, ReservationStatus::Restocked).await
    }

    #[tracing::instrument(skip_all, fields(order = %order_id, to = to.as_str()))]
    async fn settle(
        &self,
        order_id: Uuid,
        to: ReservationStatus,
    ) -> Result<Vec<ReservationRow>, ProductError> {
        // Which products to guard in the cache: read first, lock and re-check inside.
        let peek: Vec<Uuid> =
            sqlx::query_scalar("SELECT product_id FROM stock_reservations WHERE order_id = $1")
                .bind(order_id)
                .fetch_all(&self.pool)
                .await?;
        self.write_products(&peek, async |tx| {
            let rows = repo::lock_order(tx, order_id).await?;
            if rows.is_empty() && to == ReservationStatus::Deducted {
                return Err(ProductError::NotFound(format!(
                    "reservation of order {order_id}"
                )));
            }
            let (from, conflicting) = match to {
                ReservationStatus::Deducted => {
                    (ReservationStatus::Reserved, ReservationStatus::Released)
                }
                ReservationStatus::Restocked => {
                    (ReservationStatus::Deducted, ReservationStatus::Reserved)
                }
                _ => (ReservationStatus::Reserved, ReservationStatus::Deducted),
            };
            if rows.iter().any(|row| row.status == conflicting) {
                return Err(ProductError::FailedPrecondition(format!(
                    "the reservation of order {order_id} is already {}",
                    conflicting.as_str()
                )));
            }
            let mut changed = Vec::new();
            for row in rows.iter().filter(|row| row.status == from) {
                repo::settle_reservation(tx, order_id, row, to).await?;
                changed.push(row.product_id);
            }
            let updated = repo::get_many(&mut *tx, &changed).await?;
            announce_updates(tx, &updated).await?;
            let settled = rows
                .into_iter()
                .map(|row| match row.status == from || row.status == to {
                    true => ReservationRow { status: to, ..row },
                    false => row,
                })
                .collect();
            Ok((settled, updated))
        })
        .await
    }

    /// Fills an empty catalogue with `products`; a catalogue with anything in it is left alone.
    pub async fn seed(&self, products: Vec<NewProduct>) -> Result<usize, ProductError> {
        if repo::count(&self.pool).await? > 0 {
            return Ok(0);
        }
        let mut created = 0;
        for product in products {
            match self.create(product, "seed").await {
                Ok(_) => created += 1,
                Err(ProductError::DuplicateSku(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(created)
    }
}

/// `ProductUpdated` for each product, in the caller's transaction.
async fn announce_updates(
    tx: &mut sqlx::PgConnection,
    products: &[Product],
) -> Result<(), ProductError> {
    for product in products {
        let event = pb::ProductUpdated {
            product: Some(to_proto(product)),
        };
        commerce_messaging::enqueue(
            &mut *tx,
            NewEvent::of(TOPIC, product.id.to_string(), &event),
        )
        .await?;
    }
    Ok(())
}

fn pair_with_quantities(products: Vec<Product>, lines: &[ReservationLine]) -> Vec<(Product, i64)> {
    products
        .into_iter()
        .filter_map(|product| {
            let quantity = lines
                .iter()
                .find(|line| line.product_id == product.id)?
                .quantity;
            Some((product, quantity))
        })
        .collect()
}

pub fn to_proto(product: &Product) -> pb::Product {
    let timestamp = |at: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    };
    pb::Product {
        id: product.id.to_string(),
        sku: product.sku.clone(),
        name: product.name.clone(),
        description: product.description.clone(),
        category: product.category.clone(),
        price: Some(commerce_proto::common::v1::Money {
            amount: product.price.amount.to_string(),
            currency: product.price.currency.clone(),
        }),
        stock: product.available(),
        version: product.version,
        created_at: Some(timestamp(product.created_at)),
        updated_at: Some(timestamp(product.updated_at)),
        attributes: product.attributes.clone().into_iter().collect(),
        images: product.images.clone(),
        active: product.active,
        revision: product.revision,
        units_sold: product.units_sold,
    }
}
