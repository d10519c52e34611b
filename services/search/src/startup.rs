//! Builds the search service from its configuration: the index, popular queries in Redis, the
//! inbox consumer of catalogue events, and the REST router.

use std::sync::Arc;
use std::time::Duration;

use commerce_messaging::ConsumerSettings;
use commerce_runtime::health::{KafkaCheck, RedisCheck};
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};

use crate::consumers::*;
use crate::http::*;
use crate::repository::{PopularQueries, SearchIndex, TantivyIndex};
use crate::service::{self, SearchService};
use crate::settings::*;

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
            Arc::new(KafkaCheck(context.broker_probe()?)),
            consumer.readiness,
        ],
    })
}
