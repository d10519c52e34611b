//! Registration, verification, login, refresh rotation, sessions and addresses.

mod common;

use common::{PASSWORD, TestAuth, unique_email};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn register_verify_and_log_in() {
    let auth = TestAuth::start().await;
    let email = unique_email("ada");
    let user = auth
        .register(&format!("  {}  ", email.to_uppercase()))
        .await;
    assert_eq!(user["email"], email, "e-mail is stored normalised");
    assert_eq!(user["status"], "unverified");

    // Signing up again with the address is answered exactly like a new sign-up; the
    // owner is told instead (an event the notification service e-mails).
    let (status, body) = auth
        .post(
            "/v1/auth/register",
            json!({"email": email, "password": PASSWORD, "firstName": "A", "lastName": "B"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({ "email": email }))
    );
    let told: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM outbox_events WHERE aggregate_id = $1 ORDER BY seq",
    )
    .bind(user["id"].as_str().unwrap())
    .fetch_all(&auth.pool)
    .await
    .unwrap();
    assert_eq!(
        told,
        [
            "commerce.auth.v1.UserRegistered",
            "commerce.auth.v1.RegistrationAttempted"
        ]
    );
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&auth.pool)
        .await
        .unwrap();
    assert_eq!(accounts, 1);

    let (status, body) = auth
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "unverified users cannot log in: {body}"
    );

    let token = auth.verification_token(user["id"].as_str().unwrap()).await;
    let (status, verified) = auth
        .post("/v1/auth/verify-email", json!({ "token": token }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verified["status"], "active");
    let (status, body) = auth
        .post("/v1/auth/verify-email", json!({ "token": token }))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a replayed verification token is refused"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already been used")
    );
    let verified_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events WHERE event_type = 'commerce.auth.v1.EmailVerified' AND aggregate_id = $1",
    )
    .bind(user["id"].as_str().unwrap())
    .fetch_one(&auth.pool)
    .await
    .unwrap();
    assert_eq!(verified_events, 1);

    let tokens = auth.login(&email, PASSWORD).await;
    assert_eq!(tokens["tokenType"], "Bearer");
    let access = tokens["accessToken"].as_str().unwrap();
    let patch = |body: serde_json::Value| {
        auth.send(
            auth.client
                .patch(format!("{}/v1/users/me", auth.http))
                .bearer_auth(access)
                .json(&body),
        )
    };
    let (status, patched) = patch(json!({"firstName": "  Augusta "})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (patched["firstName"].as_str(), patched["lastName"].as_str()),
        (Some("Augusta"), Some("Lovelace"))
    );
    let (status, body) = patch(json!({"role": "admin"})).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a user cannot raise their own role: {body}"
    );
    let (status, body) = patch(json!({"lastName": ""})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("lastName"))
    );
    assert_eq!(tokens["expiresIn"], 900);
    let (status, me) = auth
        .get_as(tokens["accessToken"].as_str().unwrap(), "/v1/users/me")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], email);

    // Wrong password and unknown e-mail answer alike.
    let (wrong_status, wrong) = auth
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": "not the password 1"}),
        )
        .await;
    let (unknown_status, unknown) = auth
        .post(
            "/v1/auth/login",
            json!({"email": unique_email("nobody"), "password": PASSWORD}),
        )
        .await;
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
    assert_eq!((wrong_status, &wrong), (unknown_status, &unknown));
    auth.stop().await;
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let auth = TestAuth::start().await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD, "firstName": "A", "lastName": "B"}),
            "email",
        ),
        (
            json!({"email": unique_email("x"), "password": "short1", "firstName": "A", "lastName": "B"}),
            "password",
        ),
        (
            json!({"email": unique_email("x"), "password": "no digits at all here", "firstName": "A", "lastName": "B"}),
            "password",
        ),
        (
            json!({"email": unique_email("x"), "password": PASSWORD, "firstName": "", "lastName": "B"}),
            "firstName",
        ),
        (
            json!({"email": unique_email("x"), "password": PASSWORD, "firstName": "A"}),
            "body",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = auth.post("/v1/auth/register", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let (status, answer) = auth
        .send(
            auth.client
                .post(format!("{}/v1/auth/login", auth.http))
                .header("content-type", "application/json")
                .body("{nope"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&auth.pool)
        .await
        .unwrap();
    assert_eq!(users, 0, "nothing was created from bad input");
    auth.stop().await;
}

#[tokio::test]
async fn verification_tokens_expire_and_resends_replace_them() {
    let auth =
        TestAuth::start_with("limits = { resend_per_user = { max = 2, window = \"1h\" } }").await;
    let email = unique_email("resend");
    let user = auth.register(&email).await;
    let user_id = user["id"].as_str().unwrap().to_owned();
    let first = auth.verification_token(&user_id).await;

    let (status, _) = auth
        .post("/v1/auth/resend-verification", json!({ "email": email }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let second = auth.verification_token(&user_id).await;
    assert_ne!(first, second);
    let (status, body) = auth
        .post("/v1/auth/verify-email", json!({ "token": first }))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an older token stops working: {body}"
    );

    // An expired token answers 410.
    sqlx::query("UPDATE email_verifications SET expires_at = now() - interval '1 minute' WHERE user_id = $1::uuid")
        .bind(&user_id)
        .execute(&auth.pool)
        .await
        .unwrap();
    let (status, body) = auth
        .post("/v1/auth/verify-email", json!({ "token": second }))
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"]["field"], "token");

    // Unknown e-mails are answered like known ones.
    let (status, _) = auth
        .post(
            "/v1/auth/resend-verification",
            json!({ "email": unique_email("ghost") }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Rate limited per user: the limit is 2 per hour and one was used above.
    let (status, _) = auth
        .post("/v1/auth/resend-verification", json!({ "email": email }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let response = auth
        .client
        .post(format!("{}/v1/auth/resend-verification", auth.http))
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 3600);

    let third = auth.verification_token(&user_id).await;
    let (status, verified) = auth
        .post("/v1/auth/verify-email", json!({ "token": third }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verified["status"], "active");
    auth.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let auth = TestAuth::start().await;
    let email = unique_email("rotate");
    let login = auth.verified_login(&email).await;
    let first_refresh = login["refreshToken"].as_str().unwrap().to_owned();

    let (status, rotated) = auth
        .post("/v1/auth/refresh", json!({ "refreshToken": first_refresh }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let second_refresh = rotated["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(first_refresh, second_refresh);
    assert_eq!(
        rotated["sessionId"], login["sessionId"],
        "rotation stays in the session"
    );
    let (status, _) = auth
        .get_as(rotated["accessToken"].as_str().unwrap(), "/v1/users/me")
        .await;
    assert_eq!(status, StatusCode::OK);

    // The old token again: theft assumed, the whole family dies.
    let (status, body) = auth
        .post("/v1/auth/refresh", json!({ "refreshToken": first_refresh }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
    let (status, _) = auth
        .post(
            "/v1/auth/refresh",
            json!({ "refreshToken": second_refresh }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the newest token of a revoked family is dead too"
    );
    let reason: String =
        sqlx::query_scalar("SELECT revoked_reason FROM sessions WHERE id = $1::uuid")
            .bind(login["sessionId"].as_str().unwrap())
            .fetch_one(&auth.pool)
            .await
            .unwrap();
    assert_eq!(reason, "refresh token reuse");

    let (status, _) = auth
        .post("/v1/auth/refresh", json!({ "refreshToken": "made-up" }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    auth.stop().await;
}

#[tokio::test]
async fn sessions_can_be_listed_revoked_and_logged_out() {
    let auth = TestAuth::start().await;
    let email = unique_email("sessions");
    let first = auth.verified_login(&email).await;
    let second = auth.login(&email, common::PASSWORD).await;
    let access = first["accessToken"].as_str().unwrap();

    let (status, listed) = auth.get_as(access, "/v1/auth/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert_eq!(listed["current"], first["sessionId"]);

    // Someone else cannot revoke my session.
    let other = auth.verified_login(&unique_email("other")).await;
    let path = format!(
        "/v1/auth/sessions/{}",
        second["sessionId"].as_str().unwrap()
    );
    let (status, _) = auth
        .delete_as(other["accessToken"].as_str().unwrap(), &path)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = auth.delete_as(access, &path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = auth
        .post(
            "/v1/auth/refresh",
            json!({ "refreshToken": second["refreshToken"] }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked session cannot refresh"
    );

    let (status, _) = auth.post_as(access, "/v1/auth/logout", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = auth
        .post(
            "/v1/auth/refresh",
            json!({ "refreshToken": first["refreshToken"] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "logout ends the session");
    auth.stop().await;
}

fn address(label: &str, default: bool) -> serde_json::Value {
    json!({
        "label": label, "recipient": "Ada Lovelace", "line1": "12 St James's Square",
        "city": "London", "postalCode": "SW1Y 4JH", "country": "gb", "isDefault": default
    })
}

#[tokio::test]
async fn addresses_belong_to_their_owner() {
    let auth = TestAuth::start().await;
    let alice = auth.verified_login(&unique_email("alice")).await;
    let bob = auth.verified_login(&unique_email("bob")).await;
    let (alice, bob) = (
        alice["accessToken"].as_str().unwrap(),
        bob["accessToken"].as_str().unwrap(),
    );

    let (status, home) = auth
        .post_as(alice, "/v1/users/me/addresses", address("home", false))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{home}");
    assert_eq!(home["isDefault"], true, "the first address is the default");
    assert_eq!(home["country"], "GB");
    let (status, work) = auth
        .post_as(alice, "/v1/users/me/addresses", address("work", true))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, listed) = auth.get_as(alice, "/v1/users/me/addresses").await;
    let defaults: Vec<_> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["isDefault"] == true)
        .collect();
    assert_eq!(defaults.len(), 1);
    assert_eq!(defaults[0]["id"], work["id"]);

    let path = format!("/v1/users/me/addresses/{}", home["id"].as_str().unwrap());
    let (status, _) = auth.get_as(bob, &path).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "Bob cannot read Alice's address"
    );
    let (status, _) = auth.put_as(bob, &path, address("stolen", false)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "Bob cannot change it");
    let (status, _) = auth.delete_as(bob, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "Bob cannot delete it");
    let (_, unchanged) = auth.get_as(alice, &path).await;
    assert_eq!(unchanged["label"], "home");

    let (status, body) = auth
        .post_as(alice, "/v1/users/me/addresses", json!({"recipient": "x"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = auth
        .post_as(
            alice,
            "/v1/users/me/addresses",
            address("x", false)
                .as_object()
                .unwrap()
                .clone()
                .into_iter()
                .map(|(k, v)| {
                    if k == "country" {
                        (k, json!("G1"))
                    } else {
                        (k, v)
                    }
                })
                .collect(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "country");

    let (status, _) = auth.delete_as(alice, &path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = auth.get_as(alice, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    auth.stop().await;
}

#[tokio::test]
async fn admins_list_and_disable_users() {
    let auth = TestAuth::start().await;
    let admin_email = unique_email("admin");
    auth.verified_login(&admin_email).await;
    auth.promote(&admin_email, "admin").await;
    let admin = auth.login(&admin_email, PASSWORD).await;
    let admin = admin["accessToken"].as_str().unwrap();
    let customer_email = unique_email("customer");
    let customer = auth.verified_login(&customer_email).await;
    let customer_token = customer["accessToken"].as_str().unwrap();

    let (status, _) = auth.get_as(customer_token, "/v1/admin/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, users) = auth.get_as(admin, "/v1/admin/users?pageSize=10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users["items"].as_array().unwrap().len(), 2);
    let (status, _) = auth.get_as(admin, "/v1/admin/users?pageSize=1000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, me) = auth.get_as(customer_token, "/v1/users/me").await;
    let disable = format!("/v1/admin/users/{}/disable", me["id"].as_str().unwrap());
    let (status, _) = auth.post_as(customer_token, &disable, json!({})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "customers cannot disable anyone"
    );
    let (status, _) = auth.post_as(admin, &disable, json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = auth
        .post(
            "/v1/auth/refresh",
            json!({ "refreshToken": customer["refreshToken"] }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "disabling ends every session"
    );
    let (status, body) = auth
        .post(
            "/v1/auth/login",
            json!({"email": customer_email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    auth.stop().await;
}

#[tokio::test]
async fn a_forgotten_password_is_reset_by_e_mail_and_a_known_one_changed() {
    let auth = TestAuth::start().await;
    let email = unique_email("forgetful");
    let laptop = auth.verified_login(&email).await;
    let phone = auth.login(&email, PASSWORD).await;
    let (_, me) = auth
        .get_as(laptop["accessToken"].as_str().unwrap(), "/v1/users/me")
        .await;
    let user_id = me["id"].as_str().unwrap().to_owned();

    // The same answer for an address nobody has.
    let (status, known) = auth
        .post("/v1/auth/password/forgot", json!({ "email": email }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, unknown) = auth
        .post(
            "/v1/auth/password/forgot",
            json!({ "email": unique_email("nobody") }),
        )
        .await;
    assert_eq!((status, unknown), (StatusCode::ACCEPTED, known));
    let first = auth.reset_token(&user_id).await;
    auth.post("/v1/auth/password/forgot", json!({ "email": email }))
        .await;
    let token = auth.reset_token(&user_id).await;
    assert_ne!(first, token);

    let new_password = "a brand new passphrase 7";
    let (status, body) = auth
        .post(
            "/v1/auth/password/reset",
            json!({ "token": token, "password": "short" }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("password"))
    );
    let (status, body) = auth
        .post(
            "/v1/auth/password/reset",
            json!({ "token": first, "password": new_password }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an older link stops working: {body}"
    );
    let (status, _) = auth
        .post(
            "/v1/auth/password/reset",
            json!({ "token": token, "password": new_password }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = auth
        .post(
            "/v1/auth/password/reset",
            json!({ "token": token, "password": "yet another passphrase 8" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the link works once");

    // Every session ended, access and refresh tokens alike; the old password is gone.
    for session in [&laptop, &phone] {
        let (status, _) = auth
            .get_as(session["accessToken"].as_str().unwrap(), "/v1/users/me")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = auth
            .post(
                "/v1/auth/refresh",
                json!({ "refreshToken": session["refreshToken"] }),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = auth
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Changing it needs the current one, and ends every other session.
    let desk = auth.login(&email, new_password).await;
    let tablet = auth.login(&email, new_password).await;
    let desk_token = desk["accessToken"].as_str().unwrap();
    let change = |current: &'static str, next: &'static str| {
        auth.client
            .post(format!("{}/v1/users/me/password", auth.http))
            .bearer_auth(desk_token)
            .json(&json!({ "currentPassword": current, "newPassword": next }))
            .send()
    };
    let wrong = change("not my password at all", "the third passphrase 9")
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let wrong: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(wrong["error"]["field"], "currentPassword");
    let changed = change("a brand new passphrase 7", "the third passphrase 9")
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let (status, _) = auth.get_as(desk_token, "/v1/users/me").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the session that changed it goes on"
    );
    let (status, _) = auth
        .get_as(tablet["accessToken"].as_str().unwrap(), "/v1/users/me")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    auth.login(&email, "the third passphrase 9").await;

    // The owner is told of each change.
    let told: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events WHERE aggregate_id = $1
         AND event_type = 'commerce.auth.v1.PasswordChanged'",
    )
    .bind(&user_id)
    .fetch_one(&auth.pool)
    .await
    .unwrap();
    assert_eq!(told, 2);
    auth.stop().await;
}
