//! The chat service as it runs: two instances on one PostgreSQL and one Redis, real
//! WebSocket clients (tokio-tungstenite) on each.

use std::sync::Arc;
use std::time::Duration;

use commerce_runtime::{Config, service};
use commerce_testkit::{TestDatabase, TestIssuer, fresh_database, required_env, unique};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Instance {
    http: String,
    _running: service::Running,
    shutdown: CancellationToken,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Setup {
    database: TestDatabase,
    issuer: TestIssuer,
    prefix: String,
}

impl Setup {
    async fn new(label: &str) -> Self {
        Self {
            database: fresh_database(label).await,
            issuer: TestIssuer::start().await,
            prefix: unique(label),
        }
    }

    async fn instance(&self) -> Instance {
        let toml = format!(
            r#"
            [kafka]
            brokers = "{brokers}"
            [redis]
            urls = ["{redis}"]
            [services.chat]
            http_addr = "127.0.0.1:0"
            database = {{ url = "{db}" }}
            jwks_url = "{jwks}"
            redis_prefix = "{prefix}"
            frames_per_second = 2.0
            burst = 12
            outbound_queue = 64
            max_attachment_bytes = 2048
            write_timeout = "1s"
            attachment_dir = "{attachments}"
            "#,
            attachments = std::env::temp_dir().join(&self.prefix).display(),
            brokers = required_env("COMMERCE_TEST_KAFKA_BROKERS"),
            redis = required_env("COMMERCE_TEST_REDIS_URL"),
            db = self.database.url,
            jwks = self.issuer.jwks_url,
            prefix = self.prefix,
        );
        let shutdown = CancellationToken::new();
        let running = service::start(
            Arc::new(Config::from_toml_str(&toml).unwrap()),
            &[&commerce_chat::DEFINITION],
            shutdown.clone(),
        )
        .await
        .unwrap();
        Instance {
            http: format!("http://{}", running.http_addrs[0].1),
            _running: running,
            shutdown,
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Client {
    socket: Socket,
}

impl Client {
    async fn connect(instance: &Instance, token: &str) -> Self {
        let url = format!(
            "{}/v1/chat/ws?token={token}",
            instance.http.replace("http://", "ws://")
        );
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut client = Self { socket };
        client.expect("ready").await;
        client
    }

    async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    /// The next frame of `kind`, skipping presence, typing and read frames of others.
    async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("a `{kind}` frame within 10 s"))
                .expect("socket open")
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == kind {
                return frame;
            }
            assert!(
                [
                    "presence", "typing", "read", "joined", "message", "ack", "pong", "deleted"
                ]
                .contains(&frame["type"].as_str().unwrap()),
                "unexpected frame while waiting for `{kind}`: {frame}"
            );
        }
    }
}

/// Accepts an invitation to the conversation by joining it.
async fn accept(base: &str, conversation: &str, token: &str) {
    let (status, body) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations/{conversation}/join"),
        token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn rest(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn support_chat_crosses_instances_in_order_and_keeps_strangers_out() {
    let setup = Setup::new("chat").await;
    let (a, b) = (setup.instance().await, setup.instance().await);
    let (customer, agent, stranger) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let customer_token = setup.issuer.user_token(customer, "customer");
    let agent_token = setup.issuer.user_token(agent, "support");
    let stranger_token = setup.issuer.user_token(stranger, "customer");

    // The agent is online on B; the customer asks for help on A and gets that agent.
    let mut on_b = Client::connect(&b, &agent_token).await;
    let (status, conversation) = rest(
        reqwest::Method::POST,
        format!("{}/v1/chat/support", a.http),
        &customer_token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{conversation}");
    let id = conversation["id"].as_str().unwrap().to_owned();
    let roles: Vec<(String, String)> = conversation["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["userId"].as_str().unwrap().to_owned(),
                p["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        roles.contains(&(agent.to_string(), "agent".into())),
        "{conversation}"
    );
    let joined = on_b.expect("joined").await;
    assert_eq!(joined["conversationId"], id.as_str());
    // Staff add only staff as agents: a customer cannot be made one.
    let (status, refused) = rest(
        reqwest::Method::POST,
        format!("{}/v1/chat/conversations/{id}/participants", b.http),
        &agent_token,
        Some(json!({"userId": stranger})),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["field"].clone()),
        (400, json!("userId")),
        "{refused}"
    );
    let (_, again) = rest(
        reqwest::Method::POST,
        format!("{}/v1/chat/support", b.http),
        &customer_token,
        None,
    )
    .await;
    assert_eq!(
        again["id"],
        id.as_str(),
        "one open support conversation per customer"
    );

    let mut on_a = Client::connect(&a, &customer_token).await;
    let presence = on_b.expect("presence").await;
    assert_eq!(
        (presence["userId"].as_str(), presence["online"].as_bool()),
        (Some(customer.to_string().as_str()), Some(true))
    );

    // Sent on A: acknowledged with its number, received on B — in order.
    for (index, text) in ["hello", "my parcel is late", "can I get a refund?"]
        .iter()
        .enumerate()
    {
        on_a.send(json!({"type": "send", "conversationId": id, "clientId": format!("c{index}"), "body": text})).await;
        let ack = on_a.expect("ack").await;
        assert_eq!(ack["clientId"], format!("c{index}"));
        assert_eq!(ack["seq"], index + 1);
    }
    for (index, text) in ["hello", "my parcel is late", "can I get a refund?"]
        .iter()
        .enumerate()
    {
        let message = on_b.expect("message").await;
        assert_eq!(message["message"]["body"], *text);
        assert_eq!(message["message"]["seq"], index + 1);
        assert_eq!(message["message"]["senderId"], customer.to_string());
    }
    // A resend after a lost ack is the same message.
    on_a.send(json!({"type": "send", "conversationId": id, "clientId": "c0", "body": "hello"}))
        .await;
    assert_eq!(on_a.expect("ack").await["seq"], 1);

    // The agent types and answers on B; the customer sees both on A.
    on_b.send(json!({"type": "typing", "conversationId": id}))
        .await;
    let typing = on_a.expect("typing").await;
    assert_eq!(typing["userId"], agent.to_string());
    on_b.send(
        json!({"type": "send", "conversationId": id, "clientId": "s1", "body": "Refund issued."}),
    )
    .await;
    on_b.expect("ack").await;
    assert_eq!(
        on_a.expect("message").await["message"]["body"],
        "Refund issued."
    );

    // History pages and full-text search.
    let (status, page) = rest(
        reqwest::Method::GET,
        format!("{}/v1/chat/conversations/{id}/messages?limit=2", b.http),
        &customer_token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"][0]["body"], "Refund issued.");
    let before = page["nextBefore"].as_i64().unwrap();
    let (_, older) = rest(
        reqwest::Method::GET,
        format!(
            "{}/v1/chat/conversations/{id}/messages?before={before}",
            b.http
        ),
        &customer_token,
        None,
    )
    .await;
    assert_eq!(older["items"].as_array().unwrap().len(), 2);
    let (_, found) = rest(
        reqwest::Method::GET,
        format!("{}/v1/chat/conversations/{id}/search?q=refund", a.http),
        &agent_token,
        None,
    )
    .await;
    let bodies: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies.len(), 2, "{found}");
    assert!(bodies.contains(&"can I get a refund?") && bodies.contains(&"Refund issued."));

    // A stranger learns nothing and can write nothing.
    for url in [
        format!("{}/v1/chat/conversations/{id}", a.http),
        format!("{}/v1/chat/conversations/{id}/messages", a.http),
        format!("{}/v1/chat/conversations/{id}/search?q=refund", a.http),
    ] {
        assert_eq!(
            rest(reqwest::Method::GET, url, &stranger_token, None)
                .await
                .0,
            404
        );
    }
    assert_eq!(
        rest(
            reqwest::Method::POST,
            format!("{}/v1/chat/conversations/{id}/join", a.http),
            &stranger_token,
            None
        )
        .await
        .0,
        404
    );
    let mut intruder = Client::connect(&a, &stranger_token).await;
    intruder
        .send(json!({"type": "send", "conversationId": id, "clientId": "x", "body": "let me in"}))
        .await;
    let refused = intruder.expect("error").await;
    assert_eq!(
        (refused["code"].as_str(), refused["clientId"].as_str()),
        (Some("not_found"), Some("x"))
    );
    intruder
        .send(json!({"type": "typing", "conversationId": id}))
        .await;
    assert_eq!(intruder.expect("error").await["code"], "not_found");

    // Moderation: the agent deletes a message (everyone is told) and mutes the customer.
    let (_, history) = rest(
        reqwest::Method::GET,
        format!("{}/v1/chat/conversations/{id}/messages", a.http),
        &agent_token,
        None,
    )
    .await;
    let late = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["body"] == "my parcel is late")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = rest(
        reqwest::Method::DELETE,
        format!("{}/v1/chat/conversations/{id}/messages/{late}", b.http),
        &customer_token,
        None,
    )
    .await;
    assert_eq!(status, 204, "senders delete their own messages");
    assert_eq!(on_a.expect("deleted").await["messageId"], late.as_str());
    let (status, _) = rest(
        reqwest::Method::POST,
        format!(
            "{}/v1/chat/conversations/{id}/participants/{agent}/mute",
            a.http
        ),
        &customer_token,
        Some(json!({"minutes": 5})),
    )
    .await;
    assert_eq!(status, 403, "customers do not moderate");
    let (status, _) = rest(
        reqwest::Method::POST,
        format!(
            "{}/v1/chat/conversations/{id}/participants/{customer}/mute",
            a.http
        ),
        &agent_token,
        Some(json!({"minutes": 5})),
    )
    .await;
    assert_eq!(status, 204);
    on_a.send(json!({"type": "send", "conversationId": id, "clientId": "c9", "body": "!!!"}))
        .await;
    assert_eq!(on_a.expect("error").await["code"], "muted");

    // Limits: a too-long body is refused by name; a flood is rate limited.
    let (_, _) = rest(
        reqwest::Method::POST,
        format!(
            "{}/v1/chat/conversations/{id}/participants/{customer}/mute",
            a.http
        ),
        &agent_token,
        Some(json!({"minutes": 0})),
    )
    .await;
    on_a.send(
        json!({"type": "send", "conversationId": id, "clientId": "long", "body": "x".repeat(4001)}),
    )
    .await;
    let too_long = on_a.expect("error").await;
    assert_eq!(too_long["code"], "invalid");
    assert!(
        too_long["message"].as_str().unwrap().starts_with("body:"),
        "{too_long}"
    );
    for _ in 0..20 {
        on_a.send(json!({"type": "ping"})).await;
    }
    assert_eq!(on_a.expect("error").await["code"], "rate_limited");

    // The customer leaves: the agent sees them go offline.
    drop(on_a);
    loop {
        let presence = on_b.expect("presence").await;
        if presence["userId"] == customer.to_string() && presence["online"] == false {
            break;
        }
    }
}

#[tokio::test]
async fn groups_channels_and_bans() {
    let setup = Setup::new("chatgroup").await;
    let instance = setup.instance().await;
    let (owner, member, admin) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let owner_token = setup.issuer.user_token(owner, "customer");
    let member_token = setup.issuer.user_token(member, "customer");
    let admin_token = setup.issuer.user_token(admin, "admin");
    let base = &instance.http;

    let mut member_socket = Client::connect(&instance, &member_token).await;
    let (status, group) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations"),
        &owner_token,
        Some(json!({"kind": "group", "title": "Book club", "members": [member]})),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let group_id = group["id"].as_str().unwrap().to_owned();
    // Invited, not added: the member says yes by joining, and their socket follows the
    // group from then on.
    assert_eq!(
        member_socket.expect("invited").await["conversationId"],
        group_id.as_str()
    );
    let (_, listed) = rest(
        reqwest::Method::GET,
        format!("{base}/v1/chat/invitations"),
        &member_token,
        None,
    )
    .await;
    assert_eq!(listed["items"][0]["conversationId"], group_id.as_str());
    assert_eq!(listed["items"][0]["invitedBy"], owner.to_string());
    accept(base, &group_id, &member_token).await;
    assert_eq!(
        member_socket.expect("joined").await["conversationId"],
        group_id.as_str()
    );
    // Someone else is invited and declines: they are not in it and cannot join.
    let declining = Uuid::new_v4();
    let declining_token = setup.issuer.user_token(declining, "customer");
    let (status, _) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations/{group_id}/participants"),
        &owner_token,
        Some(json!({"userId": declining})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = rest(
        reqwest::Method::DELETE,
        format!("{base}/v1/chat/invitations/{group_id}"),
        &declining_token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations/{group_id}/join"),
        &declining_token,
        None,
    )
    .await;
    assert_eq!(status, 403, "a declined invitation is gone");
    let (status, _) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations/{group_id}/messages"),
        &owner_token,
        Some(json!({"clientId": "o1", "body": "welcome"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        member_socket.expect("message").await["message"]["body"],
        "welcome"
    );

    // Channels are made by staff; anyone joins.
    let (status, _) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations"),
        &owner_token,
        Some(json!({"kind": "channel", "title": "News"})),
    )
    .await;
    assert_eq!(status, 403);
    let (_, channel) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations"),
        &admin_token,
        Some(json!({"kind": "channel", "title": "News"})),
    )
    .await;
    let channel_id = channel["id"].as_str().unwrap().to_owned();
    let (status, joined) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations/{channel_id}/join"),
        &member_token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{joined}");
    let (status, _) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations/{group_id}/join"),
        &admin_token,
        None,
    )
    .await;
    assert_eq!(status, 403, "a private group is not joined uninvited");

    // The owner bans the member: they are told, stop following, and cannot read or write.
    let (status, _) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations/{group_id}/participants/{member}/ban"),
        &owner_token,
        Some(json!({"banned": true})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        member_socket.expect("left").await["conversationId"],
        group_id.as_str()
    );
    let (status, _) = rest(
        reqwest::Method::GET,
        format!("{base}/v1/chat/conversations/{group_id}/messages"),
        &member_token,
        None,
    )
    .await;
    assert_eq!(status, 403);
    member_socket
        .send(json!({"type": "send", "conversationId": group_id, "clientId": "m1", "body": "hey"}))
        .await;
    assert_eq!(member_socket.expect("error").await["code"], "banned");
    let (_, mine) = rest(
        reqwest::Method::GET,
        format!("{base}/v1/chat/conversations"),
        &member_token,
        None,
    )
    .await;
    let ids: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![channel_id.as_str()],
        "the banned group is gone from the list"
    );

    // A frame over 16 KiB ends the connection.
    let mut oversized = Client::connect(&instance, &owner_token).await;
    oversized
        .socket
        .send(Message::Text("x".repeat(20 * 1024).into()))
        .await
        .unwrap();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), oversized.socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(None) | Ok(Some(Err(_))) => break None,
            Err(_) => panic!("an oversized frame did not end the connection"),
        }
    };
    assert_eq!(ended, Some(1009), "closed as too big");

    // Bad input names its field.
    let (status, body) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations"),
        &owner_token,
        Some(json!({"kind": "support", "title": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("kind"))
    );
    let (status, body) = rest(
        reqwest::Method::GET,
        format!("{base}/v1/chat/conversations/not-a-uuid"),
        &owner_token,
        None,
    )
    .await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("id")));
    let plain = reqwest::get(format!("{base}/v1/chat/ws?token={owner_token}"))
        .await
        .unwrap();
    assert_eq!(plain.status(), 426, "a plain GET is not an upgrade");
    let anonymous = reqwest::get(format!("{base}/v1/chat/ws")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn attachments_are_checked_stored_and_served_only_to_readers() {
    let setup = Setup::new("chatfiles").await;
    let instance = setup.instance().await;
    let (owner, member, stranger) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let owner_token = setup.issuer.user_token(owner, "customer");
    let member_token = setup.issuer.user_token(member, "customer");
    let stranger_token = setup.issuer.user_token(stranger, "customer");
    let base = &instance.http;
    let (_, group) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations"),
        &owner_token,
        Some(json!({"kind": "group", "title": "Receipts", "members": [member]})),
    )
    .await;
    let id = group["id"].as_str().unwrap().to_owned();
    accept(base, &id, &member_token).await;
    let client = reqwest::Client::new();
    let upload = |token: &str, name: &str, content_type: &str, bytes: Vec<u8>| {
        client
            .post(format!(
                "{base}/v1/chat/conversations/{id}/attachments?fileName={name}"
            ))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(bytes)
            .send()
    };
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(7u8, 100))
        .collect();

    let disguised = upload(
        &owner_token,
        "x.png",
        "image/png",
        b"<script>alert(1)</script>".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(disguised.status(), 400);
    assert_eq!(
        disguised.json::<Value>().await.unwrap()["error"]["field"],
        "Content-Type"
    );
    let html = upload(&owner_token, "x.html", "text/html", b"<p>".to_vec())
        .await
        .unwrap();
    assert_eq!(html.status(), 400);
    let huge = upload(&owner_token, "big.txt", "text/plain", vec![b'a'; 4096])
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    assert_eq!(
        upload(&stranger_token, "x.png", "image/png", png.clone())
            .await
            .unwrap()
            .status(),
        404
    );

    let stored = upload(&owner_token, "receipt.png", "image/png", png.clone())
        .await
        .unwrap();
    assert_eq!(stored.status(), 201);
    let stored: Value = stored.json().await.unwrap();
    let attachment = stored["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (stored["sizeBytes"].as_i64(), stored["contentType"].as_str()),
        (Some(108), Some("image/png"))
    );
    let file_url = format!("{base}/v1/chat/conversations/{id}/attachments/{attachment}");
    // Not sent yet: only its uploader sees it.
    assert_eq!(
        client
            .get(&file_url)
            .bearer_auth(&member_token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let mut member_socket = Client::connect(&instance, &member_token).await;
    let (status, sent) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations/{id}/messages"),
        &owner_token,
        Some(json!({"clientId": "f1", "body": "the receipt", "attachments": [attachment]})),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    let received = member_socket.expect("message").await;
    assert_eq!(received["message"]["attachments"], json!([attachment]));
    let file = client
        .get(&file_url)
        .bearer_auth(&member_token)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "image/png");
    assert_eq!(file.headers()["x-content-type-options"], "nosniff");
    assert!(
        file.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"receipt.png\"")
    );
    assert_eq!(file.bytes().await.unwrap().to_vec(), png);
    assert_eq!(
        client
            .get(&file_url)
            .bearer_auth(&stranger_token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // One attachment goes with one message.
    let (status, body) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations/{id}/messages"),
        &owner_token,
        Some(json!({"clientId": "f2", "body": "again", "attachments": [attachment]})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("attachments"))
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off_without_holding_back_others() {
    let setup = Setup::new("chatslow").await;
    let instance = setup.instance().await;
    let (owner, slow, fast) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let owner_token = setup.issuer.user_token(owner, "customer");
    let base = instance.http.clone();
    let (_, group) = rest(
        reqwest::Method::POST,
        format!("{base}/v1/chat/conversations"),
        &owner_token,
        Some(json!({"kind": "group", "title": "Busy", "members": [slow, fast]})),
    )
    .await;
    let id = group["id"].as_str().unwrap().to_owned();
    for invited in [slow, fast] {
        accept(&base, &id, &setup.issuer.user_token(invited, "customer")).await;
    }
    let slow_socket = Client::connect(&instance, &setup.issuer.user_token(slow, "customer")).await;
    let mut fast_socket =
        Client::connect(&instance, &setup.issuer.user_token(fast, "customer")).await;

    // ~12 MB of messages: far more than the kernel buffers the slow client never drains.
    const MESSAGES: usize = 3000;
    let body = "x".repeat(4000);
    let senders: Vec<_> = (0..8)
        .map(|task| {
            let (base, id, token, body) =
                (base.clone(), id.clone(), owner_token.clone(), body.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for index in (task..MESSAGES).step_by(8) {
                    let response = client
                        .post(format!("{base}/v1/chat/conversations/{id}/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"clientId": format!("m{index}"), "body": body}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201);
                }
            })
        })
        .collect();
    let mut received = 0;
    while received < MESSAGES {
        fast_socket.expect("message").await;
        received += 1;
    }
    for sender in senders {
        sender.await.unwrap();
    }

    // The slow client finds what fitted in the buffers, then the end of its connection.
    let mut slow_socket = slow_socket.socket;
    let mut buffered = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), slow_socket.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => buffered += 1,
            Ok(Some(Ok(Message::Close(frame)))) => {
                if let Some(frame) = frame {
                    assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
                }
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(_))) => break,
            Err(_) => panic!("the slow client was never cut off ({buffered} frames read)"),
        }
    }
    assert!(
        buffered < MESSAGES,
        "the slow client got everything ({buffered}); nothing was cut"
    );
}
