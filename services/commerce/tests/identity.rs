//! Identity under attack, through the gateway as it comes from outside.
//!
//! Signing out takes effect at once: logout, "sign out everywhere" and a disabled account
//! make the session's access token useless right away, at the gateway and at every
//! service that takes user tokens (each checks the revoked sessions in Redis; none asks
//! auth), though the token's signature and expiry are still good. And auth sees each
//! client's own address behind the gateway, so a stranger's failed logins lock out the
//! stranger, not the account's owner or everyone else.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

mod support;
use support::{LocalShop, demo_login, me};

/// One request per service that takes user tokens, made straight to the service.
const EVERY_SERVICE: &[(u16, &str, &str)] = &[
    (8081, "GET", "/v1/users/me"),
    (8082, "POST", "/v1/products"),
    (8083, "GET", "/v1/cart"),
    (8084, "GET", "/v1/orders"),
    (
        8085,
        "GET",
        "/v1/payments/0190b3c4-0000-7000-8000-000000000001",
    ),
    (
        8086,
        "GET",
        "/v1/fulfillments/0190b3c4-0000-7000-8000-000000000001",
    ),
    (8087, "GET", "/v1/notifications"),
    (8088, "GET", "/v1/chat/conversations"),
];

struct Session {
    access: String,
    refresh: String,
}

async fn sign_in(client: &Client, gateway: &str) -> Session {
    let login: Value = client
        .post(format!("{gateway}/v1/auth/login"))
        .json(&json!({
            "email": "customer@commerce.local",
            "password": "customer-demo-password-1",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Session {
        access: login["accessToken"].as_str().unwrap().to_owned(),
        refresh: login["refreshToken"].as_str().unwrap().to_owned(),
    }
}

/// What the gateway and each service answer `token`: (where, status, body).
async fn answers(client: &Client, shop: &LocalShop, token: &str) -> Vec<(String, u16, String)> {
    let mut answers = Vec::new();
    let through_gateway = (8080, "GET", "/v1/orders");
    for (port, method, path) in std::iter::once(&through_gateway).chain(EVERY_SERVICE) {
        let url = format!("{}{path}", shop.url(*port));
        let response = client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        answers.push((
            format!("{method} {url}"),
            status,
            response.text().await.unwrap(),
        ));
    }
    answers
}

async fn assert_accepted_everywhere(client: &Client, shop: &LocalShop, token: &str) {
    for (request, status, body) in answers(client, shop, token).await {
        assert_ne!(status, 401, "{request} refused a live session: {body}");
    }
}

async fn assert_refused_everywhere(client: &Client, shop: &LocalShop, token: &str) {
    for (request, status, body) in answers(client, shop, token).await {
        assert_eq!(
            status, 401,
            "{request} accepted a signed-out session: {body}"
        );
        assert!(body.contains("signed out"), "{request}: {body}");
    }
}

#[tokio::test]
async fn a_signed_out_session_is_refused_at_once_by_the_gateway_and_every_service() {
    let shop = LocalShop::new("sessions").await;
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let _server = shop.serve();
    shop.wait_until_ready().await;
    let client = Client::new();
    let gateway = shop.url(8080);

    let phone = sign_in(&client, &gateway).await;
    let laptop = sign_in(&client, &gateway).await;
    let tablet = sign_in(&client, &gateway).await;
    assert_accepted_everywhere(&client, &shop, &phone.access).await;

    // Logout ends the phone's session only.
    let logout = client
        .post(format!("{gateway}/v1/auth/logout"))
        .bearer_auth(&phone.access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_refused_everywhere(&client, &shop, &phone.access).await;
    assert_accepted_everywhere(&client, &shop, &laptop.access).await;

    // "Sign out everywhere" from the laptop ends the tablet's session too, and its
    // refresh token with it.
    let everywhere = client
        .delete(format!("{gateway}/v1/auth/sessions"))
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap();
    assert_eq!(everywhere.status(), StatusCode::NO_CONTENT);
    assert_refused_everywhere(&client, &shop, &laptop.access).await;
    assert_refused_everywhere(&client, &shop, &tablet.access).await;
    let refresh = client
        .post(format!("{gateway}/v1/auth/refresh"))
        .json(&json!({ "refreshToken": tablet.refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);

    // An admin disables the account: its newest session stops at once.
    let desk = sign_in(&client, &gateway).await;
    let me = me(&client, &gateway, &desk.access).await;
    let admin = demo_login(&client, &gateway, "admin").await;
    let disable = client
        .post(format!(
            "{gateway}/v1/admin/users/{}/disable",
            me["id"].as_str().unwrap()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(disable.status().is_success(), "{}", disable.status());
    assert_refused_everywhere(&client, &shop, &desk.access).await;
    // The admin's own session is untouched.
    assert_accepted_everywhere(&client, &shop, &admin).await;
}

#[tokio::test]
async fn a_strangers_failed_logins_lock_out_the_stranger_not_the_owner() {
    let mut shop = LocalShop::new("lockout").await;
    shop.env.extend([
        // As behind a load balancer that names the client.
        (
            "COMMERCE_SERVICES__GATEWAY__CLIENT_IP_HEADER".to_owned(),
            "x-forwarded-for".to_owned(),
        ),
        (
            "COMMERCE_SERVICES__AUTH__LIMITS__LOGIN_PER_EMAIL__MAX".to_owned(),
            "3".to_owned(),
        ),
        (
            "COMMERCE_SERVICES__AUTH__LIMITS__LOGIN_PER_EMAIL__WINDOW".to_owned(),
            "15m".to_owned(),
        ),
    ]);
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let _server = shop.serve();
    shop.wait_until_ready().await;
    let client = Client::new();
    let gateway = shop.url(8080);
    let login_from = |source: &'static str, password: &'static str| {
        client
            .post(format!("{gateway}/v1/auth/login"))
            .header("x-forwarded-for", source)
            .json(&json!({ "email": "customer@commerce.local", "password": password }))
            .send()
    };
    for guess in ["letmein-0001", "letmein-0002", "letmein-0003"] {
        let refused = login_from("203.0.113.7", guess).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let stranger = login_from("203.0.113.7", "customer-demo-password-1")
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(stranger.headers().contains_key("retry-after"));
    let owner = login_from("198.51.100.9", "customer-demo-password-1")
        .await
        .unwrap();
    assert_eq!(
        owner.status(),
        StatusCode::OK,
        "the owner is not locked out"
    );
}
