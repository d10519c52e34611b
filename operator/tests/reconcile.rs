//! Each reconciler against a mock API server that records the calls and gives the answers
//! a test wants, including the ones a real server rarely produces.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use commerce_operator::controller::{microservice, saga_policy, shop};
use commerce_operator::crd::{Microservice, SagaPolicy, Shop};
use commerce_operator::kafka::RdKafkaAdmin;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use support::*;

fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/examples")
            .join(file),
    )
    .unwrap();
    let mut value: Value = yaml_serde::from_str(&text).unwrap();
    value["metadata"]["uid"] = json!("11111111-0000-4000-8000-000000000001");
    value["metadata"]["generation"] = json!(2);
    value["metadata"]["resourceVersion"] = json!("7");
    serde_json::from_value(value).unwrap()
}

/// A topic admin for reconciles that never touch a topic (KafkaTopic runs against the
/// real cluster in kafka_admin.rs).
fn no_topics() -> Arc<RdKafkaAdmin> {
    Arc::new(RdKafkaAdmin::new(Duration::from_secs(1)))
}

fn assert_applied_by_the_operator(api: &MockApi) {
    let applies: Vec<Call> = api.calls().into_iter().filter(Call::is_apply).collect();
    assert!(!applies.is_empty());
    for call in applies {
        assert!(
            call.uri.contains("fieldManager=commerce-operator") && call.uri.contains("force=true"),
            "{}",
            call.uri
        );
    }
}

#[tokio::test]
async fn a_microservice_without_cloudnativepg_or_gateway_api_is_degraded_but_applied() {
    let microservice: Microservice = example("microservice.yaml");
    let current = serde_json::to_value(&microservice).unwrap();
    let (client, api) = mock_client(move |call| {
        if call.path().contains("/postgresql.cnpg.io/")
            || call.path().contains("/gateway.networking.k8s.io/")
        {
            return not_found("the server could not find the requested resource");
        }
        if call.is_apply() && call.path().contains("/deployments/") {
            let mut deployment = call.body.clone();
            deployment["metadata"]["generation"] = json!(1);
            deployment["status"] = json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1});
            return (200, deployment);
        }
        default_answer(call, &current)
    });
    let context = context(client, no_topics());
    microservice::reconcile(Arc::new(microservice), context)
        .await
        .unwrap();
    api.assert_script(&[
        "DELETE /apis/apps/v1/namespaces/commerce/statefulsets/search-canary",
        "DELETE /apis/autoscaling/v2/namespaces/commerce/horizontalpodautoscalers/search-canary",
        "DELETE /apis/policy/v1/namespaces/commerce/poddisruptionbudgets/search-canary",
        "GET /apis/gateway.networking.k8s.io/v1/namespaces/commerce/httproutes",
        "PATCH /api/v1/namespaces/commerce/configmaps/search-canary-config",
        "PATCH /api/v1/namespaces/commerce/serviceaccounts/search-canary",
        "PATCH /api/v1/namespaces/commerce/services/search-canary",
        "PATCH /apis/apps/v1/namespaces/commerce/deployments/search-canary",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/search-canary/status",
        "PATCH /apis/networking.k8s.io/v1/namespaces/commerce/networkpolicies/search-canary",
        "PATCH /apis/postgresql.cnpg.io/v1/namespaces/commerce/clusters/search-canary-db",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
    ]);

    assert_applied_by_the_operator(&api);
    let applied: Vec<String> = api
        .calls()
        .into_iter()
        .filter(Call::is_apply)
        .map(|call| call.path().rsplit('/').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(
        applied,
        [
            "serviceaccounts",
            "configmaps",
            "clusters",
            "deployments",
            "services",
            "networkpolicies"
        ],
        "one replica: no budget; no autoscaling: no HPA"
    );
    // What the spec does not want is deleted (absent here: 404 is fine), the StatefulSet
    // of a spec that kept a volume among them.
    assert_eq!(api.find("DELETE", "/statefulsets/search-canary").len(), 1);
    assert_eq!(
        api.find("DELETE", "/horizontalpodautoscalers/search-canary")
            .len(),
        1
    );
    assert_eq!(
        api.find("DELETE", "/poddisruptionbudgets/search-canary")
            .len(),
        1
    );

    let status = written_status(&api);
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "DependencyMissing");
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("CloudNativePG") && message.contains("Gateway API"),
        "{message}"
    );
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(status["readyReplicas"], 1);
    assert_eq!(status["observedGeneration"], 2);
    let events = events(&api);
    assert!(
        events
            .iter()
            .any(|(type_, reason, _)| type_ == "Warning" && reason == "DependencyMissing"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_rolled_out_microservice_is_ready_and_a_stalled_one_degraded() {
    for (deployment_status, ready, degraded_reason) in [
        (
            json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}),
            "True",
            "AsExpected",
        ),
        (
            json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1,
                   "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                   "message": "ReplicaSet \"search-canary-7d\" has timed out progressing."}]}),
            "False",
            "RolloutStalled",
        ),
    ] {
        let mut microservice: Microservice = example("microservice.yaml");
        microservice.spec.database = None;
        microservice.spec.routes.clear();
        let current = serde_json::to_value(&microservice).unwrap();
        let (client, api) = mock_client(move |call| {
            if call.is_apply() && call.path().contains("/deployments/") {
                let mut deployment = call.body.clone();
                deployment["metadata"]["generation"] = json!(1);
                deployment["status"] = deployment_status.clone();
                return (200, deployment);
            }
            if call.method == "GET" && call.path().ends_with("/httproutes") {
                return empty_list("HTTPRouteList");
            }
            default_answer(call, &current)
        });
        microservice::reconcile(Arc::new(microservice), context(client, no_topics()))
            .await
            .unwrap();
        api.assert_script(&[
            "DELETE /apis/apps/v1/namespaces/commerce/statefulsets/search-canary",
    "DELETE /apis/autoscaling/v2/namespaces/commerce/horizontalpodautoscalers/search-canary",
            "DELETE /apis/policy/v1/namespaces/commerce/poddisruptionbudgets/search-canary",
            "GET /apis/gateway.networking.k8s.io/v1/namespaces/commerce/httproutes",
            "PATCH /api/v1/namespaces/commerce/configmaps/search-canary-config",
            "PATCH /api/v1/namespaces/commerce/serviceaccounts/search-canary",
            "PATCH /api/v1/namespaces/commerce/services/search-canary",
            "PATCH /apis/apps/v1/namespaces/commerce/deployments/search-canary",
            "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/search-canary/status",
            "PATCH /apis/networking.k8s.io/v1/namespaces/commerce/networkpolicies/search-canary",
            "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
            "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
        ]);
        let status = written_status(&api);
        assert_eq!(condition(&status, "Ready")["status"], ready);
        assert_eq!(condition(&status, "Degraded")["reason"], degraded_reason);
        assert!(api.find("PATCH", "/clusters/search-canary-db").is_empty());
    }
}

#[tokio::test]
async fn a_failing_apply_stops_the_reconcile_and_is_reported_in_status_and_an_event() {
    let microservice: Microservice = example("microservice.yaml");
    let current = serde_json::to_value(&microservice).unwrap();
    let (client, api) = mock_client(move |call| {
        if call.is_apply() && call.path().contains("/deployments/") {
            return (
                422,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid",
                       "message": "Deployment.apps \"search-canary\" is invalid", "code": 422}),
            );
        }
        default_answer(call, &current)
    });
    let error = microservice::reconcile(Arc::new(microservice), context(client, no_topics()))
        .await
        .unwrap_err();
    // Nothing after the refused Deployment is applied; the failure goes into status and
    // an Event.
    api.assert_script(&[
        "PATCH /api/v1/namespaces/commerce/configmaps/search-canary-config",
        "PATCH /api/v1/namespaces/commerce/serviceaccounts/search-canary",
        "PATCH /apis/apps/v1/namespaces/commerce/deployments/search-canary",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/search-canary/status",
        "PATCH /apis/postgresql.cnpg.io/v1/namespaces/commerce/clusters/search-canary-db",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
    ]);
    assert_eq!(
        error.to_string(),
        "applying apps/v1 Deployment search-canary: Deployment.apps \"search-canary\" is invalid"
    );
    assert!(api.find("PATCH", "/services/search-canary").is_empty());
    let status = &api.find("PATCH", "/microservices/search-canary/status")[0];
    let conditions = status.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .clone();
    let degraded = conditions
        .iter()
        .find(|condition| condition["type"] == "Degraded")
        .unwrap();
    assert_eq!(
        (
            &degraded["status"],
            &degraded["reason"],
            &degraded["message"]
        ),
        (
            &json!("True"),
            &json!("ApplyFailed"),
            &json!(error.to_string())
        )
    );
    let event = &api.find("POST", "/events")[0];
    assert_eq!(
        (&event.body["type"], &event.body["reason"]),
        (&json!("Warning"), &json!("ApplyFailed"))
    );
}

fn secret(name: &str, data: &[(&str, &str)], rotation: &str) -> Value {
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("commerce".to_owned()),
            resource_version: Some("41".to_owned()),
            annotations: Some([(shop::ROTATION_ANNOTATION.to_owned(), rotation.to_owned())].into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(key, value)| ((*key).to_owned(), ByteString(value.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    serde_json::to_value(secret).unwrap()
}

fn all_clients() -> Vec<(&'static str, &'static str)> {
    vec![
        ("gateway", "a"),
        ("order", "b"),
        ("cart", "c"),
        ("notification", "d"),
        ("payment-offline-webhook", "e"),
        ("search", "f"),
    ]
}

#[tokio::test]
async fn a_shop_keeps_its_secrets_applies_its_children_and_prunes_a_disabled_service() {
    let shop_resource: Shop = example("shop.yaml");
    let current = serde_json::to_value(&shop_resource).unwrap();
    let uid = shop_resource.metadata.uid.clone().unwrap();
    let (client, api) = mock_client(move |call| {
        if call.is("GET", "/secrets/demo-signing-keys") {
            return (
                200,
                secret("demo-signing-keys", &[("k20261101T000000Z.pem", "pem")], ""),
            );
        }
        if call.is("GET", "/secrets/demo-service-clients") {
            return (200, secret("demo-service-clients", &all_clients(), ""));
        }
        if call.is("GET", "/microservices") {
            // A Microservice of a service the shop no longer runs, and one that is not the shop's.
            return (
                200,
                json!({"apiVersion": "commerce.dev/v1alpha1", "kind": "MicroserviceList", "metadata": {},
                       "items": [
                         {"apiVersion": "commerce.dev/v1alpha1", "kind": "Microservice",
                          "metadata": {"name": "demo-recommendations", "namespace": "commerce",
                                       "ownerReferences": [{"apiVersion": "commerce.dev/v1alpha1", "kind": "Shop",
                                                            "name": "demo", "uid": uid, "controller": true}]},
                          "spec": {"image": "x", "httpPort": 8000}},
                         {"apiVersion": "commerce.dev/v1alpha1", "kind": "Microservice",
                          "metadata": {"name": "demo-hand-made", "namespace": "commerce"},
                          "spec": {"image": "x", "httpPort": 8000}}]}),
            );
        }
        if call.is("DELETE", "/microservices/demo-recommendations") {
            return (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            );
        }
        default_answer(call, &current)
    });
    shop::reconcile(Arc::new(shop_resource), context(client, no_topics()))
        .await
        .unwrap();
    api.assert_script(&[
        "DELETE /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-recommendations",
        "GET /api/v1/namespaces/commerce/secrets/demo-service-clients",
        "GET /api/v1/namespaces/commerce/secrets/demo-signing-keys",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/sagapolicies/demo",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.auth.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.cart.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.cart.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.fulfillment.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.fulfillment.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.notification.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.order.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.order.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.payment.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.product.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.search.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-auth",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-cart",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-chat",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-fulfillment",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-gateway",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-graphql",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-notification",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-order",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-payment",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-product",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-search",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-storefront",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/sagapolicies/demo",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/shops/demo/status",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
    ]);

    // Secrets that exist are never rewritten.
    let secret_writes: Vec<Call> = api
        .writes()
        .into_iter()
        .filter(|call| call.path().contains("/secrets"))
        .collect();
    assert!(secret_writes.is_empty(), "{secret_writes:?}");
    assert_applied_by_the_operator(&api);
    let applied_microservices = api
        .calls()
        .into_iter()
        .filter(|call| call.is_apply() && call.path().contains("/microservices/"))
        .count();
    assert_eq!(
        applied_microservices, 12,
        "ten services, the storefront and GraphQL"
    );
    let applied_topics = api
        .calls()
        .into_iter()
        .filter(|call| call.is_apply() && call.path().contains("/kafkatopics/"))
        .count();
    assert_eq!(applied_topics, 11);
    assert_eq!(api.find("PATCH", "/sagapolicies/demo").len(), 1);
    // Only the shop's own orphan goes.
    assert_eq!(
        api.find("DELETE", "/microservices/demo-recommendations")
            .len(),
        1
    );
    assert!(
        api.find("DELETE", "/microservices/demo-hand-made")
            .is_empty()
    );
    // The auth Microservice names the key the Secret holds.
    let auth = api.find("PATCH", "/microservices/demo-auth").remove(0);
    assert_eq!(
        auth.body["spec"]["podAnnotations"]["commerce.dev/signing-keys"],
        "k20261101T000000Z"
    );

    let status = written_status(&api);
    assert_eq!(status["phase"], "Progressing");
    assert_eq!(status["readyServices"], "0/12");
    assert_eq!(condition(&status, "SagaPolicyValid")["reason"], "NotFound");
    assert!(
        events(&api)
            .iter()
            .any(|(_, reason, _)| reason == "ServiceRemoved")
    );
}

#[tokio::test]
async fn a_new_shop_gets_generated_secrets_and_a_rotation_adds_a_key() {
    // First reconcile: neither Secret exists.
    let shop_resource: Shop = example("shop.yaml");
    let current = serde_json::to_value(&shop_resource).unwrap();
    let (client, api) = mock_client(move |call| default_answer(call, &current));
    shop::reconcile(Arc::new(shop_resource), context(client, no_topics()))
        .await
        .unwrap();
    api.assert_script(&[
        "GET /api/v1/namespaces/commerce/secrets/demo-service-clients",
        "GET /api/v1/namespaces/commerce/secrets/demo-signing-keys",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/sagapolicies/demo",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.auth.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.cart.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.cart.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.fulfillment.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.fulfillment.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.notification.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.order.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.order.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.payment.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.product.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.search.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-auth",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-cart",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-chat",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-fulfillment",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-gateway",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-graphql",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-notification",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-order",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-payment",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-product",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-search",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-storefront",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/sagapolicies/demo",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/shops/demo/status",
        "POST /api/v1/namespaces/commerce/secrets",
        "POST /api/v1/namespaces/commerce/secrets",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
    ]);
    let created = api.find("POST", "/secrets");
    assert_eq!(created.len(), 2);
    let keys = created
        .iter()
        .find(|call| call.body["metadata"]["name"] == "demo-signing-keys")
        .unwrap();
    let files: Vec<&String> = keys.body["data"].as_object().unwrap().keys().collect();
    assert_eq!(files.len(), 1);
    let pem =
        String::from_utf8(base64_decode(keys.body["data"][files[0]].as_str().unwrap())).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    assert_eq!(keys.body["metadata"]["ownerReferences"][0]["kind"], "Shop");
    let clients = created
        .iter()
        .find(|call| call.body["metadata"]["name"] == "demo-service-clients")
        .unwrap();
    assert_eq!(
        clients.body["data"].as_object().unwrap().len(),
        commerce_operator::desired::shop::SERVICE_CLIENTS.len() + 1
    );

    // Rotation requested: a second key joins, the oldest of three would go.
    let mut rotating: Shop = example("shop.yaml");
    rotating.spec.signing_key.rotation = Some("2026-12".to_owned());
    let current = serde_json::to_value(&rotating).unwrap();
    let replaced: Arc<Mutex<Option<Value>>> = Arc::default();
    let seen = replaced.clone();
    let (client, api) = mock_client(move |call| {
        if call.is("GET", "/secrets/demo-signing-keys") {
            return (
                200,
                secret(
                    "demo-signing-keys",
                    &[
                        ("k20250101T000000Z.pem", "older"),
                        ("k20260101T000000Z.pem", "old"),
                    ],
                    "2026-01",
                ),
            );
        }
        if call.is("GET", "/secrets/demo-service-clients") {
            return (200, secret("demo-service-clients", &all_clients()[..3], ""));
        }
        if call.is("PUT", "/secrets/demo-signing-keys") {
            *seen.lock().unwrap() = Some(call.body.clone());
        }
        if call.is("PATCH", "/secrets/demo-service-clients") {
            return (
                200,
                merged(
                    &secret("demo-service-clients", &all_clients()[..3], ""),
                    &call.body,
                ),
            );
        }
        default_answer(call, &current)
    });
    shop::reconcile(Arc::new(rotating), context(client, no_topics()))
        .await
        .unwrap();
    api.assert_script(&[
        "GET /api/v1/namespaces/commerce/secrets/demo-service-clients",
        "GET /api/v1/namespaces/commerce/secrets/demo-signing-keys",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices",
        "GET /apis/commerce.dev/v1alpha1/namespaces/commerce/sagapolicies/demo",
        "PATCH /api/v1/namespaces/commerce/secrets/demo-service-clients",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.auth.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.cart.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.cart.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.fulfillment.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.fulfillment.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.notification.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.order.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.order.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.payment.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.product.events",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/kafkatopics/demo-commerce.search.dlq",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-auth",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-cart",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-chat",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-fulfillment",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-gateway",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-graphql",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-notification",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-order",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-payment",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-product",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-search",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/microservices/demo-storefront",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/sagapolicies/demo",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/shops/demo/status",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
        "PUT /api/v1/namespaces/commerce/secrets/demo-signing-keys",
    ]);
    let replaced = replaced
        .lock()
        .unwrap()
        .clone()
        .expect("the key Secret is replaced");
    assert_eq!(
        replaced["metadata"]["resourceVersion"], "41",
        "optimistic concurrency"
    );
    assert_eq!(
        replaced["metadata"]["annotations"][shop::ROTATION_ANNOTATION],
        "2026-12"
    );
    let mut kept: Vec<&String> = replaced["data"].as_object().unwrap().keys().collect();
    kept.sort();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0], "k20260101T000000Z.pem");
    assert!(kept[1].as_str() > "k20260101T000000Z.pem");
    // Missing service credentials are added; existing ones are not in the patch.
    let patched = api.find("PATCH", "/secrets/demo-service-clients").remove(0);
    let added: Vec<&String> = patched.body["data"].as_object().unwrap().keys().collect();
    assert_eq!(added, ["notification", "payment-offline-webhook", "search"]);
    let auth = api.find("PATCH", "/microservices/demo-auth").remove(0);
    let annotation = auth.body["spec"]["podAnnotations"]["commerce.dev/signing-keys"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        annotation.starts_with("k20260101T000000Z,k"),
        "{annotation}"
    );
    assert!(
        events(&api)
            .iter()
            .any(|(_, reason, _)| reason == "SigningKeyRotated")
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use std::io::Read;
    // k8s-openapi's ByteString is base64 in JSON; decode through it.
    let value: ByteString = serde_json::from_value(json!(text)).unwrap();
    let mut bytes = Vec::new();
    value.0.as_slice().read_to_end(&mut bytes).unwrap();
    bytes
}

#[tokio::test]
async fn a_shop_whose_config_override_does_not_parse_reports_it() {
    let mut shop_resource: Shop = example("shop.yaml");
    shop_resource.spec.services.payment.config = Some("[services.payment".to_owned());
    let current = serde_json::to_value(&shop_resource).unwrap();
    let (client, api) = mock_client(move |call| {
        if call.is("GET", "/secrets/demo-signing-keys") {
            return (200, secret("demo-signing-keys", &[("k1.pem", "pem")], ""));
        }
        if call.is("GET", "/secrets/demo-service-clients") {
            return (200, secret("demo-service-clients", &all_clients(), ""));
        }
        default_answer(call, &current)
    });
    shop::reconcile(Arc::new(shop_resource), context(client, no_topics()))
        .await
        .unwrap();
    api.assert_script(&[
        "GET /api/v1/namespaces/commerce/secrets/demo-service-clients",
        "GET /api/v1/namespaces/commerce/secrets/demo-signing-keys",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/shops/demo/status",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
    ]);
    assert!(
        api.calls().iter().all(|call| !call.is_apply()),
        "nothing is applied"
    );
    let status = written_status(&api);
    assert_eq!(status["phase"], "Degraded");
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("spec.services.payment.config")
    );
}

#[tokio::test]
async fn a_valid_saga_policy_becomes_a_config_map_and_an_invalid_one_does_not() {
    let policy: SagaPolicy = example("sagapolicy.yaml");
    let current = serde_json::to_value(&policy).unwrap();
    let (client, api) = mock_client(move |call| default_answer(call, &current));
    saga_policy::reconcile(Arc::new(policy.clone()), context(client, no_topics()))
        .await
        .unwrap();
    api.assert_script(&[
        "PATCH /api/v1/namespaces/commerce/configmaps/black-friday-saga-policy",
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/sagapolicies/black-friday/status",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
    ]);
    let applied = api
        .find("PATCH", "/configmaps/black-friday-saga-policy")
        .remove(0);
    assert!(applied.is_apply());
    let file = applied.body["data"]["saga.toml"].as_str().unwrap();
    let parsed: commerce_order::policy::OrderPolicy = toml::from_str(file).unwrap();
    assert_eq!(parsed.payment_window, std::time::Duration::from_secs(7200));
    assert_eq!(
        applied.body["metadata"]["ownerReferences"][0]["kind"],
        "SagaPolicy"
    );
    let status = written_status(&api);
    assert_eq!(condition(&status, "Valid")["status"], "True");
    assert_eq!(status["configMap"], "black-friday-saga-policy");

    let mut invalid = policy.clone();
    invalid
        .spec
        .steps
        .insert("reserve".to_owned(), Default::default());
    let current = serde_json::to_value(&invalid).unwrap();
    let (client, api) = mock_client(move |call| default_answer(call, &current));
    saga_policy::reconcile(Arc::new(invalid), context(client, no_topics()))
        .await
        .unwrap();
    api.assert_script(&[
        "PATCH /apis/commerce.dev/v1alpha1/namespaces/commerce/sagapolicies/black-friday/status",
        "POST /apis/events.k8s.io/v1/namespaces/commerce/events",
    ]);
    assert!(
        api.find("PATCH", "/configmaps/black-friday-saga-policy")
            .is_empty()
    );
    let status = written_status(&api);
    let valid = condition(&status, "Valid");
    assert_eq!(valid["status"], "False");
    assert!(
        valid["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.steps.reserve")
    );
    assert!(
        events(&api)
            .iter()
            .any(|(type_, reason, _)| type_ == "Warning" && reason == "Invalid")
    );
}
