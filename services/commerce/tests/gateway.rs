//! Two `commerce serve --target gateway` processes in front of one upstream share one rate
//! limit through Redis, as gateway replicas behind a load balancer do.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use commerce_testkit::{free_port, required_env, unique, wait_for_port};

const BINARY: &str = env!("CARGO_BIN_EXE_commerce");

/// Kills the process when the test ends, passed or not.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gateway_process(config: &std::path::Path, port: u16) -> Process {
    let child = Command::new(BINARY)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "COMMERCE_SERVICES__GATEWAY__HTTP_ADDR",
            format!("127.0.0.1:{port}"),
        )
        .args([
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--target",
            "gateway",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start commerce");
    Process(child)
}

#[tokio::test]
async fn two_gateway_processes_share_one_rate_limit() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/v1/ping", axum::routing::get(|| async { "pong" }));
        axum::serve(upstream, app).await.unwrap();
    });
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [kafka]
            brokers = "{kafka}"
            [redis]
            urls = ["{redis}"]
            [services.gateway]
            http_addr = "127.0.0.1:0"
            jwks_url = "http://127.0.0.1:1/.well-known/jwks.json"
            redis_prefix = "{prefix}"
            [services.gateway.upstreams.ping]
            url = "http://127.0.0.1:{upstream_port}"
            [[services.gateway.routes]]
            prefix = "/v1/ping"
            upstream = "ping"
            access = "public"
            rate_limit = {{ requests = 4, window = "1m", by = "ip" }}
            "#,
            kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
            redis = required_env("COMMERCE_TEST_REDIS_URL"),
            prefix = unique("gw"),
        ),
    )
    .unwrap();
    let ports = [free_port(), free_port()];
    let _processes: Vec<Process> = ports
        .iter()
        .map(|port| gateway_process(&config, *port))
        .collect();
    for port in ports {
        tokio::task::spawn_blocking(move || wait_for_port(port, Duration::from_secs(30)))
            .await
            .unwrap();
    }
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for round in 0..6 {
        let port = ports[round % 2];
        let response = client
            .get(format!("http://127.0.0.1:{port}/v1/ping"))
            .send()
            .await
            .unwrap();
        let remaining = response
            .headers()
            .get("ratelimit-remaining")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        seen.push((port, response.status().as_u16(), remaining));
    }
    let expected: Vec<_> = [
        (200, "3"),
        (200, "2"),
        (200, "1"),
        (200, "0"),
        (429, "0"),
        (429, "0"),
    ]
    .iter()
    .enumerate()
    .map(|(round, (status, remaining))| (ports[round % 2], *status, Some((*remaining).to_owned())))
    .collect();
    assert_eq!(seen, expected, "one count across both processes");
}
