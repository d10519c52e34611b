//! The product subgraph: `Product` resolved by key for other subgraphs (`_entities`), the
//! federation SDL, and the same visibility rule as the REST API.

mod common;

use common::TestProduct;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn graphql(shop: &TestProduct, token: Option<&str>, query: &str, variables: Value) -> Value {
    let mut request = shop
        .client
        .post(shop.url("/graphql"))
        .json(&json!({"query": query, "variables": variables}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

const ENTITIES: &str = r#"query ($representations: [_Any!]!) {
  _entities(representations: $representations) {
    ... on Product { id sku name price { amount currency } available active }
  }
}"#;

#[tokio::test]
async fn products_resolve_by_key_for_other_subgraphs() {
    let shop = TestProduct::start().await;
    let kettle = shop.create("KET-1", "kitchen", "19.9", 4).await;
    let hidden = shop.create("KET-2", "kitchen", "5", 1).await;
    let (status, _) = shop
        .send(
            shop.client
                .patch(shop.url(&format!("/v1/products/{}", hidden["id"].as_str().unwrap())))
                .bearer_auth(&shop.admin)
                .json(&json!({"active": false, "version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let missing = "0190b3c4-0000-7000-8000-000000000001";
    let representations = json!({"representations": [
        {"__typename": "Product", "id": kettle["id"]},
        {"__typename": "Product", "id": hidden["id"]},
        {"__typename": "Product", "id": missing},
    ]});

    let anonymous = graphql(&shop, None, ENTITIES, representations.clone()).await;
    assert_eq!(anonymous["errors"], Value::Null, "{anonymous}");
    let entities = &anonymous["data"]["_entities"];
    assert_eq!(entities[0]["sku"], "KET-1");
    assert_eq!(entities[0]["name"], kettle["name"]);
    assert_eq!(
        entities[0]["price"],
        json!({"amount": "19.90", "currency": "USD"})
    );
    assert_eq!(entities[0]["available"], 4);
    // Inactive for shoppers, unknown for everyone: null in place, the order kept.
    assert_eq!(entities[1], Value::Null);
    assert_eq!(entities[2], Value::Null);

    let staff = graphql(&shop, Some(&shop.admin), ENTITIES, representations).await;
    assert_eq!(staff["data"]["_entities"][1]["sku"], "KET-2");
    assert_eq!(staff["data"]["_entities"][1]["active"], false);

    let page = graphql(
        &shop,
        None,
        "{ products(category: \"kitchen\") { total items { sku } } }",
        json!({}),
    )
    .await;
    assert_eq!(page["data"]["products"]["total"], 1, "{page}");
    let one = graphql(
        &shop,
        None,
        "query ($id: ID!) { product(id: $id) { sku } }",
        json!({"id": kettle["id"]}),
    )
    .await;
    assert_eq!(one["data"]["product"]["sku"], "KET-1");
    let bad = graphql(&shop, None, "{ product(id: \"nope\") { sku } }", json!({})).await;
    assert_eq!(bad["errors"][0]["message"], "id must be a UUID", "{bad}");

    // One request cannot ask for an unbounded amount of work.
    let aliases: String = (0..1001)
        .map(|i| format!("p{i}: products {{ total }} "))
        .collect();
    let costly = graphql(&shop, None, &format!("{{ {aliases} }}"), json!({})).await;
    assert!(
        costly["errors"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("complex")),
        "{costly}"
    );

    // NUL characters never reach the database, as on the REST API.
    let nul = shop
        .client
        .post(shop.url("/graphql"))
        .header("content-type", "application/json")
        .body(r#"{"query":"query ($c: String) { products(category: $c) { total } }","variables":{"c":"a\u0000"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(nul.status(), StatusCode::BAD_REQUEST);

    // A forged token is refused, as on the REST API.
    let forged = shop
        .client
        .post(shop.url("/graphql"))
        .bearer_auth("not-a-token")
        .json(&json!({"query": "{ products { total } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    shop.stop().await;
}

#[test]
fn the_sdl_declares_product_as_an_entity() {
    let sdl = commerce_product::graphql::sdl();
    assert!(sdl.contains("type Product @key(fields: \"id\")"), "{sdl}");
    assert!(
        sdl.contains("url: \"https://specs.apollo.dev/federation/v2"),
        "{sdl}"
    );
}
