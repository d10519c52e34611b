//! The outbox relay's publish rate against Kafka's own producer benchmark on the same
//! cluster, topic layout and record size, both with `acks=all` and idempotence: the
//! baseline is `org.apache.kafka.tools.ProducerPerformance` (kafka-tools), measured in the
//! same run. Prints both rates and relay ÷ native (goal ≥ 0.5).
//!
//! Needs the local infrastructure with the test cluster:
//! `COMMERCE_KAFKA_TOPOLOGY=cluster scripts/infra.sh up && eval "$(COMMERCE_KAFKA_TOPOLOGY=cluster scripts/infra.sh env)"`,
//! then `cargo bench -p commerce-messaging --bench relay`.

#[path = "support/relay_rate.rs"]
mod relay_rate;

use commerce_testkit::required_env;
use relay_rate::{PARTITIONS, RECORD_SIZE, relay_and_native_rates};

const RECORDS: usize = 50_000;
const GOAL: f64 = 0.5;

#[tokio::main]
async fn main() {
    let brokers = required_env("COMMERCE_TEST_KAFKA_BROKERS");
    let (native, relay_rate) = relay_and_native_rates(&brokers, RECORDS).await;
    let ratio = relay_rate / native;
    println!(
        "outbox relay vs Kafka's ProducerPerformance ({RECORDS} records of {RECORD_SIZE} B, \
         {PARTITIONS} partitions, acks=all, idempotent, cluster {brokers}):"
    );
    println!("  native (ProducerPerformance): {native:>9.0} records/s");
    println!("  outbox relay:                 {relay_rate:>9.0} records/s");
    println!(
        "  relay ÷ native: {ratio:.2} (goal ≥ {GOAL}): {}",
        if ratio >= GOAL { "met" } else { "NOT met" }
    );
}
