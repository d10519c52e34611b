//! Who is asking, for axum handlers.

use axum::extract::FromRequestParts;
use commerce_runtime::ApiError;
use http::request::Parts;
use uuid::Uuid;

use crate::{AccessError, Claims, Role, TokenVerifier};

/// The verified caller. Add the service's [`TokenVerifier`] to the router with
/// `.layer(axum::Extension(verifier))`; a handler that takes `Principal` then answers 401
/// to anyone without a valid bearer token.
#[derive(Debug, Clone)]
pub struct Principal(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let verifier = parts
            .extensions
            .get::<TokenVerifier>()
            .cloned()
            .ok_or_else(|| ApiError::internal("no TokenVerifier extension on this router"))?;
        let token = bearer_token(&parts.headers)
            .map_err(|error| ApiError::unauthenticated(error.to_string()))?;
        match verifier.verify(token).await {
            Ok(claims) => Ok(Self(claims)),
            Err(AccessError::KeySet(cause)) => Err(ApiError::unavailable(
                5,
                format!("cannot check tokens right now: {cause}"),
            )),
            Err(error) => Err(ApiError::unauthenticated(error.to_string())),
        }
    }
}

/// The caller if a bearer token was sent, for public endpoints that show more to some
/// roles. A token that is sent but invalid is still refused (401), never ignored.
#[derive(Debug, Clone)]
pub struct MaybePrincipal(pub Option<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for MaybePrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(http::header::AUTHORIZATION) {
            return Ok(Self(None));
        }
        Principal::from_request_parts(parts, state)
            .await
            .map(|principal| Self(Some(principal)))
    }
}

impl MaybePrincipal {
    pub fn has_role(&self, roles: &[Role]) -> bool {
        self.0
            .as_ref()
            .is_some_and(|principal| roles.contains(&principal.role()))
    }
}

impl Principal {
    pub fn claims(&self) -> &Claims {
        &self.0
    }

    pub fn role(&self) -> Role {
        self.0.role
    }

    /// The calling user's id; 403 for service tokens.
    pub fn user_id(&self) -> Result<Uuid, ApiError> {
        self.0
            .user_id()
            .ok_or_else(|| ApiError::forbidden("this endpoint is for users"))
    }

    /// Who did it, for audit records: `user:<id>` or `service:<id>`.
    pub fn actor(&self) -> String {
        match self.0.user_id() {
            Some(id) => format!("user:{id}"),
            None => self.0.sub.clone(),
        }
    }

    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "requires role {}",
                roles
                    .iter()
                    .map(|role| role.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &http::HeaderMap) -> Result<&str, AccessError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(AccessError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(AccessError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AccessError::Missing);
    }
    Ok(token.trim())
}
