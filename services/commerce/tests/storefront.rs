//! The storefront in a real browser against the whole shop: `commerce serve --target all`
//! on its own databases and ports with MailDev as its SMTP server, Hive Gateway for
//! GraphQL, the storefront's production build served by `vite preview` with /v1 and
//! /graphql sent to this shop's gateway, and Debian's Chromium driven by playwright-core
//! (`frontend/e2e/shop.mjs`): a customer, a support agent and an admin, each in their own
//! browser context. Screenshots land in `target/e2e-screenshots/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use commerce_testkit::MailSink;
use support::{LocalShop, Process};

fn frontend() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../frontend"))
}

#[tokio::test]
async fn a_shopper_signs_up_buys_with_a_promo_code_chats_with_support_and_sees_the_order_shipped() {
    let frontend = frontend();
    assert!(
        frontend.join("dist/index.html").exists()
            && frontend.join("node_modules/.bin/vite").exists(),
        "the storefront is not built: (cd frontend && npm ci && npm run build)"
    );
    // The storefront's port is known before the shop starts: the verification e-mail's
    // link points at the storefront's page, which confirms the address.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let sink = MailSink::start();
    let mut shop = LocalShop::new("storefront").await;
    shop.env.push((
        "COMMERCE_SERVICES__NOTIFICATION__SMTP__PORT".into(),
        sink.smtp_port.to_string(),
    ));
    shop.env.push((
        "COMMERCE_SERVICES__NOTIFICATION__VERIFY_EMAIL_URL".into(),
        format!("http://127.0.0.1:{port}/verify-email?token={{token}}"),
    ));
    shop.env.push((
        "COMMERCE_SERVICES__NOTIFICATION__RESET_PASSWORD_URL".into(),
        format!("http://127.0.0.1:{port}/reset-password?token={{token}}"),
    ));
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let _running = shop.serve();
    shop.wait_until_ready().await;
    let _federation = shop.federation_gateway();
    let gateway = shop.url(8080);

    // The seeded catalogue reaches the search index through Kafka.
    let client = reqwest::Client::new();
    commerce_testkit::eventually(
        Duration::from_secs(60),
        "the catalogue to be searchable",
        || {
            let (client, gateway) = (client.clone(), gateway.clone());
            async move {
                let found: serde_json::Value = client
                    .get(format!("{gateway}/v1/search?q=stoneware"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (found["total"].as_u64()? > 0).then_some(())
            }
        },
    )
    .await;

    // The order page follows its order through GraphQL: Hive must be answering.
    commerce_testkit::eventually(
        Duration::from_secs(60),
        "the GraphQL gateway to answer",
        || {
            let (client, gateway) = (client.clone(), gateway.clone());
            async move {
                client
                    .post(format!("{gateway}/graphql"))
                    .json(&serde_json::json!({"query": "{ __typename }"}))
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        },
    )
    .await;

    let log = std::fs::File::create(shop.scratch("storefront.log")).unwrap();
    let _storefront = Process(
        Command::new(frontend.join("node_modules/.bin/vite"))
            .args([
                "preview",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--strictPort",
            ])
            .current_dir(&frontend)
            .env("COMMERCE_GATEWAY_URL", &gateway)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let storefront = format!("http://127.0.0.1:{port}");
    commerce_testkit::eventually(Duration::from_secs(30), "the storefront to answer", || {
        let (client, url) = (client.clone(), storefront.clone());
        async move {
            client
                .get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        }
    })
    .await;

    let screenshots = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/e2e-screenshots"
    ));
    let mail_web = sink.web.clone();
    let output = tokio::task::spawn_blocking({
        let (frontend, screenshots) = (frontend.clone(), screenshots.clone());
        move || {
            Command::new("node")
                .arg("e2e/shop.mjs")
                .current_dir(&frontend)
                .env("STOREFRONT_URL", &storefront)
                .env("SCREENSHOTS", &screenshots)
                .env("MAILDEV_URL", &mail_web)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the browser run failed:\n{}\n{}\n(storefront log: {})",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(shop.scratch("storefront.log")).unwrap_or_default()
    );
    for shot in [
        "signed-up.png",
        "catalogue.png",
        "search-with-typo.png",
        "product.png",
        "cart.png",
        "checkout.png",
        "order-confirmed.png",
        "admin-promo-codes.png",
        "support-chat-customer.png",
        "support-chat-agent.png",
        "admin-orders.png",
        "order-shipped.png",
        "admin-payments.png",
        "account.png",
    ] {
        let path = screenshots.join(shot);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
}
