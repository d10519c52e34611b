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

/// How an amount read from a `NUMERIC(19, 4)` column is shown: padding zeros dropped but
/// at least cents kept (9.9000 → 9.90, 1.2345 → 1.2345).
pub fn money_scale(amount: rust_decimal::Decimal) -> rust_decimal::Decimal {
    let mut amount = amount.normalize();
    if amount.scale() < 2 {
        amount.rescale(2);
    }
    amount
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

    #[test]
    fn field_names_are_camel_case() {
        assert_eq!(camel_case("first_name"), "firstName");
        assert_eq!(camel_case("email"), "email");
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
