//! A mock Kubernetes API server for the reconcilers (kube-rs's `tower-test` pattern): every
//! request is recorded, and a test-written function answers it, so a test checks the
//! exact calls a reconcile makes and feeds it the answers a real server rarely gives.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use commerce_operator::controller::Context;
use commerce_operator::kafka::TopicAdmin;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Path and query, e.g. `/apis/apps/v1/namespaces/shop/deployments/demo-cart?fieldManager=...`.
    pub uri: String,
    pub content_type: String,
    pub body: Value,
}

impl Call {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }
    pub fn is(&self, method: &str, path_suffix: &str) -> bool {
        self.method == method && self.path().ends_with(path_suffix)
    }
    pub fn is_apply(&self) -> bool {
        self.method == "PATCH" && self.content_type == "application/apply-patch+yaml"
    }
}

pub type Answer = (u16, Value);

pub struct MockApi {
    pub calls: Arc<Mutex<Vec<Call>>>,
}

impl MockApi {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    pub fn find(&self, method: &str, path_suffix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| call.is(method, path_suffix))
            .collect()
    }
    /// Fails unless the calls made were exactly `script` ("METHOD /path", each as often
    /// as listed, in any order: the reconcilers apply children concurrently), as
    /// kube-rs's controller-rs scripts its scenarios: an unexpected extra call fails the
    /// test as a missing one does.
    pub fn assert_script(&self, script: &[&str]) {
        let mut made: Vec<String> = self
            .calls()
            .iter()
            .map(|call| format!("{} {}", call.method, call.path()))
            .collect();
        let mut expected: Vec<String> = script.iter().map(|call| (*call).to_owned()).collect();
        made.sort();
        expected.sort();
        assert_eq!(
            made, expected,
            "the reconcile's calls differ from its script"
        );
    }

    /// Calls that change state (everything but GET and event posts).
    pub fn writes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| call.method != "GET" && !call.path().contains("/events"))
            .collect()
    }
}

/// A client whose requests `answer` serves.
pub fn mock_client(mut answer: impl FnMut(&Call) -> Answer + Send + 'static) -> (Client, MockApi) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            };
            let call = Call {
                method,
                uri,
                content_type,
                body,
            };
            let (status, reply) = answer(&call);
            recorded.lock().unwrap().push(call);
            respond.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), MockApi { calls })
}

pub fn not_found(what: &str) -> Answer {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
               "message": format!("{what} not found"), "code": 404}),
    )
}

pub fn empty_list(kind: &str) -> Answer {
    (
        200,
        json!({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": []}),
    )
}

/// Answers the usual calls like a healthy server: applies and merge patches echo the
/// object, events are accepted, lists are empty, gets and deletes find nothing.
pub fn default_answer(call: &Call, current: &Value) -> Answer {
    if call.path().contains("/events") {
        return (201, call.body.clone());
    }
    match call.method.as_str() {
        "PATCH" if call.path().ends_with("/status") => (200, merged(current, &call.body)),
        "PATCH" if call.is_apply() => (200, with_metadata(call.body.clone())),
        "PATCH" => (200, merged(current, &call.body)),
        "GET" if !has_name(call) => empty_list("List"),
        "GET" | "DELETE" => not_found(call.path()),
        "POST" | "PUT" => (201, with_metadata(call.body.clone())),
        _ => (500, json!({})),
    }
}

/// Whether the request names one object (`.../kind/name`) rather than a collection.
fn has_name(call: &Call) -> bool {
    let segments: Vec<&str> = call.path().trim_matches('/').split('/').collect();
    // /api/v1/namespaces/{ns}/{kind}/{name} or /apis/{g}/{v}/namespaces/{ns}/{kind}/{name}
    let after_namespace = segments
        .iter()
        .position(|segment| *segment == "namespaces")
        .map(|index| segments.len() - index - 1)
        .unwrap_or(0);
    after_namespace >= 3
}

fn with_metadata(mut object: Value) -> Value {
    object["metadata"]["uid"] = json!("00000000-0000-4000-8000-00000000aaaa");
    object["metadata"]["resourceVersion"] = json!("1");
    if object["metadata"]["generation"].is_null() {
        object["metadata"]["generation"] = json!(1);
    }
    object
}

pub fn merged(current: &Value, patch: &Value) -> Value {
    let mut result = current.clone();
    merge(&mut result, patch);
    result
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

pub fn context(client: Client, topics: Arc<dyn TopicAdmin>) -> Arc<Context> {
    Arc::new(Context::new(client, topics))
}

/// The status a reconcile wrote (the body of its last status patch).
pub fn written_status(api: &MockApi) -> Value {
    api.calls()
        .into_iter()
        .rev()
        .find(|call| call.method == "PATCH" && call.path().ends_with("/status"))
        .expect("a status patch")
        .body["status"]
        .clone()
}

pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|condition| condition["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

pub fn events(api: &MockApi) -> Vec<(String, String, String)> {
    api.calls()
        .into_iter()
        .filter(|call| call.method == "POST" && call.path().contains("/events"))
        .map(|call| {
            (
                call.body["type"].as_str().unwrap_or_default().to_owned(),
                call.body["reason"].as_str().unwrap_or_default().to_owned(),
                call.body["note"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
