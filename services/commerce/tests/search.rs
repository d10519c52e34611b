//! Search survives restarts. A search process killed, its index deleted and the old
//! catalogue events gone from the topic (as retention drops them) starts again with the
//! same results: it rebuilt its index from the product service's catalogue. One killed
//! with its index intact, that missed a change whose event retention then dropped, finds
//! its consumer group behind the topic, rebuilds, and shows the change.

mod support;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use support::{LocalShop, demo_login};

const AUTH_OPS: u16 = 8181;
const PRODUCT_HTTP: u16 = 8082;
const PRODUCT_OPS: u16 = 8182;
const SEARCH_HTTP: u16 = 8089;
const SEARCH_OPS: u16 = 8189;

/// What shoppers would see: every product, one word's matches, a filtered page (items
/// in id order: products that tie on the sort key may come in either order).
async fn answers(client: &reqwest::Client, shop: &LocalShop, word: &str) -> Vec<Value> {
    let search = shop.url(SEARCH_HTTP);
    let mut answers = Vec::new();
    for query in [
        "pageSize=100".to_owned(),
        format!("q={word}&pageSize=100"),
        "inStock=true&sort=price_asc&pageSize=100".to_owned(),
    ] {
        let response = client
            .get(format!("{search}/v1/search?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{query}");
        let mut answer: Value = response.json().await.unwrap();
        answer["items"]
            .as_array_mut()
            .unwrap()
            .sort_by_key(|item| item["id"].as_str().unwrap().to_owned());
        answers.push(answer);
    }
    answers
}

fn kafka(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// The catalogue events' end offset on each partition.
fn ends(brokers: &str, topic: &str) -> Vec<(i32, i64)> {
    let consumer: BaseConsumer = kafka(brokers).create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
                .unwrap();
            (partition.id(), high)
        })
        .collect()
}

/// Drops every event the topic holds, as retention would once they are old enough.
async fn drop_all_events(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = kafka(brokers).create().unwrap();
    let mut partitions = TopicPartitionList::new();
    for (partition, _) in ends(brokers, topic) {
        partitions
            .add_partition_offset(topic, partition, Offset::End)
            .unwrap();
    }
    let deleted = admin
        .delete_records(&partitions, &AdminOptions::new())
        .await
        .unwrap();
    for element in deleted.elements() {
        assert!(element.error().is_ok(), "{:?}", element.error());
    }
    let consumer: BaseConsumer = kafka(brokers).create().unwrap();
    for (partition, high) in ends(brokers, topic) {
        let (low, _) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .unwrap();
        assert_eq!(low, high, "partition {partition} still holds events");
    }
}

#[tokio::test]
async fn search_rebuilds_from_the_catalogue_after_losing_its_index_or_its_place() {
    let shop = LocalShop::new("searchrestart").await;
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let brokers = shop.env_value("COMMERCE_KAFKA__BROKERS");
    let topic = format!(
        "{}commerce.product.events",
        shop.env_value("COMMERCE_KAFKA__TOPIC_PREFIX")
    );
    let index_dir = shop.scratch("search-index");
    let client = reqwest::Client::new();
    let _catalogue = shop.serve_only(&["auth", "product"], "catalogue");
    let mut search = shop.serve_only(&["search"], "search");
    shop.wait_until_ready_on(&[AUTH_OPS, PRODUCT_OPS, SEARCH_OPS])
        .await;

    // Ready means whole: the first start rebuilt the empty index from the catalogue.
    let product_db = &shop.database("product").pool;
    let active: i64 =
        sqlx::query_scalar("SELECT count(*) FROM products WHERE active AND deleted_at IS NULL")
            .fetch_one(product_db)
            .await
            .unwrap();
    let (renamed_id, version, name): (uuid::Uuid, i64, String) = sqlx::query_as(
        "SELECT id, version, name FROM products WHERE active AND deleted_at IS NULL ORDER BY id LIMIT 1",
    )
    .fetch_one(product_db)
    .await
    .unwrap();
    let word = name.split_whitespace().next().unwrap().to_lowercase();
    let before = answers(&client, &shop, &word).await;
    assert!(active > 3, "the demo catalogue is seeded");
    assert_eq!(before[0]["total"], active, "{}", before[0]);
    assert!(before[1]["total"].as_i64().unwrap() >= 1, "{}", before[1]);

    // Killed, its index deleted, the topic emptied: the same answers after the restart.
    search.0.kill().unwrap();
    search.0.wait().unwrap();
    std::fs::remove_dir_all(&index_dir).unwrap();
    drop_all_events(&brokers, &topic).await;
    let mut search = shop.serve_only(&["search"], "search-after-loss");
    shop.wait_until_ready_on(&[SEARCH_OPS]).await;
    assert_eq!(answers(&client, &shop, &word).await, before);

    // Killed with its index; a product renamed meanwhile, and that event dropped too. Its
    // consumer group's position is now below the topic's oldest offset.
    search.0.kill().unwrap();
    search.0.wait().unwrap();
    let admin = demo_login(&client, &shop.url(8081), "admin").await;
    let ends_before = ends(&brokers, &topic);
    let renamed = client
        .patch(format!(
            "{}/v1/products/{renamed_id}",
            shop.url(PRODUCT_HTTP)
        ))
        .bearer_auth(&admin)
        .header("if-match", format!("\"{version}\""))
        .json(&serde_json::json!({"name": "Zephyr reading chair"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200, "{}", renamed.text().await.unwrap());
    commerce_testkit::eventually(
        Duration::from_secs(30),
        "the rename's event on the topic",
        || {
            let (brokers, topic, ends_before) =
                (brokers.clone(), topic.clone(), ends_before.clone());
            async move { (ends(&brokers, &topic) != ends_before).then_some(()) }
        },
    )
    .await;
    drop_all_events(&brokers, &topic).await;
    let _search = shop.serve_only(&["search"], "search-after-lag");
    shop.wait_until_ready_on(&[SEARCH_OPS]).await;
    let after = answers(&client, &shop, "zephyr").await;
    assert_eq!(after[1]["total"], 1, "{}", after[1]);
    assert_eq!(after[1]["items"][0]["id"], renamed_id.to_string());
    assert_eq!(after[0]["total"], active, "{}", after[0]);
    let log = std::fs::read_to_string(shop.scratch("search-after-lag.log")).unwrap();
    assert!(log.contains("position_lost"), "{log}");
}
