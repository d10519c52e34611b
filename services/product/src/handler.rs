//! The product service's edges: REST under `/v1/products`, gRPC `ProductService`, and the
//! outbox relay that publishes its events.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use commerce_messaging::{BrokerProbe, OutboxRelay, RelaySettings, TopicSpec};
use commerce_proto::product::v1 as pb;
use commerce_runtime::health::KafkaCheck;
use commerce_runtime::{ApiError, BoxError, ServiceContext, ServiceParts};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{Page, Product};
use crate::service::{self, ProductError, ProductService};

/// Builds the running service from its context.
pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let pool = context.database()?;
    let kafka = context.config.app.kafka.clone();
    let products = ProductService::new(pool.clone());
    let relay = OutboxRelay::new(
        context.name,
        pool,
        kafka.producer()?,
        RelaySettings::default(),
    );
    let shutdown = context.shutdown.clone();
    let relay_task = Box::pin(async move {
        commerce_messaging::ensure_topics_with_retry(
            &kafka,
            &[TopicSpec::new(service::TOPIC, 3)],
            &shutdown,
        )
        .await;
        relay.run(shutdown).await.map_err(BoxError::from)
    });
    Ok(ServiceParts {
        http: routes(products.clone()),
        grpc: Some(tonic::service::Routes::new(
            pb::product_service_server::ProductServiceServer::new(GrpcHandler { products }),
        )),
        background: vec![relay_task],
        readiness: vec![Arc::new(KafkaCheck(BrokerProbe::new(
            &context.config.app.kafka,
        )?))],
    })
}

pub fn routes(products: ProductService) -> Router {
    Router::new()
        .route("/v1/products", get(list_products))
        .route("/v1/products/{id}", get(get_product))
        .with_state(products)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    page: Option<u32>,
    page_size: Option<u32>,
    category: Option<String>,
}

/// The catalogue is public: anonymous callers may read it; writes arrive with auth.
async fn list_products(
    State(products): State<ProductService>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid("query", rejection.body_text()))?;
    let page = Page::new(query.page, query.page_size)
        .map_err(|invalid| ApiError::invalid(invalid.field, invalid.message))?;
    let (items, total) = products.list(query.category.as_deref(), page).await?;
    Ok(Json(serde_json::json!({
        "items": items,
        "page": page.number,
        "pageSize": page.size,
        "total": total,
    })))
}

async fn get_product(
    State(products): State<ProductService>,
    Path(id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::invalid("id", "must be a UUID"))?;
    Ok(Json(products.get(id).await?))
}

impl From<ProductError> for ApiError {
    fn from(error: ProductError) -> Self {
        match error {
            ProductError::Invalid(invalid) => ApiError::invalid(invalid.field, invalid.message),
            ProductError::NotFound(_) => ApiError::not_found(error.to_string()),
            ProductError::Conflict(_) => ApiError::conflict(error.to_string()),
            ProductError::Storage(_) => ApiError::internal(error),
        }
    }
}

struct GrpcHandler {
    products: ProductService,
}

#[tonic::async_trait]
impl pb::product_service_server::ProductService for GrpcHandler {
    async fn get_products(
        &self,
        request: tonic::Request<pb::GetProductsRequest>,
    ) -> Result<tonic::Response<pb::GetProductsResponse>, tonic::Status> {
        let ids = request
            .into_inner()
            .ids
            .iter()
            .enumerate()
            .map(|(index, id)| {
                Uuid::parse_str(id).map_err(|_| {
                    tonic::Status::invalid_argument(format!("ids[{index}]: `{id}` is not a UUID"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ids.len() > 500 {
            return Err(tonic::Status::invalid_argument("ids: at most 500 per call"));
        }
        let products = self.products.get_many(&ids).await.map_err(|error| {
            tracing::error!(%error, "GetProducts failed");
            tonic::Status::internal("internal error")
        })?;
        Ok(tonic::Response::new(pb::GetProductsResponse {
            products: products.iter().map(service::to_proto).collect(),
        }))
    }
}
