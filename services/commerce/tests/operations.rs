//! Operational endpoints stay inside: `/healthz`, `/readyz` and `/metrics` answer on each
//! service's `ops_addr` (config/commerce.toml) and nowhere an outsider can reach, neither
//! on the gateway's public port nor on any service's API port.

use reqwest::Client;

mod support;
use support::LocalShop;

/// The shipped API ports of the gateway and every service.
const API_PORTS: &[u16] = &[8080, 8081, 8082, 8083, 8084, 8085, 8086, 8087, 8088, 8089];

#[tokio::test]
async fn probes_and_metrics_are_served_only_on_the_operational_ports() {
    let shop = LocalShop::new("operations").await;
    shop.run(&["migrate", "--target", "all"]);
    let _server = shop.serve();
    shop.wait_until_ready().await;
    let client = Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move { client.get(&url).send().await.unwrap() }
    };

    for port in API_PORTS {
        let api = shop.url(*port);
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(
                get(format!("{api}{path}")).await.status(),
                404,
                "{api}{path}"
            );
        }
    }
    // The public catalogue still answers through the gateway.
    assert_eq!(
        get(format!("{}/v1/products", shop.url(8080)))
            .await
            .status(),
        200
    );

    // Each operational port (API port + 100) answers for its own service.
    for port in API_PORTS {
        let ops = shop.url(port + 100);
        assert_eq!(get(format!("{ops}/healthz")).await.status(), 200, "{ops}");
        let ready: serde_json::Value = get(format!("{ops}/readyz")).await.json().await.unwrap();
        assert_eq!(ready["ready"], true, "{ops}: {ready}");
        let metrics = get(format!("{ops}/metrics")).await.text().await.unwrap();
        assert!(metrics.contains("# TYPE "), "{ops}/metrics: {metrics}");
    }
    // The gateway's metrics counted the catalogue request it routed.
    let gateway_metrics = get(format!("{}/metrics", shop.url(8180)))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        gateway_metrics.lines().any(|line| line
            .starts_with("http_requests_total{service=\"gateway\"")
            && line.contains("status=\"200\"")),
        "{gateway_metrics}"
    );
}
