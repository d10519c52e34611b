//! The gateway in front of real upstream HTTP servers, with real Redis for the shared rate
//! limits and a real RSA-signed JWKS: the checks at the edge, retries, the breaker when an
//! upstream dies and comes back, and WebSocket and SSE streams passing through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message as ServerMessage, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use axum::routing::{any, get};
use commerce_runtime::service::{self, Running};
use commerce_runtime::{Config, config::TelemetryConfig};
use commerce_testkit::{TestIssuer, free_port, required_env, unique};
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the upstream saw and controls for the test.
#[derive(Default)]
struct Upstream {
    flaky_calls: AtomicUsize,
    failing_posts: AtomicUsize,
    release_second_event: Notify,
}

async fn echo(request: Request) -> axum::Json<Value> {
    let (method, uri) = (request.method().to_string(), request.uri().clone());
    let headers = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        json!({
            "authorization": header("authorization"),
            "x-forwarded-for": header("x-forwarded-for"),
            "x-forwarded-host": header("x-forwarded-host"),
            "x-request-id": header("x-request-id"),
            "traceparent": header("traceparent"),
            "connection": header("connection"),
            "x-hop": header("x-hop"),
        })
    };
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    axum::Json(json!({
        "method": method,
        "path": uri.path(),
        "query": uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

fn upstream_router(state: Arc<Upstream>) -> Router {
    Router::new()
        .route("/v1/echo", any(echo))
        .route("/v1/echo/{*rest}", any(echo))
        .route(
            "/v1/flaky",
            get(|State(state): State<Arc<Upstream>>| async move {
                // Unavailable twice, then fine.
                if state.flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    "recovered".into_response()
                }
            })
            .post(|State(state): State<Arc<Upstream>>| async move {
                state.failing_posts.fetch_add(1, Ordering::SeqCst);
                StatusCode::SERVICE_UNAVAILABLE
            }),
        )
        .route(
            "/v1/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/v1/notifications/stream",
            get(|State(state): State<Arc<Upstream>>| async move {
                let events = futures::stream::once(async { Event::default().data("first") })
                    .chain(futures::stream::once(async move {
                        state.release_second_event.notified().await;
                        Event::default().data("second")
                    }))
                    .map(Ok::<_, std::convert::Infallible>);
                Sse::new(events)
            }),
        )
        .route(
            "/v1/chat/ws",
            get(|upgrade: WebSocketUpgrade| async move {
                upgrade.on_upgrade(|mut socket| async move {
                    while let Some(Ok(message)) = socket.recv().await {
                        if let ServerMessage::Text(text) = message {
                            let reply = format!("echo: {}", text.as_str());
                            if socket
                                .send(ServerMessage::Text(reply.into()))
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                })
            }),
        )
        .with_state(state)
}

/// An upstream on a fixed port that can be killed and started again on the same port.
struct UpstreamServer {
    port: u16,
    state: Arc<Upstream>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl UpstreamServer {
    async fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            state: Arc::new(Upstream::default()),
            task: None,
        };
        server.restart().await;
        server
    }

    async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the upstream port");
        let router = upstream_router(self.state.clone());
        self.task = Some(tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        }));
    }

    /// Gone at once, open connections included, as a crashed process would be.
    async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

struct Gateway {
    url: String,
    running: Option<Running>,
    shutdown: CancellationToken,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
        drop(self.running.take());
    }
}

fn gateway_config(jwks_url: &str, upstream_port: u16, redis_prefix: &str) -> String {
    gateway_config_on(
        jwks_url,
        upstream_port,
        redis_prefix,
        &required_env("COMMERCE_TEST_REDIS_URL"),
    )
}

fn gateway_config_on(
    jwks_url: &str,
    upstream_port: u16,
    redis_prefix: &str,
    redis: &str,
) -> String {
    format!(
        r#"
        [kafka]
        brokers = "{kafka}"
        [redis]
        urls = ["{redis}"]
        [services.gateway]
        http_addr = "127.0.0.1:0"
        jwks_url = "{jwks_url}"
        redis_prefix = "{redis_prefix}"
        body_limit = 1024
        cors = {{ allowed_origins = ["http://shop.test"] }}

        [services.gateway.upstreams.echo]
        url = "http://127.0.0.1:{upstream_port}"
        timeout = "2s"
        retries = 2
        retry_backoff = "10ms"
        breaker = {{ failure_threshold = 3, open_for = "1s" }}

        [services.gateway.upstreams.slow]
        url = "http://127.0.0.1:{upstream_port}"
        timeout = "300ms"
        retries = 0

        [[services.gateway.routes]]
        prefix = "/v1/echo"
        upstream = "echo"
        access = "public"

        [[services.gateway.routes]]
        prefix = "/v1/echo/private"
        upstream = "echo"
        access = "authenticated"

        [[services.gateway.routes]]
        prefix = "/v1/echo/admin"
        upstream = "echo"
        access = "authenticated"
        roles = ["admin"]

        [[services.gateway.routes]]
        name = "limited"
        prefix = "/v1/echo/limited"
        upstream = "echo"
        access = "public"
        rate_limit = {{ requests = 3, window = "1m", by = "ip" }}

        [[services.gateway.routes]]
        prefix = "/v1/flaky"
        upstream = "echo"
        access = "public"

        [[services.gateway.routes]]
        prefix = "/v1/slow"
        upstream = "slow"
        access = "public"

        [[services.gateway.routes]]
        prefix = "/v1/notifications/stream"
        methods = ["GET"]
        upstream = "echo"
        access = "public"

        [[services.gateway.routes]]
        prefix = "/v1/chat/ws"
        methods = ["GET"]
        upstream = "echo"
        access = "public"
        "#,
        kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
    )
}

async fn start_gateway(config: &str) -> Gateway {
    let shutdown = CancellationToken::new();
    let running = service::start(
        Arc::new(Config::from_toml_str(config).expect("gateway configuration")),
        &[&commerce_gateway::DEFINITION],
        shutdown.clone(),
    )
    .await
    .expect("gateway starts");
    Gateway {
        url: format!("http://{}", running.http_addrs[0].1),
        running: Some(running),
        shutdown,
    }
}

struct Setup {
    issuer: TestIssuer,
    upstream: UpstreamServer,
    gateway: Gateway,
    client: reqwest::Client,
}

async fn setup() -> Setup {
    let issuer = TestIssuer::start().await;
    let upstream = UpstreamServer::start().await;
    let gateway = start_gateway(&gateway_config(
        &issuer.jwks_url,
        upstream.port,
        &unique("gw"),
    ))
    .await;
    Setup {
        issuer,
        upstream,
        gateway,
        client: reqwest::Client::new(),
    }
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON error body");
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn the_edge_refuses_missing_invalid_expired_and_wrong_role_tokens() {
    let Setup {
        issuer,
        gateway,
        client,
        upstream: _upstream,
    } = setup().await;
    let get = |path: &str, token: Option<&str>| {
        let request = client.get(format!("{}{path}", gateway.url));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    let user = uuid::Uuid::new_v4();

    let response = get("/v1/echo/private/orders", None).send().await.unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, code, message) = error_of(response).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    assert!(message.contains("missing"), "{message}");

    let expired = issuer.expired_user_token(user, "customer");
    let (status, _, message) = error_of(
        get("/v1/echo/private", Some(&expired))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.contains("expired"), "{message}");

    let (status, _, _) = error_of(
        get("/v1/echo/private", Some("not.a.token"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A token sent to a public route must still be valid.
    let (status, _, _) =
        error_of(get("/v1/echo/public", Some(&expired)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let customer = issuer.user_token(user, "customer");
    let (status, code, message) = error_of(
        get("/v1/echo/admin/users", Some(&customer))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "permission_denied")
    );
    assert!(message.contains("admin"), "{message}");

    // The customer passes where any user may go; the upstream gets the same token.
    let response = get("/v1/echo/private/orders", Some(&customer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["path"], "/v1/echo/private/orders");
    assert_eq!(
        seen["headers"]["authorization"],
        format!("Bearer {customer}")
    );

    let admin = issuer.user_token(uuid::Uuid::new_v4(), "admin");
    let response = get("/v1/echo/admin/users?page=2", Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["query"], "page=2");

    let (status, code, _) = error_of(get("/v2/nowhere", None).send().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let response = client
        .delete(format!("{}/v1/notifications/stream", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn requests_pass_with_forwarded_headers_trace_and_security_headers() {
    let _telemetry = commerce_runtime::telemetry::init(&TelemetryConfig::default(), "gateway-test")
        .expect("telemetry");
    let Setup {
        gateway,
        client,
        upstream: _upstream,
        ..
    } = setup().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = client
        .post(format!("{}/v1/echo/things", gateway.url))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        // Forged: without a trusted load balancer configured, it is replaced.
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "x-hop")
        .header("x-hop", "for this connection only")
        .body("a small body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["body"], "a small body");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        seen["headers"]["x-hop"],
        Value::Null,
        "hop-by-hop header passed on"
    );
    assert_eq!(
        seen["headers"]["x-request-id"].as_str(),
        headers["x-request-id"].to_str().ok()
    );
    let traceparent = seen["headers"]["traceparent"]
        .as_str()
        .expect("trace continued");
    assert!(traceparent.contains(trace_id), "{traceparent}");
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the gateway's own span is the parent"
    );

    // CORS: the storefront's origin may call, another origin is not told it may.
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}/v1/echo", gateway.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("http://shop.test").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://shop.test"
    );
    let refused = preflight("http://evil.test").await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // Over the body limit: refused by its declared length, and when streamed without one.
    let (status, code, message) = error_of(
        client
            .post(format!("{}/v1/echo", gateway.url))
            .body(vec![b'x'; 2048])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert!(message.contains("1024"), "{message}");
    let chunks = futures::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 512]))),
    );
    let response = client
        .post(format!("{}/v1/echo", gateway.url))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn only_idempotent_requests_are_retried_and_a_slow_upstream_times_out() {
    let Setup {
        gateway,
        client,
        upstream,
        ..
    } = setup().await;
    let response = client
        .get(format!("{}/v1/flaky", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "recovered");
    assert_eq!(upstream.state.flaky_calls.load(Ordering::SeqCst), 3);

    let response = client
        .post(format!("{}/v1/flaky", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        upstream.state.failing_posts.load(Ordering::SeqCst),
        1,
        "a POST is never sent twice"
    );

    let (status, code, _) = error_of(
        client
            .get(format!("{}/v1/slow", gateway.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
    );
}

#[tokio::test]
async fn the_breaker_opens_when_the_upstream_dies_and_closes_after_it_returns() {
    let Setup {
        gateway,
        client,
        mut upstream,
        ..
    } = setup().await;
    let get = || {
        client
            .get(format!("{}/v1/echo/catalogue", gateway.url))
            .send()
    };
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);

    upstream.kill().await;
    // Three attempts (one GET and its two retries) fail: the breaker opens.
    let (status, code, _) = error_of(get().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_GATEWAY, "upstream_unreachable")
    );
    let response = get().await.unwrap();
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry_after), "{retry_after}");
    let (status, code, _) = error_of(response).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"),
        "an open breaker answers without calling"
    );

    // Back, but the breaker stays open until its period is over; then a probe closes it.
    upstream.restart().await;
    assert_eq!(
        get().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn rate_limits_are_shared_by_gateway_replicas() {
    let issuer = TestIssuer::start().await;
    let _upstream = UpstreamServer::start().await;
    let config = gateway_config(&issuer.jwks_url, _upstream.port, &unique("gw"));
    let replicas = [start_gateway(&config).await, start_gateway(&config).await];
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for index in 0..4 {
        let replica = &replicas[index % 2];
        let response = client
            .get(format!("{}/v1/echo/limited", replica.url))
            .send()
            .await
            .unwrap();
        let remaining = response
            .headers()
            .get("ratelimit-remaining")
            .map(|value| value.to_str().unwrap().to_owned());
        answers.push((response.status(), remaining, response));
    }
    let statuses: Vec<_> = answers
        .iter()
        .map(|(status, remaining, _)| (*status, remaining.clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (StatusCode::OK, Some("2".to_owned())),
            (StatusCode::OK, Some("1".to_owned())),
            (StatusCode::OK, Some("0".to_owned())),
            (StatusCode::TOO_MANY_REQUESTS, Some("0".to_owned())),
        ]
    );
    let (_, _, limited) = answers.pop().unwrap();
    assert_eq!(limited.headers()["ratelimit-limit"], "3");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Other routes are not limited by it.
    let response = client
        .get(format!("{}/v1/echo/open", replicas[0].url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key("ratelimit-limit"));
}

/// A Redis server of the test's own, so the test can take it away.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = commerce_testkit::free_port();
        Self {
            child: Self::spawn(port),
            port,
        }
    }

    fn spawn(port: u16) -> std::process::Child {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/infra.sh installs it)");
        commerce_testkit::wait_for_port(port, Duration::from_secs(20));
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Back on the same port, empty.
    fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn while_redis_is_away_each_gateway_keeps_the_limits_itself() {
    let issuer = TestIssuer::start().await;
    let _upstream = UpstreamServer::start().await;
    let mut redis = PrivateRedis::start();
    let gateway = start_gateway(&gateway_config_on(
        &issuer.jwks_url,
        _upstream.port,
        &unique("gw"),
        &redis.url(),
    ))
    .await;
    let client = reqwest::Client::new();
    let limited = || {
        client
            .get(format!("{}/v1/echo/limited", gateway.url))
            .send()
    };
    // Shared through Redis: counted there.
    let response = limited().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["ratelimit-remaining"], "2");

    redis.kill();
    // The instance's own limiter: the route's three requests, then 429 with a wait.
    for attempt in 0..3 {
        let response = limited().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "attempt {attempt}");
    }
    let response = limited().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    // Redis is not waited on while it is away: each of those answers came at once.
    let started = std::time::Instant::now();
    assert_eq!(
        limited().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    // Routes without a limit still pass, and the fallback is counted.
    let open = client
        .get(format!("{}/v1/echo/open", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    let metrics = client
        .get(format!("{}/metrics", gateway.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = metrics
        .lines()
        .find(|line| {
            line.starts_with("gateway_rate_limit_local_total{")
                && line.contains("route=\"limited\"")
        })
        .unwrap_or_else(|| panic!("no gateway_rate_limit_local_total for the route:\n{metrics}"));
    let count: f64 = counted.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(count, 5.0, "{counted}");

    // Redis returns (empty): within the retry pause the limits are shared again.
    redis.restart();
    let shared = commerce_testkit::eventually(
        Duration::from_secs(20),
        "the limit counted in Redis again",
        || async {
            let response = limited().await.ok()?;
            response
                .headers()
                .get("ratelimit-remaining")
                .map(|remaining| remaining.to_str().unwrap().to_owned())
        },
    )
    .await;
    assert_eq!(shared, "2");
}

#[tokio::test]
async fn websocket_and_sse_streams_pass_through_unbuffered() {
    let Setup {
        gateway,
        client,
        upstream,
        ..
    } = setup().await;
    let address: SocketAddr = gateway.url.trim_start_matches("http://").parse().unwrap();
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{address}/v1/chat/ws"))
            .await
            .expect("WebSocket through the gateway");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "are you there?"] {
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a reply in time")
            .expect("the socket is open")
            .unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("echo: {text}"));
    }
    socket.close(None).await.unwrap();

    let response = client
        .get(format!("{}/v1/notifications/stream", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    // The first event arrives while the upstream still holds the stream open.
    while !received.contains("data: first") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the first event before the stream ends")
            .expect("the stream is open")
            .unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!received.contains("second"));
    upstream.state.release_second_event.notify_one();
    while !received.contains("data: second") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the second event")
            .expect("the stream is open")
            .unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[test]
fn a_route_to_an_unknown_upstream_is_a_configuration_error_naming_it() {
    let config = gateway_config("http://127.0.0.1:1/jwks", 1, "gw")
        .replace("upstream = \"slow\"", "upstream = \"nowhere\"");
    let config = Config::from_toml_str(&config).unwrap();
    let settings: commerce_gateway::settings::GatewaySettings =
        config.service_section("gateway").unwrap();
    let error = settings.route_table().unwrap_err();
    assert_eq!(error.key, "services.gateway.routes[5].upstream");
    assert!(error.message.contains("nowhere"), "{error}");
}
