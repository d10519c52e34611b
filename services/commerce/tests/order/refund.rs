//! Staff refunds: part of a paid order, then the rest, never more than was taken; the same
//! idempotency key gets the same refund; the order and the payment both show each one, and
//! the payment report (and its CSV) counts them.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::shop::*;

impl Shop {
    async fn staff_refund(
        &self,
        token: &str,
        order: &str,
        key: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}/v1/admin/orders/{order}/refunds", self.order))
            .bearer_auth(token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }

    async fn order_view(&self, token: &str, order: &str) -> Value {
        let (status, view) = self
            .send(
                self.client
                    .get(format!("{}/v1/orders/{order}", self.order))
                    .bearer_auth(token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{view}");
        view
    }
}

#[tokio::test]
async fn staff_refund_part_of_an_order_then_the_rest_and_never_more() {
    let shop = Shop::start(Engine::Postgres).await;
    let (admin, _) = shop.user("admin").await;
    let (support, _) = shop.user("support").await;
    let (alice, _) = shop.user("customer").await;
    let mug = shop.product(&admin, "12.00", 10).await;
    let session = shop.checkout(&alice, &[(&mug, 2)], None).await;
    let (status, placed) = shop.place(&alice, "refund-1", &session).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order = placed["orderId"].as_str().unwrap().to_owned();
    let total: rust_decimal::Decimal = placed["order"]["totals"]["total"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Nothing was taken yet: nothing to refund.
    let (status, body) = shop
        .staff_refund(&admin, &order, Some("early"), json!({"reason": "too soon"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    shop.pay(&alice, &order).await;
    shop.await_status(&order, "CONFIRMED").await;

    // Only an admin refunds; the customer and support are refused, and nothing moves.
    for token in [&alice, &support] {
        let (status, body) = shop
            .staff_refund(token, &order, Some("not-staff"), json!({"reason": "mine"}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    // Bad input names its field.
    let (status, body) = shop
        .staff_refund(&admin, &order, None, json!({"reason": "no key"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "Idempotency-Key", "{body}");
    for (bad, field) in [
        (json!({"reason": " "}), "reason"),
        (json!({"reason": "x", "amount": "-1.00"}), "amount"),
        (json!({"reason": "x", "amount": "0"}), "amount"),
        (json!({"reason": "x", "amount": "1.001"}), "amount"),
        (json!({"reason": "x", "amount": "lots"}), "amount"),
    ] {
        let (status, body) = shop
            .staff_refund(&admin, &order, Some("bad"), bad.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["field"], field, "{bad}: {body}");
    }
    assert_eq!(shop.payment_status(&order).await, "succeeded");

    // Part of it, twice with the same key: one refund.
    let part = json!({"amount": "5.00", "reason": "a scratched mug"});
    let (status, first) = shop
        .staff_refund(&admin, &order, Some("scratch"), part.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(
        (first["amount"].as_str(), first["status"].as_str()),
        (Some("5.00"), Some("succeeded")),
        "{first}"
    );
    assert_eq!(first["paymentStatus"], "succeeded", "{first}");
    let (status, again) = shop
        .staff_refund(&admin, &order, Some("scratch"), part)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["refundId"], first["refundId"]);

    // More than is left is refused on the amount; the payment is unchanged.
    let (status, body) = shop
        .staff_refund(
            &admin,
            &order,
            Some("too-much"),
            json!({"amount": total.to_string(), "reason": "everything"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "amount", "{body}");

    // The rest: no amount means everything left.
    let (status, rest) = shop
        .staff_refund(
            &admin,
            &order,
            Some("rest"),
            json!({"reason": "never arrived"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rest}");
    let rest_amount: rust_decimal::Decimal = rest["amount"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        rest_amount,
        total - rust_decimal::Decimal::new(500, 2),
        "{rest}"
    );
    assert_eq!(rest["paymentStatus"], "refunded", "{rest}");
    let (status, body) = shop
        .staff_refund(&admin, &order, Some("more"), json!({"reason": "again"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        shop.payment_events("commerce.payment.v1.PaymentRefunded", &order)
            .await,
        2
    );

    // The order's history and total refunded, as its owner sees them (events, so awaited).
    shop.await_note(&order, "refunded 5.00 USD: a scratched mug")
        .await;
    shop.await_note(
        &order,
        &format!("refunded {rest_amount} USD: never arrived"),
    )
    .await;
    let view = shop.order_view(&alice, &order).await;
    assert_eq!(view["refundedAmount"], total.to_string(), "{view}");
    let reasons: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"refunded 5.00 USD: a scratched mug"),
        "{reasons:?}"
    );
    // The order itself stays where it was: refunds are money, not a cancellation.
    assert_eq!(view["status"], "CONFIRMED", "{view}");

    // The payment lists both refunds with their reasons.
    let payment = view["paymentId"].as_str().unwrap();
    let (status, payment) = shop
        .send(
            shop.client
                .get(format!("{}/v1/payments/{payment}", shop.payment))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{payment}");
    let refunds: Vec<(&str, &str)> = payment["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|refund| {
            (
                refund["amount"].as_str().unwrap(),
                refund["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(refunds.len(), 2, "{payment}");
    assert_eq!(refunds[0], ("5.00", "a scratched mug"), "{payment}");
    assert_eq!(payment["status"], "refunded", "{payment}");

    // The payment report: what was taken, what went back, what is kept; and as CSV.
    let report_url = format!("{}/v1/admin/payments/report", shop.payment);
    let (status, report) = shop
        .send(shop.client.get(&report_url).bearer_auth(&support))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let usd = &report["totals"][0];
    assert_eq!(
        (
            usd["currency"].as_str(),
            usd["paid"].as_i64(),
            usd["refunds"].as_i64()
        ),
        (Some("USD"), Some(1), Some(2)),
        "{report}"
    );
    let total = total.to_string();
    assert_eq!(usd["revenue"], total.as_str(), "{report}");
    assert_eq!(usd["refunded"], total.as_str(), "{report}");
    assert_eq!(usd["net"], "0.00", "{report}");
    assert_eq!(usd["averageOrderValue"], total.as_str(), "{report}");
    assert_eq!(
        usd["refundRate"], "2",
        "two refunds of one payment: {report}"
    );
    let response = shop
        .client
        .get(format!("{report_url}.csv"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
        "{:?}",
        response.headers()
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "day,gateway,currency,paid,revenue,refunds,refunded,net,disputes"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].ends_with(&format!(",offline,USD,1,{total},2,{total},0.00,0")),
        "{csv}"
    );
    let (status, _) = shop
        .send(shop.client.get(&report_url).bearer_auth(&alice))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = shop
        .send(
            shop.client
                .get(format!("{report_url}?from=2026-12-07&to=2026-12-01"))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "from", "{body}");
    shop.stop().await;
}
