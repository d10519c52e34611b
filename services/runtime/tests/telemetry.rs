//! Traces leave the process over OTLP/gRPC and continue the caller's W3C trace context.
//! The collector here is an in-test server speaking the OTLP trace service protocol.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use commerce_runtime::config::{LogFormat, TelemetryConfig};
use commerce_runtime::service::{self, ServiceDefinition};
use commerce_runtime::{Config, ServiceContext, ServiceParts, telemetry};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio_util::sync::CancellationToken;
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Answers with the trace id the server-side span belongs to.
async fn current_trace_id() -> String {
    tracing::Span::current()
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string()
}

async fn start_traced(
    _context: ServiceContext,
) -> Result<ServiceParts, commerce_runtime::BoxError> {
    Ok(ServiceParts {
        http: Router::new().route("/v1/trace", get(current_trace_id)),
        ..ServiceParts::default()
    })
}

const TRACED: ServiceDefinition = ServiceDefinition {
    name: "traced",
    summary: "test service",
    migrator: None,
    messaging: false,
    start: |context| Box::pin(start_traced(context)),
};

#[tokio::test]
async fn http_spans_continue_the_callers_trace_and_reach_the_collector() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream(listener)),
    );

    let guard = telemetry::init(
        &TelemetryConfig {
            log_format: LogFormat::Json,
            log_level: "info".to_owned(),
            otlp_endpoint: Some(format!("http://{collector_addr}")),
        },
        "commerce-telemetry-test",
    )
    .expect("telemetry installs");

    let config = Config::from_toml_str(
        r#"
        [kafka]
        brokers = "127.0.0.1:9092"
        [redis]
        urls = ["redis://127.0.0.1:6379"]
        [services.traced]
        http_addr = "127.0.0.1:0"
        grpc_addr = "127.0.0.1:0"
        "#,
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let running = service::start(Arc::new(config), &[&TRACED], shutdown.clone())
        .await
        .unwrap();
    let http = format!("http://{}", running.http_addrs[0].1);

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let answered = reqwest::Client::new()
        .get(format!("{http}/v1/trace"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        answered, trace_id,
        "the server span must join the caller's trace"
    );

    // A gRPC client call made inside a span carries that span's context out.
    let outgoing_trace = {
        let span = tracing::info_span!("client-call");
        let _entered = span.enter();
        let request = telemetry::grpc_client_trace_interceptor(tonic::Request::new(())).unwrap();
        let traceparent = request
            .metadata()
            .get("traceparent")
            .expect("traceparent metadata")
            .to_str()
            .unwrap()
            .to_owned();
        (
            traceparent,
            span.context().span().span_context().trace_id().to_string(),
        )
    };
    assert!(
        outgoing_trace.0.contains(&outgoing_trace.1),
        "{outgoing_trace:?}"
    );

    shutdown.cancel();
    running.wait().await.unwrap();
    guard.shutdown().await; // flushes the batch to the collector

    let spans = collector.spans.lock().unwrap().clone();
    let server_span = spans
        .iter()
        .find(|span| span.name == "GET /v1/trace")
        .unwrap_or_else(|| {
            panic!(
                "no server span exported; got {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(hex(&server_span.trace_id), trace_id);
    assert_eq!(hex(&server_span.parent_span_id), caller_span);
    assert_eq!(
        server_span.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
    );
    // The span's `trace_id` field (printed on every JSON log line inside it) is the trace.
    let logged_trace_id = server_span
        .attributes
        .iter()
        .find(|attribute| attribute.key == "trace_id")
        .and_then(|attribute| attribute.value.as_ref())
        .and_then(|value| match &value.value {
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(text)) => {
                Some(text.clone())
            }
            _ => None,
        });
    assert_eq!(logged_trace_id.as_deref(), Some(trace_id));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn tokio_stream(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures::stream::unfold(listener, |listener| async move {
        Some((listener.accept().await.map(|(stream, _)| stream), listener))
    })
}
