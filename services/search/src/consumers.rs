//! What search consumes: catalogue events into the index through the inbox, and whether
//! its consumer group can still catch up from the topic.

use std::time::Duration;

use async_trait::async_trait;
use commerce_messaging::{EventHandler, HandlerError, KafkaConfig, ReceivedEvent};
use commerce_runtime::BoxError;
use sqlx::PgConnection;

use crate::service::{SearchError, SearchService};

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

/// Whether `group` can no longer bring an index up to date from `topic`: on some
/// partition it has no committed position while retention has already dropped the
/// topic's first events, or its position is below the oldest event still held. Blocking
/// (broker round trips): call it off the async workers.
pub fn position_lost(kafka: &KafkaConfig, group: &str, topic: &str) -> Result<bool, BoxError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    const WAIT: Duration = Duration::from_secs(10);
    let topic = kafka.topic(topic);
    let consumer: BaseConsumer = kafka.consumer_config(group).create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), WAIT)?;
    let mut partitions = TopicPartitionList::new();
    for partition in metadata
        .topics()
        .iter()
        .flat_map(|topic| topic.partitions().iter())
    {
        partitions.add_partition(&topic, partition.id());
    }
    let committed = consumer.committed_offsets(partitions, WAIT)?;
    for element in committed.elements() {
        let (oldest, _) = consumer.fetch_watermarks(&topic, element.partition(), WAIT)?;
        let lost = match element.offset() {
            Offset::Offset(position) => position < oldest,
            _ => oldest > 0,
        };
        if lost {
            return Ok(true);
        }
    }
    Ok(false)
}
