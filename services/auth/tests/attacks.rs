//! Everything here must be refused.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use commerce_proto::auth::v1 as pb;
use common::{GATEWAY_SECRET, PASSWORD, TestAuth, unique_email};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

/// The service's own signing key, as an attacker who stole nothing does NOT have it —
/// used here only to build tokens that are valid in every way but one.
fn signing_key(auth: &TestAuth) -> (String, rsa::RsaPrivateKey) {
    let entry = std::fs::read_dir(auth.keys_dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let kid = entry
        .path()
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let pem = std::fs::read_to_string(entry.path()).unwrap();
    (kid, rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap())
}

fn sign_rs256(kid: &str, key: &rsa::RsaPrivateKey, claims: &Value) -> String {
    use rsa::pkcs8::EncodePrivateKey;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn claims_from(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn forged_and_misaddressed_access_tokens_are_refused() {
    let auth = TestAuth::start().await;
    let login = auth.verified_login(&unique_email("target")).await;
    let genuine = login["accessToken"].as_str().unwrap().to_owned();
    let (status, _) = auth.get_as(&genuine, "/v1/users/me").await;
    assert_eq!(status, StatusCode::OK, "the genuine token works");
    let claims = claims_from(&genuine);
    let (kid, key) = signing_key(&auth);
    let now = chrono::Utc::now().timestamp();
    let with = |changes: Value| {
        let mut forged = claims.clone();
        for (field, value) in changes.as_object().unwrap() {
            forged[field] = value.clone();
        }
        forged
    };

    let mut attacks: Vec<(&str, String, &str)> = Vec::new();
    // alg: none, no signature.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with(json!({"role": "admin"}))).unwrap());
    attacks.push((
        "alg none",
        format!("{none_header}.{payload}."),
        "algorithm must be RS256",
    ));
    // Algorithm confusion: HS256 keyed with the public key everybody can fetch.
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    attacks.push((
        "HS256 with the public key",
        jsonwebtoken::encode(
            &hs_header,
            &claims,
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap(),
        "algorithm must be RS256",
    ));
    attacks.push((
        "expired",
        sign_rs256(
            &kid,
            &key,
            &with(json!({"exp": now - 120, "iat": now - 1000, "nbf": now - 1000})),
        ),
        "expired",
    ));
    attacks.push((
        "not yet valid",
        sign_rs256(
            &kid,
            &key,
            &with(json!({"nbf": now + 600, "iat": now + 600})),
        ),
        "not valid yet",
    ));
    attacks.push((
        "wrong audience",
        sign_rs256(&kid, &key, &with(json!({"aud": "someone-else"}))),
        "another audience",
    ));
    attacks.push((
        "wrong issuer",
        sign_rs256(&kid, &key, &with(json!({"iss": "evil-auth"}))),
        "another issuer",
    ));
    let rogue = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    attacks.push((
        "unknown kid",
        sign_rs256("rogue-key", &rogue, &claims),
        "unknown key",
    ));
    attacks.push((
        "right kid, wrong key",
        sign_rs256(&kid, &rogue, &claims),
        "signature is invalid",
    ));
    // Tampered payload: role raised to admin, signature kept.
    let parts: Vec<&str> = genuine.split('.').collect();
    let raised =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with(json!({"role": "admin"}))).unwrap());
    attacks.push((
        "tampered payload",
        format!("{}.{raised}.{}", parts[0], parts[2]),
        "signature is invalid",
    ));
    attacks.push((
        "no kid",
        {
            use rsa::pkcs8::EncodePrivateKey;
            let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
            jsonwebtoken::encode(
                &Header::new(Algorithm::RS256),
                &claims,
                &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            )
            .unwrap()
        },
        "no key id",
    ));
    attacks.push(("garbage", "not.a.jwt".to_owned(), "malformed"));

    for (name, token, reason) in &attacks {
        let (status, body) = auth.get_as(token, "/v1/users/me").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{name} was not refused: {body}"
        );
        assert_eq!(body["error"]["code"], "unauthenticated", "{name}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(reason),
            "{name} refused for the wrong reason: {message}"
        );
        let (status, _) = auth.get_as(token, "/v1/admin/users").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{name} reached an admin endpoint"
        );
    }
    let (status, body) = auth
        .send(auth.client.get(format!("{}/v1/users/me", auth.http)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token: {body}");
    assert_eq!(body["error"]["message"], "missing bearer token");
    auth.stop().await;
}

#[tokio::test]
async fn brute_force_login_is_throttled() {
    let auth =
        TestAuth::start_with("limits = { login_per_email = { max = 4, window = \"15m\" } }").await;
    let email = unique_email("victim");
    auth.verified_login(&email).await; // one attempt, which succeeded and reset the count
    for attempt in 1..=4 {
        let (status, _) = auth
            .post(
                "/v1/auth/login",
                json!({"email": email, "password": format!("guess number {attempt}")}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let response = auth
        .client
        .post(format!("{}/v1/auth/login", auth.http))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits out the window"
    );
    assert!(response.headers().contains_key("retry-after"));
    // Another account is not locked by this one's attacker.
    let bystander = unique_email("bystander");
    auth.verified_login(&bystander).await;
    auth.stop().await;
}

/// Behind the gateway (a trusted proxy), each client is its forwarded address: a
/// stranger's wrong guesses lock the stranger out, not the account's owner.
#[tokio::test]
async fn a_strangers_guesses_lock_out_the_stranger_only() {
    let auth = TestAuth::start_with(
        "limits = { login_per_email = { max = 3, window = \"15m\" } }\n\
         trusted_proxies = [\"127.0.0.0/8\"]",
    )
    .await;
    let email = unique_email("owner");
    auth.verified_login(&email).await;
    let login_from = |source: &'static str, password: String| {
        auth.client
            .post(format!("{}/v1/auth/login", auth.http))
            .header("x-forwarded-for", source)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    for attempt in 1..=3 {
        let response = login_from("203.0.113.7", format!("guess number {attempt}"))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let stranger = login_from("203.0.113.7", PASSWORD.to_owned())
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::TOO_MANY_REQUESTS);
    let owner = login_from("198.51.100.9", PASSWORD.to_owned())
        .await
        .unwrap();
    assert_eq!(
        owner.status(),
        StatusCode::OK,
        "the owner is not locked out"
    );
    auth.stop().await;
}

/// Where the peer is no trusted proxy, `X-Forwarded-For` is the client's own words: a
/// guesser rotating it is still one source, and is stopped.
#[tokio::test]
async fn a_forged_forwarded_address_does_not_reset_the_count() {
    let auth =
        TestAuth::start_with("limits = { login_per_email = { max = 3, window = \"15m\" } }").await;
    let email = unique_email("target");
    auth.verified_login(&email).await;
    for attempt in 1..=3 {
        let response = auth
            .client
            .post(format!("{}/v1/auth/login", auth.http))
            .header("x-forwarded-for", format!("203.0.113.{attempt}"))
            .json(&json!({"email": email, "password": format!("guess number {attempt}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let response = auth
        .client
        .post(format!("{}/v1/auth/login", auth.http))
        .header("x-forwarded-for", "203.0.113.99")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    auth.stop().await;
}

async fn grpc_client(
    auth: &TestAuth,
) -> pb::auth_service_client::AuthServiceClient<tonic::transport::Channel> {
    pb::auth_service_client::AuthServiceClient::connect(auth.grpc.clone())
        .await
        .unwrap()
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn grpc_needs_a_service_token_for_this_service() {
    let auth = TestAuth::start().await;
    let login = auth.verified_login(&unique_email("grpc")).await;
    let user_token = login["accessToken"].as_str().unwrap().to_owned();
    let (_, me) = auth.get_as(&user_token, "/v1/users/me").await;
    let user_id = me["id"].as_str().unwrap().to_owned();
    let mut grpc = grpc_client(&auth).await;
    let get_user = || pb::GetUserRequest {
        user_id: user_id.clone(),
    };

    let refused = grpc
        .get_user(tonic::Request::new(get_user()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "no token");
    let refused = grpc
        .get_user(with_token(get_user(), &user_token))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::Unauthenticated,
        "a user token has the wrong audience"
    );

    let (status, _) = auth
        .post(
            "/v1/auth/service-token",
            json!({"clientId": "gateway", "clientSecret": "wrong-secret", "audience": "auth"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = auth
        .post(
            "/v1/auth/service-token",
            json!({"clientId": "intruder", "clientSecret": GATEWAY_SECRET, "audience": "auth"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = auth
        .post(
            "/v1/auth/service-token",
            json!({"clientId": "gateway", "clientSecret": GATEWAY_SECRET, "audience": "nowhere"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("audience"))
    );
    // Good credentials, but a service this client is not allowed to call.
    let (status, body) = auth
        .post(
            "/v1/auth/service-token",
            json!({"clientId": "gateway", "clientSecret": GATEWAY_SECRET, "audience": "payment"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["error"]["message"],
        "client `gateway` may not call `payment`"
    );

    // A token for another service is refused here.
    let (_, for_product) = auth
        .post(
            "/v1/auth/service-token",
            json!({"clientId": "gateway", "clientSecret": GATEWAY_SECRET, "audience": "product"}),
        )
        .await;
    let refused = grpc
        .get_user(with_token(
            get_user(),
            for_product["accessToken"].as_str().unwrap(),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // The client-credentials helper every service uses, against the real endpoint.
    let source =
        commerce_access::ServiceTokenSource::new(&auth.http, "gateway", GATEWAY_SECRET, "auth");
    let first = source.token().await.unwrap();
    assert_eq!(
        source.token().await.unwrap(),
        first,
        "the token is reused until near expiry"
    );
    let service_claims = claims_from(&first);
    assert_eq!(
        (
            service_claims["sub"].as_str(),
            service_claims["role"].as_str()
        ),
        (Some("service:gateway"), Some("service"))
    );
    // A service token is not a user: REST endpoints for users refuse it.
    let (status, _) = auth.get_as(&first, "/v1/users/me").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "service tokens carry the wrong audience for user endpoints"
    );

    let user = grpc
        .get_user(
            source
                .authorize(tonic::Request::new(get_user()))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(user.into_inner().user.unwrap().email, me["email"]);
    let missing = grpc
        .get_user(
            source
                .authorize(tonic::Request::new(pb::GetUserRequest {
                    user_id: uuid::Uuid::new_v4().to_string(),
                }))
                .await
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let invalid = grpc
        .get_user(
            source
                .authorize(tonic::Request::new(pb::GetUserRequest {
                    user_id: "x".into(),
                }))
                .await
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);

    // ValidateToken follows the session: valid now, refused after logout.
    let validated = grpc
        .validate_token(
            source
                .authorize(tonic::Request::new(pb::ValidateTokenRequest {
                    token: user_token.clone(),
                }))
                .await
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(validated.subject, user_id);
    assert_eq!(validated.role, pb::Role::Customer as i32);
    let (status, _) = auth
        .post_as(&user_token, "/v1/auth/logout", json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let ended = grpc
        .validate_token(
            source
                .authorize(tonic::Request::new(pb::ValidateTokenRequest {
                    token: user_token.clone(),
                }))
                .await
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Unauthenticated);

    // GetAddress only answers for the owner's address.
    let other = auth.verified_login(&unique_email("owner")).await;
    let other_token = other["accessToken"].as_str().unwrap();
    let (_, address) = auth
        .post_as(
            other_token,
            "/v1/users/me/addresses",
            json!({"recipient": "O", "line1": "1 Road", "city": "Paris", "postalCode": "75001", "country": "FR"}),
        )
        .await;
    let (_, other_me) = auth.get_as(other_token, "/v1/users/me").await;
    let ask = |user: &str| pb::GetAddressRequest {
        user_id: user.to_owned(),
        address_id: address["id"].as_str().unwrap().to_owned(),
    };
    let found = grpc
        .get_address(
            source
                .authorize(tonic::Request::new(ask(other_me["id"].as_str().unwrap())))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(found.into_inner().address.unwrap().city, "Paris");
    let foreign = grpc
        .get_address(
            source
                .authorize(tonic::Request::new(ask(&user_id)))
                .await
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::NotFound);
    auth.stop().await;
}

#[tokio::test]
async fn other_services_verify_tokens_from_the_published_key_set() {
    let auth = TestAuth::start().await;
    let (status, jwks) = auth
        .send(
            auth.client
                .get(format!("{}/.well-known/jwks.json", auth.http)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (kid, _) = signing_key(&auth);
    assert_eq!(jwks["keys"][0]["kid"], kid);
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private parts are published"
    );

    let login = auth.verified_login(&unique_email("remote")).await;
    let verifier = commerce_access::TokenVerifier::with_jwks_url(
        format!("{}/.well-known/jwks.json", auth.http),
        commerce_access::VerifierSettings::new("commerce-auth", &["commerce"]),
    );
    let claims = verifier
        .verify(login["accessToken"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims.role, commerce_access::Role::Customer);
    assert!(claims.user_id().is_some());
    auth.stop().await;
}
