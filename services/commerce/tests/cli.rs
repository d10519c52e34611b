//! The `commerce` binary as an operator uses it.

use std::process::{Command, Stdio};
use std::time::Duration;

use commerce_proto::product::v1 as pb;
use commerce_testkit::eventually;
use prost::Message;

mod support;
use support::{LocalShop, commerce, demo_login};

#[test]
fn help_lists_every_service() {
    let output = commerce().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for service in [
        "auth",
        "product",
        "cart",
        "order",
        "payment",
        "fulfillment",
        "notification",
        "chat",
        "search",
        "gateway",
        "graphql",
    ] {
        assert!(
            help.contains(&format!("  {service} ")),
            "--help does not list {service}:\n{help}"
        );
    }
}

#[test]
fn the_simulator_names_what_it_cannot_read_or_reach_and_never_prints_the_staff_password() {
    let bad_mix = commerce()
        .args(["simulate", "--mix", "browse=1,shop=2"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&bad_mix.stderr);
    assert!(!bad_mix.status.success());
    assert!(said.contains("--mix") && said.contains("`shop`"), "{said}");

    let help = commerce()
        .args(["simulate", "--help"])
        .env("COMMERCE_SIMULATE_STAFF_PASSWORD", "hunter2-staff-secret")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--rate",
        "--shoppers",
        "--duration",
        "--seed",
        "--mix",
        "--check",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(
        !help.contains("hunter2-staff-secret") && !help.contains("admin-demo-password"),
        "{help}"
    );

    let nobody = format!("http://127.0.0.1:{}", commerce_testkit::free_port());
    let unreachable = commerce()
        .args([
            "simulate",
            "--gateway",
            &nobody,
            "--duration",
            "1s",
            "--quiet",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success());
    assert!(
        said.contains("getting the shop ready") && said.contains("sign_in: no answer"),
        "{said}"
    );
}

#[test]
fn configuration_errors_name_the_key() {
    let output = commerce()
        .args(["serve", "--target", "product"])
        .env("COMMERCE_REDIS__URLS", "[\"redis://127.0.0.1:6379\"]")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("configuration key `kafka`"), "{stderr}");
    // Run away from the repository, it says which file it did not find and how to name one.
    assert!(
        stderr.contains("no configuration file was read: config/commerce.toml is not under")
            && stderr.contains("COMMERCE_CONFIG"),
        "{stderr}"
    );

    let output = commerce()
        .args(["serve", "--target", "product"])
        .env("COMMERCE_REDIS__URLS", "[\"redis://127.0.0.1:6379\"]")
        .env("COMMERCE_KAFKA__BROKERS", "127.0.0.1:9092")
        .env("COMMERCE_SERVICES__PRODUCT__GRPC_ADDR", "127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("`services.product.http_addr`") && stderr.contains("missing"),
        "{stderr}"
    );

    let output = commerce()
        .args(["serve", "--target", "graphql"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("`graphql`") && stderr.contains("not in this build"),
        "{stderr}"
    );
    let output = commerce()
        .args(["serve", "--target", "shipping"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("unknown service `shipping`") && stderr.contains("chat"),
        "{stderr}"
    );
}

/// The credentials `config/commerce.toml` once committed, or any placeholder, stop the
/// service that reads them before it serves anything.
#[test]
fn placeholder_credentials_are_refused_naming_the_key() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/commerce.toml");
    let state = tempfile::tempdir().unwrap();
    let refusal = |target: &str, key: &str, value: &str| {
        let output = commerce()
            .args(["--config", shipped, "serve", "--target", target])
            .env(
                "COMMERCE_LOCAL_SECRETS__FILE",
                state.path().join("local-secrets.toml"),
            )
            .env(key, value)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{target} started with {value}");
        String::from_utf8(output.stderr).unwrap()
    };
    let stderr = refusal(
        "cart",
        "COMMERCE_SERVICES__CART__CLIENT_SECRET",
        "local-cart-secret-not-for-production",
    );
    assert!(
        stderr.contains("`services.cart.client_secret`: is a placeholder"),
        "{stderr}"
    );
    let stderr = refusal(
        "auth",
        "COMMERCE_SERVICES__AUTH__SERVICE_CLIENTS__ORDER",
        "change-me",
    );
    assert!(
        stderr.contains("`services.auth.service_clients.order`: must be at least 24"),
        "{stderr}"
    );
    let stderr = refusal(
        "payment",
        "COMMERCE_SERVICES__PAYMENT__OFFLINE__WEBHOOK_SECRET",
        "whsec_replace-me-with-the-real-one",
    );
    assert!(
        stderr.contains("`services.payment.offline.webhook_secret`: is a placeholder"),
        "{stderr}"
    );
    // Nothing printed the value.
    assert!(!stderr.contains("whsec_replace"), "{stderr}");
}

/// The shipped configuration holds no credential: a local install generates its own.
#[test]
fn the_shipped_configuration_commits_no_credentials() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/commerce.toml"
    ))
    .unwrap();
    let table: toml::Table = shipped.parse().unwrap();
    let services = table["services"].as_table().unwrap();
    assert!(
        !services["auth"]
            .as_table()
            .unwrap()
            .contains_key("service_clients")
    );
    for (name, section) in services {
        for key in ["client_secret", "webhook_secret"] {
            assert!(
                !section.as_table().unwrap().contains_key(key),
                "services.{name}.{key} is committed"
            );
        }
    }
    assert!(
        !services["payment"]["offline"]
            .as_table()
            .unwrap()
            .contains_key("webhook_secret")
    );
    let clients = table["local_secrets"]["clients"].as_array().unwrap();
    for client in clients {
        let client = client.as_str().unwrap();
        assert!(services.contains_key(client), "{client} is not a service");
    }
}

#[tokio::test]
async fn migrate_seed_serve_and_stop_on_sigterm() {
    let shop = LocalShop::new("cli").await;
    for args in [
        &["migrate", "--target", "all"][..],
        &["seed"][..],
        &["seed"][..],
    ] {
        shop.run(args);
    }
    let database = shop.database("product");
    let auth_database = shop.database("auth");
    let products: i64 = sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(&database.pool)
        .await
        .unwrap();
    assert_eq!(products, 240, "seeding twice loads the catalogue once");
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&auth_database.pool)
        .await
        .unwrap();
    assert_eq!(accounts, 3, "one demo account per role, once");

    // Killed if the test fails before it stops the server itself.
    let mut server = support::Process(
        commerce()
            .args(["serve", "--target", "all"])
            .envs(shop.env.clone())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let http = shop.url(8082);
    let client = reqwest::Client::new();
    shop.wait_until_ready().await;

    // Every service of the build is up: the seeded admin can log in and read itself.
    let auth = shop.url(8081);
    let admin = demo_login(&client, &auth, "admin").await;
    assert_eq!(support::me(&client, &auth, &admin).await["role"], "admin");

    let listing: serde_json::Value = client
        .get(format!("{http}/v1/products?pageSize=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["total"], 240);
    assert_eq!(listing["items"].as_array().unwrap().len(), 5);
    // The same through the gateway, with the shipped route table.
    let through_gateway: serde_json::Value = client
        .get(format!("{}/v1/products?pageSize=5", shop.url(8080)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(through_gateway["items"], listing["items"]);
    let first_id = listing["items"][0]["id"].as_str().unwrap().to_owned();
    let bad = client
        .get(format!("{http}/v1/products?page=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["field"], "page");

    let mut grpc = pb::product_service_client::ProductServiceClient::connect(shop.url(9082))
        .await
        .unwrap();
    let anonymous = grpc
        .get_products(pb::GetProductsRequest {
            ids: vec![first_id.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "gRPC needs a service token"
    );
    let tokens = commerce_access::ServiceTokenSource::new(
        &auth,
        "order",
        shop.client_secret("order"),
        "product",
    );
    let found = grpc
        .get_products(
            tokens
                .authorize(tonic::Request::new(pb::GetProductsRequest {
                    ids: vec![
                        first_id.clone(),
                        "00000000-0000-0000-0000-000000000000".into(),
                    ],
                }))
                .await
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.products.len(), 1);
    assert_eq!(found.products[0].id, first_id);
    let invalid = grpc
        .get_products(
            tokens
                .authorize(tonic::Request::new(pb::GetProductsRequest {
                    ids: vec!["nope".into()],
                }))
                .await
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert!(
        invalid.message().contains("ids[0]"),
        "{}",
        invalid.message()
    );

    // The relay publishes the seed's ProductCreated events to the broker.
    eventually(Duration::from_secs(60), "the outbox to drain", || {
        let pool = database.pool.clone();
        async move {
            let pending: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE published_at IS NULL")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (pending == 0).then_some(())
        }
    })
    .await;
    let payloads: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT event_type, payload FROM outbox_events")
            .fetch_all(&database.pool)
            .await
            .unwrap();
    assert_eq!(payloads.len(), 240);
    for (event_type, payload) in payloads {
        assert_eq!(event_type, "commerce.product.v1.ProductCreated");
        let event = pb::ProductCreated::decode(payload.as_slice()).unwrap();
        assert!(event.product.unwrap().price.unwrap().currency == "USD");
    }

    // The seeded customer fills a cart: cart asks product over gRPC with its service token.
    let in_stock = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["stock"].as_i64() > Some(0))
        .expect("a product in stock")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = demo_login(&client, &auth, "customer").await;
    let cart: serde_json::Value = client
        .post(format!("{}/v1/cart/items", shop.url(8083)))
        .bearer_auth(&customer)
        .json(&serde_json::json!({"productId": in_stock, "quantity": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cart["items"][0]["productId"], in_stock.as_str(), "{cart}");

    // Fulfillment is up with its seeded couriers.
    let couriers: serde_json::Value = client
        .get(format!("{}/v1/shipping/couriers", shop.url(8086)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(couriers["items"].as_array().map(Vec::len), Some(3));

    // The seeded catalogue reaches the search index through the broker.
    let search = shop.url(8089);
    eventually(
        Duration::from_secs(60),
        "the demo catalogue in the search index",
        || {
            let (client, url) = (client.clone(), format!("{search}/v1/search?q=kettel"));
            async move {
                let results: serde_json::Value =
                    client.get(url).send().await.ok()?.json().await.ok()?;
                (results["total"] == 10).then_some(())
            }
        },
    )
    .await;

    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = eventually(
        Duration::from_secs(10),
        "the process to exit after SIGTERM",
        || {
            let status = server.0.try_wait().unwrap();
            async move { status }
        },
    )
    .await;
    assert!(exited.success(), "exit status after SIGTERM: {exited}");
}
