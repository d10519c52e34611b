//! Builds the search service from its configuration: the index (rebuilt from the catalogue
//! when it is empty, unreadable or out of reach of the topic), popular queries in Redis,
//! the inbox consumer of catalogue events, and the REST router.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use commerce_messaging::{ConsumerSettings, KafkaConfig};
use commerce_runtime::health::{KafkaCheck, ReadinessCheck, RedisCheck};
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
use tokio_util::sync::CancellationToken;

use crate::consumers::*;
use crate::http::*;
use crate::peers::CatalogueSource;
use crate::repository::{IndexError, PopularQueries, SearchAnalytics, SearchIndex, TantivyIndex};
use crate::service::{self, RebuildReason, SearchService};
use crate::settings::*;

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: SearchSettings = context.settings()?;
    let redis = context.redis().await?;
    let dir = settings.index_dir.clone();
    let (index, unreadable) = tokio::task::spawn_blocking(move || open_or_reset(&dir)).await??;
    let index: Arc<dyn SearchIndex> = Arc::new(index);
    let search = SearchService::new(
        index.clone(),
        PopularQueries::new(
            redis.clone(),
            &settings.redis_prefix,
            settings.popular_min_clients,
        ),
        SearchAnalytics::new(redis.clone(), &settings.redis_prefix),
    );
    let staff_tokens = commerce_access::TokenVerifier::for_users(
        &settings.jwks_url,
        &settings.issuer,
        commerce_access::RevokedSessions::new(redis.clone()),
    );
    let catalogue = match (&settings.peers, &settings.client_secret) {
        (Some(peers), Some(secret)) => Some(CatalogueSource::new(
            &peers.product_grpc,
            &peers.auth_http,
            secret.expose(),
        )?),
        _ => None,
    };

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
    let index_ready = Arc::new(IndexReady::default());
    let preparation = IndexPreparation {
        index,
        unreadable,
        catalogue,
        kafka: context.config.app.kafka.clone(),
        group: settings.consumer_group.clone(),
        ready: index_ready.clone(),
        shutdown: context.shutdown.clone(),
    };
    // The consumer starts once the index is whole: events then land on top of it.
    let indexing = Box::pin(async move {
        if preparation.run().await {
            consumer.task.await
        } else {
            Ok(())
        }
    });
    Ok(ServiceParts {
        http: routes(search, staff_tokens),
        grpc: None,
        background: vec![indexing],
        readiness: vec![
            Arc::new(RedisCheck(redis)),
            Arc::new(KafkaCheck(context.broker_probe()?)),
            index_ready,
            consumer.readiness,
        ],
    })
}

/// Opens the index in `dir`; one this version cannot read is set aside (removed) and a
/// new one begins, which the returned flag says.
fn open_or_reset(dir: &Path) -> Result<(TantivyIndex, bool), IndexError> {
    match TantivyIndex::open(dir) {
        Ok(index) => Ok((index, false)),
        Err(error) if dir.exists() => {
            tracing::warn!(%error, dir = %dir.display(), "the index cannot be read; starting a new one");
            std::fs::remove_dir_all(dir)?;
            Ok((TantivyIndex::open(dir)?, true))
        }
        Err(error) => Err(error),
    }
}

/// Not ready while the index is being rebuilt: a replica with half a catalogue would
/// answer searches wrongly.
#[derive(Default)]
struct IndexReady(AtomicBool);

#[async_trait::async_trait]
impl ReadinessCheck for IndexReady {
    fn name(&self) -> &str {
        "search index"
    }

    async fn check(&self) -> Result<(), String> {
        if self.0.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err("the index is being rebuilt from the catalogue".to_owned())
        }
    }
}

struct IndexPreparation {
    index: Arc<dyn SearchIndex>,
    unreadable: bool,
    catalogue: Option<CatalogueSource>,
    kafka: KafkaConfig,
    group: String,
    ready: Arc<IndexReady>,
    shutdown: CancellationToken,
}

impl IndexPreparation {
    /// Rebuilds the index from the catalogue if it needs it, retrying while product is
    /// unreachable; false when shut down first.
    async fn run(self) -> bool {
        let reason = match self.rebuild_reason().await {
            Ok(reason) => reason,
            Err(error) => {
                tracing::warn!(%error, "could not tell whether the index is current; rebuilding it");
                Some(RebuildReason::PositionLost)
            }
        };
        if let Some(reason) = reason {
            match &self.catalogue {
                Some(catalogue) => {
                    if !self.rebuild(catalogue, reason).await {
                        return false;
                    }
                }
                None => tracing::warn!(
                    reason = reason.as_str(),
                    "the index should be rebuilt, but services.search.peers is not set: it fills from what the topic holds"
                ),
            }
        }
        self.ready.0.store(true, Ordering::Release);
        true
    }

    async fn rebuild_reason(&self) -> Result<Option<RebuildReason>, BoxError> {
        if self.unreadable {
            return Ok(Some(RebuildReason::Unreadable));
        }
        let index = self.index.clone();
        if tokio::task::spawn_blocking(move || index.product_count()).await?? == 0 {
            return Ok(Some(RebuildReason::Empty));
        }
        let (kafka, group) = (self.kafka.clone(), self.group.clone());
        let lost = tokio::task::spawn_blocking(move || {
            position_lost(&kafka, &group, service::PRODUCT_TOPIC)
        })
        .await??;
        Ok(lost.then_some(RebuildReason::PositionLost))
    }

    async fn rebuild(&self, catalogue: &CatalogueSource, reason: RebuildReason) -> bool {
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            let outcome = async {
                let products = catalogue.products().await?;
                service::rebuild_from_catalogue(&self.index, products).await
            }
            .await;
            match outcome {
                Ok(products) => {
                    metrics::counter!("search_index_rebuilds_total", "reason" => reason.as_str())
                        .increment(1);
                    tracing::info!(
                        reason = reason.as_str(),
                        products,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "rebuilt the index from the catalogue"
                    );
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "rebuilding the index from the catalogue failed");
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}
