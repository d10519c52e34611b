//! Reservations, deductions, releases and stock adjustments.

mod common;

use std::sync::Arc;

use commerce_proto::product::v1 as pb;
use common::TestProduct;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

fn reserve(order: Uuid, items: &[(&str, i64)]) -> pb::ReserveProductsRequest {
    pb::ReserveProductsRequest {
        order_id: order.to_string(),
        items: items
            .iter()
            .map(|(product, quantity)| pb::ReservationItem {
                product_id: (*product).to_owned(),
                quantity: *quantity,
            })
            .collect(),
    }
}

#[tokio::test]
async fn fifty_buyers_for_the_last_ten_units_never_oversell() {
    let shop = Arc::new(TestProduct::start().await);
    let product = shop.create("LAST-10", "toys", "9.99", 10).await;
    let id = product["id"].as_str().unwrap().to_owned();
    let mut buyers = Vec::new();
    for _ in 0..50 {
        let (shop, id) = (shop.clone(), id.clone());
        buyers.push(tokio::spawn(async move {
            let mut grpc = shop.grpc().await;
            grpc.reserve_products(shop.authorized(reserve(Uuid::now_v7(), &[(&id, 1)])))
                .await
        }));
    }
    let mut succeeded = 0;
    for buyer in buyers {
        match buyer.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                assert!(
                    status.message().contains("not enough stock"),
                    "{}",
                    status.message()
                );
            }
        }
    }
    assert_eq!(succeeded, 10);
    assert_eq!(
        shop.stock(&id).await,
        (10, 10),
        "all ten reserved, none oversold"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM stock_reservations")
        .fetch_one(&shop.pool)
        .await
        .unwrap();
    assert_eq!(rows, 10);
    Arc::try_unwrap(shop).ok().unwrap().stop().await;
}

#[tokio::test]
async fn retried_calls_change_nothing() {
    let shop = TestProduct::start().await;
    let mug = shop.create("MUG", "kitchen", "12.00", 20).await;
    let pen = shop.create("PEN", "stationery", "3.50", 5).await;
    let (mug, pen) = (
        mug["id"].as_str().unwrap().to_owned(),
        pen["id"].as_str().unwrap().to_owned(),
    );
    let mut grpc = shop.grpc().await;
    let order = Uuid::now_v7();

    let first = grpc
        .reserve_products(shop.authorized(reserve(order, &[(&mug, 2), (&pen, 1), (&mug, 1)])))
        .await
        .unwrap();
    let items = first.into_inner().items;
    let mug_line = items.iter().find(|item| item.product_id == mug).unwrap();
    assert_eq!(mug_line.quantity, 3, "repeated lines are merged");
    assert_eq!(mug_line.unit_price.as_ref().unwrap().amount, "12.00");
    let again = grpc
        .reserve_products(shop.authorized(reserve(order, &[(&mug, 3), (&pen, 1)])))
        .await
        .unwrap();
    assert_eq!(again.into_inner().items.len(), 2);
    assert_eq!(
        shop.stock(&mug).await,
        (20, 3),
        "a retried reserve holds nothing more"
    );
    let different = grpc
        .reserve_products(shop.authorized(reserve(order, &[(&mug, 5)])))
        .await
        .unwrap_err();
    assert_eq!(different.code(), tonic::Code::FailedPrecondition);

    let deduct = || pb::DeductStockRequest {
        order_id: order.to_string(),
    };
    grpc.deduct_stock(shop.authorized(deduct())).await.unwrap();
    grpc.deduct_stock(shop.authorized(deduct())).await.unwrap();
    assert_eq!(shop.stock(&mug).await, (17, 0), "deducted once");
    assert_eq!(shop.stock(&pen).await, (4, 0));
    let late_release = grpc
        .release_reservation(shop.authorized(pb::ReleaseReservationRequest {
            order_id: order.to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        late_release.code(),
        tonic::Code::FailedPrecondition,
        "paid stock is not released"
    );

    let unpaid = Uuid::now_v7();
    grpc.reserve_products(shop.authorized(reserve(unpaid, &[(&pen, 4)])))
        .await
        .unwrap();
    assert_eq!(shop.stock(&pen).await, (4, 4));
    let release = || pb::ReleaseReservationRequest {
        order_id: unpaid.to_string(),
    };
    grpc.release_reservation(shop.authorized(release()))
        .await
        .unwrap();
    grpc.release_reservation(shop.authorized(release()))
        .await
        .unwrap();
    assert_eq!(shop.stock(&pen).await, (4, 0), "released once");
    let after_release = grpc
        .deduct_stock(shop.authorized(pb::DeductStockRequest {
            order_id: unpaid.to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(after_release.code(), tonic::Code::FailedPrecondition);
    let re_reserve = grpc
        .reserve_products(shop.authorized(reserve(unpaid, &[(&pen, 4)])))
        .await
        .unwrap_err();
    assert_eq!(
        re_reserve.code(),
        tonic::Code::FailedPrecondition,
        "a released order cannot be re-reserved"
    );

    // Compensation for an order that never reserved: nothing to do, not an error.
    let never = grpc
        .release_reservation(shop.authorized(pb::ReleaseReservationRequest {
            order_id: Uuid::now_v7().to_string(),
        }))
        .await
        .unwrap();
    assert!(never.into_inner().items.is_empty());
    let missing = grpc
        .deduct_stock(shop.authorized(pb::DeductStockRequest {
            order_id: Uuid::now_v7().to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // All or nothing: one short line leaves every product untouched.
    let short = grpc
        .reserve_products(shop.authorized(reserve(Uuid::now_v7(), &[(&mug, 1), (&pen, 99)])))
        .await
        .unwrap_err();
    assert_eq!(short.code(), tonic::Code::FailedPrecondition);
    assert!(
        short.message().contains(&pen),
        "the message names the product: {}",
        short.message()
    );
    assert_eq!(shop.stock(&mug).await, (17, 0));
    let unknown = grpc
        .reserve_products(
            shop.authorized(reserve(Uuid::now_v7(), &[(&Uuid::now_v7().to_string(), 1)])),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let invalid = grpc
        .reserve_products(shop.authorized(reserve(Uuid::now_v7(), &[(&mug, 0)])))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    let bad_id = grpc
        .reserve_products(shop.authorized(reserve(Uuid::now_v7(), &[("nope", 1)])))
        .await
        .unwrap_err();
    assert!(
        bad_id.message().contains("items[0].product_id"),
        "{}",
        bad_id.message()
    );

    // Reservations show in what shoppers see as available.
    let (_, listed) = shop
        .send(shop.client.get(shop.url(&format!("/v1/products/{mug}"))))
        .await;
    assert_eq!(
        (listed["stock"].as_i64(), listed["reserved"].as_i64()),
        (Some(17), Some(0))
    );
    shop.stop().await;
}

#[tokio::test]
async fn grpc_accepts_only_service_tokens_for_this_service() {
    let shop = TestProduct::start().await;
    let product = shop.create("GRPC-1", "toys", "1.00", 1).await;
    let request = || pb::GetProductsRequest {
        ids: vec![product["id"].as_str().unwrap().to_owned()],
    };
    let mut grpc = shop.grpc().await;
    let with = |token: String| {
        let mut message = tonic::Request::new(request());
        message
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        message
    };
    assert_eq!(
        grpc.get_products(tonic::Request::new(request()))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );
    let customer = shop.issuer.user_token(Uuid::new_v4(), "customer");
    assert_eq!(
        grpc.get_products(with(customer)).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let elsewhere = shop.issuer.service_token("order", "payment");
    assert_eq!(
        grpc.get_products(with(elsewhere)).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let found = grpc
        .get_products(with(shop.issuer.service_token("order", "product")))
        .await
        .unwrap();
    assert_eq!(found.into_inner().products.len(), 1);
    shop.stop().await;
}

#[tokio::test]
async fn the_catalogue_streams_every_active_product_once_in_id_order() {
    use futures::TryStreamExt;
    let shop = TestProduct::start().await;
    // More than one page (500) of products, straight into the table; then one deleted and
    // one hidden through the API, and one with stock reserved (its revision moves on).
    sqlx::query(
        "INSERT INTO products (id, sku, name, category, price_amount, currency, stock)
         SELECT gen_random_uuid(), 'BULK-' || n, 'Bulk item ' || n, 'bulk', 1, 'USD', 5
         FROM generate_series(1, 520) AS n",
    )
    .execute(&shop.pool)
    .await
    .unwrap();
    let deleted = shop.create("GONE-1", "toys", "1.00", 1).await;
    let hidden = shop.create("HIDE-1", "toys", "1.00", 1).await;
    let reserved = shop.create("HELD-1", "toys", "2.00", 3).await;
    let (status, _) = shop
        .send(
            shop.client
                .delete(shop.url(&format!(
                    "/v1/products/{}?version=1",
                    deleted["id"].as_str().unwrap()
                )))
                .bearer_auth(&shop.admin),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = shop
        .send(
            shop.client
                .patch(shop.url(&format!("/v1/products/{}", hidden["id"].as_str().unwrap())))
                .bearer_auth(&shop.admin)
                .header("if-match", "\"1\"")
                .json(&json!({"active": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let held = reserved["id"].as_str().unwrap().to_owned();
    let mut grpc = shop.grpc().await;
    let held_order = Uuid::now_v7();
    grpc.reserve_products(shop.authorized(reserve(held_order, &[(&held, 2)])))
        .await
        .unwrap();

    let reader = grpc.clone();
    let catalogue = |after_id: &str| {
        let (mut grpc, request) = (
            reader.clone(),
            shop.authorized(pb::ListCatalogueRequest {
                after_id: after_id.to_owned(),
            }),
        );
        async move {
            let items: Vec<pb::ListCatalogueResponse> = grpc
                .list_catalogue(request)
                .await
                .unwrap()
                .into_inner()
                .try_collect()
                .await
                .unwrap();
            items
                .into_iter()
                .map(|item| item.product.unwrap())
                .collect::<Vec<_>>()
        }
    };
    let streamed = catalogue("").await;
    let expected: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT id, revision FROM products WHERE active AND deleted_at IS NULL ORDER BY id",
    )
    .fetch_all(&shop.pool)
    .await
    .unwrap();
    assert_eq!(expected.len(), 521, "520 bulk items and the held one");
    let got: Vec<(Uuid, i64)> = streamed
        .iter()
        .map(|product| (product.id.parse().unwrap(), product.revision))
        .collect();
    assert_eq!(got, expected);
    let held_product = streamed.iter().find(|product| product.id == held).unwrap();
    assert_eq!(held_product.stock, 1, "what is left to buy");
    assert!(
        held_product.revision > 1,
        "the reservation moved the revision"
    );
    assert_eq!(held_product.units_sold, 0, "reserved is not sold");
    let sold = |products: Vec<pb::Product>| {
        products
            .into_iter()
            .find(|product| product.id == held)
            .map(|product| product.units_sold)
    };
    // Paid: the units are sold; the order canceled after payment: given back, unsold.
    grpc.deduct_stock(shop.authorized(pb::DeductStockRequest {
        order_id: held_order.to_string(),
    }))
    .await
    .unwrap();
    assert_eq!(sold(catalogue("").await), Some(2));
    grpc.restock_order(shop.authorized(pb::RestockOrderRequest {
        order_id: held_order.to_string(),
    }))
    .await
    .unwrap();
    assert_eq!(sold(catalogue("").await), Some(0));

    // From the middle: only what comes after the given id.
    let middle = expected[260].0;
    let rest = catalogue(&middle.to_string()).await;
    assert_eq!(rest.len(), 521 - 261);
    assert_eq!(rest[0].id, expected[261].0.to_string());
    let status = grpc
        .list_catalogue(shop.authorized(pb::ListCatalogueRequest {
            after_id: "not-a-uuid".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("after_id"),
        "{}",
        status.message()
    );
    // Another service's audience is refused here as for every other call.
    let mut foreign = tonic::Request::new(pb::ListCatalogueRequest::default());
    foreign.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", shop.issuer.service_token("search", "payment"))
            .parse()
            .unwrap(),
    );
    assert_eq!(
        grpc.list_catalogue(foreign).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    shop.stop().await;
}

#[tokio::test]
async fn stock_adjustments_are_audited_and_never_undercut_reservations() {
    let shop = TestProduct::start().await;
    let product = shop.create("ADJ-1", "home", "5.00", 4).await;
    let id = product["id"].as_str().unwrap().to_owned();
    let mut grpc = shop.grpc().await;
    grpc.reserve_products(shop.authorized(reserve(Uuid::now_v7(), &[(&id, 3)])))
        .await
        .unwrap();

    let url = shop.url(&format!("/v1/products/{id}/stock-adjustments"));
    let (status, _) = shop
        .send(
            shop.client
                .post(&url)
                .bearer_auth(&shop.customer)
                .json(&json!({"delta": 5, "reason": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = shop
        .send(
            shop.client
                .post(&url)
                .bearer_auth(&shop.admin)
                .json(&json!({"delta": -2, "reason": "damaged"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("delta")),
        "{body}"
    );
    let (status, body) = shop
        .send(
            shop.client
                .post(&url)
                .bearer_auth(&shop.admin)
                .json(&json!({"delta": 10, "reason": ""})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("reason"))
    );
    let (status, body) = shop
        .send(
            shop.client
                .post(&url)
                .bearer_auth(&shop.admin)
                .json(&json!({"delta": 10, "reason": "delivery 42"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stock"], 14);
    let (status, body) = shop
        .send(
            shop.client
                .post(&url)
                .bearer_auth(&shop.admin)
                .json(&json!({"delta": -11, "reason": "stocktake"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(shop.stock(&id).await, (3, 3));

    let (_, trail) = shop
        .send(shop.client.get(&url).bearer_auth(&shop.admin))
        .await;
    let entries: Vec<_> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["delta"].as_i64().unwrap(),
                entry["stockAfter"].as_i64().unwrap(),
                entry["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            (10, 14, "delivery 42".to_owned()),
            (-11, 3, "stocktake".to_owned())
        ]
    );
    assert!(
        trail["items"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
    shop.stop().await;
}
