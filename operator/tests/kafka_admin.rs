//! The admin client and the KafkaTopic reconciler against the real Apache Kafka cluster
//! `make test` runs (three nodes), the Kubernetes side mocked.

mod support;

use commerce_testkit::eventually;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use commerce_operator::controller::kafka_topic;
use commerce_operator::crd::{KafkaTopic, KafkaTopicSpec};
use commerce_operator::kafka::{Creation, RdKafkaAdmin, TopicAdmin, TopicState};
use support::*;

fn brokers() -> String {
    std::env::var("COMMERCE_TEST_KAFKA_BROKERS")
        .expect("COMMERCE_TEST_KAFKA_BROKERS: run `eval \"$(scripts/infra.sh env)\"`")
}

/// A change reaches every broker's metadata a moment after the controller makes it: waits
/// (up to 30 s) until the topic is described with `partitions`.
async fn described(
    admin: &RdKafkaAdmin,
    brokers: &str,
    topic: &str,
    partitions: i32,
    retention_ms: &str,
) -> TopicState {
    // The broker that answers may not have applied the newest metadata yet: its answer
    // can lack the topic's configuration, or hold the one before an alteration.
    eventually(
        Duration::from_secs(30),
        &format!(
            "`{topic}` to be described with {partitions} partitions and retention.ms {retention_ms}"
        ),
        || async {
            admin
                .describe(brokers, topic)
                .await
                .unwrap()
                .filter(|state| {
                    state.partitions == partitions
                        && state.config.get("retention.ms").map(String::as_str)
                            == Some(retention_ms)
                })
        },
    )
    .await
}

/// A deleted topic leaves every broker's metadata a moment after the controller removes
/// it: waits (up to 30 s) until describing it finds nothing.
async fn assert_gone(admin: &RdKafkaAdmin, brokers: &str, topic: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("`{topic}` to be gone after its deletion"),
        || async {
            admin
                .describe(brokers, topic)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await
}

/// Waits (up to 60 s) until the cluster's metadata lists its three brokers: a node that
/// missed heartbeats under the suite's load is fenced for a moment and left out.
async fn all_three_brokers_listed() {
    use rdkafka::producer::{BaseProducer, Producer};
    let client: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("log_level", "3")
        .create()
        .unwrap();
    let client = Arc::new(client);
    eventually(
        Duration::from_secs(60),
        "the test cluster to list three brokers",
        || {
            let reader = client.clone();
            async move {
                let listed = tokio::task::spawn_blocking(move || {
                    reader
                        .client()
                        .fetch_metadata(None, Duration::from_secs(5))
                        .map(|metadata| metadata.brokers().len())
                })
                .await
                .unwrap();
                matches!(listed, Ok(3)).then_some(())
            }
        },
    )
    .await
}

fn unique(name: &str) -> String {
    let bytes: [u8; 6] = rand::random();
    format!("operator-test.{name}.{}", hex::encode(bytes))
}

#[tokio::test]
async fn create_describe_and_delete_a_topic() {
    let admin = RdKafkaAdmin::new(Duration::from_secs(20));
    let brokers = brokers();
    let topic = unique("lifecycle");
    assert_eq!(admin.describe(&brokers, &topic).await.unwrap(), None);

    let config = BTreeMap::from([("retention.ms".to_owned(), "3600000".to_owned())]);
    assert_eq!(
        admin.create(&brokers, &topic, 2, 3, &config).await.unwrap(),
        Creation::Created
    );
    // Creating again is not an error (a reconcile may repeat after a lost answer).
    assert_eq!(
        admin.create(&brokers, &topic, 2, 3, &config).await.unwrap(),
        Creation::AlreadyExisted
    );
    let state = described(&admin, &brokers, &topic, 2, "3600000").await;
    assert_eq!(
        state.config.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    assert!(!state.config_differs(&config));
    let longer = BTreeMap::from([("retention.ms".to_owned(), "7200000".to_owned())]);
    assert!(state.config_differs(&longer));

    admin.delete(&brokers, &topic).await.unwrap();
    assert_gone(&admin, &brokers, &topic).await;
    // Deleting what is gone is not an error either.
    admin.delete(&brokers, &topic).await.unwrap();
}

fn topic_resource(name: &str, partitions: i32) -> KafkaTopic {
    let mut topic = KafkaTopic::new(
        "orders-export",
        KafkaTopicSpec {
            topic_name: Some(name.to_owned()),
            bootstrap_servers: brokers(),
            partitions,
            replication_factor: 3,
            config: BTreeMap::from([("retention.ms".to_owned(), "3600000".to_owned())]),
            deletion_policy: commerce_operator::crd::DeletionPolicy::Delete,
        },
    );
    topic.metadata.namespace = Some("commerce".to_owned());
    topic.metadata.uid = Some("22222222-0000-4000-8000-000000000001".to_owned());
    topic.metadata.generation = Some(1);
    topic.metadata.resource_version = Some("3".to_owned());
    topic.metadata.finalizers = Some(vec![kafka_topic::FINALIZER.to_owned()]);
    topic
}

#[tokio::test]
async fn the_reconciler_creates_reports_and_deletes_a_real_topic() {
    let admin: Arc<RdKafkaAdmin> = Arc::new(RdKafkaAdmin::new(Duration::from_secs(20)));
    let name = unique("reconciled");
    let topic = topic_resource(&name, 3);
    // New, without the finalizer that policy Delete needs: it is added, with the
    // resourceVersion read, before the topic is made.
    let mut fresh = topic.clone();
    fresh.metadata.finalizers = None;
    let current = serde_json::to_value(&fresh).unwrap();
    let (client, api) = mock_client(move |call| default_answer(call, &current));
    kafka_topic::reconcile(Arc::new(fresh), context(client, admin.clone()))
        .await
        .unwrap();
    let patch = api.find("PATCH", "/kafkatopics/orders-export").remove(0);
    assert_eq!(
        patch.body["metadata"]["finalizers"],
        serde_json::json!([kafka_topic::FINALIZER])
    );
    assert_eq!(patch.body["metadata"]["resourceVersion"], "3");
    let state = described(admin.as_ref(), &brokers(), &name, 3, "3600000").await;
    assert_eq!(state.config["retention.ms"], "3600000");
    let status = written_status(&api);
    assert_eq!(condition(&status, "Ready")["reason"], "Created");
    assert_eq!(status["topicName"], name.as_str());

    // A second pass finds it as wanted and changes nothing.
    let current = serde_json::to_value(&topic).unwrap();
    let (client, api) = mock_client(move |call| default_answer(call, &current));
    kafka_topic::reconcile(Arc::new(topic.clone()), context(client, admin.clone()))
        .await
        .unwrap();
    assert_eq!(
        condition(&written_status(&api), "Ready")["reason"],
        "UpToDate"
    );

    // Grown and reconfigured on the broker.
    let mut grown = topic_resource(&name, 6);
    grown
        .spec
        .config
        .insert("retention.ms".to_owned(), "86400000".to_owned());
    grown.status = Some(serde_json::from_value(written_status(&api)).unwrap());
    let current = serde_json::to_value(&grown).unwrap();
    let (client, api) = mock_client(move |call| default_answer(call, &current));
    kafka_topic::reconcile(Arc::new(grown), context(client, admin.clone()))
        .await
        .unwrap();
    let status = written_status(&api);
    assert_eq!(condition(&status, "Ready")["reason"], "PartitionsAdded");
    assert_eq!(status["partitions"], 6);
    let state = described(admin.as_ref(), &brokers(), &name, 6, "86400000").await;
    assert_eq!(state.config["retention.ms"], "86400000");

    // Never shrunk: Kafka cannot, so the reconciler says so and leaves the topic alone.
    let shrunk = topic_resource(&name, 4);
    let current = serde_json::to_value(&shrunk).unwrap();
    let (client, api) = mock_client(move |call| default_answer(call, &current));
    kafka_topic::reconcile(Arc::new(shrunk), context(client, admin.clone()))
        .await
        .unwrap();
    let status = written_status(&api);
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "PartitionShrinkRefused");
    assert!(ready["message"].as_str().unwrap().contains("at least 6"));
    assert!(
        events(&api)
            .iter()
            .any(|(type_, reason, _)| type_ == "Warning" && reason == "PartitionShrinkRefused")
    );
    described(admin.as_ref(), &brokers(), &name, 6, "86400000").await;

    // Retain: deleting the resource leaves the topic on the broker.
    let mut retained = topic_resource(&name, 6);
    retained.spec.deletion_policy = commerce_operator::crd::DeletionPolicy::Retain;
    retained.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let current = serde_json::to_value(&retained).unwrap();
    let (client, api) = mock_client(move |call| default_answer(call, &current));
    kafka_topic::reconcile(Arc::new(retained), context(client, admin.clone()))
        .await
        .unwrap();
    assert!(admin.describe(&brokers(), &name).await.unwrap().is_some());
    let patch = api.find("PATCH", "/kafkatopics/orders-export").remove(0);
    assert_eq!(patch.body["metadata"]["finalizers"], serde_json::json!([]));

    // Deleted with policy Delete: gone from the broker, then the finalizer.
    let mut deleting = topic_resource(&name, 3);
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let current = serde_json::to_value(&deleting).unwrap();
    let (client, api) = mock_client(move |call| default_answer(call, &current));
    kafka_topic::reconcile(Arc::new(deleting), context(client, admin.clone()))
        .await
        .unwrap();
    assert_gone(&admin, &brokers(), &name).await;
    let patch = api.find("PATCH", "/kafkatopics/orders-export").remove(0);
    assert_eq!(patch.body["metadata"]["finalizers"], serde_json::json!([]));
}

#[tokio::test]
async fn more_replicas_than_brokers_is_not_ready_with_the_reason() {
    let admin: Arc<RdKafkaAdmin> = Arc::new(RdKafkaAdmin::new(Duration::from_secs(20)));
    all_three_brokers_listed().await;
    let name = unique("overreplicated");
    let mut topic = topic_resource(&name, 1);
    topic.spec.replication_factor = 5;
    let current = serde_json::to_value(&topic).unwrap();
    let (client, api) = mock_client(move |call| default_answer(call, &current));
    let error = kafka_topic::reconcile(Arc::new(topic), context(client, admin.clone()))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("replicationFactor is 5"),
        "{error}"
    );
    let status = written_status(&api);
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ReplicationFactorTooHigh");
    let message = ready["message"].as_str().unwrap();
    assert!(message.contains("3 broker(s)"), "{message}");
    assert_eq!(admin.describe(&brokers(), &name).await.unwrap(), None);
}
