//! What search consumes: catalogue events into the index, live through the inbox and all at
//! once in a rebuild from the event topic.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commerce_messaging::{EventHandler, HandlerError, KafkaConfig, ReceivedEvent};
use commerce_runtime::BoxError;
use sqlx::PgConnection;

use crate::repository::{SearchIndex, TantivyIndex};
use crate::service::{self, SearchError, SearchService};

pub const DEAD_LETTER_TOPIC: &str = "commerce.search.dlq";

/// Feeds catalogue events into the index, up to [`IndexEvents::BATCH`] at a time. A batch is
/// staged, then the index commits before the inbox transaction does, so a crash in between
/// redelivers (and re-applies) the events rather than losing them. One index commit per
/// batch: under load the catalogue changes with every order, and a commit per event could
/// not keep up (new products took more than 20 s to become searchable).
pub(crate) struct IndexEvents {
    pub(crate) search: SearchService,
}

impl IndexEvents {
    const BATCH: usize = 256;
}

#[async_trait]
impl EventHandler for IndexEvents {
    fn batch_limit(&self) -> usize {
        Self::BATCH
    }

    async fn flush(&self) -> Result<(), HandlerError> {
        self.search
            .commit()
            .await
            .map_err(|error| HandlerError::Retryable(error.into()))
    }

    async fn discard(&self) {
        if let Err(error) = self.search.rollback().await {
            tracing::warn!(%error, "the index could not forget a failed batch");
        }
    }

    async fn handle(
        &self,
        _connection: &mut PgConnection,
        event: &ReceivedEvent,
    ) -> Result<(), HandlerError> {
        self.search
            .apply(&event.event_type, &event.payload)
            .await
            .map_err(|error| match error {
                SearchError::Event(cause) => HandlerError::Permanent(cause),
                other => HandlerError::Retryable(other.into()),
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
    tokio::task::spawn_blocking(move || index.commit()).await??;
    Ok(applied)
}
