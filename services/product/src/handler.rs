//! The product service's edges: REST under `/v1/products`, gRPC `ProductService`, and the
//! outbox relay that publishes its events.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use commerce_messaging::{BrokerProbe, OutboxRelay, RelaySettings, TopicSpec};
use commerce_proto::product::v1 as pb;
use commerce_runtime::health::KafkaCheck;
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
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
        ensure_topics_with_retry(&kafka, &shutdown).await;
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

async fn ensure_topics_with_retry(
    kafka: &commerce_messaging::KafkaConfig,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    let topics = [TopicSpec::new(service::TOPIC, 3)];
    let mut pause = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match commerce_messaging::ensure_topics(kafka, &topics).await {
            Ok(()) => return,
            Err(error) => tracing::warn!(%error, "cannot create topics yet; retrying"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
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
        query.map_err(|rejection| ApiError::bad_request("query", rejection.body_text()))?;
    let page = Page::new(query.page, query.page_size)?;
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
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::bad_request("id", "must be a UUID"))?;
    Ok(Json(products.get(id).await?))
}

/// A JSON error: `{"error": {"code", "message", "field"?}}`.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    fn bad_request(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_argument",
            message: message.into(),
            field: Some(field),
        }
    }
}

impl From<crate::domain::ValidationError> for ApiError {
    fn from(error: crate::domain::ValidationError) -> Self {
        Self::bad_request(error.field, error.message)
    }
}

impl From<ProductError> for ApiError {
    fn from(error: ProductError) -> Self {
        let (status, code) = match &error {
            ProductError::Invalid(invalid) => return Self::from(invalid.clone()),
            ProductError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ProductError::Conflict(_) => (StatusCode::CONFLICT, "already_exists"),
            ProductError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(%error, "request failed");
        }
        let message = if status.is_server_error() {
            "internal error".to_owned()
        } else {
            error.to_string()
        };
        Self {
            status,
            code,
            message,
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        (self.status, Json(serde_json::json!({ "error": body }))).into_response()
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
