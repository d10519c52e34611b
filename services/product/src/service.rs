//! Catalogue use cases. Every change writes its event to the outbox in the same transaction.

use commerce_messaging::NewEvent;
use commerce_proto::product::v1 as pb;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{NewProduct, Page, Product, ValidationError};
use crate::repository::{self, RepositoryError};

pub const TOPIC: &str = "commerce.product.events";
pub const PRODUCT_CREATED: &str = "commerce.product.v1.ProductCreated";

#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("product {0} not found")]
    NotFound(Uuid),
    #[error("a product with sku `{0}` already exists")]
    Conflict(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl From<RepositoryError> for ProductError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::DuplicateSku(sku) => Self::Conflict(sku),
            RepositoryError::Database(error) => Self::Storage(error.to_string()),
        }
    }
}

impl From<sqlx::Error> for ProductError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(error.to_string())
    }
}

impl From<commerce_messaging::MessagingError> for ProductError {
    fn from(error: commerce_messaging::MessagingError) -> Self {
        Self::Storage(error.to_string())
    }
}

#[derive(Clone)]
pub struct ProductService {
    pool: PgPool,
}

impl ProductService {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    #[tracing::instrument(skip_all, fields(sku = %product.sku))]
    pub async fn create(&self, product: NewProduct) -> Result<Product, ProductError> {
        let mut tx = self.pool.begin().await?;
        let created = repository::insert(&mut tx, &product).await?;
        let event = pb::ProductCreated {
            product: Some(to_proto(&created)),
        };
        commerce_messaging::enqueue(
            &mut tx,
            NewEvent::protobuf(TOPIC, created.id.to_string(), PRODUCT_CREATED, &event),
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn get(&self, id: Uuid) -> Result<Product, ProductError> {
        repository::get(&self.pool, id)
            .await?
            .ok_or(ProductError::NotFound(id))
    }

    pub async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Product>, ProductError> {
        Ok(repository::get_many(&self.pool, ids).await?)
    }

    pub async fn list(
        &self,
        category: Option<&str>,
        page: Page,
    ) -> Result<(Vec<Product>, i64), ProductError> {
        Ok(repository::list(&self.pool, category, page).await?)
    }

    /// Fills an empty catalogue with `products`; a catalogue with anything in it is left alone.
    pub async fn seed(&self, products: Vec<NewProduct>) -> Result<usize, ProductError> {
        if repository::count(&self.pool).await? > 0 {
            return Ok(0);
        }
        let mut created = 0;
        for product in products {
            match self.create(product).await {
                Ok(_) => created += 1,
                Err(ProductError::Conflict(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(created)
    }
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
    }
}
