//! Probes a bench runs beside a load, so figures measured alone elsewhere can be measured
//! again on a busy shop: how soon a new product is searchable, and how soon a chat message
//! reaches every socket of its reader.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::LocalShop;

/// Latencies recorded in microseconds.
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(
            Histogram::new_with_bounds(1, 600_000_000, 3).expect("a histogram of up to 10 minutes"),
        )
    }
}

impl Latencies {
    fn record(&mut self, latency: Duration) {
        self.0.saturating_record(latency.as_micros() as u64);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        self.0.value_at_quantile(percentile / 100.0) as f64 / 1000.0
    }

    /// `p50 … ms, p99 … ms, max … ms (n)`.
    pub fn summary(&self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
            self.percentile_ms(50.0),
            self.percentile_ms(99.0),
            self.0.max() as f64 / 1000.0,
            self.count()
        )
    }
}

/// How long the freshness probe waits for one product before it says so and goes on (the
/// sample then counts this long).
const SEARCHABLE_WITHIN: Duration = Duration::from_secs(20);

/// Product commit → searchable, `samples` times, one product every `pace`: an admin creates
/// a product on the product service, then search is asked for its SKU every 5 ms (both
/// directly, as `cargo bench -p commerce-search --bench freshness` does, so the gateway's
/// per-address limits do not pace the asking). Returns (the create's latency, freshness).
pub async fn search_freshness(
    shop: &LocalShop,
    admin_token: &str,
    samples: usize,
    pace: Duration,
) -> (Latencies, Latencies) {
    let client = reqwest::Client::new();
    let (product, search) = (shop.url(8082), shop.url(8089));
    let (mut commits, mut freshness) = (Latencies::default(), Latencies::default());
    let run = commerce_testkit::unique("fresh");
    for sample in 0..samples {
        let next = Instant::now() + pace;
        let sku = format!("FRESH-{sample}-{}", &run[6..14]).to_uppercase();
        let started = Instant::now();
        let created = client
            .post(format!("{product}/v1/products"))
            .bearer_auth(admin_token)
            .json(&json!({"sku": sku, "name": format!("Probe item {sample}"),
                          "category": "probe", "stock": 1,
                          "price": {"amount": "1.00", "currency": "USD"}}))
            .send()
            .await
            .expect("the product service answers");
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
        let committed = Instant::now();
        commits.record(committed - started);
        loop {
            let results: Value = client
                .get(format!("{search}/v1/search?q={}", sku.to_lowercase()))
                .send()
                .await
                .expect("the search service answers")
                .json()
                .await
                .expect("search results");
            let found = results["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|item| item["sku"] == sku.as_str()));
            if found {
                freshness.record(committed.elapsed());
                break;
            }
            if committed.elapsed() > SEARCHABLE_WITHIN {
                println!("{sku} was not searchable {SEARCHABLE_WITHIN:?} after it was created");
                freshness.record(committed.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep_until(next.into()).await;
    }
    (commits, freshness)
}

/// A person in a chat probe: their user id, access token and the address they come from.
pub struct ChatPerson {
    pub user_id: String,
    pub token: String,
    pub address: Option<String>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a chat socket through the gateway and waits for its `ready` frame.
async fn connect(gateway: &str, person: &ChatPerson) -> Socket {
    let url = format!(
        "{}/v1/chat/ws?token={}",
        gateway.replace("http://", "ws://"),
        person.token
    );
    let mut request = url.into_client_request().expect("a WebSocket request");
    if let Some(address) = &person.address {
        request
            .headers_mut()
            .insert("x-forwarded-for", address.parse().expect("an address"));
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the gateway upgrades the chat socket");
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message
            && text.contains("\"type\":\"ready\"")
        {
            return socket;
        }
    }
    panic!("the chat socket closed before it was ready")
}

/// Chat delivery through the gateway: `people` in pairs, each pair a group conversation
/// made through the API (the first creates it and invites the second, who joins). Every
/// person opens `sockets_each` sockets (devices), the first of each pair sends once a
/// second for `duration` from one of them, and every socket of the second records each
/// message's latency from its `send` frame to its `message` frame.
pub async fn chat_delivery(
    gateway: &str,
    people: &[ChatPerson],
    sockets_each: usize,
    duration: Duration,
) -> Latencies {
    let client = reqwest::Client::new();
    let call = |person: &ChatPerson, request: reqwest::RequestBuilder| {
        let request = request.bearer_auth(&person.token);
        match &person.address {
            Some(address) => request.header("x-forwarded-for", address),
            None => request,
        }
    };
    let mut conversations = Vec::new();
    for pair in people.chunks_exact(2) {
        let (writer, reader) = (&pair[0], &pair[1]);
        let created: Value = call(
            writer,
            client.post(format!("{gateway}/v1/chat/conversations")),
        )
        .json(&json!({"kind": "group", "title": "probe", "members": [reader.user_id]}))
        .send()
        .await
        .and_then(|response| response.error_for_status())
        .expect("a group conversation")
        .json()
        .await
        .expect("the conversation");
        let id = created["id"].as_str().expect("its id").to_owned();
        call(
            reader,
            client.post(format!("{gateway}/v1/chat/conversations/{id}/join")),
        )
        .send()
        .await
        .and_then(|response| response.error_for_status())
        .expect("the invited member joins");
        conversations.push(id);
    }

    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (pair, conversation) in people.chunks_exact(2).zip(&conversations) {
        for (role, person) in pair.iter().enumerate() {
            for socket in 0..sockets_each {
                let (sink, mut stream) = connect(gateway, person).await.split();
                let (me, latencies) = (person.user_id.clone(), latencies.clone());
                readers.push(tokio::spawn(async move {
                    while let Some(Ok(message)) = stream.next().await {
                        let Message::Text(text) = message else {
                            continue;
                        };
                        let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                        if frame["type"] == "message" && frame["message"]["senderId"] != me {
                            let sent: u64 = frame["message"]["body"]
                                .as_str()
                                .and_then(|body| body.parse().ok())
                                .expect("the probe's message body is its send time");
                            latencies
                                .lock()
                                .unwrap()
                                .record(epoch.elapsed() - Duration::from_nanos(sent));
                        }
                    }
                }));
                if role == 0 && socket == 0 {
                    writers.push((conversation.clone(), sink));
                }
            }
        }
    }

    let senders = writers.len().max(1) as u32;
    let sending: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(index, (conversation, mut sink))| {
            tokio::spawn(async move {
                // Spread the writers over each second so the load is steady.
                tokio::time::sleep(Duration::from_secs(1) * index as u32 / senders).await;
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let until = Instant::now() + duration;
                let mut sent = 0;
                while Instant::now() < until {
                    tick.tick().await;
                    let frame = json!({
                        "type": "send", "conversationId": conversation,
                        "clientId": format!("p{sent}"),
                        "body": epoch.elapsed().as_nanos().to_string(),
                    });
                    sink.send(Message::Text(frame.to_string().into()))
                        .await
                        .expect("the chat socket takes the message");
                    sent += 1;
                }
                sink
            })
        })
        .collect();
    let mut sinks = Vec::new();
    for task in sending {
        sinks.push(task.await.expect("a writer"));
    }
    // The last messages arrive, then every socket closes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for reader in readers {
        reader.abort();
        let _ = reader.await;
    }
    drop(sinks);
    Arc::try_unwrap(latencies)
        .ok()
        .expect("every reader stopped")
        .into_inner()
        .unwrap()
}
