//! A tower layer for tonic servers: every call must carry a valid service token.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::server::NamedService;
use tower::{Layer, Service};

use crate::{AccessError, Claims, Role, TokenVerifier};

#[derive(Clone)]
pub struct RequireServiceToken {
    verifier: TokenVerifier,
}

impl RequireServiceToken {
    /// `verifier` should accept this service's name as audience.
    pub fn new(verifier: TokenVerifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for RequireServiceToken {
    type Service = ServiceTokenCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServiceTokenCheck {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ServiceTokenCheck<S> {
    inner: S,
    verifier: TokenVerifier,
}

impl<S: NamedService> NamedService for ServiceTokenCheck<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for ServiceTokenCheck<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let verified = match crate::http::bearer_token(request.headers()) {
                Ok(token) => verifier.verify(token).await,
                Err(error) => Err(error),
            };
            let claims = match verified {
                Ok(claims) if claims.role == Role::Service => claims,
                Ok(_) => {
                    return Ok(
                        tonic::Status::permission_denied("a service token is required").into_http(),
                    );
                }
                Err(AccessError::KeySet(cause)) => {
                    return Ok(
                        tonic::Status::unavailable(format!("cannot check tokens: {cause}"))
                            .into_http(),
                    );
                }
                Err(error) => {
                    return Ok(tonic::Status::unauthenticated(error.to_string()).into_http());
                }
            };
            request.extensions_mut().insert(claims);
            inner.call(request).await
        })
    }
}

/// The verified caller of a gRPC method guarded by [`RequireServiceToken`].
pub fn claims_of<T>(request: &tonic::Request<T>) -> Option<&Claims> {
    request.extensions().get::<Claims>()
}
