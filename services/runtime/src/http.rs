//! The HTTP edge every service shares: request ids, a span per request that continues the
//! caller's trace, request metrics, and the `/healthz`, `/readyz`, `/metrics` endpoints.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::field::Empty;

use crate::health::{self, ReadinessCheck};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder; installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (tests); the handle still renders ours.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

#[derive(Clone)]
struct HealthState {
    service: &'static str,
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
}

/// `/healthz`, `/readyz` and `/metrics`: on their own listener (`ops_addr`), or merged
/// into the business routes when a service has none.
pub fn operational_router(
    service: &'static str,
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
) -> Router {
    prometheus();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_endpoint))
        .with_state(HealthState { service, checks })
}

/// Wraps a service's routes with the shared middleware.
pub fn service_router(service: &'static str, business: Router) -> Router {
    prometheus();
    business
        .layer(axum::middleware::from_fn(move |request, next| {
            record_metrics(service, request, next)
        }))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(move |request: &Request| request_span(service, request))
                        .on_response(
                            |response: &Response,
                             latency: std::time::Duration,
                             span: &tracing::Span| {
                                span.record(
                                    "http.response.status_code",
                                    response.status().as_u16(),
                                );
                                tracing::info!(
                                    status = response.status().as_u16(),
                                    latency_ms = latency.as_secs_f64() * 1000.0,
                                    "request finished"
                                );
                            },
                        ),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
}

fn request_span(service: &'static str, request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{} {}", request.method(), route),
        otel.kind = "server",
        service,
        http.request.method = %request.method(),
        http.route = %route,
        request_id,
        trace_id = Empty,
        http.response.status_code = Empty,
    );
    crate::telemetry::set_parent_from_headers(&span, request.headers());
    span
}

async fn record_metrics(service: &'static str, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let labels = [
        ("service", service.to_owned()),
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn healthz(State(state): State<HealthState>) -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok", "service": state.service }))
}

async fn readyz(State(state): State<HealthState>) -> impl IntoResponse {
    let readiness = health::evaluate(&state.checks).await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "service": state.service,
            "ready": readiness.ready,
            "checks": readiness.checks,
        })),
    )
}

async fn metrics_endpoint() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus().render(),
    )
}
