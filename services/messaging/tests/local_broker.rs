//! The broker `make run` starts (`scripts/kafka.sh up`: one KRaft node, its log directory
//! under the state directory) keeps what it was given across a restart: topics, records
//! and consumer groups' committed offsets.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use commerce_messaging::KafkaConfig;
use commerce_testkit::{free_port, required_env, unique};
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/kafka.sh");

/// `scripts/kafka.sh` in a state directory of the test's own, on a broker port whose
/// controller port (the next one) is free too. Stops the broker when dropped.
struct LocalBroker {
    state: tempfile::TempDir,
    port: u16,
}

impl LocalBroker {
    fn new() -> Self {
        let port = loop {
            let port = free_port();
            if std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        Self {
            state: tempfile::tempdir().unwrap(),
            port,
        }
    }

    /// `scripts/kafka.sh <command>` on this broker's state directory and port.
    fn command(&self, command: &str) -> Command {
        let mut script = Command::new(SCRIPT);
        script
            .arg(command)
            .env("COMMERCE_STATE_DIR", self.state.path())
            .env("COMMERCE_KAFKA_PORT", self.port.to_string())
            // The jars `make test` fetched, not a second download.
            .env("COMMERCE_KAFKA_LIBS", required_env("COMMERCE_KAFKA_LIBS"));
        script
    }

    fn script(&self, command: &str) {
        let output = self
            .command(command)
            .output()
            .expect("run scripts/kafka.sh");
        assert!(
            output.status.success(),
            "scripts/kafka.sh {command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn data_dir(&self) -> PathBuf {
        self.state.path().join("kafka/run/data")
    }

    fn config(&self) -> KafkaConfig {
        KafkaConfig::new(format!("127.0.0.1:{}", self.port))
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        let _ = self.command("down").output();
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn formatted(data: &Path) -> String {
    std::fs::read_to_string(data.join("meta.properties")).expect("formatted storage")
}

async fn next_payload(consumer: &StreamConsumer) -> String {
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a record within 30 s")
        .expect("consume");
    let payload = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
    consumer
        .commit_message(&message, CommitMode::Sync)
        .expect("commit");
    payload
}

#[tokio::test]
async fn the_make_run_broker_keeps_topics_records_and_offsets_across_a_restart() {
    let broker = LocalBroker::new();
    broker.script("up");
    let storage = formatted(&broker.data_dir());
    let kafka = broker.config();
    let topic = topic(&kafka, "local", 2).await;
    let producer = kafka.producer().unwrap();
    let sent: Vec<String> = (0..10).map(|index| format!("record {index}")).collect();
    for payload in &sent {
        producer
            .send(
                FutureRecord::to(&topic).key("one-key").payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
    }
    let group = unique("local-group");
    {
        let consumer: StreamConsumer = kafka.consumer_config(&group).create().unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        for expected in &sent[..4] {
            assert_eq!(&next_payload(&consumer).await, expected);
        }
    }
    drop(producer);

    broker.script("down");
    assert!(!port_open(broker.port), "the broker stopped");
    broker.script("up");
    assert_eq!(
        formatted(&broker.data_dir()),
        storage,
        "the storage was kept, not formatted again"
    );

    // The topic, every record, and the group's place in it.
    let read = read_topic(&kafka, &topic, sent.len()).await;
    let payloads: Vec<String> = read
        .iter()
        .map(|message| String::from_utf8(message.payload().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(payloads, sent);
    let consumer: StreamConsumer = kafka.consumer_config(&group).create().unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    assert_eq!(
        next_payload(&consumer).await,
        sent[4],
        "the group resumes after its last committed record"
    );
}
