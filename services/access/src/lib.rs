//! Access control every service shares. The auth service signs RS256 access tokens and
//! publishes its public keys at `/.well-known/jwks.json`; every other service verifies
//! tokens locally with [`TokenVerifier`] (keys cached, refetched when an unknown `kid`
//! appears), reads who is asking with the [`Principal`] extractor, guards gRPC services
//! with [`RequireServiceToken`], and obtains its own service tokens with
//! [`ServiceTokenSource`]. [`task_admin`] puts a service's delayed-task queue in the back
//! office behind the same checks.

mod claims;
mod grpc;
mod http;
mod revocation;
mod service_token;
pub mod task_admin;
mod verifier;

pub use claims::{Claims, Role, SERVICE_SUBJECT_PREFIX};
pub use grpc::{RequireServiceToken, ServiceTokenCheck, claims_of};
pub use http::{MaybePrincipal, Principal, bearer_token};
pub use revocation::RevokedSessions;
pub use service_token::{ServiceTokenResponse, ServiceTokenSource};
pub use verifier::{TokenVerifier, VerifierSettings};

/// Why a token was refused. Messages are safe to return to the caller.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm must be RS256")]
    Algorithm,
    #[error("token has no key id")]
    NoKeyId,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token is for another audience")]
    Audience,
    #[error("token is from another issuer")]
    Issuer,
    #[error("the token's session has been signed out")]
    Revoked,
    #[error("token is invalid: {0}")]
    Invalid(String),
    /// The keys could not be fetched: the cause, or a sentence.
    #[error("key set unavailable: {0}")]
    KeySet(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Asking auth for a service token failed: the cause, or a sentence.
    #[error("service token request failed: {0}")]
    ServiceToken(#[source] Box<dyn std::error::Error + Send + Sync>),
}
