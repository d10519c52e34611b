//! Catalogue administration, optimistic locking, listing and the cache.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::TestProduct;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn only_admins_write_and_stale_versions_change_nothing() {
    let shop = TestProduct::start().await;
    let draft = json!({"sku": "LAMP-1", "name": "Lamp", "category": "home", "price": {"amount": "20.00", "currency": "USD"}, "stock": 5});
    let (status, _) = shop
        .send(shop.client.post(shop.url("/v1/products")).json(&draft))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous");
    let (status, _) = shop
        .send(
            shop.client
                .post(shop.url("/v1/products"))
                .bearer_auth(&shop.customer)
                .json(&draft),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "customer");
    let response = shop
        .client
        .post(shop.url("/v1/products"))
        .bearer_auth(&shop.admin)
        .json(&draft)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let lamp: serde_json::Value = response.json().await.unwrap();
    let id = lamp["id"].as_str().unwrap().to_owned();
    let (status, _) = shop
        .send(
            shop.client
                .post(shop.url("/v1/products"))
                .bearer_auth(&shop.admin)
                .json(&draft),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "duplicate SKU");
    let mut bad = draft.clone();
    bad["sku"] = json!("LAMP-2");
    bad["price"]["amount"] = json!("-1");
    let (status, body) = shop
        .send(
            shop.client
                .post(shop.url("/v1/products"))
                .bearer_auth(&shop.admin)
                .json(&bad),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("price.amount"))
    );

    let product_url = shop.url(&format!("/v1/products/{id}"));
    let (status, _) = shop
        .send(
            shop.client
                .patch(&product_url)
                .bearer_auth(&shop.admin)
                .json(&json!({"name": "Desk lamp"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::PRECONDITION_REQUIRED,
        "a write must say which version it changes"
    );
    let (status, updated) = shop
        .send(
            shop.client
                .patch(&product_url)
                .bearer_auth(&shop.admin)
                .header("if-match", "\"1\"")
                .json(&json!({"price": {"amount": "24.50", "currency": "USD"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (
            updated["version"].as_i64(),
            updated["price"]["amount"].as_str()
        ),
        (Some(2), Some("24.50"))
    );
    assert_eq!(
        updated["name"],
        "Product LAMP-1".replace("Product LAMP-1", "Lamp")
    );

    // Someone still holding version 1 loses, and nothing changes.
    let (status, body) = shop
        .send(
            shop.client
                .put(&product_url)
                .bearer_auth(&shop.admin)
                .json(&json!({"name": "Stale", "category": "home", "price": {"amount": "1.00", "currency": "USD"}, "version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("stale"));
    let (_, current) = shop.send(shop.client.get(&product_url)).await;
    assert_eq!(
        (current["name"].as_str(), current["version"].as_i64()),
        (Some("Lamp"), Some(2))
    );

    let (status, history) = shop
        .send(
            shop.client
                .get(format!("{product_url}/price-history"))
                .bearer_auth(&shop.admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let prices: Vec<_> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["price"]["amount"].as_str().unwrap())
        .collect();
    assert_eq!(prices, ["20.00", "24.50"]);
    let (status, _) = shop
        .send(
            shop.client
                .get(format!("{product_url}/price-history"))
                .bearer_auth(&shop.customer),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _) = shop
        .send(
            shop.client
                .delete(format!("{product_url}?version=1"))
                .bearer_auth(&shop.admin),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = shop
        .send(
            shop.client
                .delete(format!("{product_url}?version=2"))
                .bearer_auth(&shop.admin),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = shop.send(shop.client.get(&product_url)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let events: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM outbox_events WHERE aggregate_id = $1 ORDER BY seq",
    )
    .bind(&id)
    .fetch_all(&shop.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            "commerce.product.v1.ProductCreated",
            "commerce.product.v1.ProductUpdated",
            "commerce.product.v1.ProductDeleted"
        ]
    );
    shop.stop().await;
}

#[tokio::test]
async fn listing_filters_sorts_and_hides_inactive_products() {
    let shop = TestProduct::start().await;
    shop.create("A-1", "kitchen", "5.00", 3).await;
    shop.create("A-2", "kitchen", "15.00", 0).await;
    shop.create("B-1", "garden", "25.00", 7).await;
    let hidden = shop.create("B-2", "garden", "35.00", 7).await;
    let (status, _) = shop
        .send(
            shop.client
                .patch(shop.url(&format!("/v1/products/{}", hidden["id"].as_str().unwrap())))
                .bearer_auth(&shop.admin)
                .json(&json!({"active": false, "version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let skus = |body: &serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["sku"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = shop
        .send(shop.client.get(shop.url("/v1/products?sort=price_asc")))
        .await;
    assert_eq!(skus(&all), ["A-1", "A-2", "B-1"]);
    assert_eq!(all["total"], 3);
    let (_, kitchen) = shop
        .send(
            shop.client
                .get(shop.url("/v1/products?category=kitchen&sort=price_desc")),
        )
        .await;
    assert_eq!(skus(&kitchen), ["A-2", "A-1"]);
    let (_, ranged) = shop
        .send(
            shop.client
                .get(shop.url("/v1/products?minPrice=10&maxPrice=30&sort=price_asc")),
        )
        .await;
    assert_eq!(skus(&ranged), ["A-2", "B-1"]);
    let (_, in_stock) = shop
        .send(
            shop.client
                .get(shop.url("/v1/products?inStock=true&sort=price_asc")),
        )
        .await;
    assert_eq!(skus(&in_stock), ["A-1", "B-1"]);
    let (_, paged) = shop
        .send(
            shop.client
                .get(shop.url("/v1/products?sort=price_asc&page=2&pageSize=2")),
        )
        .await;
    assert_eq!(skus(&paged), ["B-1"]);

    let (status, _) = shop
        .send(
            shop.client
                .get(shop.url("/v1/products?includeInactive=true")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, everything) = shop
        .send(
            shop.client
                .get(shop.url("/v1/products?includeInactive=true&sort=price_asc"))
                .bearer_auth(&shop.admin),
        )
        .await;
    assert_eq!(skus(&everything), ["A-1", "A-2", "B-1", "B-2"]);
    let hidden_url = shop.url(&format!("/v1/products/{}", hidden["id"].as_str().unwrap()));
    let (status, _) = shop.send(shop.client.get(&hidden_url)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "inactive products are hidden from shoppers"
    );
    let (status, _) = shop
        .send(shop.client.get(&hidden_url).bearer_auth(&shop.admin))
        .await;
    assert_eq!(status, StatusCode::OK);

    for (query, field) in [
        ("minPrice=abc", "minPrice"),
        ("sort=cheapest", "sort"),
        ("pageSize=0", "pageSize"),
    ] {
        let (status, body) = shop
            .send(shop.client.get(shop.url(&format!("/v1/products?{query}"))))
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{query}"
        );
    }
    let (status, _) = shop
        .send(
            shop.client
                .get(shop.url("/v1/products"))
                .bearer_auth("forged.token.here"),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a bad token is refused, not ignored"
    );
    shop.stop().await;
}

/// Readers never see a version older than the last write that had committed when their
/// read began, while a writer keeps changing the product and other readers keep filling.
#[tokio::test]
async fn the_cache_never_serves_a_value_older_than_the_last_committed_write() {
    let shop = Arc::new(TestProduct::start().await);
    let product = shop.create("HOT-1", "home", "1.00", 10).await;
    let url = shop.url(&format!("/v1/products/{}", product["id"].as_str().unwrap()));
    let committed = Arc::new(AtomicI64::new(1));
    let deadline = Instant::now() + Duration::from_secs(4);

    let writer = {
        let (shop, url, committed) = (shop.clone(), url.clone(), committed.clone());
        tokio::spawn(async move {
            let mut version = 1;
            let mut writes = 0;
            while Instant::now() < deadline {
                let (status, body) = shop
                    .send(shop.client.patch(&url).bearer_auth(&shop.admin).json(&json!({
                        "price": {"amount": format!("{}.00", version + 1), "currency": "USD"}, "version": version
                    })))
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                version = body["version"].as_i64().unwrap();
                committed.store(version, Ordering::SeqCst);
                writes += 1;
            }
            writes
        })
    };
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (shop, url, committed) = (shop.clone(), url.clone(), committed.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while Instant::now() < deadline {
                let floor = committed.load(Ordering::SeqCst);
                let (status, body) = shop.send(shop.client.get(&url)).await;
                assert_eq!(status, StatusCode::OK);
                let seen = body["version"].as_i64().unwrap();
                assert!(
                    seen >= floor,
                    "read version {seen} after version {floor} had committed"
                );
                reads += 1;
            }
            reads
        }));
    }
    let writes = writer.await.unwrap();
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    assert!(
        writes > 20 && reads > 100,
        "too little contention to mean anything: {writes} writes, {reads} reads"
    );

    // Quiet now: the cache serves the final version, and it is really cached.
    let final_version = committed.load(Ordering::SeqCst);
    let (_, body) = shop.send(shop.client.get(&url)).await;
    assert_eq!(body["version"].as_i64(), Some(final_version));
    sqlx::query("UPDATE products SET name = 'changed behind the cache' WHERE sku = 'HOT-1'")
        .execute(&shop.pool)
        .await
        .unwrap();
    let (_, cached) = shop.send(shop.client.get(&url)).await;
    assert_ne!(
        cached["name"], "changed behind the cache",
        "reads come from the cache once filled"
    );
    Arc::try_unwrap(shop)
        .ok()
        .expect("no other owners")
        .stop()
        .await;
}
