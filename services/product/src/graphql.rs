//! The product subgraph at `/graphql`: `Product` is a federation entity keyed by `id`, so
//! other subgraphs (order items) reference products and the federation gateway resolves
//! them here. The caller is the bearer token the gateway forwards; inactive products are
//! visible to admin and support only, as on the REST API.

use async_graphql::{Context, EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};
use axum::Extension;
use axum::response::IntoResponse;
use commerce_access::{MaybePrincipal, Role};
use uuid::Uuid;

use crate::domain::{Page, Product};
use crate::repository::ListFilter;
use crate::service::{ProductError, ProductService};

pub type ProductSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The schema; executing it needs the `ProductService` in its data.
pub fn schema(products: Option<ProductService>) -> ProductSchema {
    let builder = Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        // Bounds on what one request may ask for; the gateway's entity fetches stay far below.
        .limit_depth(12)
        .limit_complexity(1000);
    match products {
        Some(products) => builder.data(products).finish(),
        None => builder.finish(),
    }
}

/// The subgraph's SDL as the federation gateway composes it (`graphql/product.graphql`).
pub fn sdl() -> String {
    schema(None).sdl_with_options(async_graphql::SDLExportOptions::new().federation())
}

/// Whether the caller sees inactive products.
struct Staff(bool);

pub async fn handler(
    Extension(schema): Extension<ProductSchema>,
    caller: MaybePrincipal,
    request: async_graphql_axum::GraphQLRequest,
) -> impl IntoResponse {
    let staff = Staff(caller.has_role(&[Role::Admin, Role::Support]));
    async_graphql_axum::GraphQLResponse::from(
        schema.execute(request.into_inner().data(staff)).await,
    )
}

#[derive(SimpleObject)]
#[graphql(name = "Money")]
struct MoneyObject {
    /// A decimal number as a string, never a float.
    amount: String,
    currency: String,
}

struct ProductObject(Product);

#[Object(name = "Product")]
impl ProductObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn category(&self) -> &str {
        &self.0.category
    }
    async fn price(&self) -> MoneyObject {
        MoneyObject {
            amount: commerce_runtime::api::money_scale(self.0.price.amount).to_string(),
            currency: self.0.price.currency.clone(),
        }
    }
    /// Units that can be bought now (stock not held by unpaid orders).
    async fn available(&self) -> i64 {
        (self.0.stock - self.0.reserved).max(0)
    }
    async fn images(&self) -> &[String] {
        &self.0.images
    }
    async fn active(&self) -> bool {
        self.0.active
    }
}

#[derive(SimpleObject)]
struct ProductPage {
    items: Vec<ProductObject>,
    page: u32,
    page_size: u32,
    total: i64,
}

pub struct Query;

fn products<'a>(context: &'a Context<'_>) -> &'a ProductService {
    context.data_unchecked::<ProductService>()
}

fn is_staff(context: &Context<'_>) -> bool {
    context.data_opt::<Staff>().is_some_and(|staff| staff.0)
}

/// A product the caller may see, or none.
async fn visible(context: &Context<'_>, id: &ID) -> async_graphql::Result<Option<ProductObject>> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Err(async_graphql::Error::new("id must be a UUID"));
    };
    match products(context).get(id).await {
        Ok(product) if product.active || is_staff(context) => Ok(Some(ProductObject(product))),
        Ok(_) | Err(ProductError::NotFound(_)) => Ok(None),
        Err(error) => Err(internal(error)),
    }
}

fn internal(error: ProductError) -> async_graphql::Error {
    tracing::error!(%error, "GraphQL query failed");
    async_graphql::Error::new("internal error")
}

#[Object]
impl Query {
    /// One product; null when it does not exist or is not for sale.
    async fn product(
        &self,
        context: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<ProductObject>> {
        visible(context, &id).await
    }

    /// The catalogue, newest first.
    async fn products(
        &self,
        context: &Context<'_>,
        category: Option<String>,
        #[graphql(default = 1)] page: u32,
        #[graphql(default = 20)] page_size: u32,
    ) -> async_graphql::Result<ProductPage> {
        let page = Page::new(Some(page), Some(page_size)).map_err(|invalid| {
            async_graphql::Error::new(format!("{}: {}", invalid.field, invalid.message))
        })?;
        let filter = ListFilter {
            category,
            min_price: None,
            max_price: None,
            in_stock: None,
            include_inactive: is_staff(context),
            sort: Default::default(),
        };
        let (items, total) = products(context)
            .list(&filter, page)
            .await
            .map_err(internal)?;
        Ok(ProductPage {
            items: items.into_iter().map(ProductObject).collect(),
            page: page.number,
            page_size: page.size,
            total,
        })
    }

    /// Federation: resolves `Product` references from other subgraphs.
    #[graphql(entity)]
    async fn find_product_by_id(
        &self,
        context: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<ProductObject>> {
        visible(context, &id).await
    }
}
