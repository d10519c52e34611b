//! Shipping costs over gRPC from the seeded rate tables.

use std::sync::Arc;

use commerce_proto::fulfillment::v1 as pb;
use commerce_runtime::Config;
use commerce_runtime::service;
use commerce_testkit::{TestIssuer, fresh_database, required_env};
use tokio_util::sync::CancellationToken;

fn item(quantity: i64, weight_grams: i64) -> pb::ParcelItem {
    pb::ParcelItem {
        product_id: uuid::Uuid::new_v4().to_string(),
        quantity,
        weight_grams,
    }
}

#[tokio::test]
async fn shipping_costs_follow_courier_zone_and_weight() {
    let database = fresh_database("fulfillment").await;
    let issuer = TestIssuer::start().await;
    let toml = format!(
        r#"
        [kafka]
        brokers = "{kafka}"
        [redis]
        urls = ["{redis}"]
        [services.fulfillment]
        http_addr = "127.0.0.1:0"
        grpc_addr = "127.0.0.1:0"
        database = {{ url = "{db}" }}
        jwks_url = "{jwks}"
        "#,
        kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
        redis = required_env("COMMERCE_TEST_REDIS_URL"),
        db = database.url,
        jwks = issuer.jwks_url,
    );
    let shutdown = CancellationToken::new();
    let running = service::start(
        Arc::new(Config::from_toml_str(&toml).unwrap()),
        &[&commerce_fulfillment::DEFINITION],
        shutdown.clone(),
    )
    .await
    .unwrap();
    let mut grpc = pb::fulfillment_service_client::FulfillmentServiceClient::connect(format!(
        "http://{}",
        running.grpc_addrs[0].1
    ))
    .await
    .unwrap();
    let token = issuer.service_token("order", "fulfillment");
    let ask = |courier: &str, country: &str, items: Vec<pb::ParcelItem>| {
        let mut request = tonic::Request::new(pb::GetShippingCostRequest {
            courier: courier.to_owned(),
            destination_country: country.to_owned(),
            items,
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };

    let light = grpc
        .get_shipping_cost(ask("standard", "US", vec![item(2, 300), item(1, 0)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        light.weight_grams, 1100,
        "the unit without a weight counts 500 g"
    );
    assert_eq!(
        (light.cost.unwrap().amount.as_str(), light.zone.as_str()),
        ("8.90", "US")
    );
    let abroad = grpc
        .get_shipping_cost(ask("Standard", "DE", vec![item(1, 800)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            abroad.cost.unwrap().amount.as_str(),
            abroad.zone.as_str(),
            abroad.estimated_days
        ),
        ("12.00", "*", 10)
    );
    let express = grpc
        .get_shipping_cost(ask("express", "US", vec![item(1, 1000)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(express.cost.unwrap().amount, "14.90");

    let too_heavy = grpc
        .get_shipping_cost(ask("pickup", "US", vec![item(3, 5000)]))
        .await
        .unwrap_err();
    assert_eq!(too_heavy.code(), tonic::Code::FailedPrecondition);
    let nowhere = grpc
        .get_shipping_cost(ask("pickup", "FR", vec![item(1, 100)]))
        .await
        .unwrap_err();
    assert_eq!(
        nowhere.code(),
        tonic::Code::FailedPrecondition,
        "pick-up points are US only"
    );
    let unknown = grpc
        .get_shipping_cost(ask("pigeon", "US", vec![item(1, 100)]))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let bad_country = grpc
        .get_shipping_cost(ask("standard", "USA", vec![item(1, 100)]))
        .await
        .unwrap_err();
    assert_eq!(bad_country.code(), tonic::Code::InvalidArgument);
    assert!(
        bad_country.message().contains("destination_country"),
        "{}",
        bad_country.message()
    );
    let bad_item = grpc
        .get_shipping_cost(ask("standard", "US", vec![item(1, 100), item(0, 100)]))
        .await
        .unwrap_err();
    assert!(
        bad_item.message().contains("items[1].quantity"),
        "{}",
        bad_item.message()
    );

    sqlx::query("UPDATE couriers SET active = false WHERE code = 'express'")
        .execute(&database.pool)
        .await
        .unwrap();
    let paused = grpc
        .get_shipping_cost(ask("express", "US", vec![item(1, 100)]))
        .await
        .unwrap_err();
    assert_eq!(paused.code(), tonic::Code::FailedPrecondition);

    let anonymous = grpc
        .get_shipping_cost(tonic::Request::new(pb::GetShippingCostRequest {
            courier: "standard".into(),
            destination_country: "US".into(),
            items: vec![item(1, 1)],
        }))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    let couriers: serde_json::Value = reqwest::get(format!(
        "http://{}/v1/shipping/couriers",
        running.http_addrs[0].1
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let codes: Vec<_> = couriers["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        codes,
        ["pickup", "standard"],
        "the paused courier is not offered"
    );

    // The checkout page's quotes price the parcel exactly as the order will be priced.
    let http = running.http_addrs[0].1;
    let quotes: serde_json::Value = reqwest::get(format!(
        "http://{http}/v1/shipping/quotes?country=us&units=2"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(quotes["country"], "US");
    let offered: Vec<_> = quotes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|quote| quote["courier"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(offered, ["pickup", "standard"], "{quotes}");
    let standard = grpc
        .get_shipping_cost(ask("standard", "US", vec![item(2, 0)]))
        .await
        .unwrap()
        .into_inner();
    let quoted = &quotes["items"][1];
    assert_eq!(quoted["cost"], standard.cost.unwrap().amount.as_str());
    assert_eq!(quoted["estimatedDays"], standard.estimated_days);
    assert_eq!(quoted["weightGrams"], 1000);
    // Pick-up points are US only: abroad only standard is offered.
    let abroad: serde_json::Value = reqwest::get(format!(
        "http://{http}/v1/shipping/quotes?country=DE&units=1"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(abroad["items"].as_array().unwrap().len(), 1, "{abroad}");
    assert_eq!(abroad["items"][0]["cost"], "12.00");
    for (query, field) in [
        ("country=USA&units=1", "country"),
        ("country=US&units=0", "units"),
        ("country=US", "query"),
    ] {
        let refused = reqwest::get(format!("http://{http}/v1/shipping/quotes?{query}"))
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{query}");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    shutdown.cancel();
    running.wait().await.unwrap();
}
