//! How an inbox consumer stands in its group, read from librdkafka's statistics: whether it
//! is a steady member (joined, partitions assigned or legitimately none), how many
//! partitions it holds and how far behind it is. A consumer stuck outside its group (a
//! rebalance that never completes, a coordinator it cannot reach) is reported by
//! [`ConsumerHealth::check`] once it has been so for longer than a rebalance can take.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use serde::Deserialize;

/// librdkafka's join state of a member that is in its group with its assignment settled.
const STEADY: &str = "steady";

#[derive(Debug)]
pub struct ConsumerHealth {
    group: String,
    state: Mutex<GroupState>,
}

#[derive(Debug)]
struct GroupState {
    /// librdkafka's `cgrp.join_state` and `cgrp.state` from the last statistics.
    join_state: String,
    coordinator_state: String,
    /// Since when the member has not been steady; `None` while it is.
    unsteady_since: Option<Instant>,
    assigned_partitions: i32,
    /// Records behind the committed offsets, summed over the assigned partitions.
    lag: i64,
}

impl ConsumerHealth {
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            state: Mutex::new(GroupState {
                join_state: "init".to_owned(),
                coordinator_state: "init".to_owned(),
                unsteady_since: Some(Instant::now()),
                assigned_partitions: 0,
                lag: 0,
            }),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Takes in one statistics report of the consumer's client (librdkafka's JSON).
    pub fn observe_report(&self, json: &[u8]) {
        match serde_json::from_slice::<StatisticsReport>(json) {
            Ok(report) => self.observe(&report),
            Err(error) => {
                tracing::warn!(group = %self.group, %error, "unreadable librdkafka statistics")
            }
        }
    }

    fn observe(&self, statistics: &StatisticsReport) {
        let Some(group) = &statistics.cgrp else {
            return;
        };
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|topic| topic.partitions.values())
            .filter(|partition| partition.partition >= 0 && partition.consumer_lag > 0)
            .map(|partition| partition.consumer_lag)
            .sum();
        let steady = group.join_state == STEADY && group.state == "up";
        {
            let mut state = self.state.lock().expect("consumer health poisoned");
            state.join_state.clone_from(&group.join_state);
            state.coordinator_state.clone_from(&group.state);
            state.assigned_partitions = group.assignment_size;
            state.lag = lag;
            match (steady, state.unsteady_since) {
                (true, _) => state.unsteady_since = None,
                (false, None) => state.unsteady_since = Some(Instant::now()),
                (false, Some(_)) => {}
            }
        }
        let consumer = self.group.clone();
        metrics::gauge!("inbox_consumer_lag", "consumer" => consumer.clone()).set(lag as f64);
        metrics::gauge!("inbox_assigned_partitions", "consumer" => consumer.clone())
            .set(f64::from(group.assignment_size));
        metrics::gauge!("inbox_consumer_steady", "consumer" => consumer).set(if steady {
            1.0
        } else {
            0.0
        });
    }

    /// Fine while the consumer is a steady member of its group, or has been out of that
    /// state for less than `grace` (joining, or a rebalance in progress).
    pub fn check(&self, grace: Duration) -> Result<(), String> {
        let state = self.state.lock().expect("consumer health poisoned");
        match state.unsteady_since {
            Some(since) if since.elapsed() >= grace => Err(format!(
                "consumer group `{}`: not a steady member for {} s (join state `{}`, coordinator `{}`)",
                self.group,
                since.elapsed().as_secs(),
                state.join_state,
                state.coordinator_state
            )),
            _ => Ok(()),
        }
    }

    pub fn assigned_partitions(&self) -> i32 {
        self.state
            .lock()
            .expect("consumer health poisoned")
            .assigned_partitions
    }

    pub fn lag(&self) -> i64 {
        self.state.lock().expect("consumer health poisoned").lag
    }
}

/// The part of librdkafka's statistics (STATISTICS.md) the health reads; the rest of the
/// report is skipped rather than parsed.
#[derive(Debug, Deserialize)]
struct StatisticsReport {
    cgrp: Option<GroupReport>,
    #[serde(default)]
    topics: HashMap<String, TopicReport>,
}

#[derive(Debug, Deserialize)]
struct GroupReport {
    state: String,
    join_state: String,
    assignment_size: i32,
}

#[derive(Debug, Deserialize)]
struct TopicReport {
    #[serde(default)]
    partitions: HashMap<String, PartitionReport>,
}

#[derive(Debug, Deserialize)]
struct PartitionReport {
    partition: i32,
    /// -1 while unknown (a partition this member does not hold).
    consumer_lag: i64,
}

/// The inbox consumer's client context: statistics go to its [`ConsumerHealth`].
pub(crate) struct InboxContext {
    pub(crate) health: std::sync::Arc<ConsumerHealth>,
}

impl ClientContext for InboxContext {
    fn stats_raw(&self, statistics: &[u8]) {
        self.health.observe_report(statistics);
    }
}

impl ConsumerContext for InboxContext {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statistics report as librdkafka writes it, cut to what matters here.
    fn report(join_state: &str, lags: &[(i32, i64)]) -> Vec<u8> {
        let partitions: serde_json::Map<String, serde_json::Value> = lags
            .iter()
            .map(|&(partition, lag)| {
                (
                    partition.to_string(),
                    serde_json::json!({"partition": partition, "consumer_lag": lag,
                                       "fetch_state": "active", "hi_offset": 10}),
                )
            })
            .collect();
        let assigned = lags.iter().filter(|(partition, _)| *partition >= 0).count();
        serde_json::to_vec(&serde_json::json!({
            "name": "rdkafka#consumer-1", "type": "consumer", "ts": 1, "brokers": {},
            "cgrp": {"state": "up", "stateage": 1000, "join_state": join_state,
                     "rebalance_age": 10, "rebalance_cnt": 1, "rebalance_reason": "",
                     "assignment_size": assigned},
            "topics": {"commerce.order.events": {"topic": "commerce.order.events",
                                                  "partitions": partitions}},
        }))
        .unwrap()
    }

    #[test]
    fn a_consumer_that_never_joined_is_reported_once_the_grace_is_over() {
        let health = ConsumerHealth::new("cart");
        assert!(health.check(Duration::from_secs(60)).is_ok());
        let error = health.check(Duration::ZERO).unwrap_err();
        assert!(error.contains("`cart`"), "{error}");
        assert!(error.contains("join state `init`"), "{error}");
    }

    #[test]
    fn steady_members_are_fine_with_or_without_partitions_and_lag_sums_assigned_ones() {
        let health = ConsumerHealth::new("search");
        // The internal -1 partition and unassigned ones (lag -1) do not count.
        health.observe_report(&report("steady", &[(0, 5), (1, 7), (2, -1), (-1, 100)]));
        assert!(health.check(Duration::ZERO).is_ok());
        assert_eq!(health.lag(), 12);
        assert_eq!(health.assigned_partitions(), 3);
        health.observe_report(&report("steady", &[]));
        assert!(health.check(Duration::ZERO).is_ok());
        assert_eq!(health.assigned_partitions(), 0);
    }

    #[test]
    fn a_member_stuck_in_a_rebalance_is_reported_after_the_grace_and_recovers() {
        let health = ConsumerHealth::new("order");
        health.observe_report(&report("steady", &[(0, 0)]));
        health.observe_report(&report("wait-join", &[]));
        assert!(
            health.check(Duration::from_secs(60)).is_ok(),
            "within grace"
        );
        let error = health.check(Duration::ZERO).unwrap_err();
        assert!(error.contains("wait-join"), "{error}");
        // Still stuck at the next report: the clock keeps running from the first one.
        std::thread::sleep(Duration::from_millis(20));
        health.observe_report(&report("wait-sync", &[]));
        assert!(health.check(Duration::from_millis(15)).is_err());
        health.observe_report(&report("steady", &[(0, 0)]));
        assert!(health.check(Duration::ZERO).is_ok());
    }

    #[test]
    fn an_unreadable_report_changes_nothing() {
        let health = ConsumerHealth::new("fulfillment");
        health.observe_report(&report("steady", &[(0, 3)]));
        health.observe_report(b"{not json");
        assert!(health.check(Duration::ZERO).is_ok());
        assert_eq!(health.lag(), 3);
    }
}
