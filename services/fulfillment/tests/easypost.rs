//! The EasyPost client against a local server that answers as EasyPost's API reference
//! documents: Basic auth with the API key, `POST /v2/shipments` with rates,
//! `POST /v2/shipments/{id}/buy`, `GET /v2/shipments/{id}`, errors as
//! `{"error": {"code", "message"}}`, and webhook events signed with `X-Hmac-Signature`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use commerce_fulfillment::carrier::{
    CarrierError, EasyPostCarrier, EasyPostSettings, ShipmentRequest, ShippingProvider,
    TrackingStatus, easypost_signature,
};
use commerce_fulfillment::domain::Address;
use serde_json::{Value, json};

const API_KEY: &str = "EZTK_test_key";

#[derive(Default)]
struct Fake {
    shipments: BTreeMap<String, Value>,
    buys: usize,
    requests: Vec<Value>,
}

type Shared = Arc<Mutex<Fake>>;

fn authorized(headers: &HeaderMap) -> bool {
    // Basic base64("EZTK_test_key:")
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some("Basic RVpUS190ZXN0X2tleTo=")
}

fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({"error": {"code": code, "message": message, "errors": []}})),
    )
}

async fn create(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "APIKEY.INACTIVE", "no such key");
    }
    let shipment = &body["shipment"];
    if shipment["to_address"]["zip"] == "00000" {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ADDRESS.VERIFY.FAILURE",
            "bad zip",
        );
    }
    if shipment["to_address"]["zip"] == "50000" {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "oops",
        );
    }
    let mut fake = fake.lock().unwrap();
    fake.requests.push(body.clone());
    let id = format!("shp_{}", fake.shipments.len() + 1);
    let created = json!({
        "id": id, "object": "Shipment", "reference": shipment["reference"], "tracking_code": null,
        "rates": [
            {"id": format!("rate_{id}_ground"), "carrier": "USPS", "service": "GroundAdvantage", "rate": "6.40", "delivery_days": 5},
            {"id": format!("rate_{id}_express"), "carrier": "USPS", "service": "Express", "rate": "29.10", "delivery_days": 1}
        ],
        "selected_rate": null, "postage_label": null
    });
    fake.shipments.insert(id, created.clone());
    (StatusCode::CREATED, Json(created))
}

async fn retrieve(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "APIKEY.INACTIVE", "no such key");
    }
    match fake.lock().unwrap().shipments.get(&id) {
        Some(shipment) => (StatusCode::OK, Json(shipment.clone())),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such shipment"),
    }
}

async fn buy(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "APIKEY.INACTIVE", "no such key");
    }
    let mut fake = fake.lock().unwrap();
    let Some(shipment) = fake.shipments.get(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such shipment");
    };
    if !shipment["tracking_code"].is_null() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "SHIPMENT.POSTAGE.EXISTS",
            "already bought",
        );
    }
    let rate = shipment["rates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rate| rate["id"] == body["rate"]["id"])
        .cloned();
    let Some(rate) = rate else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "SHIPMENT.RATE.INVALID",
            "no such rate",
        );
    };
    let mut bought = shipment.clone();
    bought["tracking_code"] = json!(format!("9400{}", id.trim_start_matches("shp_")));
    bought["selected_rate"] = rate;
    bought["postage_label"] = json!({"label_url": format!("https://labels.example/{id}.png")});
    fake.shipments.insert(id, bought.clone());
    fake.buys += 1;
    (StatusCode::OK, Json(bought))
}

async fn fake_easypost() -> (String, Shared) {
    let fake: Shared = Arc::default();
    let app = Router::new()
        .route("/v2/shipments", post(create))
        .route("/v2/shipments/{id}", get(retrieve))
        .route("/v2/shipments/{id}/buy", post(buy))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

fn address(zip: &str) -> Address {
    Address {
        recipient: "Casey Customer".into(),
        line1: "1 Main St".into(),
        line2: String::new(),
        city: "Springfield".into(),
        region: "IL".into(),
        postal_code: zip.into(),
        country: "US".into(),
        phone: String::new(),
    }
}

fn carrier(base_url: &str, api_key: &str) -> EasyPostCarrier {
    EasyPostCarrier::new(EasyPostSettings {
        base_url: base_url.to_owned(),
        api_key: api_key.to_owned().into(),
        webhook_secret: "whsec_easypost".into(),
        from_address: address("60601"),
        services: BTreeMap::from([
            (
                "standard".to_owned(),
                ("USPS".to_owned(), "GroundAdvantage".to_owned()),
            ),
            (
                "express".to_owned(),
                ("USPS".to_owned(), "Express".to_owned()),
            ),
        ]),
        timeout: std::time::Duration::from_secs(5),
    })
    .unwrap()
}

fn request(courier: &str, zip: &str) -> ShipmentRequest {
    ShipmentRequest {
        reference: "0195f1c2-aaaa-7bbb-8ccc-123456789abc".into(),
        courier: courier.into(),
        to: address(zip),
        weight_g: 1500,
    }
}

#[tokio::test]
async fn shipments_are_created_bought_once_and_read_back() {
    let (url, fake) = fake_easypost().await;
    let easypost = carrier(&url, API_KEY);
    let express = request("express", "62701");
    let reference = easypost.create(&express).await.unwrap();
    {
        let fake = fake.lock().unwrap();
        let sent = &fake.requests[0]["shipment"];
        assert_eq!(sent["reference"], express.reference.as_str());
        assert_eq!(sent["to_address"]["street1"], "1 Main St");
        assert_eq!(sent["to_address"]["state"], "IL");
        assert_eq!(sent["from_address"]["zip"], "60601");
        assert_eq!(
            sent["parcel"]["weight"], 53.0,
            "1500 g in ounces, rounded up"
        );
    }
    let shipment = easypost.buy(&express, &reference).await.unwrap();
    assert_eq!(shipment.reference, reference);
    assert_eq!(shipment.tracking_id, "94001");
    assert_eq!(
        shipment.estimated_days,
        Some(1),
        "the express rate was bought"
    );
    assert!(shipment.label_url.unwrap().ends_with("shp_1.png"));
    // A retry after a crash reads the bought shipment back instead of buying again.
    let again = easypost.buy(&express, &reference).await.unwrap();
    assert_eq!(again.tracking_id, "94001");
    assert_eq!(fake.lock().unwrap().buys, 1);
}

#[tokio::test]
async fn refusals_and_outages_are_told_apart() {
    let (url, _fake) = fake_easypost().await;
    let easypost = carrier(&url, API_KEY);
    assert!(matches!(
        easypost.create(&request("standard", "00000")).await,
        Err(CarrierError::Refused(message)) if message.contains("ADDRESS.VERIFY.FAILURE")
    ));
    assert!(matches!(
        easypost.create(&request("standard", "50000")).await,
        Err(CarrierError::Unavailable(_))
    ));
    assert!(matches!(
        easypost.create(&request("pigeon", "62701")).await,
        Err(CarrierError::Refused(message)) if message.contains("pigeon")
    ));
    assert!(matches!(
        carrier(&url, "EZTK_wrong").create(&request("standard", "62701")).await,
        Err(CarrierError::Refused(message)) if message.contains("APIKEY")
    ));
    assert!(matches!(
        carrier("http://127.0.0.1:9", API_KEY)
            .create(&request("standard", "62701"))
            .await,
        Err(CarrierError::Unavailable(_))
    ));
}

#[test]
fn tracker_webhooks_are_verified_and_read() {
    let easypost = carrier("http://127.0.0.1:9", API_KEY);
    let event = |status: &str| {
        serde_json::to_vec(&json!({
            "id": format!("evt_{status}"), "object": "Event", "description": "tracker.updated",
            "result": {"object": "Tracker", "tracking_code": "94001", "status": status}
        }))
        .unwrap()
    };
    let signed = |body: &[u8], secret: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-hmac-signature",
            easypost_signature(secret, body).parse().unwrap(),
        );
        headers
    };
    let body = event("in_transit");
    let update = easypost
        .verify_webhook(&signed(&body, "whsec_easypost"), &body)
        .unwrap();
    assert_eq!(
        (update.tracking_id.as_str(), update.status),
        ("94001", TrackingStatus::Shipped)
    );
    let body = event("delivered");
    assert_eq!(
        easypost
            .verify_webhook(&signed(&body, "whsec_easypost"), &body)
            .unwrap()
            .status,
        TrackingStatus::Delivered
    );
    let body = event("pre_transit");
    assert_eq!(
        easypost
            .verify_webhook(&signed(&body, "whsec_easypost"), &body)
            .unwrap()
            .status,
        TrackingStatus::Other
    );
    assert!(
        easypost
            .verify_webhook(&signed(&body, "whsec_other"), &body)
            .is_err()
    );
    let tampered = event("delivered");
    assert!(
        easypost
            .verify_webhook(&signed(&event("in_transit"), "whsec_easypost"), &tampered)
            .is_err()
    );
    assert!(easypost.verify_webhook(&HeaderMap::new(), &body).is_err());
}
