//! Support chat in the whole shop, through the public gateway: the seeded customer asks
//! for help, the seeded support agent is assigned, and WebSocket frames pass the gateway's
//! tunnel both ways (a browser-style `?token=` on a public route).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{LocalShop, demo_login};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn frame_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .unwrap_or_else(|_| panic!("a `{kind}` frame within 15 s"))
            .expect("socket open")
            .unwrap();
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}

#[tokio::test]
async fn a_customer_and_the_support_agent_talk_through_the_gateway() {
    let shop = LocalShop::new("chatshop").await;
    shop.run(&["migrate", "--target", "all"]);
    shop.run(&["seed"]);
    let _running = shop.serve();
    shop.wait_until_ready().await;
    let gateway = shop.url(8080);
    let ws = gateway.replace("http://", "ws://");
    let client = reqwest::Client::new();
    let customer = demo_login(&client, &gateway, "customer").await;
    let agent = demo_login(&client, &gateway, "support").await;

    // The agent is connected (and so known to chat) before the customer asks.
    let (mut agent_socket, _) =
        tokio_tungstenite::connect_async(format!("{ws}/v1/chat/ws?token={agent}"))
            .await
            .unwrap();
    frame_of(&mut agent_socket, "ready").await;
    let conversation: Value = client
        .post(format!("{gateway}/v1/chat/support"))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = conversation["id"]
        .as_str()
        .expect("a conversation")
        .to_owned();
    assert!(
        conversation["participants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["role"] == "agent" && p["online"] == true),
        "the online agent was assigned: {conversation}"
    );
    assert_eq!(
        frame_of(&mut agent_socket, "joined").await["conversationId"],
        id.as_str()
    );

    let (mut customer_socket, _) =
        tokio_tungstenite::connect_async(format!("{ws}/v1/chat/ws?token={customer}"))
            .await
            .unwrap();
    frame_of(&mut customer_socket, "ready").await;
    customer_socket
        .send(Message::Text(
            json!({"type": "send", "conversationId": id, "clientId": "q1", "body": "Where is my order?"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    assert_eq!(frame_of(&mut customer_socket, "ack").await["seq"], 1);
    let received = frame_of(&mut agent_socket, "message").await;
    assert_eq!(received["message"]["body"], "Where is my order?");

    // Without a token the gateway's public route still reaches chat, which refuses it.
    let refused = tokio_tungstenite::connect_async(format!("{ws}/v1/chat/ws")).await;
    assert!(refused.is_err(), "no token, no socket");
}
