//! The notification service as it runs: real PostgreSQL, Redis, Apache Kafka and
//! SMTP server (MailDev, from `scripts/smtp-sink`), and local HTTP servers that answer as
//! Twilio's and Vonage's SMS APIs do. Two instances of the service share one database and
//! Redis, as two replicas would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commerce_messaging::{KafkaConfig, TopicSpec, ensure_topics, headers};
use commerce_proto::notification::v1 as pb;
use commerce_runtime::{Config, service};
use commerce_testkit::{
    MailSink, TestDatabase, TestIssuer, eventually, free_port, fresh_database, required_env, unique,
};
use prost::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A request a fake provider received: its Authorization header and form.
type Received = (Option<String>, HashMap<String, String>);

/// What the fake SMS providers saw.
#[derive(Default)]
struct SmsProviders {
    twilio: Mutex<Vec<Received>>,
    vonage: Mutex<Vec<HashMap<String, String>>>,
    /// 0: Twilio answers 503; 1: Twilio never answers in time; 2: Twilio accepts.
    twilio_mode: AtomicU8,
    /// Vonage answers 500.
    vonage_down: std::sync::atomic::AtomicBool,
}

/// Twilio's Messages API and Vonage's SMS API, as their references describe them.
async fn start_sms_providers(providers: Arc<SmsProviders>) -> String {
    use axum::extract::{Form, Path, State};
    use axum::http::HeaderMap;
    use axum::routing::post;
    async fn twilio(
        State(providers): State<Arc<SmsProviders>>,
        Path(account): Path<String>,
        headers: HeaderMap,
        Form(form): Form<HashMap<String, String>>,
    ) -> (axum::http::StatusCode, axum::Json<Value>) {
        let auth = headers
            .get("authorization")
            .map(|value| value.to_str().unwrap().to_owned());
        providers.twilio.lock().unwrap().push((auth, form));
        match providers.twilio_mode.load(Ordering::SeqCst) {
            0 => (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"code": 20500, "message": "Service unavailable"})),
            ),
            1 => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(json!({"sid": "late"})),
                )
            }
            _ => (
                axum::http::StatusCode::CREATED,
                axum::Json(json!({"sid": format!("SM{}", account.len()), "status": "queued"})),
            ),
        }
    }
    async fn vonage(
        State(providers): State<Arc<SmsProviders>>,
        Form(form): Form<HashMap<String, String>>,
    ) -> Result<axum::Json<Value>, axum::http::StatusCode> {
        if providers.vonage_down.load(Ordering::SeqCst) {
            return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        }
        let valid = form.get("api_key").map(String::as_str) == Some("vonage-key");
        providers.vonage.lock().unwrap().push(form);
        Ok(if valid {
            axum::Json(json!({"message-count": "1", "messages": [
                {"status": "0", "message-id": "vonage-1", "to": "628123456789"}]}))
        } else {
            axum::Json(json!({"message-count": "1", "messages": [
                {"status": "4", "error-text": "Bad Credentials"}]}))
        })
    }
    let app = axum::Router::new()
        .route("/2010-04-01/Accounts/{account}/Messages.json", post(twilio))
        .route("/sms/json", post(vonage))
        .with_state(providers);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

struct Instance {
    http: String,
    grpc: String,
    _shutdown: DropCancel,
    _running: service::Running,
}

struct DropCancel(CancellationToken);

impl Drop for DropCancel {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

struct Setup {
    database: TestDatabase,
    issuer: TestIssuer,
    kafka: KafkaConfig,
    redis_prefix: String,
    smtp_port: u16,
    sms_url: String,
}

impl Setup {
    async fn new(label: &str, smtp_port: u16, sms_url: String) -> Self {
        let database = fresh_database(label).await;
        let mut kafka = KafkaConfig::new(required_env("COMMERCE_TEST_KAFKA_BROKERS"));
        kafka.topic_prefix = format!("{}.", unique(label));
        let topics: Vec<TopicSpec> = commerce_notification::consumers::TOPICS
            .iter()
            .map(|topic| TopicSpec::new(*topic, 1))
            .collect();
        ensure_topics(&kafka, &topics).await.unwrap();
        Self {
            database,
            issuer: TestIssuer::start().await,
            kafka,
            redis_prefix: unique(label),
            smtp_port,
            sms_url,
        }
    }

    /// One instance of the service (each has its own listeners, Redis fan-out, delivery
    /// worker and consumer).
    async fn instance(&self) -> Instance {
        let toml = format!(
            r#"
            [kafka]
            brokers = "{brokers}"
            topic_prefix = "{topic_prefix}"
            [redis]
            urls = ["{redis}"]
            [services.notification]
            http_addr = "127.0.0.1:0"
            grpc_addr = "127.0.0.1:0"
            database = {{ url = "{db}" }}
            jwks_url = "{jwks}"
            redis_prefix = "{prefix}"
            heartbeat = "1s"
            poll_interval = "200ms"
            verify_email_url = "https://shop.example/verify-email?token={{token}}"
            order_url = "https://shop.example/orders/{{order_id}}"
            smtp = {{ host = "127.0.0.1", port = {smtp}, from = "Shop <shop@example.com>", timeout = "5s" }}
            sms = {{ timeout = "1s", providers = [
                {{ provider = "twilio", account_sid = "AC123", auth_token = "twilio-secret", from = "+15005550006", base_url = "{sms}" }},
                {{ provider = "vonage", api_key = "vonage-key", api_secret = "vonage-secret", from = "Shop", base_url = "{sms}" }},
            ] }}
            "#,
            brokers = self.kafka.brokers,
            topic_prefix = self.kafka.topic_prefix,
            redis = required_env("COMMERCE_TEST_REDIS_URL"),
            db = self.database.url,
            jwks = self.issuer.jwks_url,
            prefix = self.redis_prefix,
            smtp = self.smtp_port,
            sms = self.sms_url,
        );
        let shutdown = CancellationToken::new();
        let running = service::start(
            Arc::new(Config::from_toml_str(&toml).unwrap()),
            &[&commerce_notification::DEFINITION],
            shutdown.clone(),
        )
        .await
        .unwrap();
        Instance {
            http: format!("http://{}", running.http_addrs[0].1),
            grpc: format!("http://{}", running.grpc_addrs[0].1),
            _shutdown: DropCancel(shutdown),
            _running: running,
        }
    }

    async fn send(
        &self,
        instance: &Instance,
        user: Uuid,
        kind: &str,
        data: &[(&str, &str)],
        channels: &[pb::Channel],
    ) -> Result<pb::SendResponse, tonic::Status> {
        self.send_as(instance, Uuid::now_v7(), user, kind, data, channels)
            .await
    }

    async fn send_as(
        &self,
        instance: &Instance,
        request_id: Uuid,
        user: Uuid,
        kind: &str,
        data: &[(&str, &str)],
        channels: &[pb::Channel],
    ) -> Result<pb::SendResponse, tonic::Status> {
        let mut client = pb::notification_service_client::NotificationServiceClient::connect(
            instance.grpc.clone(),
        )
        .await
        .unwrap();
        let mut request = tonic::Request::new(pb::SendRequest {
            request_id: request_id.to_string(),
            user_id: user.to_string(),
            kind: kind.to_owned(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            channels: channels.iter().map(|c| *c as i32).collect(),
        });
        let token = self.issuer.service_token("order", "notification");
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        client.send(request).await.map(tonic::Response::into_inner)
    }

    /// The delivery log of a user's notifications (staff view), once `done` holds.
    async fn log_until(
        &self,
        instance: &Instance,
        user: Uuid,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let admin = self.issuer.user_token(Uuid::new_v4(), "admin");
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(20), what, || {
            let request = client
                .get(format!(
                    "{}/v1/admin/notifications?userId={user}",
                    instance.http
                ))
                .bearer_auth(&admin)
                .send();
            let done = &done;
            async move {
                let log: Value = request.await.ok()?.json().await.ok()?;
                done(&log).then_some(log)
            }
        })
        .await
    }
}

fn delivery<'a>(log: &'a Value, index: usize, channel: &str) -> &'a Value {
    log["items"][index]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["channel"] == channel)
        .unwrap_or(&Value::Null)
}

/// A Server-Sent Events reader over a streamed response.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
    comments: usize,
}

#[derive(Debug)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: Value,
}

impl EventStream {
    async fn open(base: &str, token: &str, last_event_id: Option<&str>) -> Self {
        let mut request = reqwest::Client::new()
            .get(format!("{base}/v1/notifications/stream"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
            comments: 0,
        }
    }

    /// Waits for a keep-alive comment (the test instances send one every second).
    async fn keep_alive(&mut self) {
        let seen = self.comments;
        while self.comments == seen {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if block
                    .lines()
                    .filter(|line| !line.is_empty())
                    .all(|line| line.starts_with(':'))
                {
                    self.comments += 1;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.response.chunk())
                .await
                .expect("a keep-alive within 5 s")
                .unwrap()
                .expect("the stream is still open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event that is not a keep-alive comment.
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("event:") {
                        event.event = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim());
                    }
                }
                if data.is_empty() {
                    self.comments += 1; // a keep-alive comment
                    continue;
                }
                event.data = serde_json::from_str(&data).unwrap();
                return event;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(15), self.response.chunk())
                .await
                .expect("an event within 15 s")
                .unwrap()
                .expect("the stream is still open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    async fn notification(&mut self) -> SseEvent {
        loop {
            let event = self.next().await;
            if event.event == "notification" {
                return event;
            }
        }
    }
}

#[tokio::test]
async fn a_stream_on_one_instance_receives_what_another_sends_and_resumes_without_loss() {
    let setup = Setup::new("notifysse", free_port(), "http://127.0.0.1:9".into()).await;
    let (a, b) = (setup.instance().await, setup.instance().await);
    let user = Uuid::new_v4();
    let token = setup.issuer.user_token(user, "customer");
    let mut on_a = EventStream::open(&a.http, &token, None).await;
    let mut on_b = EventStream::open(&b.http, &token, None).await;
    for stream in [&mut on_a, &mut on_b] {
        let greeting = stream.next().await;
        assert_eq!(
            (greeting.event.as_str(), &greeting.data),
            ("unread", &json!({"unread": 0}))
        );
    }

    // Sent through B, then A, then B: whichever instance's worker publishes, both streams
    // get every notification, once, in the user's order.
    for (index, instance) in [&b, &a, &b].into_iter().enumerate() {
        let order = format!("A{index}345678-rest");
        setup
            .send(
                instance,
                user,
                "order_confirmed",
                &[("order_id", &order), ("total", "10.00 EUR")],
                &[pb::Channel::Push],
            )
            .await
            .unwrap();
    }
    for stream in [&mut on_a, &mut on_b] {
        for seq in 1..=3 {
            let event = stream.notification().await;
            assert_eq!(event.id.as_deref(), Some(seq.to_string().as_str()));
            assert_eq!(event.data["seq"], seq);
            assert_eq!(event.data["title"], "Order confirmed");
            assert_eq!(
                event.data["body"],
                format!("Order A{}345678 is confirmed (10.00 EUR).", seq - 1)
            );
        }
    }

    // An idle stream is kept alive.
    on_a.keep_alive().await;

    // Another user's stream hears nothing of it.
    let stranger = setup.issuer.user_token(Uuid::new_v4(), "customer");
    let mut other = EventStream::open(&a.http, &stranger, None).await;
    assert_eq!(other.next().await.data, json!({"unread": 0}));

    // A client that saw event 1 reconnects and gets 2 and 3 from the database, then live.
    drop(on_a);
    let mut resumed = EventStream::open(&a.http, &token, Some("1")).await;
    assert_eq!(resumed.notification().await.id.as_deref(), Some("2"));
    assert_eq!(resumed.notification().await.id.as_deref(), Some("3"));
    assert_eq!(resumed.next().await.data, json!({"unread": 3}));
    setup
        .send(
            &b,
            user,
            "order_confirmed",
            &[("order_id", "order-3-0123456789")],
            &[pb::Channel::Push],
        )
        .await
        .unwrap();
    assert_eq!(resumed.notification().await.id.as_deref(), Some("4"));
    assert_eq!(on_b.notification().await.id.as_deref(), Some("4"));

    // A bad Last-Event-ID is refused, naming the header; no token, no stream.
    let client = reqwest::Client::new();
    let bad = client
        .get(format!("{}/v1/notifications/stream", a.http))
        .bearer_auth(&token)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["field"],
        "Last-Event-ID"
    );
    let anonymous = client
        .get(format!("{}/v1/notifications/stream", a.http))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// Publishes an event straight to the (prefixed) topic, as a service's relay would.
async fn publish(setup: &Setup, topic: &str, event_type: &str, key: &str, payload: Vec<u8>) {
    let id = Uuid::now_v7().to_string();
    let record_headers = OwnedHeaders::new()
        .insert(Header {
            key: headers::EVENT_TYPE,
            value: Some(event_type),
        })
        .insert(Header {
            key: headers::EVENT_ID,
            value: Some(id.as_str()),
        });
    setup
        .kafka
        .producer()
        .unwrap()
        .send(
            FutureRecord::to(&setup.kafka.topic(topic))
                .key(key)
                .payload(&payload)
                .headers(record_headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)
        .unwrap();
}

async fn publish_user_registered(setup: &Setup, user: Uuid, email: &str, token: &str) {
    let event = commerce_proto::auth::v1::UserRegistered {
        user_id: user.to_string(),
        email: email.to_owned(),
        first_name: "Ann <b>".to_owned(),
        verification_token: token.to_owned(),
        verification_expires_at: Some(prost_types::Timestamp {
            seconds: 1_900_000_000,
            nanos: 0,
        }),
    };
    publish(
        setup,
        "commerce.auth.events",
        "commerce.auth.v1.UserRegistered",
        &user.to_string(),
        event.encode_to_vec(),
    )
    .await;
}

#[tokio::test]
async fn registration_mails_a_verification_link_through_a_real_smtp_server() {
    let sink = MailSink::start();
    let setup = Setup::new("notifymail", sink.smtp_port, "http://127.0.0.1:9".into()).await;
    let instance = setup.instance().await;
    let user = Uuid::new_v4();
    let email = format!("{}@example.com", unique("ann"));
    publish_user_registered(&setup, user, &email, "tok+en/1=").await;

    let mails = eventually(
        Duration::from_secs(30),
        "the verification e-mail",
        || async {
            let mails = sink.mail_to(&email).await;
            (!mails.is_empty()).then_some(mails)
        },
    )
    .await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail["subject"], "Confirm your e-mail address");
    assert_eq!(mail["from"][0]["address"], "shop@example.com");
    let link = "https://shop.example/verify-email?token=tok%2Ben%2F1%3D";
    assert!(mail["text"].as_str().unwrap().contains(link), "{mail}");
    assert!(
        mail["text"].as_str().unwrap().contains("Hi Ann <b>,"),
        "{mail}"
    );
    let html = mail["html"].as_str().unwrap();
    // The auto-escaper writes `/` as `&#x2f;` inside the attribute; browsers read it back.
    let href = html.replace("&#x2f;", "/");
    assert!(href.contains(&format!("<a href=\"{link}\">")), "{html}");
    assert!(
        html.contains("Hi Ann &lt;b&gt;,"),
        "the HTML part escapes the name: {html}"
    );
    let id = mail["headers"]["x-notification-id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Logged as sent to that address; e-mail only (the kind has no other template), and
    // the link's secret never reaches the in-app history.
    let log = setup
        .log_until(&instance, user, "the e-mail delivery recorded", |log| {
            delivery(log, 0, "email")["status"] == "sent"
        })
        .await;
    assert_eq!(log["items"][0]["id"], id);
    assert_eq!(log["items"][0]["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(delivery(&log, 0, "email")["destination"], email.as_str());
    assert_eq!(delivery(&log, 0, "email")["provider"], "smtp");
    let stored: Value = sqlx::query_scalar("SELECT data FROM notifications WHERE user_id = $1")
        .bind(user)
        .fetch_one(&setup.database.pool)
        .await
        .unwrap();
    assert!(stored.get("verification_url").is_none(), "{stored}");

    // The same event delivered again sends nothing more.
    let user_token = setup.issuer.user_token(user, "customer");
    let history: Value = reqwest::Client::new()
        .get(format!("{}/v1/notifications", instance.http))
        .bearer_auth(&user_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        history["items"],
        json!([]),
        "a verification e-mail is not an in-app notification"
    );
    // The address learnt from the event serves later e-mails too.
    setup
        .send(
            &instance,
            user,
            "order_expired",
            &[("order_id", "0199aaaa-0000-7000-8000-000000000000")],
            &[pb::Channel::Email],
        )
        .await
        .unwrap();
    let mails = eventually(Duration::from_secs(30), "a second e-mail", || async {
        let mails = sink.mail_to(&email).await;
        (mails.len() == 2).then_some(mails)
    })
    .await;
    assert!(
        mails
            .iter()
            .any(|mail| mail["subject"] == "Your order expired")
    );

    // A failed payment of an order that still waits for it: pay again, by this link, in
    // time.
    let order_id = "0199aaaa-0000-7000-8000-000000000001";
    publish(
        &setup,
        "commerce.order.events",
        "commerce.order.v1.PaymentAttemptFailed",
        order_id,
        commerce_proto::order::v1::PaymentAttemptFailed {
            order_id: order_id.to_owned(),
            user_id: user.to_string(),
            reason: "card declined".into(),
            total: Some(commerce_proto::common::v1::Money {
                amount: "42.50".into(),
                currency: "EUR".into(),
            }),
            payment_due_at: Some(prost_types::Timestamp {
                seconds: 1_900_000_000,
                nanos: 0,
            }),
        }
        .encode_to_vec(),
    )
    .await;
    let mails = eventually(
        Duration::from_secs(30),
        "the failed payment's e-mail",
        || async {
            let mails = sink.mail_to(&email).await;
            (mails.len() == 3).then_some(mails)
        },
    )
    .await;
    let failed = mails
        .iter()
        .find(|mail| mail["subject"] == "Your payment did not go through")
        .unwrap_or_else(|| panic!("{mails:?}"));
    let text = failed["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("https://shop.example/orders/{order_id}"))
            && text.contains("until 2030-03-17 17:46 UTC")
            && text.contains("(card declined)")
            && text.contains("42.50 EUR"),
        "{text}"
    );
}

#[tokio::test]
async fn sms_fails_over_to_the_secondary_provider() {
    let providers = Arc::new(SmsProviders::default());
    let sms_url = start_sms_providers(providers.clone()).await;
    let setup = Setup::new("notifysms", free_port(), sms_url).await;
    let instance = setup.instance().await;
    let user = Uuid::new_v4();
    let token = setup.issuer.user_token(user, "customer");
    let client = reqwest::Client::new();
    let preferences = client
        .put(format!("{}/v1/notifications/preferences", instance.http))
        .bearer_auth(&token)
        .json(&json!({"email": false, "sms": true, "push": false, "phone": "+628123456789"}))
        .send()
        .await
        .unwrap();
    assert_eq!(preferences.status(), 200);

    // The primary answers 503: the secondary sends.
    setup
        .send(
            &instance,
            user,
            "payment_reminder",
            &[
                ("order_id", "abcdef0123"),
                ("total", "5.00 USD"),
                ("payment_due_at", "tomorrow"),
            ],
            &[],
        )
        .await
        .unwrap();
    let log = setup
        .log_until(&instance, user, "the SMS sent", |log| {
            delivery(log, 0, "sms")["status"] == "sent"
        })
        .await;
    assert_eq!(delivery(&log, 0, "sms")["provider"], "vonage");
    assert_eq!(
        delivery(&log, 0, "email")["status"],
        "skipped",
        "e-mail was turned off"
    );
    assert_eq!(
        delivery(&log, 0, "push")["status"],
        "skipped",
        "push was turned off"
    );
    {
        let twilio = providers.twilio.lock().unwrap();
        assert_eq!(twilio.len(), 1, "the primary was tried first");
        let (auth, form) = &twilio[0];
        // Basic base64("AC123:twilio-secret")
        assert_eq!(auth.as_deref(), Some("Basic QUMxMjM6dHdpbGlvLXNlY3JldA=="));
        assert_eq!(form["To"], "+628123456789");
        assert_eq!(form["From"], "+15005550006");
        let vonage = providers.vonage.lock().unwrap();
        assert_eq!(vonage[0]["to"], "628123456789");
        assert_eq!(vonage[0]["api_secret"], "vonage-secret");
        assert_eq!(
            vonage[0]["text"],
            "Order abcdef01: 5.00 USD is still unpaid. Pay before tomorrow."
        );
    }

    // The primary does not answer in time: the secondary sends again.
    providers.twilio_mode.store(1, Ordering::SeqCst);
    setup
        .send(
            &instance,
            user,
            "payment_reminder",
            &[("order_id", "second")],
            &[pb::Channel::Sms],
        )
        .await
        .unwrap();
    setup
        .log_until(&instance, user, "the second SMS sent", |log| {
            log["items"].as_array().unwrap().len() == 2
                && delivery(log, 0, "sms")["provider"] == "vonage"
        })
        .await;
    assert_eq!(providers.vonage.lock().unwrap().len(), 2);

    // A healthy primary sends by itself.
    providers.twilio_mode.store(2, Ordering::SeqCst);
    setup
        .send(
            &instance,
            user,
            "payment_reminder",
            &[("order_id", "third")],
            &[pb::Channel::Sms],
        )
        .await
        .unwrap();
    setup
        .log_until(&instance, user, "the third SMS sent by Twilio", |log| {
            log["items"].as_array().unwrap().len() == 3
                && delivery(log, 0, "sms")["provider"] == "twilio"
        })
        .await;
    assert_eq!(providers.vonage.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn history_read_marks_preferences_and_templates_check_who_asks() {
    let setup = Setup::new("notifyapi", free_port(), "http://127.0.0.1:9".into()).await;
    let instance = setup.instance().await;
    let client = reqwest::Client::new();
    let (ann, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let (ann_token, bob_token) = (
        setup.issuer.user_token(ann, "customer"),
        setup.issuer.user_token(bob, "customer"),
    );
    let admin = setup.issuer.user_token(Uuid::new_v4(), "admin");
    let base = &instance.http;

    // Ann reads Indonesian; an admin adds an Indonesian template for a new kind.
    let put = |token: &str, url: String, body: Value| {
        client.put(url).bearer_auth(token).json(&body).send()
    };
    let answer = put(
        &ann_token,
        format!("{base}/v1/notifications/preferences"),
        json!({"email": true, "sms": true, "push": true, "locale": "id"}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let bad_phone = put(
        &ann_token,
        format!("{base}/v1/notifications/preferences"),
        json!({"email": true, "sms": true, "push": true, "phone": "0812"}),
    )
    .await
    .unwrap();
    assert_eq!(bad_phone.status(), 400);
    assert_eq!(
        bad_phone.json::<Value>().await.unwrap()["error"]["field"],
        "phone"
    );
    let template_url = format!("{base}/v1/admin/notification-templates/promo_started/push/id");
    let refused = put(
        &ann_token,
        template_url.clone(),
        json!({"subject": "x", "body": "y"}),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 403, "customers do not write templates");
    let broken = put(
        &admin,
        template_url.clone(),
        json!({"subject": "Promo", "body": "{% if %}"}),
    )
    .await
    .unwrap();
    assert_eq!(broken.status(), 400);
    assert_eq!(
        broken.json::<Value>().await.unwrap()["error"]["field"],
        "body"
    );
    let stored: Value = put(
        &admin,
        template_url.clone(),
        json!({"subject": "Promo {{ code }}", "body": "Kode {{ code }} berlaku!"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(stored["version"], 1);
    let english = put(
        &admin,
        format!("{base}/v1/admin/notification-templates/promo_started/push/en"),
        json!({"subject": "Promo {{ code }}", "body": "Code {{ code }} is live!"}),
    )
    .await
    .unwrap();
    assert_eq!(english.status(), 200);

    for user in [ann, bob] {
        setup
            .send(
                &instance,
                user,
                "promo_started",
                &[("code", "HEMAT10")],
                &[],
            )
            .await
            .unwrap();
        setup
            .send(
                &instance,
                user,
                "order_confirmed",
                &[("order_id", "0123456789"), ("total", "1.00 IDR")],
                &[],
            )
            .await
            .unwrap();
    }
    let unknown = setup
        .send(&instance, ann, "no_such_kind", &[], &[])
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let invalid = setup
        .send(&instance, ann, "Bad Kind", &[], &[])
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert!(
        invalid.message().starts_with("kind:"),
        "{}",
        invalid.message()
    );

    // The same request id twice makes one notification.
    let request_id = Uuid::now_v7();
    let first = setup
        .send_as(
            &instance,
            request_id,
            bob,
            "promo_started",
            &[("code", "ONCE")],
            &[],
        )
        .await
        .unwrap();
    let again = setup
        .send_as(
            &instance,
            request_id,
            bob,
            "promo_started",
            &[("code", "ONCE")],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(first.notification_id, again.notification_id);
    assert_eq!(again.channels, vec![pb::Channel::Push as i32]);

    let get = |token: &str, url: String| client.get(url).bearer_auth(token).send();
    let history: Value = get(&ann_token, format!("{base}/v1/notifications"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{history}");
    assert_eq!(
        items[0]["title"], "Pesanan dikonfirmasi",
        "Ann's locale: Indonesian"
    );
    assert_eq!(items[1]["body"], "Kode HEMAT10 berlaku!");
    let bob_history: Value = get(&bob_token, format!("{base}/v1/notifications?limit=1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        bob_history["items"][0]["body"], "Code ONCE is live!",
        "Bob reads English"
    );
    let next = bob_history["nextBefore"].as_i64().unwrap();
    let older: Value = get(
        &bob_token,
        format!("{base}/v1/notifications?limit=1&before={next}"),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(older["items"][0]["title"], "Order confirmed");

    // Read marks: only one's own.
    let ann_first = items[0]["id"].as_str().unwrap();
    let by_bob = client
        .post(format!("{base}/v1/notifications/{ann_first}/read"))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_bob.status(), 404, "Bob cannot touch Ann's notification");
    let unread: Value = get(&ann_token, format!("{base}/v1/notifications/unread-count"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unread["unread"], 2);
    let by_ann = client
        .post(format!("{base}/v1/notifications/{ann_first}/read"))
        .bearer_auth(&ann_token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_ann.status(), 204);
    let unread: Value = get(&ann_token, format!("{base}/v1/notifications/unread-count"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unread["unread"], 1);
    let all: Value = client
        .post(format!("{base}/v1/notifications/read-all"))
        .bearer_auth(&ann_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["updated"], 1);

    // Opting out of push: the next one is logged as skipped and stays out of the history;
    // the mandatory verification e-mail still goes out.
    put(
        &bob_token,
        format!("{base}/v1/notifications/preferences"),
        json!({"email": false, "sms": false, "push": false}),
    )
    .await
    .unwrap();
    setup
        .send(
            &instance,
            bob,
            "order_confirmed",
            &[("order_id", "9999999999")],
            &[],
        )
        .await
        .unwrap();
    setup
        .send(
            &instance,
            bob,
            "email_verification",
            &[("verification_url", "https://x/verify")],
            &[],
        )
        .await
        .unwrap();
    let log = setup
        .log_until(&instance, bob, "bob's log", |log| {
            log["items"].as_array().unwrap().len() == 5
        })
        .await;
    assert_eq!(delivery(&log, 1, "push")["status"], "skipped");
    assert_eq!(
        delivery(&log, 1, "push")["lastError"],
        "turned off by the user"
    );
    assert_eq!(delivery(&log, 1, "email")["status"], "skipped");
    assert_ne!(
        delivery(&log, 0, "email")["status"],
        "skipped",
        "verification is not optional"
    );
    let bob_history: Value = get(&bob_token, format!("{base}/v1/notifications"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bob_history["items"].as_array().unwrap().len(), 3);

    // The delivery log is for staff only; a bad limit is named.
    let denied = get(
        &ann_token,
        format!("{base}/v1/admin/notifications?userId={bob}"),
    )
    .await
    .unwrap();
    assert_eq!(denied.status(), 403);
    let bad_limit = get(&ann_token, format!("{base}/v1/notifications?limit=1000"))
        .await
        .unwrap();
    assert_eq!(
        bad_limit.json::<Value>().await.unwrap()["error"]["field"],
        "limit"
    );
}

#[tokio::test]
async fn every_shop_event_becomes_its_notification() {
    use commerce_proto::common::v1::Money;
    use commerce_proto::{
        fulfillment::v1 as fulfillment, order::v1 as order, payment::v1 as payment,
    };
    let setup = Setup::new("notifyevents", free_port(), "http://127.0.0.1:9".into()).await;
    let instance = setup.instance().await;
    let user = Uuid::new_v4();
    let uid = user.to_string();
    let order_id = "0199abcd-1111-7000-8000-000000000001".to_owned();
    let money = |amount: &str| {
        Some(Money {
            amount: amount.into(),
            currency: "EUR".into(),
        })
    };
    let due = Some(prost_types::Timestamp {
        seconds: 1_900_000_000,
        nanos: 0,
    });
    let confirmed = order::OrderConfirmed {
        order: Some(order::Order {
            id: order_id.clone(),
            user_id: uid.clone(),
            total: money("42.50"),
            courier: "express".into(),
            shipping_address: Some(order::ShippingAddress {
                phone: "+628123450000".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let events: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "commerce.order.events",
            "commerce.order.v1.PaymentReminderDue",
            order::PaymentReminderDue {
                order_id: order_id.clone(),
                user_id: uid.clone(),
                reminder: 1,
                total: money("42.50"),
                payment_due_at: due,
            }
            .encode_to_vec(),
        ),
        (
            "commerce.order.events",
            "commerce.order.v1.OrderConfirmed",
            confirmed.encode_to_vec(),
        ),
        (
            "commerce.fulfillment.events",
            "commerce.fulfillment.v1.FulfillmentCreated",
            fulfillment::FulfillmentCreated {
                fulfillment_id: "f1".into(),
                order_id: order_id.clone(),
                user_id: uid.clone(),
                courier: "express".into(),
                tracking_id: "TRK-1".into(),
                estimated_delivery: due,
            }
            .encode_to_vec(),
        ),
        (
            "commerce.fulfillment.events",
            "commerce.fulfillment.v1.FulfillmentShipped",
            fulfillment::FulfillmentShipped {
                fulfillment_id: "f1".into(),
                order_id: order_id.clone(),
                user_id: uid.clone(),
                tracking_id: "TRK-1".into(),
            }
            .encode_to_vec(),
        ),
        (
            "commerce.fulfillment.events",
            "commerce.fulfillment.v1.FulfillmentDelivered",
            fulfillment::FulfillmentDelivered {
                fulfillment_id: "f1".into(),
                order_id: order_id.clone(),
                user_id: uid.clone(),
                tracking_id: "TRK-1".into(),
            }
            .encode_to_vec(),
        ),
        (
            "commerce.payment.events",
            "commerce.payment.v1.PaymentRefunded",
            payment::PaymentRefunded {
                payment_id: "p1".into(),
                order_id: order_id.clone(),
                user_id: uid.clone(),
                refund_id: "r1".into(),
                amount: money("42.50"),
                full: true,
                reason: "damaged in transit".into(),
            }
            .encode_to_vec(),
        ),
        (
            "commerce.order.events",
            "commerce.order.v1.OrderCanceled",
            order::OrderCanceled {
                order_id: order_id.clone(),
                user_id: uid.clone(),
                reason: "changed my mind".into(),
                previous_status: "CONFIRMED".into(),
            }
            .encode_to_vec(),
        ),
        (
            "commerce.order.events",
            "commerce.order.v1.OrderExpired",
            order::OrderExpired {
                order_id: order_id.clone(),
                user_id: uid.clone(),
            }
            .encode_to_vec(),
        ),
        // Not a notifying event: ignored.
        (
            "commerce.order.events",
            "commerce.order.v1.OrderCreated",
            order::OrderCreated::default().encode_to_vec(),
        ),
    ];
    // One key per topic keeps them in order.
    for (topic, event_type, payload) in events {
        publish(&setup, topic, event_type, &uid, payload).await;
    }
    let log = setup
        .log_until(&instance, user, "eight notifications", |log| {
            log["items"].as_array().unwrap().len() == 8
        })
        .await;
    let kinds: std::collections::BTreeSet<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "fulfillment_created",
            "fulfillment_delivered",
            "fulfillment_shipped",
            "order_canceled",
            "order_confirmed",
            "order_expired",
            "payment_refunded",
            "payment_reminder"
        ]
        .into_iter()
        .collect()
    );
    let token = setup.issuer.user_token(user, "customer");
    let history: Value = reqwest::Client::new()
        .get(format!("{}/v1/notifications?limit=20", instance.http))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body_of = |kind: &str| -> String {
        history["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}: {history}"))["body"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        body_of("order_confirmed"),
        "Order 0199abcd is confirmed (42.50 EUR)."
    );
    assert_eq!(
        body_of("payment_reminder"),
        "Order 0199abcd (42.50 EUR) expires at 2030-03-17 17:46 UTC."
    );
    assert_eq!(
        body_of("fulfillment_shipped"),
        "Order 0199abcd is on its way (tracking TRK-1)."
    );
    assert_eq!(
        body_of("payment_refunded"),
        "42.50 EUR refunded for order 0199abcd: damaged in transit."
    );
    assert_eq!(body_of("order_canceled"), "Order 0199abcd was canceled.");
    // The confirmed order's phone number became the SMS destination.
    let preferences: Value = reqwest::Client::new()
        .get(format!("{}/v1/notifications/preferences", instance.http))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(preferences["phone"], "+628123450000");
}

#[tokio::test]
async fn a_delivery_that_fails_everywhere_is_retried_later() {
    let providers = Arc::new(SmsProviders::default());
    let sms_url = start_sms_providers(providers.clone()).await;
    let setup = Setup::new("notifyretry", free_port(), sms_url).await;
    let instance = setup.instance().await;
    let user = Uuid::new_v4();
    let token = setup.issuer.user_token(user, "customer");
    reqwest::Client::new()
        .put(format!("{}/v1/notifications/preferences", instance.http))
        .bearer_auth(&token)
        .json(&json!({"email": false, "sms": true, "push": false, "phone": "+628123456789"}))
        .send()
        .await
        .unwrap();
    // Both providers down: the attempt fails as retryable.
    providers.vonage_down.store(true, Ordering::SeqCst);
    setup
        .send(
            &instance,
            user,
            "payment_reminder",
            &[("order_id", "retry")],
            &[pb::Channel::Sms],
        )
        .await
        .unwrap();
    let log = setup
        .log_until(&instance, user, "a failed first attempt", |log| {
            delivery(log, 0, "sms")["attempts"] == 1
                && !delivery(log, 0, "sms")["lastError"].is_null()
        })
        .await;
    assert_eq!(delivery(&log, 0, "sms")["status"], "pending");
    let error = delivery(&log, 0, "sms")["lastError"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("twilio") && error.contains("vonage"),
        "{error}"
    );
    // The primary recovers: the next attempt (after a 2 s pause) sends.
    providers.twilio_mode.store(2, Ordering::SeqCst);
    let log = setup
        .log_until(&instance, user, "the retry sent", |log| {
            delivery(log, 0, "sms")["status"] == "sent"
        })
        .await;
    assert_eq!(delivery(&log, 0, "sms")["attempts"], 2);
    assert_eq!(delivery(&log, 0, "sms")["provider"], "twilio");
}
