//! Catalogue changes reach the index through the outbox, the broker and the inbox.

use std::sync::Arc;
use std::time::Duration;

use commerce_proto::product::v1 as pb;
use commerce_runtime::Config;
use commerce_runtime::service;
use commerce_testkit::{TestIssuer, eventually, fresh_database, required_env, unique};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A gRPC request carrying a service token.
fn as_service<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

fn skus(results: &Value) -> Vec<String> {
    results["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["sku"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn catalogue_changes_become_searchable() {
    let product_db = fresh_database("pipeproduct").await;
    let search_db = fresh_database("pipesearch").await;
    let index_dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::start().await;
    let prefix = format!("{}.", unique("pipeline"));
    let toml = format!(
        r#"
        shutdown_grace = "5s"
        [kafka]
        brokers = "{kafka}"
        topic_prefix = "{prefix}"
        [redis]
        urls = ["{redis}"]
        [services.product]
        http_addr = "127.0.0.1:0"
        grpc_addr = "127.0.0.1:0"
        database = {{ url = "{product_db}" }}
        redis_prefix = "{product_redis}"
        auth = {{ jwks_url = "{jwks}" }}
        [services.search]
        http_addr = "127.0.0.1:0"
        grpc_addr = "127.0.0.1:0"
        database = {{ url = "{search_db}" }}
        index_dir = "{index}"
        redis_prefix = "{search_redis}"
        jwks_url = "{jwks}"
        "#,
        kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
        redis = required_env("COMMERCE_TEST_REDIS_URL"),
        product_db = product_db.url,
        search_db = search_db.url,
        product_redis = unique("product"),
        search_redis = unique("search"),
        jwks = issuer.jwks_url,
        index = index_dir.path().display(),
    );
    let config = Arc::new(Config::from_toml_str(&toml).unwrap());
    let shutdown = CancellationToken::new();
    let running = service::start(
        config.clone(),
        &[&commerce_product::DEFINITION, &commerce_search::DEFINITION],
        shutdown.clone(),
    )
    .await
    .unwrap();
    let product = format!("http://{}", running.http_addrs[0].1);
    let search = format!("http://{}", running.http_addrs[1].1);
    let client = reqwest::Client::new();
    let admin = issuer.user_token(uuid::Uuid::new_v4(), "admin");

    let mut ids = Vec::new();
    for (sku, name, category, price, stock) in [
        ("LAMP-D", "Desk lamp", "home", "64.90", 4),
        ("LAMP-F", "Floor lamp", "home", "129.00", 0),
        ("MUG-S", "Stoneware mug", "kitchen", "14.50", 30),
    ] {
        let created: Value = client
            .post(format!("{product}/v1/products"))
            .bearer_auth(&admin)
            .json(&json!({"sku": sku, "name": name, "category": category, "price": {"amount": price, "currency": "USD"}, "stock": stock}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }

    eventually(
        Duration::from_secs(30),
        "the three new products in the index",
        || {
            let (client, url) = (client.clone(), format!("{search}/v1/search"));
            async move { Some(get(&client, url).await).filter(|results| results["total"] == 3) }
        },
    )
    .await;
    // The mug sells (reserved, then paid): it leads the best sellers.
    let product_grpc = running
        .grpc_addrs
        .iter()
        .find(|(service, _)| *service == "product")
        .unwrap()
        .1;
    let mut grpc =
        pb::product_service_client::ProductServiceClient::connect(format!("http://{product_grpc}"))
            .await
            .unwrap();
    let token = issuer.service_token("order", "product");
    let order_id = uuid::Uuid::now_v7().to_string();
    grpc.reserve_products(as_service(
        &token,
        pb::ReserveProductsRequest {
            order_id: order_id.clone(),
            items: vec![pb::ReservationItem {
                product_id: ids[2].clone(),
                quantity: 3,
            }],
        },
    ))
    .await
    .unwrap();
    grpc.deduct_stock(as_service(&token, pb::DeductStockRequest { order_id }))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the mug first among the best sellers",
        || {
            let (client, url) = (
                client.clone(),
                format!("{search}/v1/search?sort=best_selling"),
            );
            async move {
                let results = get(&client, url).await;
                (skus(&results).first().map(String::as_str) == Some("MUG-S")).then_some(())
            }
        },
    )
    .await;

    let found = get(&client, format!("{search}/v1/search?q=lmap&sort=price_asc")).await;
    assert_eq!(
        skus(&found),
        ["LAMP-D", "LAMP-F"],
        "a typo still finds both lamps"
    );
    let in_stock = get(&client, format!("{search}/v1/search?q=lamp&inStock=true")).await;
    assert_eq!(skus(&in_stock), ["LAMP-D"]);
    let everything = get(&client, format!("{search}/v1/search")).await;
    let facets: Vec<_> = everything["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["value"].as_str().unwrap().to_owned(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(facets, [("home".to_owned(), 2), ("kitchen".to_owned(), 1)]);

    // A rename is searchable under the new name only; a deletion disappears.
    let renamed: Value = client
        .patch(format!("{product}/v1/products/{}", ids[2]))
        .bearer_auth(&admin)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "Porcelain cup"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["version"], 2);
    let status = client
        .delete(format!("{product}/v1/products/{}?version=1", ids[1]))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    eventually(
        Duration::from_secs(30),
        "the rename and the deletion in the index",
        || {
            let (client, search) = (client.clone(), search.clone());
            async move {
                let cup = get(&client, format!("{search}/v1/search?q=porcelain")).await;
                let mug = get(&client, format!("{search}/v1/search?q=stoneware")).await;
                let lamps = get(&client, format!("{search}/v1/search?q=lamp")).await;
                (cup["total"] == 1 && mug["total"] == 0 && lamps["total"] == 1).then_some(())
            }
        },
    )
    .await;

    // Completion, "did you mean", and popular queries.
    let completed = get(&client, format!("{search}/v1/search/autocomplete?q=por")).await;
    assert_eq!(completed["items"], json!(["Porcelain cup"]));
    let suggested = get(
        &client,
        format!("{search}/v1/search/suggestions?q=porcelian"),
    )
    .await;
    assert_eq!(suggested["items"][0]["text"], "porcelain");
    // Popular queries: what several different clients searched and found. The clients
    // are the addresses the gateway names; the polling above was one client.
    let search_as = |address: &'static str, query: &'static str| {
        client
            .get(format!("{search}/v1/search?q={query}"))
            .header("x-forwarded-for", address)
            .send()
    };
    for (address, query) in [
        // Two spellings of one query, by three clients (one of them twice).
        ("198.51.100.1", "desk lamp"),
        ("198.51.100.2", "Desk  Lamp"),
        ("198.51.100.3", "desk lamp"),
        ("198.51.100.3", "desk lamp"),
        // Found products, but searched by two clients only.
        ("198.51.100.1", "cup"),
        ("198.51.100.2", "cup"),
        // Three clients, but nothing found: never published.
        ("198.51.100.1", "buy cheap followers"),
        ("198.51.100.2", "buy cheap followers"),
        ("198.51.100.3", "buy cheap followers"),
    ] {
        assert!(
            search_as(address, query)
                .await
                .unwrap()
                .status()
                .is_success()
        );
    }
    // One client repeating itself is still one client.
    for _ in 0..5 {
        search_as("203.0.113.66", "lamp").await.unwrap();
    }
    let popular = get(&client, format!("{search}/v1/search/popular?limit=10")).await;
    let items = popular["items"].as_array().unwrap();
    assert!(
        items.contains(&json!({"query": "desk lamp", "count": 3})),
        "{popular}"
    );
    let published: Vec<&str> = items
        .iter()
        .map(|item| item["query"].as_str().unwrap())
        .collect();
    for unpublished in ["cup", "buy cheap followers", "porcelain"] {
        assert!(!published.contains(&unpublished), "{popular}");
    }
    // "lamp": the polling client and 203.0.113.66, two clients.
    assert!(!published.contains(&"lamp"), "{popular}");
    let counts: Vec<u64> = items
        .iter()
        .map(|item| item["count"].as_u64().unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|pair| pair[0] >= pair[1]),
        "most searched first: {popular}"
    );
    // Staff see what was searched, and apart what found nothing; shoppers do not.
    let analytics = format!("{search}/v1/admin/search/analytics?days=1&limit=100");
    let anonymous = client.get(&analytics).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let customer = issuer.user_token(uuid::Uuid::new_v4(), "customer");
    let refused = client
        .get(&analytics)
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let support = issuer.user_token(uuid::Uuid::new_v4(), "support");
    let report: Value = client
        .get(&analytics)
        .bearer_auth(&support)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["days"], 1);
    assert!(
        report["searches"]
            .as_array()
            .unwrap()
            .contains(&json!({"query": "desk lamp", "count": 4})),
        "two spellings of one query, four searches: {report}"
    );
    assert!(
        report["noResults"]
            .as_array()
            .unwrap()
            .contains(&json!({"query": "buy cheap followers", "count": 3})),
        "{report}"
    );
    let missing: Vec<&str> = report["noResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["query"].as_str().unwrap())
        .collect();
    assert!(
        !missing.contains(&"desk lamp") && !missing.contains(&"cup"),
        "{report}"
    );
    let too_long = client
        .get(format!("{search}/v1/admin/search/analytics?days=40"))
        .bearer_auth(&support)
        .send()
        .await
        .unwrap();
    assert_eq!(too_long.status(), 400);
    let body: Value = too_long.json().await.unwrap();
    assert_eq!(body["error"]["field"], "days");

    let bad = client
        .get(format!("{search}/v1/search?pageSize=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["field"], "pageSize");

    // Every event went through the inbox once.
    let processed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM inbox_events WHERE status = 'processed'")
            .fetch_one(&search_db.pool)
            .await
            .unwrap();
    assert_eq!(
        processed, 7,
        "three creations, a reservation and a sale, one update, one deletion"
    );

    shutdown.cancel();
    running.wait().await.unwrap();
}
