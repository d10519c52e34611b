//! The JSON error every REST endpoint answers with:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` for 401.
    pub authenticate: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            authenticate: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            authenticate: Some(r#"Bearer error="invalid_token""#),
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 503: a dependency is away; the client may retry after `retry_after_secs`.
    pub fn unavailable(retry_after_secs: u64, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; try again later",
            )
        }
    }

    /// 500 with a generic message; the cause is logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

/// How long a client is asked to wait when the database is out of reach: about what a
/// PostgreSQL restart or fail-over takes.
const DATABASE_RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    /// For a failure of the service's own storage: 503 with `Retry-After` when `error`, or
    /// any cause of it, says the database is out of reach (a restart, a fail-over, a full
    /// pool), so clients and the gateway try again; 500 for anything else.
    pub fn storage(error: &(dyn std::error::Error + 'static)) -> Self {
        if database_unreachable(error) {
            tracing::warn!(error = %error, "the database is out of reach");
            Self::unavailable(
                DATABASE_RETRY_AFTER_SECS,
                "the service's database is briefly out of reach; try again",
            )
        } else {
            Self::internal(error)
        }
    }
}

/// The gRPC status for a failure of the service's own storage: `UNAVAILABLE` when the
/// database is out of reach (callers retry), `INTERNAL` otherwise; the cause is logged,
/// never sent.
pub fn storage_status(error: &(dyn std::error::Error + 'static)) -> tonic::Status {
    if database_unreachable(error) {
        tracing::warn!(error = %error, "the database is out of reach");
        tonic::Status::unavailable("the service's database is briefly out of reach; try again")
    } else {
        tracing::error!(error = %error, "gRPC call failed");
        tonic::Status::internal("internal error")
    }
}

/// Whether `error` or a cause of it is a database connection that failed or could not be
/// had, rather than a query the database refused.
pub fn database_unreachable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(database) = current.downcast_ref::<sqlx::Error>() {
            return match database {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed => true,
                // SQLSTATE class 08 (connection exception); 57P01–57P03: the server is
                // shutting down, crashed, or cannot take connections yet.
                sqlx::Error::Database(refused) => refused.code().is_some_and(|code| {
                    code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
                }),
                _ => false,
            };
        }
        cause = current.source();
    }
    false
}

impl ApiError {
    /// The JSON body this error answers with (stored by endpoints that replay answers).
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(field) = &self.field {
            body["field"] = field.clone().into();
        }
        serde_json::json!({ "error": body })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.authenticate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// A service's public REST routes together with the operations (method, path) they serve,
/// so the OpenAPI document can be compared with the code (`openapi/openapi.yaml`). Built
/// without state: `operations()` needs no database, `into_router()` then takes the state.
pub struct ApiRoutes<S = ()> {
    router: axum::Router<S>,
    operations: Vec<(axum::http::Method, &'static str)>,
}

impl<S: Clone + Send + Sync + 'static> Default for ApiRoutes<S> {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! api_method {
    ($name:ident, $method:ident) => {
        pub fn $name<H, T>(self, path: &'static str, handler: H) -> Self
        where
            H: axum::handler::Handler<T, S>,
            T: 'static,
        {
            self.add(
                axum::http::Method::$method,
                path,
                axum::routing::$name(handler),
            )
        }
    };
}

impl<S: Clone + Send + Sync + 'static> ApiRoutes<S> {
    pub fn new() -> Self {
        Self {
            router: axum::Router::new(),
            operations: Vec::new(),
        }
    }

    fn add(
        mut self,
        method: axum::http::Method,
        path: &'static str,
        route: axum::routing::MethodRouter<S>,
    ) -> Self {
        // axum merges method routers registered on the same path.
        self.router = self.router.route(path, route);
        self.operations.push((method, path));
        self
    }

    api_method!(get, GET);
    api_method!(post, POST);
    api_method!(put, PUT);
    api_method!(patch, PATCH);
    api_method!(delete, DELETE);

    /// The service's GraphQL subgraph at `/graphql` (GET and POST). Its contract is its SDL
    /// (`graphql/subgraphs/`), so it is not among the `operations()` of the REST document,
    /// but it shares the routes' protections.
    pub fn graphql<H, T>(mut self, handler: H) -> Self
    where
        H: axum::handler::Handler<T, S>,
        T: 'static,
    {
        let route = axum::routing::post(handler.clone()).get(handler);
        self.router = self.router.route("/graphql", route);
        self
    }

    /// Every (method, path) served, in the order they were added.
    pub fn operations(&self) -> &[(axum::http::Method, &'static str)] {
        &self.operations
    }

    /// The routes, refusing NUL characters in query strings and JSON bodies.
    pub fn into_router(self) -> axum::Router<S> {
        self.router
            .layer(axum::middleware::from_fn(refuse_nul_characters))
    }
}

/// JSON bodies are read whole before this check; larger ones are refused.
const JSON_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// PostgreSQL text cannot hold NUL and no field of ours means one: a `%00` in the query or a
/// `\u0000` escape in a JSON body is refused with a 400 naming where it was, rather than
/// failing in the database with a 500. (JSON can carry NUL only as that escape.)
async fn refuse_nul_characters(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request
        .uri()
        .query()
        .is_some_and(|query| query.to_ascii_lowercase().contains("%00"))
    {
        return ApiError::invalid("query", "must not contain NUL characters").into_response();
    }
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("json"));
    if !json {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, JSON_BODY_LIMIT).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {JSON_BODY_LIMIT} bytes"),
        )
        .into_response();
    };
    if has_nul_escape(&bytes) {
        return ApiError::invalid("body", "text must not contain NUL characters (\\u0000)")
            .into_response();
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Whether JSON text holds a `\u0000` escape (not an escaped backslash followed by `u0000`).
fn has_nul_escape(json: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for (index, &byte) in json.iter().enumerate() {
        if byte == b'\\' {
            backslashes += 1;
            continue;
        }
        if byte == b'u'
            && backslashes % 2 == 1
            && json.get(index + 1..index + 5) == Some(&b"0000"[..])
        {
            return true;
        }
        backslashes = 0;
    }
    false
}

/// How an amount read from a `NUMERIC(19, 4)` column is shown: padding zeros dropped but
/// at least cents kept (9.9000 → 9.90, 1.2345 → 1.2345).
pub fn money_scale(amount: rust_decimal::Decimal) -> rust_decimal::Decimal {
    let mut amount = amount.normalize();
    if amount.scale() < 2 {
        amount.rescale(2);
    }
    amount
}

/// A query string as an extractor result, for handlers that answer its rejection
/// themselves (with [`parsed_query`]).
pub type QueryResult<T> = Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>;

/// The parsed query, or a 400 naming `query` that says what was wrong with it.
pub fn parsed_query<T>(query: QueryResult<T>) -> Result<T, ApiError> {
    query
        .map(|axum::extract::Query(inner)| inner)
        .map_err(|rejection| ApiError::invalid("query", rejection.body_text()))
}

/// Turns a JSON body rejection into a 400 that says what was wrong with the body.
pub fn json_rejection(rejection: axum::extract::rejection::JsonRejection) -> ApiError {
    ApiError::invalid("body", rejection.body_text())
}

/// Turns `validator` errors into a 400 naming the first field at fault (camelCase).
pub fn validation_error(errors: validator::ValidationErrors) -> ApiError {
    let mut fields: Vec<_> = errors.field_errors().into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    match fields.first() {
        Some((field, problems)) => {
            let message = problems
                .first()
                .and_then(|problem| problem.message.as_ref().map(|m| m.to_string()))
                .unwrap_or_else(|| format!("is invalid ({})", problems[0].code));
            ApiError::invalid(camel_case(field), message)
        }
        None => ApiError::invalid("body", errors.to_string()),
    }
}

fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for character in snake.chars() {
        if character == '_' {
            upper = true;
        } else if upper {
            out.extend(character.to_uppercase());
            upper = false;
        } else {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_cents() {
        use std::str::FromStr;
        let scaled =
            |text: &str| money_scale(rust_decimal::Decimal::from_str(text).unwrap()).to_string();
        assert_eq!(scaled("9.9000"), "9.90");
        assert_eq!(scaled("4"), "4.00");
        assert_eq!(scaled("1.2345"), "1.2345");
    }

    #[derive(Debug, thiserror::Error)]
    enum StoreError {
        #[error("storage")]
        Storage(#[source] sqlx::Error),
    }

    #[test]
    fn an_unreachable_database_is_503_with_retry_after_and_anything_else_500() {
        let away = StoreError::Storage(sqlx::Error::PoolTimedOut);
        let answer = ApiError::storage(&away);
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.retry_after, Some(1));
        let reset = StoreError::Storage(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(
            ApiError::storage(&reset).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let missing = StoreError::Storage(sqlx::Error::RowNotFound);
        let answer = ApiError::storage(&missing);
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.retry_after, None);
        assert!(!database_unreachable(&std::io::Error::other(
            "not a database"
        )));
    }

    #[test]
    fn field_names_are_camel_case() {
        assert_eq!(camel_case("first_name"), "firstName");
        assert_eq!(camel_case("email"), "email");
    }

    #[tokio::test]
    async fn api_routes_record_what_they_serve() {
        use tower::ServiceExt;
        let routes = ApiRoutes::<()>::new()
            .get("/v1/things", || async { "list" })
            .post("/v1/things", || async { StatusCode::CREATED })
            .delete("/v1/things/{id}", || async { StatusCode::NO_CONTENT });
        assert_eq!(
            routes.operations(),
            [
                (axum::http::Method::GET, "/v1/things"),
                (axum::http::Method::POST, "/v1/things"),
                (axum::http::Method::DELETE, "/v1/things/{id}"),
            ]
        );
        let router = routes.into_router();
        let call = |method: &str, uri: &str| {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let router = router.clone();
            async move { router.oneshot(request).await.unwrap().status() }
        };
        assert_eq!(call("GET", "/v1/things").await, StatusCode::OK);
        assert_eq!(call("POST", "/v1/things").await, StatusCode::CREATED);
        assert_eq!(call("DELETE", "/v1/things/7").await, StatusCode::NO_CONTENT);
        assert_eq!(
            call("PUT", "/v1/things").await,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(has_nul_escape(br#"{"name":"a\u0000b"}"#));
        assert!(has_nul_escape(br#"{"name":"\\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"name":"\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"name":"\u00e9 u0000"}"#));
        assert!(!has_nul_escape(br#"{"name":"\u000"}"#));
    }

    #[tokio::test]
    async fn nul_characters_are_refused_with_the_place_named() {
        use tower::ServiceExt;
        let router = ApiRoutes::<()>::new()
            .post("/v1/things", |body: String| async move { body })
            .get("/v1/things", || async { "list" })
            .into_router();
        let call = |method: &str, uri: &str, body: &'static str| {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await.unwrap();
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (status, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        let (status, body) = call("POST", "/v1/things", r#"{"name":"a\u0000"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains(r#""field":"body""#), "{body}");
        let (status, body) = call("POST", "/v1/things", r#"{"name":"a\\u0000"}"#).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"name":"a\\u0000"}"#)
        );
        let (status, body) = call("GET", "/v1/things?category=a%00b", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains(r#""field":"query""#), "{body}");
        let (status, _) = call("GET", "/v1/things?category=a%2500b", "").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[test]
    fn rate_limited_answers_carry_retry_after() {
        let response = ApiError::too_many_requests(7).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let response = ApiError::unauthenticated("expired").into_response();
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
