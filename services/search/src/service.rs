//! Search use cases: query, complete, suggest, count popular queries, and keep the index
//! in step with catalogue events.

use std::str::FromStr;
use std::sync::Arc;

use commerce_proto::product::v1 as pb;
use commerce_runtime::ApiError;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{self, InvalidSearch, ProductDoc, SearchQuery, SearchResults};
use crate::repository::{
    IndexError, PopularQueries, SearchAnalytics, SearchIndex, SearchesCounted,
};

pub const PRODUCT_TOPIC: &str = "commerce.product.events";

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Invalid(#[from] InvalidSearch),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("malformed event: {0}")]
    Event(#[source] commerce_messaging::BoxError),
    #[error("index task: {0}")]
    Blocking(#[from] tokio::task::JoinError),
    #[error("popular queries: {0}")]
    Popular(#[from] commerce_redis::RedisError),
    #[error("catalogue: {0}")]
    Catalogue(#[from] crate::peers::PeerError),
}

impl From<SearchError> for ApiError {
    fn from(error: SearchError) -> Self {
        match error {
            SearchError::Invalid(invalid) => ApiError::invalid(invalid.field, invalid.message),
            other => ApiError::storage(&other),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    pub text: String,
    pub hits: usize,
}

#[derive(Clone)]
pub struct SearchService {
    index: Arc<dyn SearchIndex>,
    popular: PopularQueries,
    analytics: SearchAnalytics,
}

/// What staff see of the searches of a few days: the most searched queries and the most
/// searched of those that found nothing (what the catalogue is missing).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchReport {
    pub days: u32,
    pub searches: Vec<QueryCount>,
    pub no_results: Vec<QueryCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryCount {
    pub query: String,
    pub count: u64,
}

/// Runs index work (CPU and disk) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, SearchError> {
    tokio::task::spawn_blocking(work)
        .await?
        .map_err(SearchError::Index)
}

impl SearchService {
    pub fn new(
        index: Arc<dyn SearchIndex>,
        popular: PopularQueries,
        analytics: SearchAnalytics,
    ) -> Self {
        Self {
            index,
            popular,
            analytics,
        }
    }

    pub fn index(&self) -> Arc<dyn SearchIndex> {
        self.index.clone()
    }

    /// `client` says who searched (a user id or an address), for the popular queries.
    /// What people search for is theirs: the text is in the span at debug level only.
    #[tracing::instrument(level = "debug", skip_all, fields(q = %query.text))]
    pub async fn search(
        &self,
        query: SearchQuery,
        client: &str,
    ) -> Result<SearchResults, SearchError> {
        let query = query.validate()?;
        let index = self.index.clone();
        let searched = query.clone();
        let results = blocking(move || index.search(&searched)).await?;
        metrics::counter!("search_queries_total").increment(1);
        if query.page == 1 {
            let found = results.total > 0;
            let today = chrono::Utc::now().date_naive();
            // Both records at once: the answer waits for the slower, not for the sum.
            let (counted, recorded) =
                tokio::join!(self.analytics.record(&query.text, found, today), async {
                    // Only searches that found something are worth showing other shoppers.
                    if found {
                        self.popular.record(&query.text, client).await
                    } else {
                        Ok(())
                    }
                });
            if let Err(error) = counted {
                tracing::warn!(%error, "could not count the query");
            }
            if let Err(error) = recorded {
                tracing::warn!(%error, "could not record the query");
            }
        }
        Ok(results)
    }

    pub async fn autocomplete(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, SearchError> {
        let (index, prefix) = (self.index.clone(), prefix.to_owned());
        blocking(move || index.autocomplete(&prefix, limit)).await
    }

    /// "Did you mean": each word the index does not know is swapped for its closest known
    /// words; a correction is offered when it finds something.
    pub async fn suggestions(&self, text: &str) -> Result<Vec<Suggestion>, SearchError> {
        let words = domain::words(text);
        if words.is_empty() || words.len() > 10 {
            return Ok(Vec::new());
        }
        let index = self.index.clone();
        let words_for_index = words.clone();
        // For each word: None when the index knows it, else its closest known words.
        let corrections = blocking(move || {
            words_for_index
                .iter()
                .map(|word| {
                    if index.word_frequency(word)? > 0 {
                        Ok(None)
                    } else {
                        index.similar_words(word, 3).map(Some)
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        if corrections
            .iter()
            .all(|correction| correction.as_ref().is_none_or(Vec::is_empty))
        {
            return Ok(Vec::new());
        }
        let best: Vec<String> = words
            .iter()
            .zip(&corrections)
            .map(|(word, correction)| {
                correction
                    .as_ref()
                    .and_then(|similar| similar.first().cloned())
                    .unwrap_or_else(|| word.clone())
            })
            .collect();
        let mut candidates = vec![best.join(" ")];
        for (position, correction) in corrections.iter().enumerate() {
            for alternative in correction.iter().flatten().skip(1) {
                let mut variant = best.clone();
                variant[position] = alternative.clone();
                candidates.push(variant.join(" "));
            }
        }
        let mut suggestions: Vec<Suggestion> = Vec::new();
        for candidate in candidates {
            if suggestions.iter().any(|known| known.text == candidate) {
                continue;
            }
            let hits = self.count(&candidate).await?;
            if hits > 0 {
                suggestions.push(Suggestion {
                    text: candidate,
                    hits,
                });
            }
        }
        suggestions.sort_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.text.cmp(&b.text)));
        suggestions.truncate(3);
        Ok(suggestions)
    }

    async fn count(&self, text: &str) -> Result<usize, SearchError> {
        let index = self.index.clone();
        let query = SearchQuery {
            text: text.to_owned(),
            page: 1,
            page_size: 1,
            ..SearchQuery::default()
        };
        Ok(blocking(move || index.search(&query)).await?.total)
    }

    /// The searches of the `days` days up to today, for staff.
    pub async fn report(&self, days: u32, limit: usize) -> Result<SearchReport, SearchError> {
        let today = chrono::Utc::now().date_naive();
        let counts = |pairs: Vec<(String, u64)>| {
            pairs
                .into_iter()
                .map(|(query, count)| QueryCount { query, count })
                .collect()
        };
        Ok(SearchReport {
            days,
            searches: counts(
                self.analytics
                    .top(SearchesCounted::All, days, today, limit)
                    .await?,
            ),
            no_results: counts(
                self.analytics
                    .top(SearchesCounted::WithoutResults, days, today, limit)
                    .await?,
            ),
        })
    }

    pub async fn popular(&self, limit: usize) -> Result<Vec<(String, u64)>, SearchError> {
        self.popular.top(limit).await.map_err(SearchError::Popular)
    }

    /// Applies one catalogue event to the index. Applying it again changes nothing.
    /// Stages one catalogue event; searches see it after [`SearchService::commit`].
    pub async fn apply(&self, event_type: &str, payload: &[u8]) -> Result<(), SearchError> {
        apply_to_index(&self.index, event_type, payload).await
    }

    pub async fn commit(&self) -> Result<(), SearchError> {
        let index = self.index.clone();
        blocking(move || index.commit()).await
    }

    pub async fn rollback(&self) -> Result<(), SearchError> {
        let index = self.index.clone();
        blocking(move || index.rollback()).await
    }
}

/// Why a replica's index starts over from the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildReason {
    /// No products: a new replica, or its volume was lost.
    Empty,
    /// The directory held an index this version cannot read (another schema, damage).
    Unreadable,
    /// The consumer group's position is gone or behind what the topic still holds: the
    /// events in between were dropped by retention, so replay cannot bring it up to date.
    PositionLost,
}

impl RebuildReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Unreadable => "unreadable",
            Self::PositionLost => "position_lost",
        }
    }
}

/// Products staged per index call during a rebuild.
const REBUILD_BATCH: usize = 500;

/// Replaces everything in `index` with `products` (the catalogue as product streams it),
/// then returns how many products it holds. The emptied index is committed first, so a
/// rebuild cut short leaves an empty index that the next start rebuilds again; searches
/// see the whole catalogue at the final commit. Events consumed afterwards that the
/// catalogue already includes change nothing (their revisions are not newer).
pub async fn rebuild_from_catalogue<E>(
    index: &Arc<dyn SearchIndex>,
    products: impl futures::Stream<Item = Result<pb::Product, E>>,
) -> Result<usize, SearchError>
where
    SearchError: From<E>,
{
    use futures::StreamExt;
    let cleared = index.clone();
    blocking(move || {
        cleared.stage_clear()?;
        cleared.commit()
    })
    .await?;
    let mut products = std::pin::pin!(products.chunks(REBUILD_BATCH));
    let mut indexed = 0;
    while let Some(page) = products.next().await {
        let mut documents = Vec::with_capacity(page.len());
        for product in page {
            let product = product?;
            if product.active {
                documents.push(document_from(&product, parse_id(&product.id)?)?);
            }
        }
        indexed += documents.len();
        let index = index.clone();
        blocking(move || index.stage_upsert(&documents)).await?;
    }
    let index = index.clone();
    blocking(move || index.commit()).await?;
    Ok(indexed)
}

/// Stages one catalogue event in `index` (the one path for live events and rebuilds); it
/// is seen once the index commits.
pub async fn apply_to_index(
    index: &Arc<dyn SearchIndex>,
    event_type: &str,
    payload: &[u8],
) -> Result<(), SearchError> {
    use commerce_messaging::is_type;
    use prost::Message;
    let index = index.clone();
    let created = is_type::<pb::ProductCreated>(event_type);
    match event_type {
        _ if created || is_type::<pb::ProductUpdated>(event_type) => {
            let product = if created {
                pb::ProductCreated::decode(payload).map(|event| event.product)
            } else {
                pb::ProductUpdated::decode(payload).map(|event| event.product)
            }
            .map_err(|error| SearchError::Event(error.into()))?
            .ok_or_else(|| SearchError::Event("event carries no product".into()))?;
            let id = parse_id(&product.id)?;
            if product.active {
                let document = document_from(&product, id)?;
                blocking(move || index.stage_upsert(&[document])).await
            } else {
                blocking(move || index.stage_delete(&[id])).await
            }
        }
        _ if is_type::<pb::ProductDeleted>(event_type) => {
            let event = pb::ProductDeleted::decode(payload)
                .map_err(|error| SearchError::Event(error.into()))?;
            let id = parse_id(&event.product_id)?;
            blocking(move || index.stage_delete(&[id])).await
        }
        other => {
            tracing::debug!(event_type = other, "not a search concern");
            Ok(())
        }
    }
}

fn parse_id(raw: &str) -> Result<Uuid, SearchError> {
    Uuid::parse_str(raw)
        .map_err(|_| SearchError::Event(format!("product id `{raw}` is not a UUID").into()))
}

fn document_from(product: &pb::Product, id: Uuid) -> Result<ProductDoc, SearchError> {
    let price = product
        .price
        .as_ref()
        .ok_or_else(|| SearchError::Event("product has no price".into()))?;
    Ok(ProductDoc {
        id,
        sku: product.sku.clone(),
        name: product.name.clone(),
        description: product.description.clone(),
        category: product.category.clone(),
        price: Decimal::from_str(&price.amount)
            .map_err(|error| SearchError::Event(format!("price: {error}").into()))?,
        currency: price.currency.clone(),
        stock: product.stock,
        image: product.images.first().cloned(),
        created_at: product.created_at.as_ref().map_or(0, |at| at.seconds),
        revision: product.revision,
        units_sold: product.units_sold,
    })
}
