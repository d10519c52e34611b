//! The auth service's REST edge: `/v1/auth`, `/v1/users`, `/v1/admin/users` and the JWKS.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use commerce_access::{Principal, Role};
use commerce_runtime::ApiError;
use commerce_runtime::api::{ApiRoutes, json_rejection, validation_error};
use serde::Deserialize;
use uuid::Uuid;
use validator::Validate;

use crate::domain::{Address, User};
use crate::service::{self, AuthService, ClientInfo, Registration};

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<AuthService> {
    ApiRoutes::new()
        .get("/.well-known/jwks.json", jwks)
        .post("/v1/auth/register", register)
        .get("/v1/auth/verify-email", verify_email_page)
        .post("/v1/auth/verify-email", verify_email)
        .post("/v1/auth/resend-verification", resend_verification)
        .post("/v1/auth/password/forgot", forgot_password)
        .post("/v1/auth/password/reset", reset_password)
        .post("/v1/auth/login", login)
        .post("/v1/auth/refresh", refresh)
        .post("/v1/auth/logout", logout)
        .get("/v1/auth/sessions", sessions)
        .delete("/v1/auth/sessions", sign_out_everywhere)
        .delete("/v1/auth/sessions/{id}", revoke_session)
        .get("/v1/users/me", me)
        .patch("/v1/users/me", update_me)
        .post("/v1/users/me/password", change_password)
        .get("/v1/users/me/addresses", addresses)
        .post("/v1/users/me/addresses", add_address)
        .get("/v1/users/me/addresses/{id}", address)
        .put("/v1/users/me/addresses/{id}", replace_address)
        .delete("/v1/users/me/addresses/{id}", delete_address)
        .get("/v1/admin/users", list_users)
        .post("/v1/admin/users/{id}/disable", disable_user)
}

/// Service-to-service endpoints: served on auth's own address, which services call
/// directly; the public gateway routes them to nobody (`access = "internal"`), so they
/// are not in the public document.
pub fn internal_api() -> ApiRoutes<AuthService> {
    ApiRoutes::new().post("/v1/auth/service-token", service_token)
}

pub fn routes(auth: AuthService) -> Router {
    let verifier = auth.user_token_verifier();
    let schema = crate::graphql::schema(Some(auth.clone()));
    api()
        .graphql(crate::graphql::handler)
        .into_router()
        .merge(internal_api().into_router())
        .layer(Extension(schema))
        .layer(Extension(verifier))
        .with_state(auth)
}

/// A JSON body that failed neither parsing nor `validator` rules.
struct Valid<T>(T);

impl<S, T> axum::extract::FromRequest<S> for Valid<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state)
            .await
            .map_err(json_rejection)?;
        value.validate().map_err(validation_error)?;
        Ok(Self(value))
    }
}

/// Surrounding white space is never part of an e-mail address.
fn trimmed<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    String::deserialize(deserializer).map(|value| value.trim().to_owned())
}

/// The caller's address and agent, for sessions and rate limits.
struct Client(ClientInfo);

impl FromRequestParts<AuthService> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        auth: &AuthService,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            // Routers driven without a socket (in-process calls) have no peer.
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        let forwarded_for = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok());
        let ip =
            crate::domain::client_address(peer, forwarded_for, &auth.settings().trusted_proxies);
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .chars()
            .take(256)
            .collect();
        Ok(Self(ClientInfo {
            ip: ip.to_string(),
            user_agent,
        }))
    }
}

async fn jwks(State(auth): State<AuthService>) -> impl IntoResponse {
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        Json(auth.keys().jwks().clone()),
    )
}

#[derive(Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
struct RegisterRequest {
    #[serde(deserialize_with = "trimmed")]
    #[validate(
        email(message = "must be a valid e-mail address"),
        length(max = 254, message = "is too long")
    )]
    email: String,
    #[validate(length(min = 1, max = 1024, message = "is required"))]
    password: String,
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    first_name: String,
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    last_name: String,
}

async fn register(
    State(auth): State<AuthService>,
    Client(client): Client,
    Valid(request): Valid<RegisterRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let email = auth
        .register(
            Registration {
                email: &request.email,
                password: &request.password,
                first_name: &request.first_name,
                last_name: &request.last_name,
            },
            &client,
        )
        .await?;
    // The same answer whether or not the address already had an account.
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "email": email })),
    ))
}

#[derive(Deserialize, Validate)]
struct TokenRequest {
    #[validate(length(min = 1, max = 256, message = "is required"))]
    token: String,
}

/// JSON from apps; a form post from the confirmation page below answers a page.
async fn verify_email(
    State(auth): State<AuthService>,
    request: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    use axum::extract::FromRequest;
    let from_form = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !from_form {
        let Valid(body) = Valid::<TokenRequest>::from_request(request, &()).await?;
        return Ok(Json(auth.verify_email(&body.token).await?).into_response());
    }
    let page = match axum::Form::<TokenRequest>::from_request(request, &()).await {
        Err(rejection) => verification_page(
            StatusCode::BAD_REQUEST,
            "This link cannot confirm an address",
            &rejection.body_text(),
            None,
        ),
        Ok(axum::Form(form)) => match auth.verify_email(&form.token).await {
            Ok(user) => verification_page(
                StatusCode::OK,
                "Your e-mail address is confirmed",
                &format!("{} can sign in now.", user.email),
                None,
            ),
            Err(error) => {
                let error = ApiError::from(error);
                verification_page(
                    error.status,
                    "This link cannot confirm an address",
                    &error.message,
                    None,
                )
            }
        },
    };
    Ok(page)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerificationLink {
    token: String,
}

/// Where the verification e-mail's link lands: a page whose button posts the token. The
/// GET itself changes nothing, so mail scanners that open links do not use up the token.
async fn verify_email_page(
    query: Result<Query<VerificationLink>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let Query(link) =
        query.map_err(|rejection| ApiError::invalid("token", rejection.body_text()))?;
    if link.token.trim().is_empty() || link.token.len() > 256 {
        return Err(ApiError::invalid("token", "is required"));
    }
    Ok(verification_page(
        StatusCode::OK,
        "Confirm your e-mail address",
        "Press the button to confirm that this address is yours.",
        Some(&link.token),
    ))
}

fn escape_html(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            other => other.to_string(),
        })
        .collect()
}

/// A plain page (no script, no outside resources, no referrer), never cached.
fn verification_page(
    status: StatusCode,
    title: &str,
    message: &str,
    token: Option<&str>,
) -> axum::response::Response {
    let form = token.map_or_else(String::new, |token| {
        format!(
            "<form method=\"post\" action=\"/v1/auth/verify-email\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\">Confirm my e-mail address</button></form>",
            escape_html(token)
        )
    });
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head><body><main><h1>{title}</h1><p>{message}</p>{form}</main></body></html>",
        title = escape_html(title),
        message = escape_html(message),
    );
    (
        status,
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

#[derive(Deserialize, Validate)]
struct EmailRequest {
    #[serde(deserialize_with = "trimmed")]
    #[validate(email(message = "must be a valid e-mail address"))]
    email: String,
}

async fn forgot_password(
    State(auth): State<AuthService>,
    Client(client): Client,
    Valid(request): Valid<EmailRequest>,
) -> Result<impl IntoResponse, ApiError> {
    auth.request_password_reset(&request.email, &client).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "if the account exists, a reset link is on its way" })),
    ))
}

#[derive(Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct ResetPasswordRequest {
    #[validate(length(min = 1, max = 256, message = "is required"))]
    token: String,
    #[validate(length(min = 1, max = 1024, message = "is required"))]
    password: String,
}

async fn reset_password(
    State(auth): State<AuthService>,
    Valid(request): Valid<ResetPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    auth.reset_password(&request.token, &request.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangePasswordRequest {
    #[validate(length(min = 1, max = 1024, message = "is required"))]
    current_password: String,
    #[validate(length(min = 1, max = 1024, message = "is required"))]
    new_password: String,
}

async fn change_password(
    State(auth): State<AuthService>,
    principal: Principal,
    Valid(request): Valid<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    auth.change_password(
        principal.claims(),
        &request.current_password,
        &request.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn resend_verification(
    State(auth): State<AuthService>,
    Client(client): Client,
    Valid(request): Valid<EmailRequest>,
) -> Result<impl IntoResponse, ApiError> {
    auth.resend_verification(&request.email, &client).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            serde_json::json!({ "status": "if the account exists and is unverified, a new link is on its way" }),
        ),
    ))
}

#[derive(Deserialize, Validate)]
struct LoginRequest {
    #[validate(length(min = 1, max = 254, message = "is required"))]
    email: String,
    #[validate(length(min = 1, max = 1024, message = "is required"))]
    password: String,
}

async fn login(
    State(auth): State<AuthService>,
    Client(client): Client,
    Valid(request): Valid<LoginRequest>,
) -> Result<Json<service::TokenPair>, ApiError> {
    Ok(Json(
        auth.login(&request.email, &request.password, &client)
            .await?,
    ))
}

#[derive(Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
struct RefreshRequest {
    #[validate(length(min = 1, max = 256, message = "is required"))]
    refresh_token: String,
}

async fn refresh(
    State(auth): State<AuthService>,
    Valid(request): Valid<RefreshRequest>,
) -> Result<Json<service::TokenPair>, ApiError> {
    Ok(Json(auth.refresh(&request.refresh_token).await?))
}

async fn logout(
    State(auth): State<AuthService>,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    auth.logout(principal.claims()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn sessions(
    State(auth): State<AuthService>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    let sessions = auth.sessions(principal.user_id()?).await?;
    Ok(Json(
        serde_json::json!({ "items": sessions, "current": principal.claims().sid }),
    ))
}

async fn sign_out_everywhere(
    State(auth): State<AuthService>,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    auth.sign_out_everywhere(principal.user_id()?).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_id(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

async fn revoke_session(
    State(auth): State<AuthService>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.revoke_session(principal.user_id()?, parse_id("id", &id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
struct ServiceTokenRequest {
    #[validate(length(min = 1, max = 64, message = "is required"))]
    client_id: String,
    #[validate(length(min = 1, max = 512, message = "is required"))]
    client_secret: String,
    #[validate(length(min = 1, max = 64, message = "is required"))]
    audience: String,
}

async fn service_token(
    State(auth): State<AuthService>,
    Valid(request): Valid<ServiceTokenRequest>,
) -> Result<Json<commerce_access::ServiceTokenResponse>, ApiError> {
    let (access_token, expires_in) = auth.service_token(
        &request.client_id,
        &request.client_secret,
        &request.audience,
    )?;
    Ok(Json(commerce_access::ServiceTokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in,
    }))
}

async fn me(State(auth): State<AuthService>, principal: Principal) -> Result<Json<User>, ApiError> {
    Ok(Json(auth.user(principal.user_id()?).await?))
}

#[derive(Deserialize, Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProfilePatch {
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    first_name: Option<String>,
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    last_name: Option<String>,
}

async fn update_me(
    State(auth): State<AuthService>,
    principal: Principal,
    Valid(patch): Valid<ProfilePatch>,
) -> Result<Json<User>, ApiError> {
    let user = auth
        .update_profile(
            principal.user_id()?,
            patch.first_name.as_deref(),
            patch.last_name.as_deref(),
        )
        .await?;
    Ok(Json(user))
}

#[derive(Deserialize, Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddressRequest {
    #[serde(default)]
    #[validate(length(max = 50, message = "must be at most 50 characters"))]
    label: String,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    recipient: String,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    line1: String,
    #[serde(default)]
    #[validate(length(max = 200, message = "must be at most 200 characters"))]
    line2: String,
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    city: String,
    #[serde(default)]
    #[validate(length(max = 100, message = "must be at most 100 characters"))]
    region: String,
    #[validate(length(min = 1, max = 20, message = "must be 1 to 20 characters"))]
    postal_code: String,
    #[validate(length(equal = 2, message = "must be a two-letter ISO 3166-1 code"))]
    country: String,
    #[serde(default)]
    #[validate(length(max = 32, message = "must be at most 32 characters"))]
    phone: String,
    #[serde(default)]
    is_default: bool,
}

impl AddressRequest {
    fn into_address(self, user_id: Uuid, id: Uuid) -> Address {
        Address {
            id,
            user_id,
            label: self.label.trim().to_owned(),
            recipient: self.recipient.trim().to_owned(),
            line1: self.line1.trim().to_owned(),
            line2: self.line2.trim().to_owned(),
            city: self.city.trim().to_owned(),
            region: self.region.trim().to_owned(),
            postal_code: self.postal_code.trim().to_owned(),
            country: self.country.trim().to_uppercase(),
            phone: self.phone.trim().to_owned(),
            is_default: self.is_default,
        }
    }
}

async fn addresses(
    State(auth): State<AuthService>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        serde_json::json!({ "items": auth.addresses(principal.user_id()?).await? }),
    ))
}

async fn add_address(
    State(auth): State<AuthService>,
    principal: Principal,
    Valid(request): Valid<AddressRequest>,
) -> Result<(StatusCode, Json<Address>), ApiError> {
    let address = auth
        .add_address(request.into_address(principal.user_id()?, Uuid::nil()))
        .await?;
    Ok((StatusCode::CREATED, Json(address)))
}

async fn address(
    State(auth): State<AuthService>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Address>, ApiError> {
    Ok(Json(
        auth.address(principal.user_id()?, parse_id("id", &id)?)
            .await?,
    ))
}

async fn replace_address(
    State(auth): State<AuthService>,
    principal: Principal,
    Path(id): Path<String>,
    Valid(request): Valid<AddressRequest>,
) -> Result<Json<Address>, ApiError> {
    let address = request.into_address(principal.user_id()?, parse_id("id", &id)?);
    Ok(Json(auth.replace_address(address).await?))
}

async fn delete_address(
    State(auth): State<AuthService>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.delete_address(principal.user_id()?, parse_id("id", &id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageQuery {
    page: Option<u32>,
    page_size: Option<u32>,
}

async fn list_users(
    State(auth): State<AuthService>,
    principal: Principal,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid("query", rejection.body_text()))?;
    let page = query.page.unwrap_or(1);
    let page_size = query.page_size.unwrap_or(50);
    if page == 0 {
        return Err(ApiError::invalid("page", "starts at 1"));
    }
    if !(1..=200).contains(&page_size) {
        return Err(ApiError::invalid("pageSize", "must be 1 to 200"));
    }
    let users = auth.list_users(page, page_size).await?;
    Ok(Json(
        serde_json::json!({ "items": users, "page": page, "pageSize": page_size }),
    ))
}

async fn disable_user(
    State(auth): State<AuthService>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(&[Role::Admin])?;
    let id = parse_id("id", &id)?;
    if principal.claims().user_id() == Some(id) {
        return Err(ApiError::invalid(
            "id",
            "admins cannot disable their own account",
        ));
    }
    auth.disable_user(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
