//! JSON logs and traces: kube-runtime opens a span per reconcile (object, reason); with an
//! OTLP endpoint those spans, and the operator's own, are exported.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the subscriber; keep the provider to flush spans at exit.
pub fn init(otlp_endpoint: Option<&str>) -> anyhow::Result<SdkTracerProvider> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn,rdkafka=warn"));
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name("commerce-operator")
            .build(),
    );
    if let Some(endpoint) = otlp_endpoint.filter(|endpoint| !endpoint.is_empty()) {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let traces = tracing_opentelemetry::layer().with_tracer(provider.tracer("commerce-operator"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .boxed();
    tracing_subscriber::registry()
        .with(filter)
        .with(traces)
        .with(logs)
        .try_init()?;
    Ok(provider)
}
