//! Logs, traces and the W3C trace-context plumbing shared by HTTP, gRPC and Kafka.
//!
//! A tracer provider is always installed, even without an exporter, so every span has a
//! trace id and `traceparent` can be carried to the next hop; spans leave the process only
//! when `telemetry.otlp_endpoint` is set.

use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.log_level: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes and stops the tracer provider when the process shuts down.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Flushes pending spans. The flush blocks while the exporter's gRPC call runs on this
    /// runtime, so it goes to a blocking thread instead of stalling the runtime it needs.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let outcome = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("telemetry shutdown: {error}"),
            Err(error) => eprintln!("telemetry shutdown: {error}"),
        }
    }
}

/// Installs JSON (or pretty) logs, the OpenTelemetry layer and the W3C propagator.
pub fn init(
    config: &TelemetryConfig,
    service_name: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_new(&config.log_level)?;
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service_name.to_owned())
            .build(),
    );
    if let Some(endpoint) = config.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("commerce"));

    let fmt_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(otel_layer)
        .with(fmt_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

/// Reads a W3C context from HTTP headers (incoming HTTP and gRPC requests).
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

/// Writes a W3C context into HTTP headers (outgoing HTTP and gRPC requests).
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the remote context found in `headers`, if any, and records the
/// trace id on it (its `trace_id` field), so log lines inside it name their trace.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent =
        global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
    record_trace_id(span);
}

/// Copies the span's OpenTelemetry trace id into its `trace_id` field.
pub fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", trace_id.to_string());
    }
}

/// Adds the current span's context to outgoing headers.
pub fn inject_current_into_headers(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers))
    });
}

/// A gRPC request for `message` that carries the caller's trace, for clients that add
/// their own metadata (service tokens) and so cannot use the interceptor.
pub fn traced_request<T>(message: T) -> tonic::Request<T> {
    let mut headers = http::HeaderMap::new();
    inject_current_into_headers(&mut headers);
    let mut request = tonic::Request::new(message);
    for (name, value) in &headers {
        if let Ok(value) = value.to_str()
            && let Ok(value) = value.parse()
            && let Ok(key) = tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes())
        {
            request.metadata_mut().insert(key, value);
        }
    }
    request
}

/// A tonic interceptor for clients: every outgoing gRPC call carries the caller's trace.
pub fn grpc_client_trace_interceptor(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    let mut headers = http::HeaderMap::new();
    inject_current_into_headers(&mut headers);
    for (name, value) in &headers {
        if let Ok(value) = value.to_str()
            && let Ok(value) = value.parse()
            && let Ok(key) = tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes())
        {
            request.metadata_mut().insert(key, value);
        }
    }
    Ok(request)
}
