//! The cache protocol against standalone Redis and a Redis Cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use commerce_product::cache::{Lookup, ProductCache, Written};
use commerce_product::domain::{Money, Product};
use commerce_redis::{RedisClient, RedisConfig};
use commerce_testkit::{required_env, unique};
use uuid::Uuid;

fn product(id: Uuid, revision: i64, name: &str) -> Product {
    Product {
        id,
        sku: "SKU-1".into(),
        name: name.into(),
        description: String::new(),
        category: "home".into(),
        price: Money::new(rust_decimal::Decimal::ONE, "USD").unwrap(),
        stock: 5,
        reserved: 0,
        attributes: BTreeMap::new(),
        images: Vec::new(),
        active: true,
        version: revision,
        revision,
        units_sold: 0,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    }
}

fn name_of(lookup: Lookup) -> Option<(String, i64)> {
    match lookup {
        Lookup::Hit(product) => Some((product.name.clone(), product.revision)),
        _ => None,
    }
}

async fn protocol(redis: RedisClient) {
    let cache = ProductCache::new(redis, &unique("cache"), Duration::from_secs(60));
    let id = Uuid::new_v4();
    assert!(matches!(cache.read(id).await.unwrap(), Lookup::Miss));
    assert!(cache.try_fill_lock(id).await.unwrap());
    assert!(cache.fill(&product(id, 3, "three")).await.unwrap());
    assert_eq!(
        name_of(cache.read(id).await.unwrap()),
        Some(("three".into(), 3))
    );
    assert!(
        !cache.fill(&product(id, 2, "two")).await.unwrap(),
        "an older revision never replaces a newer one"
    );

    // A writer in flight: readers bypass, fills are refused, the old entry is gone.
    cache.begin_write(id).await.unwrap();
    assert!(matches!(cache.read(id).await.unwrap(), Lookup::Bypass));
    assert!(!cache.fill(&product(id, 3, "three again")).await.unwrap());
    // Two writers overlap; the first to finish does not reopen the cache for fills.
    cache.begin_write(id).await.unwrap();
    cache
        .end_write(id, Written::Product(&product(id, 4, "four")))
        .await
        .unwrap();
    assert!(matches!(cache.read(id).await.unwrap(), Lookup::Bypass));
    cache
        .end_write(id, Written::Product(&product(id, 5, "five")))
        .await
        .unwrap();
    assert_eq!(
        name_of(cache.read(id).await.unwrap()),
        Some(("five".into(), 5))
    );

    cache.begin_write(id).await.unwrap();
    cache
        .end_write(id, Written::Deleted { revision: 6 })
        .await
        .unwrap();
    assert!(matches!(cache.read(id).await.unwrap(), Lookup::Gone));
    assert!(
        !cache.fill(&product(id, 5, "zombie")).await.unwrap(),
        "a deleted product does not come back"
    );

    // A rolled-back write leaves the entry empty, not stale.
    let other = Uuid::new_v4();
    cache.fill(&product(other, 1, "one")).await.unwrap();
    cache.begin_write(other).await.unwrap();
    cache.end_write(other, Written::Nothing).await.unwrap();
    assert!(matches!(cache.read(other).await.unwrap(), Lookup::Miss));

    // Stampede: twenty readers miss a cold key at once, one of them loads it.
    let cold = Uuid::new_v4();
    let attempts = futures::future::join_all((0..20).map(|_| cache.try_fill_lock(cold))).await;
    assert_eq!(
        attempts
            .into_iter()
            .filter(|taken| *taken.as_ref().unwrap())
            .count(),
        1
    );
}

#[tokio::test]
async fn protocol_on_standalone_redis() {
    protocol(
        RedisClient::connect(&RedisConfig::standalone(required_env(
            "COMMERCE_TEST_REDIS_URL",
        )))
        .await
        .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn protocol_on_a_redis_cluster() {
    let urls = required_env("COMMERCE_TEST_REDIS_CLUSTER");
    protocol(
        RedisClient::connect(&RedisConfig::cluster(urls.split(',')))
            .await
            .unwrap(),
    )
    .await;
}
