//! One GraphQL endpoint over the subgraphs: the shop runs as `make run` runs it — every
//! service, the REST gateway, and Hive Gateway over the supergraph composed from
//! `graphql/subgraphs/` — and one federated query through the REST gateway returns an order
//! with its products (product subgraph) and its customer (auth subgraph), with the
//! caller's identity forwarded to each; a subscription follows the order's status as it
//! is paid.

use std::time::Duration;

use commerce_testkit::eventually;
use futures::StreamExt;
use serde_json::{Value, json};

mod support;
use support::{LocalShop, demo_login};

async fn call(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    body
}

#[tokio::test]
async fn one_query_returns_an_order_with_its_products_and_customer() {
    let shop = LocalShop::new("fed").await;
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let _services = shop.serve();
    shop.wait_until_ready().await;
    let _federation = shop.federation_gateway();
    let gateway = shop.url(8080);
    let client = reqwest::Client::new();

    // The seeded customer buys two of one product and one of another, over REST.
    let token = demo_login(&client, &gateway, "customer").await;
    let user = call(
        client
            .get(format!("{gateway}/v1/users/me"))
            .bearer_auth(&token),
    )
    .await;
    let listing = call(client.get(format!(
        "{gateway}/v1/products?inStock=true&pageSize=2&sort=name"
    )))
    .await;
    let products: Vec<Value> = listing["items"].as_array().unwrap().clone();
    for (product, quantity) in products.iter().zip([2, 1]) {
        call(
            client
                .post(format!("{gateway}/v1/cart/items"))
                .bearer_auth(&token)
                .json(&json!({"productId": product["id"], "quantity": quantity})),
        )
        .await;
    }
    let address = call(
        client
            .post(format!("{gateway}/v1/users/me/addresses"))
            .bearer_auth(&token)
            .json(
                &json!({"recipient": "Casey", "line1": "1 Main St", "city": "Springfield",
                          "postalCode": "12345", "country": "US"}),
            ),
    )
    .await;
    let session = call(
        client
            .post(format!("{gateway}/v1/checkout"))
            .bearer_auth(&token)
            .json(&json!({"addressId": address["id"], "courier": "standard",
                          "paymentGateway": "offline"})),
    )
    .await;
    let placed = call(
        client
            .post(format!("{gateway}/v1/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "federation-test-order")
            .json(&json!({"checkoutSessionId": session["id"]})),
    )
    .await;
    let order = &placed["order"];

    let query = r#"query ($id: ID!) {
      order(id: $id) {
        id status
        totals { subtotal shipping total currency }
        items { quantity unitPrice product { id sku name price { amount currency } } }
        customer { id email firstName lastName role }
      }
    }"#;
    let graphql = |token: Option<&str>| {
        let mut request = client
            .post(format!("{gateway}/graphql"))
            .json(&json!({"query": query, "variables": {"id": order["id"]}}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    };
    // The federation gateway may take a moment to load the supergraph.
    let answer = eventually(Duration::from_secs(60), "the federated query", || {
        let request = graphql(Some(&token));
        async move {
            let response = request.send().await.ok()?;
            (response.status() == 200).then_some(())?;
            response.json::<Value>().await.ok()
        }
    })
    .await;
    assert_eq!(answer["errors"], Value::Null, "{answer}");
    let federated = &answer["data"]["order"];
    assert_eq!(federated["id"], order["id"]);
    assert_eq!(federated["status"], "PENDING_PAYMENT");
    assert_eq!(federated["totals"]["subtotal"], order["totals"]["subtotal"]);
    assert_eq!(federated["totals"]["shipping"], order["totals"]["shipping"]);
    assert_eq!(federated["totals"]["total"], order["totals"]["total"]);
    assert_eq!(federated["totals"]["currency"], order["currency"]);
    let items = federated["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for (item, ordered) in items.iter().zip(order["items"].as_array().unwrap()) {
        assert_eq!(item["quantity"], ordered["quantity"]);
        assert_eq!(item["unitPrice"], ordered["unitPrice"]);
        let product = products
            .iter()
            .find(|product| product["id"] == item["product"]["id"])
            .expect("an ordered product");
        // These fields come from the product subgraph.
        assert_eq!(item["product"]["sku"], product["sku"]);
        assert_eq!(item["product"]["name"], product["name"]);
        assert_eq!(
            item["product"]["price"]["amount"],
            product["price"]["amount"]
        );
        assert_eq!(
            item["product"]["price"]["currency"],
            product["price"]["currency"]
        );
    }
    // And these from the auth subgraph, which saw the customer's own token.
    let customer = &federated["customer"];
    assert_eq!(customer["id"], user["id"]);
    assert_eq!(customer["email"], "customer@commerce.local");
    assert_eq!(customer["firstName"], user["firstName"]);
    assert_eq!(customer["lastName"], user["lastName"]);
    assert_eq!(customer["role"], "customer");

    // A subscription through the same endpoint follows the order as it is paid: SSE from
    // the client through both gateways to the order subgraph, fed by committed changes.
    let subscription = client
        .post(format!("{gateway}/graphql"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .json(&json!({
            "query": "subscription ($id: ID!) { orderStatus(id: $id) { orderId status \
                      order { status items { product { name } } } } }",
            "variables": {"id": order["id"]},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(subscription.status(), 200);
    let mut events = subscription.bytes_stream();
    let mut buffer = String::new();
    let mut statuses: Vec<String> = Vec::new();
    let mut paid = false;
    tokio::time::timeout(Duration::from_secs(60), async {
        while statuses.last().map(String::as_str) != Some("CONFIRMED") {
            let chunk = events.next().await.expect("the stream stays open").unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let Some(data) = event.lines().find_map(|line| line.strip_prefix("data: ")) else {
                    continue;
                };
                let result: Value = serde_json::from_str(data).unwrap();
                let change = &result["data"]["orderStatus"];
                assert_eq!(change["orderId"], order["id"], "{result}");
                // Each event is a federated result: the items' products from their subgraph.
                let items = change["order"]["items"].as_array().unwrap();
                assert_eq!(items.len(), 2, "{result}");
                for item in items {
                    let name = &item["product"]["name"];
                    assert!(
                        products.iter().any(|product| product["name"] == *name),
                        "{result}"
                    );
                }
                statuses.push(change["status"].as_str().unwrap().into());
            }
            // Pay once the subscription has said where the order stands.
            if !paid && !statuses.is_empty() {
                paid = true;
                let payment = order["paymentId"].as_str().unwrap();
                call(
                    client
                        .post(format!("{gateway}/v1/payments/{payment}/offline/pay"))
                        .bearer_auth(&token),
                )
                .await;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no CONFIRMED within 60 s; saw {statuses:?}"));
    assert_eq!(statuses, ["PENDING_PAYMENT", "PAID", "CONFIRMED"]);

    // Without a token the order subgraph shows nothing; a forged token stops at the edge.
    let anonymous: Value = graphql(None).send().await.unwrap().json().await.unwrap();
    assert_eq!(anonymous["data"]["order"], Value::Null, "{anonymous}");
    assert!(anonymous["errors"][0]["message"].is_string(), "{anonymous}");
    let forged = graphql(Some("forged")).send().await.unwrap();
    assert_eq!(forged.status(), 401);
}
