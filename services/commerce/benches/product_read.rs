//! A cached product read at volume: `GET /v1/products/{id}` over 64 keep-alive connections
//! for 10 s per target, in the same run:
//!
//! 1. a bare axum handler serving the same JSON bytes from memory (the baseline: what this
//!    machine's HTTP stack gives with no work behind it);
//! 2. the product service directly (its Redis cache-aside path);
//! 3. the REST gateway in front of it (routing, access check, rate limit, proxy);
//! 4. nginx proxying to the product service, when `nginx` is installed.
//!
//! Prints req/s, p50/p99 and each target's ratio against the bare handler. Goals: the
//! gateway ≥ 50 % of bare axum and ≥ nginx's rate, p99 < 5 ms.
//!
//! Needs the local infrastructure (`scripts/infra.sh up && eval "$(scripts/infra.sh env)"`),
//! then `cargo bench -p commerce --bench product_read`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use support::LocalShop;
use tokio::net::TcpStream;

const CONNECTIONS: usize = 64;
const WINDOW: Duration = Duration::from_secs(10);

struct Measured {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    failures: u64,
}

/// One keep-alive connection asking `path` of `port` until `stop`; latencies in µs.
async fn connection(port: u16, path: Arc<str>, stop: Arc<AtomicBool>) -> (Histogram<u64>, u64) {
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut failures = 0;
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(driver);
    while !stop.load(Ordering::Relaxed) {
        let request = Request::get(&*path)
            .header("host", "127.0.0.1")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let started = Instant::now();
        match sender.send_request(request).await {
            Ok(response) => {
                let ok = response.status().is_success();
                let _ = response.into_body().collect().await;
                if ok {
                    latencies.saturating_record(started.elapsed().as_micros().max(1) as u64);
                } else {
                    failures += 1;
                }
            }
            Err(_) => {
                failures += 1;
                break;
            }
        }
    }
    (latencies, failures)
}

async fn measure(port: u16, path: &str) -> Measured {
    let stop = Arc::new(AtomicBool::new(false));
    let path: Arc<str> = path.into();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(connection(port, path.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(WINDOW).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut failures = 0;
    for task in tasks {
        let (latencies, failed) = task.await.unwrap();
        all.add(&latencies).unwrap();
        failures += failed;
    }
    Measured {
        per_second: all.len() as f64 / WINDOW.as_secs_f64(),
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
        failures,
    }
}

/// A bare axum server answering every request with `body`; its port.
async fn bare_axum(body: Bytes) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([("content-type", "application/json")], body) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// nginx proxying everything to `upstream` with keep-alive, on a free port; None without
/// nginx.
fn nginx(upstream: u16, dir: &std::path::Path) -> Option<(support::Process, u16)> {
    let port = commerce_testkit::free_port();
    let config = dir.join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            "worker_processes 1;\npid {pid};\nerror_log {log} warn;\nevents {{ worker_connections 1024; }}\n\
             http {{ access_log off;\n  upstream product {{ server 127.0.0.1:{upstream}; keepalive 64; }}\n\
               server {{ listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://product; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }} }}\n",
            pid = dir.join("nginx.pid").display(),
            log = dir.join("nginx-error.log").display(),
        ),
    )
    .unwrap();
    let child = std::process::Command::new("nginx")
        .args(["-g", "daemon off;", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&config)
        .spawn()
        .ok()?;
    commerce_testkit::wait_for_port(port, Duration::from_secs(10));
    Some((support::Process(child), port))
}

#[tokio::main]
async fn main() {
    let mut shop = LocalShop::new("benchread").await;
    shop.env.push((
        "COMMERCE_TELEMETRY__LOG_LEVEL".to_owned(),
        "warn".to_owned(),
    ));
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let _services = shop.serve();
    shop.wait_until_ready().await;
    let client = reqwest::Client::new();
    let listing: serde_json::Value = client
        .get(format!("{}/v1/products?pageSize=1", shop.url(8082)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = listing["items"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/products/{id}");
    // The cached answer, as the product service serves it (this read also fills the cache).
    let body = client
        .get(format!("{}{path}", shop.url(8082)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let bare = bare_axum(body).await;
    let nginx = nginx(shop.port(8082), &shop.scratch(""));

    let baseline = measure(bare, &path).await;
    let mut rows = vec![("bare axum (baseline)", baseline)];
    rows.push(("product service", measure(shop.port(8082), &path).await));
    rows.push(("gateway → product", measure(shop.port(8080), &path).await));
    if let Some((_nginx, port)) = &nginx {
        rows.push(("nginx → product", measure(*port, &path).await));
    }
    let base_rate = rows[0].1.per_second;
    println!("cached product read, {CONNECTIONS} keep-alive connections, {WINDOW:?} each:");
    for (name, measured) in &rows {
        println!(
            "{name:<22} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  {:>5.2}× bare  failures {}",
            measured.per_second,
            measured.p50_ms,
            measured.p99_ms,
            measured.per_second / base_rate,
            measured.failures
        );
    }
    let gateway = &rows[2].1;
    let nginx_rate = rows.get(3).map(|(_, measured)| measured.per_second);
    println!(
        "goal: gateway ≥ 50 % of bare axum ({}), ≥ nginx ({}), p99 < 5 ms ({})",
        if gateway.per_second >= 0.5 * base_rate {
            "met"
        } else {
            "not met"
        },
        match nginx_rate {
            Some(rate) if gateway.per_second >= rate => "met",
            Some(_) => "not met",
            None => "nginx not installed",
        },
        if gateway.p99_ms < 5.0 {
            "met"
        } else {
            "not met"
        },
    );
}
