//! Notifications in the whole shop, through the public gateway: signing up mails a
//! verification link (auth's `UserRegistered` → Kafka → the notification service → a real
//! SMTP server) that verifies the account; a signed-in user's SSE stream passes through
//! the gateway and receives what a service sends.

use std::time::Duration;

use commerce_proto::notification::v1 as pb;
use commerce_testkit::{MailSink, eventually, unique};
use serde_json::{Value, json};

mod support;
use support::LocalShop;

/// `token=…` out of a link, percent-decoded.
fn token_in(text: &str) -> String {
    let start = text.find("token=").expect("a link with a token") + "token=".len();
    let raw: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '&')
        .collect();
    let mut bytes = Vec::new();
    let mut rest = raw.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' && tail.len() >= 2 {
            bytes.push(u8::from_str_radix(std::str::from_utf8(&tail[..2]).unwrap(), 16).unwrap());
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn signing_up_mails_a_link_that_verifies_and_streams_pass_the_gateway() {
    let sink = MailSink::start();
    let mut shop = LocalShop::new("notify").await;
    shop.env.push((
        "COMMERCE_SERVICES__NOTIFICATION__SMTP__PORT".into(),
        sink.smtp_port.to_string(),
    ));
    // A service client allowed to send pushes (no shipped service sends them over gRPC).
    let pusher_secret = commerce_runtime::Secret::generate();
    shop.env.extend([
        (
            "COMMERCE_SERVICES__AUTH__SERVICE_CLIENTS__PUSHER".into(),
            pusher_secret.expose().to_owned(),
        ),
        (
            "COMMERCE_SERVICES__AUTH__CLIENT_AUDIENCES__PUSHER".into(),
            "[\"notification\"]".into(),
        ),
    ]);
    shop.run(&["migrate", "--target", "all"]);
    let _running = shop.serve();
    shop.wait_until_ready().await;
    let gateway = shop.url(8080);
    let client = reqwest::Client::new();

    let email = format!("{}@example.com", unique("shopper"));
    let password = "correct horse battery 9";
    let sign_up = |first_name: &'static str| {
        client
            .post(format!("{gateway}/v1/auth/register"))
            .json(&json!({"email": email, "password": password, "firstName": first_name, "lastName": "Lee"}))
            .send()
    };
    let registered = sign_up("Sam").await.unwrap();
    assert_eq!(registered.status(), 202);
    let registered: Value = registered.json().await.unwrap();

    let mail = eventually(
        Duration::from_secs(60),
        "the verification e-mail",
        || async { sink.mail_to(&email).await.into_iter().next() },
    )
    .await;
    assert_eq!(mail["subject"], "Confirm your e-mail address");
    let text = mail["text"].as_str().unwrap();
    assert!(text.starts_with("Hi Sam,"), "{text}");
    let link_start = text
        .find("http://localhost:8080/v1/auth/verify-email?token=")
        .expect(text);
    let link: String = text[link_start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let token = token_in(text);
    assert_eq!(
        token_in(&mail["html"].as_str().unwrap().replace("&#x2f;", "/")),
        token,
        "the HTML part's button carries the same link"
    );
    // Clicking it: the gateway serves auth's page, which changes nothing by itself…
    let link = link.replace("http://localhost:8080", &gateway);
    let page = client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = page.text().await.unwrap();
    assert!(
        page.contains("<form method=\"post\" action=\"/v1/auth/verify-email\">"),
        "{page}"
    );
    let early = client
        .post(format!("{gateway}/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_ne!(early.status(), 200, "opening the link did not verify");
    // …and its button posts the token as a form.
    let confirmed = client
        .post(format!("{gateway}/v1/auth/verify-email"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let confirmed = confirmed.text().await.unwrap();
    assert!(
        confirmed.contains("Your e-mail address is confirmed"),
        "{confirmed}"
    );
    let again = client
        .post(format!("{gateway}/v1/auth/verify-email"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400, "a used link says so");

    // Someone signs up with the address again: the same answer as a new sign-up, and the
    // owner gets an e-mail saying so.
    let stranger = sign_up("Mallory").await.unwrap();
    assert_eq!(stranger.status(), 202);
    assert_eq!(stranger.json::<Value>().await.unwrap(), registered);
    let warning = eventually(
        Duration::from_secs(60),
        "the e-mail about the second sign-up",
        || async {
            sink.mail_to(&email)
                .await
                .into_iter()
                .find(|mail| mail["subject"] == "Someone tried to sign up with your e-mail address")
        },
    )
    .await;
    let warning = warning["text"].as_str().unwrap();
    assert!(warning.starts_with("Hi Sam,"), "{warning}");
    assert!(warning.contains(&email), "{warning}");
    let login: Value = client
        .post(format!("{gateway}/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["accessToken"]
        .as_str()
        .expect("verified users sign in");
    let user_id = support::me(&client, &gateway, access).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The live stream through the gateway.
    let mut stream = client
        .get(format!("{gateway}/v1/notifications/stream"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    let mut read_until = async |needle: &str| {
        while !seen.contains(needle) {
            let chunk = tokio::time::timeout(Duration::from_secs(20), stream.chunk())
                .await
                .unwrap_or_else(|_| panic!("`{needle}` within 20 s; got {seen}"))
                .unwrap()
                .expect("stream open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    read_until("event: unread").await;

    // A service sends a push. Service credentials are traded on auth's own address: the
    // gateway does not route the endpoint at all.
    let credentials = json!({
        "clientId": "pusher",
        "clientSecret": pusher_secret.expose(),
        "audience": "notification",
    });
    let at_the_edge = client
        .post(format!("{gateway}/v1/auth/service-token"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(at_the_edge.status(), 404);
    // The order service's own credentials do not reach notification.
    let order_credentials = json!({
        "clientId": "order",
        "clientSecret": shop.client_secret("order"),
        "audience": "notification",
    });
    let refused = client
        .post(format!("{}/v1/auth/service-token", shop.url(8081)))
        .json(&order_credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let service_token: Value = client
        .post(format!("{}/v1/auth/service-token", shop.url(8081)))
        .json(&credentials)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut grpc = pb::notification_service_client::NotificationServiceClient::connect(format!(
        "http://127.0.0.1:{}",
        shop.port(9087)
    ))
    .await
    .unwrap();
    let mut request = tonic::Request::new(pb::SendRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.clone(),
        kind: "fulfillment_shipped".into(),
        data: [("order_id", "0199ffff-aaaa"), ("tracking_id", "TRK-42")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        channels: vec![pb::Channel::Push as i32],
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", service_token["accessToken"].as_str().unwrap())
            .parse()
            .unwrap(),
    );
    grpc.send(request).await.unwrap();
    read_until("TRK-42").await;
    assert!(seen.contains("event: notification"), "{seen}");
    assert!(seen.contains("\"title\":\"Order shipped\""), "{seen}");
}

/// The cart service announces a cart left alone with items (`CartAbandoned`, once per idle
/// spell); the notification service asks cart whether it still is and what it holds now,
/// then mails its owner the lines at today's prices and a link back. An emptied cart is
/// not announced, and an announcement that arrives after the cart changed mails nothing.
#[tokio::test]
async fn a_cart_left_alone_is_mailed_once_with_its_lines_and_a_link_back() {
    use commerce_proto::cart::v1 as cart_pb;
    use prost::Message;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let sink = MailSink::start();
    let mut shop = LocalShop::new("cartmail").await;
    shop.env.extend([
        (
            "COMMERCE_SERVICES__NOTIFICATION__SMTP__PORT".to_owned(),
            sink.smtp_port.to_string(),
        ),
        (
            "COMMERCE_SERVICES__CART__ABANDON_AFTER".to_owned(),
            "2s".to_owned(),
        ),
    ]);
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let _running = shop.serve();
    shop.wait_until_ready().await;
    let gateway = shop.url(8080);
    let client = reqwest::Client::new();
    let customer = support::demo_login(&client, &gateway, "customer").await;
    let email = "customer@commerce.local";
    let (product_id, name): (uuid::Uuid, String) = sqlx::query_as(
        "SELECT id, name FROM products WHERE active AND stock > 5 ORDER BY sku LIMIT 1",
    )
    .fetch_one(&shop.database("product").pool)
    .await
    .unwrap();
    let added = client
        .post(format!("{gateway}/v1/cart/items"))
        .bearer_auth(&customer)
        .json(&json!({"productId": product_id, "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200, "{}", added.text().await.unwrap());
    let cart: Value = client
        .get(format!("{gateway}/v1/cart"))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cart_id = cart["id"].as_str().unwrap().to_owned();

    let mail = eventually(
        Duration::from_secs(60),
        "the cart recovery e-mail",
        || async {
            sink.mail_to(email)
                .await
                .into_iter()
                .find(|mail| mail["subject"] == "You left something in your cart")
        },
    )
    .await;
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("2 × {name}, ")) && text.contains("http://localhost:5173/cart"),
        "{text}"
    );
    // Once per idle spell: left alone longer, no second e-mail.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let recovery = |mails: Vec<Value>| {
        mails
            .into_iter()
            .filter(|mail| mail["subject"] == "You left something in your cart")
            .count()
    };
    assert_eq!(recovery(sink.mail_to(email).await), 1);

    // Emptied: a new idle spell, but nothing to announce.
    let removed = client
        .delete(format!("{gateway}/v1/cart/items/{product_id}"))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert!(removed.status().is_success(), "{}", removed.status());
    // The announcement of the earlier spell, delivered again now (as a slow consumer
    // would): the cart changed since, so nothing is mailed.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set(
            "bootstrap.servers",
            shop.env_value("COMMERCE_KAFKA__BROKERS"),
        )
        .create()
        .unwrap();
    let topic = format!(
        "{}commerce.cart.events",
        shop.env_value("COMMERCE_KAFKA__TOPIC_PREFIX")
    );
    let payload = cart_pb::CartAbandoned {
        cart_id: cart_id.clone(),
        user_id: support::me(&client, &gateway, &customer).await["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        item_count: 2,
        subtotal: None,
    }
    .encode_to_vec();
    let event_id = uuid::Uuid::now_v7().to_string();
    let headers = rdkafka::message::OwnedHeaders::new()
        .insert(rdkafka::message::Header {
            key: commerce_messaging::headers::EVENT_ID,
            value: Some(event_id.as_bytes()),
        })
        .insert(rdkafka::message::Header {
            key: commerce_messaging::headers::EVENT_TYPE,
            value: Some("commerce.cart.v1.CartAbandoned".as_bytes()),
        });
    producer
        .send(
            FutureRecord::to(&topic)
                .key(&cart_id)
                .payload(&payload)
                .headers(headers),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let consumed: i64 = eventually(
        Duration::from_secs(30),
        "the late announcement consumed",
        || async {
            let count: i64 =
                sqlx::query_scalar("SELECT count(*) FROM inbox_events WHERE event_id = $1::uuid")
                    .bind(&event_id)
                    .fetch_one(&shop.database("notification").pool)
                    .await
                    .unwrap();
            (count == 1).then_some(count)
        },
    )
    .await;
    assert_eq!(consumed, 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        recovery(sink.mail_to(email).await),
        1,
        "emptied: no more e-mail"
    );
}
