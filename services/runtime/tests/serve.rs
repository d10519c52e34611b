//! The runtime serving a service: health and readiness over HTTP and gRPC, request ids,
//! metrics, and a graceful drain on shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::routing::get;
use commerce_runtime::health::ReadinessCheck;
use commerce_runtime::service::{self, ServiceDefinition};
use commerce_runtime::{Config, ServiceContext, ServiceParts};
use tokio_util::sync::CancellationToken;

static DEPENDENCY_UP: AtomicBool = AtomicBool::new(true);
static BACKGROUND_SAW_SHUTDOWN: AtomicBool = AtomicBool::new(false);

struct Dependency;

#[async_trait]
impl ReadinessCheck for Dependency {
    fn name(&self) -> &str {
        "dependency"
    }

    async fn check(&self) -> Result<(), String> {
        if DEPENDENCY_UP.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("dependency is down".to_owned())
        }
    }
}

async fn start_echo(context: ServiceContext) -> Result<ServiceParts, commerce_runtime::BoxError> {
    let shutdown = context.shutdown.clone();
    Ok(ServiceParts {
        http: Router::new()
            .route("/v1/echo", get(|| async { "echo" }))
            .route(
                "/v1/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    "finished"
                }),
            ),
        grpc: None,
        background: vec![Box::pin(async move {
            shutdown.cancelled().await;
            // Cleanup that must complete before the process exits.
            tokio::time::sleep(Duration::from_millis(100)).await;
            BACKGROUND_SAW_SHUTDOWN.store(true, Ordering::SeqCst);
            Ok(())
        })],
        readiness: vec![Arc::new(Dependency)],
    })
}

const ECHO: ServiceDefinition = ServiceDefinition {
    name: "echo",
    summary: "test service",
    migrator: None,
    messaging: false,
    start: |context| Box::pin(start_echo(context)),
};

fn config() -> Arc<Config> {
    // Port 0: the OS picks free ports; `Running` reports them.
    Arc::new(
        Config::from_toml_str(
            r#"
            shutdown_grace = "5s"
            [kafka]
            brokers = "127.0.0.1:9092"
            [redis]
            urls = ["redis://127.0.0.1:6379"]
            [services.echo]
            http_addr = "127.0.0.1:0"
            grpc_addr = "127.0.0.1:0"
            "#,
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn serves_health_readiness_metrics_and_drains_on_shutdown() {
    let shutdown = CancellationToken::new();
    let running = service::start(config(), &[&ECHO], shutdown.clone())
        .await
        .expect("service starts");
    let http = format!("http://{}", running.http_addrs[0].1);
    let grpc = format!("http://{}", running.grpc_addrs[0].1);
    let client = reqwest::Client::new();

    let echo = client.get(format!("{http}/v1/echo")).send().await.unwrap();
    assert_eq!(echo.status(), 200);
    assert!(
        echo.headers().contains_key("x-request-id"),
        "every response carries a request id"
    );
    let health = client.get(format!("{http}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // Readiness follows the dependency, over HTTP and gRPC.
    let ready = client.get(format!("{http}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let channel = tonic::transport::Channel::from_shared(grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health_client = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = |service: &str| tonic_health::pb::HealthCheckRequest {
        service: service.to_owned(),
    };
    let serving = health_client
        .check(status("echo"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    DEPENDENCY_UP.store(false, Ordering::SeqCst);
    let not_ready = client.get(format!("{http}/readyz")).send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    let body: serde_json::Value = not_ready.json().await.unwrap();
    assert_eq!(body["checks"][0]["name"], "dependency");
    assert_eq!(body["checks"][0]["error"], "dependency is down");
    DEPENDENCY_UP.store(true, Ordering::SeqCst);

    let metrics = client
        .get(format!("{http}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"http_requests_total{service="echo",method="GET",route="/v1/echo",status="200"} 1"#
        ),
        "{metrics}"
    );

    // A request in flight when shutdown starts still gets its answer.
    let slow = tokio::spawn({
        let client = client.clone();
        let url = format!("{http}/v1/slow");
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(5), running.wait())
        .await
        .expect("drains within the grace period");
    drained.expect("clean shutdown");
    let slow = slow.await.unwrap().expect("in-flight request completes");
    assert_eq!(slow.status(), 200);
    assert_eq!(slow.text().await.unwrap(), "finished");
    assert!(
        BACKGROUND_SAW_SHUTDOWN.load(Ordering::SeqCst),
        "background work finished before exit"
    );
    // After the drain nothing listens any more.
    assert!(
        reqwest::Client::new()
            .get(format!("{http}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn operational_endpoints_stay_off_the_api_port_when_ops_addr_is_set() {
    let config = Arc::new(
        Config::from_toml_str(
            r#"
            [kafka]
            brokers = "127.0.0.1:9092"
            [redis]
            urls = ["redis://127.0.0.1:6379"]
            [services.echo]
            http_addr = "127.0.0.1:0"
            ops_addr = "127.0.0.1:0"
            "#,
        )
        .unwrap(),
    );
    let shutdown = CancellationToken::new();
    let running = service::start(config, &[&ECHO], shutdown.clone())
        .await
        .expect("service starts");
    let api = format!("http://{}", running.http_addrs[0].1);
    let ops = format!("http://{}", running.ops_addrs[0].1);
    assert_ne!(api, ops);
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap() }
    };

    assert_eq!(get(format!("{api}/v1/echo")).await.status(), 200);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(format!("{api}{path}")).await.status(), 404, "{path}");
        assert_eq!(get(format!("{ops}{path}")).await.status(), 200, "{path}");
    }
    // The API's own routes are not on the operational port.
    assert_eq!(get(format!("{ops}/v1/echo")).await.status(), 404);

    // Readiness there still follows the dependency; metrics count the API's requests.
    DEPENDENCY_UP.store(false, Ordering::SeqCst);
    let not_ready = get(format!("{ops}/readyz")).await;
    assert_eq!(not_ready.status(), 503);
    DEPENDENCY_UP.store(true, Ordering::SeqCst);
    let metrics = get(format!("{ops}/metrics")).await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"http_requests_total{service="echo",method="GET",route="/v1/echo",status="200"} 1"#
        ),
        "{metrics}"
    );

    shutdown.cancel();
    running.wait().await.expect("clean shutdown");
    assert!(client.get(format!("{ops}/healthz")).send().await.is_err());
}

#[tokio::test]
async fn unknown_targets_and_bad_addresses_fail_fast() {
    let error = service::resolve_targets(&[ECHO], &["echo,nope".to_owned()])
        .err()
        .expect("unknown target");
    assert!(error.to_string().contains("`nope`"), "{error}");
    let all = service::resolve_targets(&[ECHO], &["all".to_owned()]).unwrap();
    assert_eq!(all.len(), 1);

    // A port that is taken stops start-up with the service and address named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = Config::from_toml_str(&format!(
        r#"
        [kafka]
        brokers = "127.0.0.1:9092"
        [redis]
        urls = ["redis://127.0.0.1:6379"]
        [services.echo]
        http_addr = "127.0.0.1:{port}"
        grpc_addr = "127.0.0.1:0"
        "#
    ))
    .unwrap();
    let error = service::start(Arc::new(config), &[&ECHO], CancellationToken::new())
        .await
        .err()
        .expect("bind fails");
    let message = error.to_string();
    assert!(
        message.contains("echo") && message.contains(&port.to_string()),
        "{message}"
    );
}
