//! The search index behind a small interface ([`SearchIndex`]), implemented with tantivy;
//! and the record of popular queries, in Redis.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use rust_decimal::prelude::ToPrimitive;
use tantivy::collector::{Count, FacetCollector, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{
    FAST, Facet, FacetOptions, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{LowerCaser, NgramTokenizer, TextAnalyzer};
use tantivy::{Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term, doc};
use uuid::Uuid;

use crate::domain::{self, FacetCount, ProductDoc, SearchQuery, SearchResults, SearchSort};

/// tantivy's smallest per-thread indexing budget (15 MB).
const INDEX_WRITER_BUDGET: usize = 15_000_000;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("index directory {dir}: {source}")]
    Directory {
        dir: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("stored document: {0}")]
    Document(#[from] serde_json::Error),
    #[error("stored document has no source")]
    NoSource,
    #[error("index i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// What handlers need of a search engine. Another engine (Elasticsearch, OpenSearch)
/// implements this and nothing above it changes.
pub trait SearchIndex: Send + Sync + 'static {
    /// Adds or replaces products, to be seen at the next [`SearchIndex::commit`]; a
    /// product the index holds at a higher revision stays as it is (a replayed event).
    fn stage_upsert(&self, products: &[ProductDoc]) -> Result<(), IndexError>;
    /// Removes products at the next [`SearchIndex::commit`].
    fn stage_delete(&self, ids: &[Uuid]) -> Result<(), IndexError>;
    /// Makes what was staged durable and visible to searches.
    fn commit(&self) -> Result<(), IndexError>;
    /// Forgets what was staged since the last commit.
    fn rollback(&self) -> Result<(), IndexError>;
    /// Adds or replaces products; visible to searches once this returns.
    fn upsert(&self, products: &[ProductDoc]) -> Result<(), IndexError> {
        self.stage_upsert(products)?;
        self.commit()
    }
    fn delete(&self, ids: &[Uuid]) -> Result<(), IndexError> {
        self.stage_delete(ids)?;
        self.commit()
    }
    fn search(&self, query: &SearchQuery) -> Result<SearchResults, IndexError>;
    /// Product names completing what was typed so far.
    fn autocomplete(&self, prefix: &str, limit: usize) -> Result<Vec<String>, IndexError>;
    /// Indexed words close to `word` (edit distance ≤ 2), most frequent first.
    fn similar_words(&self, word: &str, limit: usize) -> Result<Vec<String>, IndexError>;
    /// How many products use exactly `word` in name or description.
    fn word_frequency(&self, word: &str) -> Result<u64, IndexError>;
    /// Every document, ordered by id (for checks and rebuild comparisons).
    fn all(&self) -> Result<Vec<ProductDoc>, IndexError>;
    /// How many products the index holds (committed).
    fn product_count(&self) -> Result<u64, IndexError>;
    /// Stages the removal of every document: with the upserts staged after it, the next
    /// commit replaces the whole index at once.
    fn stage_clear(&self) -> Result<(), IndexError>;
}

const EDGE_NGRAM: &str = "edge_ngram";
const MAX_GRAM: usize = 20;

struct Fields {
    id: Field,
    name: Field,
    description: Field,
    sku: Field,
    category: Field,
    category_facet: Field,
    price: Field,
    in_stock: Field,
    created_at: Field,
    revision: Field,
    units_sold: Field,
    completion: Field,
    source: Field,
}

pub struct TantivyIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let completion_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(EDGE_NGRAM)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        id: builder.add_text_field("id", STRING | STORED),
        name: builder.add_text_field("name", text.clone()),
        description: builder.add_text_field("description", text),
        sku: builder.add_text_field("sku", STRING),
        category: builder.add_text_field("category", STRING | FAST),
        category_facet: builder.add_facet_field("category_facet", FacetOptions::default()),
        price: builder.add_f64_field("price", INDEXED | FAST),
        in_stock: builder.add_u64_field("in_stock", INDEXED | FAST),
        created_at: builder.add_i64_field("created_at", INDEXED | FAST),
        revision: builder.add_i64_field("revision", FAST),
        units_sold: builder.add_u64_field("units_sold", FAST),
        completion: builder.add_text_field("completion", completion_options),
        source: builder.add_text_field("source", STORED),
    };
    (builder.build(), fields)
}

impl TantivyIndex {
    /// Opens the index in `dir`, creating it if needed; it survives restarts.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let in_dir = |error: Box<dyn std::error::Error + Send + Sync>| IndexError::Directory {
            dir: dir.to_owned(),
            source: error,
        };
        std::fs::create_dir_all(dir).map_err(|error| in_dir(error.into()))?;
        let directory =
            tantivy::directory::MmapDirectory::open(dir).map_err(|error| in_dir(error.into()))?;
        let (schema, fields) = schema();
        let index = Index::open_or_create(directory, schema)?;
        index.tokenizers().register(
            EDGE_NGRAM,
            TextAnalyzer::builder(NgramTokenizer::prefix_only(1, MAX_GRAM)?)
                .filter(LowerCaser)
                .build(),
        );
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        // One indexing thread at tantivy's smallest budget: every commit starts a new segment
        // whose term table is allocated and zeroed in proportion to the budget, and the
        // index commits after every catalogue event (a stock change per order). With two
        // threads at 25 MB each, that zeroing was 3–5 % of the shop's CPU under load.
        let writer = index.writer_with_num_threads(1, INDEX_WRITER_BUDGET)?;
        Ok(Self {
            reader,
            writer: Mutex::new(writer),
            fields,
        })
    }

    fn document(&self, product: &ProductDoc) -> Result<TantivyDocument, IndexError> {
        let f = &self.fields;
        let source = serde_json::to_string(product)?;
        // Every word of the name feeds completion, so "lamp" completes "Desk lamp" too.
        let mut document = doc!(
            f.id => product.id.to_string(),
            f.name => product.name.clone(),
            f.description => product.description.clone(),
            f.sku => product.sku.to_lowercase(),
            f.category => product.category.clone(),
            f.category_facet => Facet::from_path([product.category.as_str()]),
            f.price => product.price.to_f64().unwrap_or_default(),
            f.in_stock => u64::from(product.stock > 0),
            f.created_at => product.created_at,
            f.revision => product.revision,
            f.units_sold => product.units_sold.max(0) as u64,
            f.source => source,
        );
        for word in domain::words(&product.name) {
            document.add_text(f.completion, &word);
        }
        Ok(document)
    }

    fn stored(
        &self,
        searcher: &tantivy::Searcher,
        address: tantivy::DocAddress,
    ) -> Result<ProductDoc, IndexError> {
        let document: TantivyDocument = searcher.doc(address)?;
        let source = document
            .get_first(self.fields.source)
            .and_then(|value| value.as_str())
            .ok_or(IndexError::NoSource)?;
        Ok(serde_json::from_str(source)?)
    }

    /// The text part: every word must match name or description, exactly or within its
    /// typo budget; name matches weigh more than description matches.
    fn text_query(&self, text: &str) -> Box<dyn Query> {
        let words = domain::words(text);
        if words.is_empty() {
            return Box::new(AllQuery);
        }
        let f = &self.fields;
        let clauses = words
            .iter()
            .map(|word| {
                let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                let boosted = |query: Box<dyn Query>, boost: f32| -> (Occur, Box<dyn Query>) {
                    (Occur::Should, Box::new(BoostQuery::new(query, boost)))
                };
                for (field, exact_boost, fuzzy_boost) in
                    [(f.name, 4.0, 2.0), (f.description, 1.0, 0.5)]
                {
                    let term = Term::from_field_text(field, word);
                    alternatives.push(boosted(
                        Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
                        exact_boost,
                    ));
                    let budget = domain::typo_budget(word);
                    if budget > 0 {
                        alternatives.push(boosted(
                            Box::new(FuzzyTermQuery::new(term, budget, true)),
                            fuzzy_boost,
                        ));
                    }
                }
                (
                    Occur::Must,
                    Box::new(BooleanQuery::new(alternatives)) as Box<dyn Query>,
                )
            })
            .collect();
        // Or the whole query is a SKU ("lamp-f"), which word splitting would break apart.
        let sku = TermQuery::new(
            Term::from_field_text(f.sku, &text.trim().to_lowercase()),
            IndexRecordOption::Basic,
        );
        Box::new(BooleanQuery::new(vec![
            (
                Occur::Should,
                Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>,
            ),
            (
                Occur::Should,
                Box::new(BoostQuery::new(Box::new(sku), 10.0)),
            ),
        ]))
    }

    fn filters(&self, query: &SearchQuery, with_category: bool) -> Vec<(Occur, Box<dyn Query>)> {
        let f = &self.fields;
        let mut filters: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if with_category && let Some(category) = &query.category {
            filters.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.category, category),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if query.min_price.is_some() || query.max_price.is_some() {
            let bound = |price: Option<rust_decimal::Decimal>| match price.and_then(|p| p.to_f64())
            {
                Some(value) => Bound::Included(Term::from_field_f64(f.price, value)),
                None => Bound::Unbounded,
            };
            filters.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    bound(query.min_price),
                    bound(query.max_price),
                )),
            ));
        }
        if let Some(in_stock) = query.in_stock {
            filters.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.in_stock, u64::from(in_stock)),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        filters
    }
}

/// How much sales lift a match: 1 for none, about 1.35 for 10 sold, 1.67 for 100, 2 for
/// 1,000 (a name match outweighs a description match fourfold).
fn sales_boost(sold: u64) -> tantivy::Score {
    1.0 + 0.1 * ((1 + sold) as tantivy::Score).log2()
}

impl TantivyIndex {
    /// The revision the committed index holds for `id`, if it holds the product.
    fn committed_revision(
        &self,
        searcher: &tantivy::Searcher,
        id: &Uuid,
    ) -> Result<Option<i64>, IndexError> {
        let query = TermQuery::new(
            Term::from_field_text(self.fields.id, &id.to_string()),
            IndexRecordOption::Basic,
        );
        let Some((_, address)) = searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let revisions = searcher
            .segment_reader(address.segment_ord)
            .fast_fields()
            .i64("revision")?;
        Ok(revisions.first(address.doc_id))
    }
}

impl SearchIndex for TantivyIndex {
    fn stage_upsert(&self, products: &[ProductDoc]) -> Result<(), IndexError> {
        let searcher = self.reader.searcher();
        let writer = self.writer.lock().expect("index writer lock");
        for product in products {
            if self
                .committed_revision(&searcher, &product.id)?
                .is_some_and(|indexed| indexed > product.revision)
            {
                continue;
            }
            writer.delete_term(Term::from_field_text(
                self.fields.id,
                &product.id.to_string(),
            ));
            writer.add_document(self.document(product)?)?;
        }
        Ok(())
    }

    fn stage_delete(&self, ids: &[Uuid]) -> Result<(), IndexError> {
        let writer = self.writer.lock().expect("index writer lock");
        for id in ids {
            writer.delete_term(Term::from_field_text(self.fields.id, &id.to_string()));
        }
        Ok(())
    }

    fn commit(&self) -> Result<(), IndexError> {
        self.writer.lock().expect("index writer lock").commit()?;
        self.reader.reload()?;
        Ok(())
    }

    fn rollback(&self) -> Result<(), IndexError> {
        self.writer.lock().expect("index writer lock").rollback()?;
        Ok(())
    }

    fn search(&self, query: &SearchQuery) -> Result<SearchResults, IndexError> {
        let searcher = self.reader.searcher();
        let mut clauses = vec![(Occur::Must, self.text_query(&query.text))];
        clauses.extend(self.filters(query, true));
        let full = BooleanQuery::new(clauses);
        let top = TopDocs::with_limit(query.page_size as usize).and_offset(query.offset());
        let addresses: Vec<tantivy::DocAddress> = match query.sort {
            // Of two equally good matches, the one that sells more comes first; sales never
            // lift a poor match over a good one by much (the boost grows with the log).
            SearchSort::Relevance => searcher
                .search(
                    &full,
                    &top.tweak_score(|segment: &tantivy::SegmentReader| {
                        let sold = segment
                            .fast_fields()
                            .u64("units_sold")
                            .map(|column| column.first_or_default_col(0));
                        move |doc: tantivy::DocId, score: tantivy::Score| match &sold {
                            Ok(sold) => score * sales_boost(sold.get_val(doc)),
                            Err(_) => score,
                        }
                    }),
                )?
                .into_iter()
                .map(|(_, a)| a)
                .collect(),
            SearchSort::BestSelling => searcher
                .search(
                    &full,
                    &top.order_by_fast_field::<u64>("units_sold", Order::Desc),
                )?
                .into_iter()
                .map(|(_, a)| a)
                .collect(),
            SearchSort::PriceAsc => searcher
                .search(&full, &top.order_by_fast_field::<f64>("price", Order::Asc))?
                .into_iter()
                .map(|(_, a)| a)
                .collect(),
            SearchSort::PriceDesc => searcher
                .search(&full, &top.order_by_fast_field::<f64>("price", Order::Desc))?
                .into_iter()
                .map(|(_, a)| a)
                .collect(),
            SearchSort::Newest => searcher
                .search(
                    &full,
                    &top.order_by_fast_field::<i64>("created_at", Order::Desc),
                )?
                .into_iter()
                .map(|(_, a)| a)
                .collect(),
        };
        let total = searcher.search(&full, &Count)?;
        let items = addresses
            .into_iter()
            .map(|address| self.stored(&searcher, address))
            .collect::<Result<Vec<_>, _>>()?;

        // Facets: the same search without the category filter, so every option shows.
        let mut facet_clauses = vec![(Occur::Must, self.text_query(&query.text))];
        facet_clauses.extend(self.filters(query, false));
        let mut facets = FacetCollector::for_field("category_facet");
        facets.add_facet("/");
        let counts = searcher.search(&BooleanQuery::new(facet_clauses), &facets)?;
        let mut categories: Vec<FacetCount> = counts
            .get("/")
            .map(|(facet, count)| FacetCount {
                value: facet
                    .to_path()
                    .last()
                    .map(|part| part.to_string())
                    .unwrap_or_default(),
                count,
            })
            .collect();
        categories.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        Ok(SearchResults {
            items,
            total,
            page: query.page,
            page_size: query.page_size,
            categories,
        })
    }

    fn autocomplete(&self, prefix: &str, limit: usize) -> Result<Vec<String>, IndexError> {
        let words = domain::words(prefix);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = words
            .iter()
            .map(|word| {
                let prefix: String = word.chars().take(MAX_GRAM).collect();
                let term = Term::from_field_text(self.fields.completion, &prefix);
                (
                    Occur::Must,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)) as Box<dyn Query>,
                )
            })
            .collect();
        let searcher = self.reader.searcher();
        let hits = searcher.search(
            &BooleanQuery::new(clauses),
            &TopDocs::with_limit(limit * 4).order_by_score(),
        )?;
        let mut seen = HashSet::new();
        let mut names = Vec::new();
        for (_, address) in hits {
            let product = self.stored(&searcher, address)?;
            if seen.insert(product.name.to_lowercase()) {
                names.push(product.name);
            }
            if names.len() == limit {
                break;
            }
        }
        Ok(names)
    }

    fn similar_words(&self, word: &str, limit: usize) -> Result<Vec<String>, IndexError> {
        let word = word.to_lowercase();
        let searcher = self.reader.searcher();
        let mut frequency: BTreeMap<String, u64> = BTreeMap::new();
        for segment in searcher.segment_readers() {
            for field in [self.fields.name, self.fields.description] {
                let inverted = segment.inverted_index(field)?;
                let mut terms = inverted.terms().stream()?;
                while terms.advance() {
                    let Ok(term) = std::str::from_utf8(terms.key()) else {
                        continue;
                    };
                    if term != word && strsim::damerau_levenshtein(term, &word) <= 2 {
                        *frequency.entry(term.to_owned()).or_default() +=
                            u64::from(terms.value().doc_freq);
                    }
                }
            }
        }
        let mut candidates: Vec<(usize, u64, String)> = frequency
            .into_iter()
            .map(|(term, count)| (strsim::damerau_levenshtein(&term, &word), count, term))
            .collect();
        candidates.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        Ok(candidates
            .into_iter()
            .take(limit)
            .map(|(_, _, term)| term)
            .collect())
    }

    fn word_frequency(&self, word: &str) -> Result<u64, IndexError> {
        let searcher = self.reader.searcher();
        let word = word.to_lowercase();
        let mut frequency = 0;
        for field in [self.fields.name, self.fields.description] {
            frequency += searcher.doc_freq(&Term::from_field_text(field, &word))?;
        }
        Ok(frequency)
    }

    fn product_count(&self) -> Result<u64, IndexError> {
        Ok(self.reader.searcher().num_docs())
    }

    fn stage_clear(&self) -> Result<(), IndexError> {
        self.writer
            .lock()
            .expect("index writer lock")
            .delete_all_documents()?;
        Ok(())
    }

    fn all(&self) -> Result<Vec<ProductDoc>, IndexError> {
        let searcher = self.reader.searcher();
        let count = searcher.search(&AllQuery, &Count)?;
        let mut documents = searcher
            .search(
                &AllQuery,
                &TopDocs::with_limit(count.max(1)).order_by_score(),
            )?
            .into_iter()
            .map(|(_, address)| self.stored(&searcher, address))
            .collect::<Result<Vec<_>, _>>()?;
        documents.sort_by_key(|document| document.id);
        Ok(documents)
    }
}

/// What people searched for, published by how many different clients searched it. Each
/// query keeps a HyperLogLog of its clients (hashes only, forgotten after
/// `CLIENTS_KEPT`), and a sorted set holds each query's client count. Only queries that
/// found products are recorded, and only those searched by `min_clients` different
/// clients are published: one client cannot put words on the shop's front page.
#[derive(Clone)]
pub struct PopularQueries {
    redis: commerce_redis::RedisClient,
    prefix: String,
    key: String,
    min_clients: u64,
}

/// How long a query's clients are remembered after its last new one.
const CLIENTS_KEPT: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 60 * 60);
/// The sorted set keeps the most searched queries only.
const QUERIES_KEPT: i64 = 10_000;

impl PopularQueries {
    pub fn new(redis: commerce_redis::RedisClient, prefix: &str, min_clients: u64) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            key: commerce_redis::hash_tagged(prefix, "popular", "queries"),
            min_clients: min_clients.max(1),
        }
    }

    /// Counts `client` (a user id or an address) among those who searched `query`.
    pub async fn record(
        &self,
        query: &str,
        client: &str,
    ) -> Result<(), commerce_redis::RedisError> {
        let normalized = domain::words(query).join(" ");
        if normalized.is_empty() {
            return Ok(());
        }
        let mut redis = self.redis.clone();
        // Same hash tag as the sorted set: one slot in a cluster.
        let clients =
            commerce_redis::hash_tagged(&self.prefix, "popular", &format!("clients:{normalized}"));
        let new_client: bool = redis::cmd("PFADD")
            .arg(&clients)
            .arg(client)
            .query_async(&mut redis)
            .await?;
        if !new_client {
            return Ok(());
        }
        let (count,): (u64,) = redis::pipe()
            .cmd("PFCOUNT")
            .arg(&clients)
            .cmd("EXPIRE")
            .arg(&clients)
            .arg(CLIENTS_KEPT.as_secs())
            .ignore()
            .query_async(&mut redis)
            .await?;
        // One round trip for the rest; both keys share the hash tag (one cluster slot).
        let _: () = redis::pipe()
            .cmd("ZADD")
            .arg(&self.key)
            .arg(count)
            .arg(&normalized)
            .ignore()
            .cmd("ZREMRANGEBYRANK")
            .arg(&self.key)
            .arg(0)
            .arg(-QUERIES_KEPT - 1)
            .ignore()
            .query_async(&mut redis)
            .await?;
        Ok(())
    }

    /// The queries searched by at least `min_clients` clients, most clients first.
    pub async fn top(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, commerce_redis::RedisError> {
        let pairs: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(&self.key)
            .arg("+inf")
            .arg(self.min_clients)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(pairs
            .into_iter()
            .map(|(query, score)| (query, score as u64))
            .collect())
    }
}

/// What shoppers search for, for staff: each first-page search counted by its words, and
/// those that found nothing counted apart, one sorted set per day and kind (kept
/// [`ANALYTICS_KEPT_DAYS`]), all under one hash tag so a range of days is summed in one
/// cluster slot.
#[derive(Clone)]
pub struct SearchAnalytics {
    redis: commerce_redis::RedisClient,
    prefix: String,
}

/// How many days of search analytics are kept.
pub const ANALYTICS_KEPT_DAYS: u32 = 31;

/// Which searches a count is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchesCounted {
    All,
    WithoutResults,
}

impl SearchesCounted {
    fn key_part(self) -> &'static str {
        match self {
            Self::All => "searches",
            Self::WithoutResults => "no-results",
        }
    }
}

impl SearchAnalytics {
    pub fn new(redis: commerce_redis::RedisClient, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, counted: SearchesCounted, day: chrono::NaiveDate) -> String {
        commerce_redis::hash_tagged(
            &self.prefix,
            "analytics",
            &format!("{}:{}", counted.key_part(), day.format("%Y%m%d")),
        )
    }

    /// Counts one search of `query` on `day`, and apart if it found nothing.
    pub async fn record(
        &self,
        query: &str,
        found: bool,
        day: chrono::NaiveDate,
    ) -> Result<(), commerce_redis::RedisError> {
        let normalized = domain::words(query).join(" ");
        if normalized.is_empty() {
            return Ok(());
        }
        let kept = u64::from(ANALYTICS_KEPT_DAYS) * 24 * 60 * 60;
        let mut pipe = redis::pipe();
        let mut counted = vec![SearchesCounted::All];
        if !found {
            counted.push(SearchesCounted::WithoutResults);
        }
        for counted in counted {
            let key = self.key(counted, day);
            pipe.cmd("ZINCRBY")
                .arg(&key)
                .arg(1)
                .arg(&normalized)
                .ignore()
                .cmd("EXPIRE")
                .arg(&key)
                .arg(kept)
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// The `limit` most counted queries of the `days` days up to `today`, most first.
    pub async fn top(
        &self,
        counted: SearchesCounted,
        days: u32,
        today: chrono::NaiveDate,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, commerce_redis::RedisError> {
        let keys: Vec<String> = (0..days.clamp(1, ANALYTICS_KEPT_DAYS))
            .map(|back| self.key(counted, today - chrono::Days::new(u64::from(back))))
            .collect();
        let sum = commerce_redis::hash_tagged(
            &self.prefix,
            "analytics",
            &format!("sum:{}", uuid::Uuid::new_v4().simple()),
        );
        let (pairs,): (Vec<(String, f64)>,) = redis::pipe()
            .cmd("ZUNIONSTORE")
            .arg(&sum)
            .arg(keys.len())
            .arg(&keys)
            .ignore()
            .cmd("ZREVRANGE")
            .arg(&sum)
            .arg(0)
            .arg(limit.saturating_sub(1))
            .arg("WITHSCORES")
            .cmd("DEL")
            .arg(&sum)
            .ignore()
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(pairs
            .into_iter()
            .map(|(query, count)| (query, count as u64))
            .collect())
    }
}
