//! Chat delivery latency with 1,000 WebSocket clients on two instances: 500 two-person
//! conversations, each split across the instances, every sender writing once a second.
//! Latency is from the sender's `send` frame to the partner's `message` frame (stored in
//! PostgreSQL, published through Redis, delivered by the other instance). Prints p50, p99
//! and max, and their ratio to a baseline measured first in the same run: one pair on
//! the same two instances with nothing else connected. The target is p99 under 50 ms.
//!
//! Needs the local infrastructure and room for ~2,500 open files:
//! `scripts/infra.sh up && eval "$(scripts/infra.sh env)"`, then
//! `cargo bench -p commerce-chat --bench delivery`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_runtime::{Config, service};
use commerce_testkit::{TestIssuer, fresh_database, required_env, unique};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PAIRS: usize = 500;
const MESSAGES_PER_SENDER: usize = 10;
const BASELINE_MESSAGES: usize = 200;
const TARGET_P99: Duration = Duration::from_millis(50);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str, token: &str) -> Socket {
    let url = format!(
        "{}/v1/chat/ws?token={token}",
        base.replace("http://", "ws://")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    // Wait for `ready`.
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message
            && text.contains("\"type\":\"ready\"")
        {
            break;
        }
    }
    socket
}

/// Reads until `count` messages from others arrived; returns each one's latency (the body
/// carries the send time in nanoseconds since `epoch`).
async fn receive(mut socket: Socket, me: Uuid, count: usize, epoch: Instant) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count {
        let Some(Ok(Message::Text(text))) = socket.next().await else {
            panic!("socket closed after {} messages", latencies.len());
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] == "message" && frame["message"]["senderId"] != me.to_string() {
            let sent: u128 = frame["message"]["body"].as_str().unwrap().parse().unwrap();
            latencies.push(epoch.elapsed() - Duration::from_nanos(sent as u64));
        }
    }
    latencies
}

async fn send_paced(
    mut socket: Socket,
    conversation: Uuid,
    count: usize,
    epoch: Instant,
    pause: Duration,
) {
    for index in 0..count {
        let frame = json!({
            "type": "send", "conversationId": conversation, "clientId": format!("m{index}"),
            "body": epoch.elapsed().as_nanos().to_string(),
        });
        socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
        tokio::time::sleep(pause).await;
    }
    // Keep reading acks so the server never sees a stalled reader.
    let drain = async { while let Some(Ok(_)) = socket.next().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

struct Report {
    p50: Duration,
    p99: Duration,
    max: Duration,
    count: usize,
}

fn report(mut latencies: Vec<Duration>) -> Report {
    latencies.sort();
    Report {
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: *latencies.last().unwrap(),
        count: latencies.len(),
    }
}

/// Makes a two-person conversation per pair directly in the database (setup, not measured).
async fn pairs(pool: &sqlx::PgPool, count: usize) -> Vec<(Uuid, Uuid, Uuid)> {
    let mut made = Vec::with_capacity(count);
    for _ in 0..count {
        let (conversation, left, right) = (Uuid::now_v7(), Uuid::new_v4(), Uuid::new_v4());
        sqlx::query("INSERT INTO conversations (id, kind, title, created_by) VALUES ($1, 'group', 'bench', $2)")
            .bind(conversation)
            .bind(left)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO participants (conversation_id, user_id, role) VALUES ($1, $2, 'owner'), ($1, $3, 'member')")
            .bind(conversation)
            .bind(left)
            .bind(right)
            .execute(pool)
            .await
            .unwrap();
        made.push((conversation, left, right));
    }
    made
}

#[tokio::main]
async fn main() {
    let database = fresh_database("benchchat").await;
    let issuer = TestIssuer::start().await;
    let prefix = unique("benchchat");
    let toml = format!(
        r#"
        [kafka]
        brokers = "{kafka}"
        [redis]
        urls = ["{redis}"]
        [telemetry]
        log_level = "warn"
        [services.chat]
        http_addr = "127.0.0.1:0"
        database = {{ url = "{db}", max_connections = 20 }}
        jwks_url = "{jwks}"
        redis_prefix = "{prefix}"
        frames_per_second = 100.0
        burst = 100
        attachment_dir = "{dir}"
        "#,
        kafka = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
        redis = required_env("COMMERCE_TEST_REDIS_URL"),
        db = database.url,
        jwks = issuer.jwks_url,
        dir = std::env::temp_dir().join(&prefix).display(),
    );
    let config = Arc::new(Config::from_toml_str(&toml).unwrap());
    let shutdown = CancellationToken::new();
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(
            service::start(
                config.clone(),
                &[&commerce_chat::DEFINITION],
                shutdown.clone(),
            )
            .await
            .unwrap(),
        );
    }
    let bases: Vec<String> = instances
        .iter()
        .map(|running| format!("http://{}", running.http_addrs[0].1))
        .collect();
    let epoch = Instant::now();

    // Baseline: one pair, nothing else connected.
    let baseline_pair = pairs(&database.pool, 1).await[0];
    let (conversation, left, right) = baseline_pair;
    let sender = connect(&bases[0], &issuer.user_token(left, "customer")).await;
    let receiver = connect(&bases[1], &issuer.user_token(right, "customer")).await;
    let receiving = tokio::spawn(receive(receiver, right, BASELINE_MESSAGES, epoch));
    send_paced(
        sender,
        conversation,
        BASELINE_MESSAGES,
        epoch,
        Duration::from_millis(10),
    )
    .await;
    let baseline = report(receiving.await.unwrap());

    // Load: 500 pairs, 1,000 clients, each pair split across the instances.
    let all = pairs(&database.pool, PAIRS).await;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for chunk in all.chunks(50) {
        let connecting = chunk
            .iter()
            .enumerate()
            .map(|(index, (conversation, left, right))| {
                let (send_base, receive_base) = if index % 2 == 0 {
                    (&bases[0], &bases[1])
                } else {
                    (&bases[1], &bases[0])
                };
                let send_token = issuer.user_token(*left, "customer");
                let receive_token = issuer.user_token(*right, "customer");
                async move {
                    let sender = connect(send_base, &send_token).await;
                    let receiver = connect(receive_base, &receive_token).await;
                    (*conversation, sender, *right, receiver)
                }
            });
        for (conversation, sender, right, receiver) in futures::future::join_all(connecting).await {
            senders.push((conversation, sender));
            receivers.push((right, receiver));
        }
    }
    println!(
        "connected {} WebSocket clients on 2 instances",
        senders.len() + receivers.len()
    );
    let receiving: Vec<_> = receivers
        .into_iter()
        .map(|(me, socket)| tokio::spawn(receive(socket, me, MESSAGES_PER_SENDER, epoch)))
        .collect();
    let started = Instant::now();
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(index, (conversation, socket))| {
            // Spread the senders over the second so the load is steady.
            let offset = Duration::from_millis((index as u64 * 1000) / PAIRS as u64);
            tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                send_paced(
                    socket,
                    conversation,
                    MESSAGES_PER_SENDER,
                    epoch,
                    Duration::from_secs(1),
                )
                .await;
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in receiving {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    for task in sending {
        task.abort();
    }
    let loaded = report(latencies);
    shutdown.cancel();

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "baseline (1 pair):      {:>5} messages  p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
        baseline.count, baseline.p50, baseline.p99, baseline.max
    );
    println!(
        "1,000 clients:          {:>5} messages  p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}  ({:.0} messages/s)",
        loaded.count,
        loaded.p50,
        loaded.p99,
        loaded.max,
        loaded.count as f64 / elapsed.as_secs_f64()
    );
    println!(
        "ratio to baseline:      p50 {:.2}x  p99 {:.2}x",
        ratio(loaded.p50, baseline.p50),
        ratio(loaded.p99, baseline.p99)
    );
    println!(
        "target p99 < {TARGET_P99:?}: {}",
        if loaded.p99 < TARGET_P99 {
            "met"
        } else {
            "NOT met"
        }
    );
}
