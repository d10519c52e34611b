//! The search service's edges: public REST under `/v1/search`, the inbox consumer of
//! catalogue events, and the rebuild from the event topic.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::{Json, Router};
use commerce_messaging::{
    ConsumerSettings, EventHandler, HandlerError, KafkaConfig, ReceivedEvent,
};
use commerce_runtime::api::ApiRoutes;
use commerce_runtime::health::{KafkaCheck, RedisCheck};
use commerce_runtime::{ApiError, BoxError, ServiceContext, ServiceParts};
use rust_decimal::Decimal;
use serde::Deserialize;
use sqlx::PgConnection;

use crate::domain::{SearchQuery, SearchSort};
use crate::repository::{PopularQueries, SearchIndex, TantivyIndex};
use crate::service::{self, SearchError, SearchService};

/// `services.search` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchSettings {
    /// Where the index lives; it survives restarts.
    pub index_dir: PathBuf,
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    #[serde(default = "default_group")]
    pub consumer_group: String,
    /// A query is published among the popular ones once this many different clients
    /// searched it (and it found products).
    #[serde(default = "default_popular_min_clients")]
    pub popular_min_clients: u64,
}

fn default_popular_min_clients() -> u64 {
    3
}

fn default_redis_prefix() -> String {
    "search".to_owned()
}
fn default_group() -> String {
    "search".to_owned()
}

pub const DEAD_LETTER_TOPIC: &str = "commerce.search.dlq";

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: SearchSettings = context.settings()?;
    let redis = context.redis().await?;
    let dir = settings.index_dir.clone();
    let index: Arc<dyn SearchIndex> =
        Arc::new(tokio::task::spawn_blocking(move || TantivyIndex::open(&dir)).await??);
    let search = SearchService::new(
        index,
        PopularQueries::new(
            redis.clone(),
            &settings.redis_prefix,
            settings.popular_min_clients,
        ),
    );

    let consumer = context.inbox_consumer(
        ConsumerSettings {
            group: settings.consumer_group.clone(),
            topics: vec![service::PRODUCT_TOPIC.to_owned()],
            dead_letter_topic: DEAD_LETTER_TOPIC.to_owned(),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
        },
        3,
        Arc::new(IndexEvents {
            search: search.clone(),
        }),
    )?;
    Ok(ServiceParts {
        http: routes(search),
        grpc: None,
        background: vec![consumer.task],
        readiness: vec![
            Arc::new(RedisCheck(redis)),
            Arc::new(KafkaCheck(commerce_messaging::BrokerProbe::new(
                &context.config.app.kafka,
            )?)),
            consumer.readiness,
        ],
    })
}

/// Catalogue search is public: anonymous shoppers search; abuse is the gateway's to limit.
pub fn routes(search: SearchService) -> Router {
    api().into_router().with_state(search)
}

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<SearchService> {
    ApiRoutes::new()
        .get("/v1/search", search_products)
        .get("/v1/search/autocomplete", autocomplete)
        .get("/v1/search/suggestions", suggestions)
        .get("/v1/search/popular", popular)
}

impl From<SearchError> for ApiError {
    fn from(error: SearchError) -> Self {
        match error {
            SearchError::Invalid(invalid) => ApiError::invalid(invalid.field, invalid.message),
            other => ApiError::internal(other),
        }
    }
}

use commerce_runtime::api::{QueryResult, parsed_query as query_of};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    category: Option<String>,
    min_price: Option<String>,
    max_price: Option<String>,
    in_stock: Option<bool>,
    sort: Option<String>,
    page: Option<u32>,
    page_size: Option<u32>,
}

fn decimal(field: &'static str, raw: Option<&str>) -> Result<Option<Decimal>, ApiError> {
    raw.map(|text| {
        Decimal::from_str(text.trim())
            .map_err(|_| ApiError::invalid(field, "must be a decimal number"))
    })
    .transpose()
}

/// Who searched, for the popular queries: the client the gateway names in
/// `X-Forwarded-For` (it replaces the header with what it saw), else the peer. Search is
/// not reachable from outside but through the gateway.
fn searching_client(headers: &axum::http::HeaderMap, peer: Option<SocketAddr>) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(|first| first.trim().to_owned())
        .filter(|first| !first.is_empty())
        .or_else(|| peer.map(|peer| peer.ip().to_string()))
        .unwrap_or_default()
}

async fn search_products(
    State(search): State<SearchService>,
    headers: axum::http::HeaderMap,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<SocketAddr>>>,
    params: QueryResult<SearchParams>,
) -> Result<Json<crate::domain::SearchResults>, ApiError> {
    let peer = peer.map(|axum::Extension(axum::extract::ConnectInfo(peer))| peer);
    let client = searching_client(&headers, peer);
    let params = query_of(params)?;
    let query = SearchQuery {
        text: params.q,
        category: params.category.filter(|category| !category.is_empty()),
        min_price: decimal("minPrice", params.min_price.as_deref())?,
        max_price: decimal("maxPrice", params.max_price.as_deref())?,
        in_stock: params.in_stock,
        sort: match params.sort.as_deref() {
            None => SearchSort::default(),
            Some(raw) => SearchSort::parse(raw).ok_or_else(|| {
                ApiError::invalid("sort", "must be relevance, price_asc, price_desc or newest")
            })?,
        },
        page: params.page.unwrap_or(1),
        page_size: params.page_size.unwrap_or(20),
    };
    Ok(Json(search.search(query, &client).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteParams {
    q: String,
    limit: Option<usize>,
}

async fn autocomplete(
    State(search): State<SearchService>,
    params: QueryResult<CompleteParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = query_of(params)?;
    let limit = params.limit.unwrap_or(8);
    if !(1..=20).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 20"));
    }
    if params.q.chars().count() > 100 {
        return Err(ApiError::invalid("q", "must be at most 100 characters"));
    }
    Ok(Json(
        serde_json::json!({ "items": search.autocomplete(&params.q, limit).await? }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuggestParams {
    q: String,
}

async fn suggestions(
    State(search): State<SearchService>,
    params: QueryResult<SuggestParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = query_of(params)?;
    if params.q.chars().count() > 200 {
        return Err(ApiError::invalid("q", "must be at most 200 characters"));
    }
    Ok(Json(
        serde_json::json!({ "items": search.suggestions(&params.q).await? }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PopularParams {
    limit: Option<usize>,
}

async fn popular(
    State(search): State<SearchService>,
    params: QueryResult<PopularParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = query_of(params)?.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 50"));
    }
    let items: Vec<_> = search
        .popular(limit)
        .await?
        .into_iter()
        .map(|(query, count)| serde_json::json!({ "query": query, "count": count }))
        .collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

/// Feeds catalogue events into the index. The index is written and committed before the
/// inbox transaction commits, so a crash in between redelivers (and re-applies) the event
/// rather than losing it.
struct IndexEvents {
    search: SearchService,
}

#[async_trait]
impl EventHandler for IndexEvents {
    async fn handle(
        &self,
        _connection: &mut PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        self.search
            .apply(&event.event_type, &event.payload)
            .await
            .map_err(|error| match error {
                SearchError::Event(message) => HandlerError::Permanent(message),
                other => HandlerError::Retryable(other.to_string()),
            })
    }
}

/// Builds a fresh index in `dir` from every catalogue event on the topic, then returns how
/// many events it applied. Run it with the search service stopped and point `index_dir`
/// at the result (or let `rebuild_in_place` swap it in).
pub async fn rebuild_from_topic(kafka: &KafkaConfig, dir: &Path) -> Result<usize, BoxError> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;

    let index: Arc<dyn SearchIndex> = {
        let dir = dir.to_owned();
        Arc::new(tokio::task::spawn_blocking(move || TantivyIndex::open(&dir)).await??)
    };
    let group = format!("search-rebuild-{}", uuid::Uuid::new_v4().simple());
    let topic = kafka.topic(service::PRODUCT_TOPIC);
    let consumer: StreamConsumer = kafka.consumer_config(&group).create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|topic| topic.partitions().iter().map(|partition| partition.id()))
        .collect();
    // Where the topic ends now: the rebuild is complete when every partition reaches it.
    let mut remaining = std::collections::HashMap::new();
    for partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, *partition, Duration::from_secs(10))?;
        if high > low {
            remaining.insert(*partition, high);
        }
    }
    consumer.subscribe(&[topic.as_str()])?;
    let mut applied = 0;
    while !remaining.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .map_err(|_| "the topic stopped delivering before the rebuild reached its end")??;
        let event_type = message
            .headers()
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|header| header.key == commerce_messaging::headers::EVENT_TYPE)
                    .and_then(|header| header.value)
                    .map(|value| String::from_utf8_lossy(value).into_owned())
            })
            .unwrap_or_default();
        service::apply_to_index(&index, &event_type, message.payload().unwrap_or_default()).await?;
        applied += 1;
        if let Some(end) = remaining.get(&message.partition())
            && message.offset() + 1 >= *end
        {
            remaining.remove(&message.partition());
        }
    }
    Ok(applied)
}
