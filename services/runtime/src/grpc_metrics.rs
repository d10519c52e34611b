//! Request metrics for gRPC servers: count and latency by service, method and gRPC code.
//!
//! Unary errors travel as trailers-only responses, whose `grpc-status` is a header; a
//! response without it is counted as code 0 (success). A streamed response that fails
//! after its headers would be counted as 0 — none of our RPCs stream yet.

use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tower::{Layer, Service};

#[derive(Clone)]
pub struct GrpcMetricsLayer {
    service: &'static str,
}

impl GrpcMetricsLayer {
    pub fn new(service: &'static str) -> Self {
        Self { service }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            service: self.service,
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    service: &'static str,
}

impl<S, B, R> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let service = self.service;
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("0")
                .to_owned();
            let labels = [
                ("service", service.to_owned()),
                ("method", method),
                ("code", code),
            ];
            metrics::counter!("grpc_requests_total", &labels).increment(1);
            metrics::histogram!("grpc_request_duration_seconds", &labels)
                .record(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}
