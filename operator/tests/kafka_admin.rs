//! The admin client against the real broker (tansu from `scripts/infra.sh`).

use std::collections::BTreeMap;
use std::time::Duration;

use commerce_operator::kafka::{RdKafkaAdmin, TopicAdmin};

fn brokers() -> String {
    std::env::var("COMMERCE_TEST_KAFKA_BROKERS")
        .expect("COMMERCE_TEST_KAFKA_BROKERS: run `eval \"$(scripts/infra.sh env)\"`")
}

fn unique(name: &str) -> String {
    format!("operator-test.{name}.{}", uuid_like())
}

fn uuid_like() -> String {
    let bytes: [u8; 6] = rand::random();
    hex::encode(bytes)
}

#[tokio::test]
async fn create_describe_grow_and_delete_a_topic() {
    let admin = RdKafkaAdmin::new(Duration::from_secs(20));
    let brokers = brokers();
    let topic = unique("lifecycle");
    assert_eq!(admin.describe(&brokers, &topic).await.unwrap(), None);

    let config = BTreeMap::from([("retention.ms".to_owned(), "3600000".to_owned())]);
    admin.create(&brokers, &topic, 2, 1, &config).await.unwrap();
    // Creating again is not an error (a reconcile may repeat after a lost answer).
    admin
        .create(&brokers, &topic, 2, 1, &BTreeMap::new())
        .await
        .unwrap();
    let state = admin.describe(&brokers, &topic).await.unwrap().unwrap();
    assert_eq!(state.partitions, 2);
    eprintln!("{state:?}");
    eprintln!(
        "{:?}",
        admin.configure(&brokers, &topic, &BTreeMap::new()).await
    );
    eprintln!("{:?}", admin.describe(&brokers, &topic).await);

    admin.delete(&brokers, &topic).await.unwrap();
    assert_eq!(admin.describe(&brokers, &topic).await.unwrap(), None);
    // Deleting what is gone is not an error either.
    admin.delete(&brokers, &topic).await.unwrap();
}
