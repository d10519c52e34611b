//! The operator against a real, current Kubernetes control plane: `scripts/kube-apiserver.sh`
//! builds etcd, kube-apiserver, kube-controller-manager and kube-scheduler of one release,
//! and kwok for simulated nodes, and fetches the real Gateway API and CloudNativePG CRDs.
//! Pods are scheduled onto the kwok nodes and turn Ready, so Deployments become available,
//! autoscalers and disruption budgets act, and a Shop reaches `Ready`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use commerce_operator::controller::Context;
use commerce_operator::crd::{self, KafkaTopic, Microservice, SagaPolicy, Shop};
use commerce_operator::kafka::{RdKafkaAdmin, TopicAdmin};
use commerce_operator::leader::{LeaderLease, LeaseSettings};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

fn kubeconfig_path() -> String {
    std::env::var("COMMERCE_KUBECONFIG")
        .expect("COMMERCE_KUBECONFIG: run `scripts/kube-apiserver.sh up` and `eval \"$(scripts/kube-apiserver.sh env)\"`")
}

async fn client_from(kubeconfig: Kubeconfig) -> Client {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn admin() -> Client {
    client_from(Kubeconfig::read_from(kubeconfig_path()).unwrap()).await
}

fn unique(prefix: &str) -> String {
    let bytes: [u8; 4] = rand::random();
    format!("{prefix}-{}", hex::encode(bytes))
}

/// Waits up to 90 s (an API server and a broker settle in seconds, not milliseconds).
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    commerce_testkit::eventually(Duration::from_secs(90), what, check).await
}

/// The CRDs as the operator ships them, and the real Gateway API and CloudNativePG CRDs the
/// operator writes into (fetched by `scripts/kube-apiserver.sh`), applied as an installer
/// would; every test installs them, the same on every run.
async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crds = crd::all();
    crds.extend(third_party_crds());
    for crd in &crds {
        api.patch(
            &crd.name_any(),
            &PatchParams::apply("commerce-tests").force(),
            &Patch::Apply(crd),
        )
        .await
        .unwrap_or_else(|error| panic!("installing {}: {error}", crd.name_any()));
    }
    for crd in &crds {
        let name = crd.name_any();
        eventually(&format!("{name} established"), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

fn third_party_crds() -> Vec<CustomResourceDefinition> {
    let directory = std::env::var("COMMERCE_KUBE_CRDS").expect(
        "COMMERCE_KUBE_CRDS: run `scripts/kube-apiserver.sh up` and `eval \"$(scripts/kube-apiserver.sh env)\"`",
    );
    let mut crds = Vec::new();
    for entry in std::fs::read_dir(&directory).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for document in text.split("\n---") {
            let value: serde_json::Value = yaml_serde::from_str(document).unwrap();
            if value["kind"] == "CustomResourceDefinition" {
                crds.push(serde_json::from_value(value).unwrap());
            }
        }
    }
    assert!(crds.len() >= 15, "{directory}: {} CRDs", crds.len());
    crds
}

fn third_party(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// Who last wrote the object, and how: `(manager, operation)` per managed-fields entry.
fn managers_of(object: &impl Resource) -> Vec<(String, String)> {
    object
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .map(|entry| {
            (
                entry.manager.clone().unwrap_or_default(),
                entry.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// Runs the control plane's own kubectl as the admin and returns what it printed.
fn kubectl(arguments: &[&str]) -> String {
    let kubectl = std::env::var("COMMERCE_KUBECTL").expect("COMMERCE_KUBECTL");
    let output = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(arguments)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The API server refused a write as invalid (422), with this message.
fn assert_refused(error: kube::Error, message: &str) {
    match error {
        kube::Error::Api(response) => {
            assert_eq!(response.code, 422, "{response:?}");
            assert!(response.message.contains(message), "{response:?}");
        }
        other => panic!("expected a 422 saying {message:?}, got {other}"),
    }
}

/// A new namespace on a server with every CRD installed, and the four controllers
/// watching it as the operator's ServiceAccount: the admin client, the namespace, and the
/// controllers' task.
async fn operator_in_a_new_namespace(
    broker: Arc<RdKafkaAdmin>,
) -> (Client, String, tokio::task::JoinHandle<()>) {
    let admin = admin().await;
    install_crds(&admin).await;
    let namespace = namespace(&admin).await;
    let operator = operator_client(&admin, &namespace).await;
    let context = Arc::new(Context::new(operator.clone(), broker));
    tokio::spawn(provision_volumes(admin.clone(), namespace.clone()));
    let controllers = tokio::spawn(commerce_operator::run::controllers(
        operator,
        Some(namespace.clone()),
        context,
    ));
    (admin, namespace, controllers)
}

/// What a cluster's storage provisioner does, for the claims in `namespace` (this control
/// plane has none): a claim still unbound after a moment gets a volume of its class made
/// for it (bound to it by `claimRef`), so StatefulSet pods (search's index) schedule.
async fn provision_volumes(admin: Client, namespace: String) {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &namespace);
    let volumes: Api<PersistentVolume> = Api::all(admin);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(pending) = claims.list(&ListParams::default()).await else {
            continue;
        };
        for claim in pending.items {
            let spec = claim.spec.clone().unwrap_or_default();
            if spec.volume_name.is_some() {
                continue;
            }
            let name = format!("{namespace}-{}", claim.name_any());
            let size = spec
                .resources
                .and_then(|resources| resources.requests)
                .and_then(|requests| requests.get("storage").cloned())
                .map_or_else(|| "1Gi".to_owned(), |quantity| quantity.0);
            let volume = json!({
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": spec.storage_class_name.unwrap_or_default(),
                    "claimRef": {"namespace": namespace, "name": claim.name_any(),
                                 "uid": claim.uid()},
                    "hostPath": {"path": format!("/tmp/{name}")}
                }
            });
            // Already made on an earlier round (the claim binds moments later): fine.
            let _ = volumes
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(volume).unwrap(),
                )
                .await;
        }
    }
}

/// The operator's ServiceAccount with the shipped RBAC (manifests/operator/rbac.yaml,
/// bound in `namespace`), and a client that authenticates as it.
async fn operator_client(admin: &Client, namespace: &str) -> Client {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/operator/rbac.yaml"
    ))
    .unwrap();
    let binding = unique("commerce-operator");
    for document in text.split("\n---") {
        let mut object: serde_json::Value = yaml_serde::from_str(document).unwrap();
        let kind = object["kind"].as_str().unwrap().to_owned();
        match kind.as_str() {
            "ServiceAccount" => {
                object["metadata"]["namespace"] = json!(namespace);
                let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
                api.create(
                    &PostParams::default(),
                    &serde_json::from_value(object).unwrap(),
                )
                .await
                .unwrap();
            }
            "ClusterRole" => {
                let api: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(admin.clone());
                api.patch(
                    "commerce-operator",
                    &PatchParams::apply("test"),
                    &Patch::Apply(&object),
                )
                .await
                .unwrap();
            }
            "ClusterRoleBinding" => {
                object["metadata"]["name"] = json!(binding);
                object["subjects"][0]["namespace"] = json!(namespace);
                let api: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
                    Api::all(admin.clone());
                api.create(
                    &PostParams::default(),
                    &serde_json::from_value(object).unwrap(),
                )
                .await
                .unwrap();
            }
            other => panic!("unexpected {other} in rbac.yaml"),
        }
    }
    // A short-lived token for the account, as the kubelet projects one into the pod.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": [], "expirationSeconds": 3600}
    }))
    .unwrap();
    let token = accounts
        .create_token_request("commerce-operator", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let mut kubeconfig = Kubeconfig::read_from(kubeconfig_path()).unwrap();
    let auth = kubeconfig.auth_infos[0].auth_info.as_mut().unwrap();
    let mut as_operator: serde_json::Value = serde_json::to_value(&*auth).unwrap();
    as_operator["token"] = json!(token);
    *auth = serde_json::from_value(as_operator).unwrap();
    client_from(kubeconfig).await
}

async fn namespace(admin: &Client) -> String {
    let name = unique("shop");
    let api: Api<Namespace> = Api::all(admin.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
    name
}

fn brokers() -> String {
    std::env::var("COMMERCE_TEST_KAFKA_BROKERS").expect("COMMERCE_TEST_KAFKA_BROKERS")
}

fn shop_resource(namespace: &str, prefix: &str) -> Shop {
    let mut shop: Shop = serde_json::from_value(json!({
        "apiVersion": "commerce.dev/v1alpha1",
        "kind": "Shop",
        "metadata": {"name": "demo", "namespace": namespace},
        "spec": {
            "image": "ghcr.io/commerce/commerce:0.1.0",
            "hostname": "shop.test",
            "gateway": {"name": "traefik-gateway"},
            "redis": {"urls": ["redis://redis:6379"]},
            "kafka": {"bootstrapServers": brokers(), "topicPrefix": prefix,
                      "partitions": 2, "replicationFactor": 3, "deletionPolicy": "Delete"},
            "saga": {"paymentWindow": "2h", "reminders": ["1h"]}
        }
    }))
    .unwrap();
    // Default replicas (two): the disruption budgets and spread constraints
    // have several pods to count. The order service is autoscaled.
    shop.spec.services.order.autoscaling =
        Some(serde_json::from_value(json!({"minReplicas": 2, "maxReplicas": 4})).unwrap());
    shop
}

#[tokio::test]
async fn the_operator_runs_a_shop_on_a_real_api_server() {
    let broker = Arc::new(RdKafkaAdmin::new(Duration::from_secs(20)));
    let (admin, namespace, controllers) = operator_in_a_new_namespace(broker.clone()).await;
    let metrics_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    tokio::spawn(commerce_operator::run::serve_metrics(
        format!("127.0.0.1:{metrics_port}").parse().unwrap(),
    ));

    let prefix = format!("{}.", unique("k8s"));
    let shops: Api<Shop> = Api::namespaced(admin.clone(), &namespace);
    shops
        .create(&PostParams::default(), &shop_resource(&namespace, &prefix))
        .await
        .unwrap();

    // Children made by server-side apply, owned by the shop.
    let microservices: Api<Microservice> = Api::namespaced(admin.clone(), &namespace);
    let names = eventually("ten Microservices", || {
        let microservices = microservices.clone();
        async move {
            let list = microservices.list(&ListParams::default()).await.ok()?;
            (list.items.len() == 10).then(|| {
                list.items
                    .iter()
                    .map(|m| m.name_any())
                    .collect::<BTreeSet<_>>()
            })
        }
    })
    .await;
    assert!(names.contains("demo-order") && names.contains("demo-gateway"));
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let order = eventually("the order Deployment", || {
        let deployments = deployments.clone();
        async move { deployments.get("demo-order").await.ok() }
    })
    .await;
    assert!(
        managers_of(&order).contains(&("commerce-operator".to_owned(), "Apply".to_owned())),
        "{:?}",
        managers_of(&order)
    );
    assert_eq!(order.owner_references()[0].kind, "Microservice");

    // The third-party objects passed the real CRDs' schemas.
    let clusters: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &namespace,
        &third_party("postgresql.cnpg.io", "v1", "Cluster"),
    );
    let order_database = eventually("the order service's CloudNativePG Cluster", || {
        let clusters = clusters.clone();
        async move { clusters.get("demo-order-db").await.ok() }
    })
    .await;
    // The server filled in the real schema's defaults.
    assert_eq!(order_database.data["spec"]["logLevel"], "info");
    assert_eq!(
        order_database.data["spec"]["primaryUpdateStrategy"],
        "unsupervised"
    );
    let routes: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &namespace,
        &third_party("gateway.networking.k8s.io", "v1", "HTTPRoute"),
    );
    let route_count = eventually("the gateway's HTTPRoutes", || {
        let routes = routes.clone();
        async move {
            let list = routes.list(&ListParams::default()).await.ok()?;
            (!list.items.is_empty()).then_some(list.items.len())
        }
    })
    .await;
    assert!(route_count >= 1);

    // On simulated nodes every Deployment becomes available and the shop Ready, as
    // `kubectl get shops` shows through the CRD's printer columns.
    let shop_status = eventually("the shop Ready with 10/10 services", || {
        let shops = shops.clone();
        async move {
            let status = shops.get("demo").await.ok()?.status?;
            (status.phase.as_deref() == Some("Ready")).then_some(status)
        }
    })
    .await;
    assert_eq!(shop_status.ready_services.as_deref(), Some("10/10"));
    // An empty message survives the round trip (1.20 read it as null and refused it).
    let shop_ready = shop_status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (shop_ready.status.as_str(), shop_ready.message.as_str()),
        ("True", "")
    );
    let table = kubectl(&["get", "shops", "--namespace", &namespace]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "READY", "HOST", "AGE"], "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["demo", "Ready", "10/10", "shop.test"], "{table}");

    // Search runs as a StatefulSet: two replicas, each with its own bound claim, and no
    // Deployment left of it.
    let sets: Api<StatefulSet> = Api::namespaced(admin.clone(), &namespace);
    let search = sets.get("demo-search").await.unwrap();
    assert_eq!(search.status.unwrap().ready_replicas, Some(2));
    assert!(deployments.get_opt("demo-search").await.unwrap().is_none());
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(admin.clone(), &namespace);
    for replica in 0..2 {
        let claim = claims
            .get(&format!("data-demo-search-{replica}"))
            .await
            .unwrap();
        assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Bound"));
    }

    // The order service scales through autoscaling/v2 (from the Deployment's default of
    // one to the autoscaler's minimum) and keeps a policy/v1 disruption budget.
    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(admin.clone(), &namespace);
    let autoscaler = autoscalers.get("demo-order").await.unwrap();
    assert_eq!(autoscaler.spec.max_replicas, 4);
    eventually(
        "the order Deployment scaled to the autoscaler's minimum",
        || {
            let deployments = deployments.clone();
            async move {
                let deployment = deployments.get("demo-order").await.ok()?;
                let status = deployment.status?;
                (deployment.spec?.replicas == Some(2) && status.available_replicas == Some(2))
                    .then_some(())
            }
        },
    )
    .await;
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(admin.clone(), &namespace);
    let budget = eventually(
        "the cart's disruption budget counts two healthy pods",
        || {
            let budgets = budgets.clone();
            async move {
                let status = budgets.get("demo-cart").await.ok()?.status?;
                (status.current_healthy == Some(2)).then_some(status)
            }
        },
    )
    .await;
    assert_eq!(
        (budget.desired_healthy, budget.disruptions_allowed),
        (Some(1), Some(1))
    );

    // Topics exist on the real broker; the resources say so and hold the finalizer.
    let topics: Api<KafkaTopic> = Api::namespaced(admin.clone(), &namespace);
    eventually("eleven ready KafkaTopics", || {
        let topics = topics.clone();
        async move {
            let list = topics.list(&ListParams::default()).await.ok()?;
            let ready = list
                .items
                .iter()
                .filter(|t| {
                    t.status
                        .as_ref()
                        .is_some_and(|s| crd::is_true(&s.conditions, "Ready"))
                })
                .count();
            (ready == 11).then_some(())
        }
    })
    .await;
    let order_events = format!("{prefix}commerce.order.events");
    // Every broker's metadata has the topic a moment after the controller creates it.
    eventually("the broker describes the topic with 2 partitions", || {
        let (broker, order_events) = (broker.clone(), order_events.clone());
        async move {
            let state = broker.describe(&brokers(), &order_events).await.ok()??;
            (state.partitions == 2).then_some(())
        }
    })
    .await;
    let topic = topics.get("demo-commerce.order.events").await.unwrap();
    assert_eq!(
        topic.finalizers(),
        [commerce_operator::controller::kafka_topic::FINALIZER]
    );

    // The saga policy became a ConfigMap; the generated Secrets exist.
    let policies: Api<SagaPolicy> = Api::namespaced(admin.clone(), &namespace);
    eventually("the SagaPolicy to be valid", || {
        let policies = policies.clone();
        async move {
            let status = policies.get("demo").await.ok()?.status?;
            crd::is_true(&status.conditions, "Valid").then_some(())
        }
    })
    .await;
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &namespace);
    let saga = config_maps.get("demo-saga-policy").await.unwrap();
    assert!(saga.data.unwrap()["saga.toml"].contains("payment_window = \"2h\""));
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    let keys = secrets.get("demo-signing-keys").await.unwrap();
    assert_eq!(keys.data.unwrap().len(), 1);
    assert_eq!(
        secrets
            .get("demo-service-clients")
            .await
            .unwrap()
            .data
            .unwrap()
            .into_keys()
            .collect::<Vec<_>>(),
        [
            "cart",
            "notification",
            "order",
            "payment-offline-webhook",
            "search"
        ]
    );

    // The shop owns its policy: an edit made to the policy itself is drift, undone on the
    // next apply (field manager with force).
    policies
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paymentWindow": "5h"}})),
        )
        .await
        .unwrap();
    eventually("the edit to the owned SagaPolicy undone", || {
        let policies = policies.clone();
        async move {
            let policy = policies.get("demo").await.ok()?;
            (policy.spec.payment_window == "2h").then_some(())
        }
    })
    .await;

    // The CRDs' CEL rules refuse what the operator could not run, each with its message,
    // and the refused change leaves everything as it was.
    let refused = [
        (
            json!({"spec": {"saga": {"paymentWindow": "2h", "reminders": ["3h"]}}}),
            "every reminder must come before the end of the payment window",
        ),
        (
            json!({"spec": {"saga": {"lease": "5s", "step": {"timeout": "10s"}}}}),
            "lease must be longer than the step timeout",
        ),
        (
            json!({"spec": {"sagaPolicyRef": "another"}}),
            "set spec.saga or spec.sagaPolicyRef, not both",
        ),
        (
            json!({"spec": {"services": {"warehouse": {"replicas": 1}}}}),
            "services are named auth, product, cart",
        ),
        (
            json!({"spec": {"services": {"cart": {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}}}}),
            "maxReplicas must not be less than minReplicas",
        ),
    ];
    for (patch, message) in refused {
        let error = shops
            .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect_err(message);
        assert_refused(error, message);
    }
    let topic_name = topics.get("demo-commerce.order.events").await.unwrap();
    let error = topics
        .patch(
            &topic_name.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"topicName": "renamed"}})),
        )
        .await
        .expect_err("a topic's name is fixed");
    assert_refused(error, "topicName cannot change");
    let saga = config_maps.get("demo-saga-policy").await.unwrap();
    assert!(saga.data.unwrap()["saga.toml"].contains("reminders = [\"1h\"]"));

    // Field ownership: another manager takes the order container's image by force and
    // adds an annotation of its own. The operator's next apply takes its field back and
    // leaves the other manager's annotation alone.
    deployments
        .patch(
            "demo-order",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"annotations": {"example.com/owner": "someone-else"}},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "order", "image": "example.com/forked:1"}
                ]}}}
            })),
        )
        .await
        .unwrap();
    let order = eventually("the operator's image back on the order Deployment", || {
        let deployments = deployments.clone();
        async move {
            let deployment = deployments.get("demo-order").await.ok()?;
            let image = deployment.spec.clone()?.template.spec?.containers[0]
                .image
                .clone()?;
            (image == "ghcr.io/commerce/commerce:0.1.0").then_some(deployment)
        }
    })
    .await;
    assert_eq!(
        order
            .annotations()
            .get("example.com/owner")
            .map(String::as_str),
        Some("someone-else")
    );
    let managers = managers_of(&order);
    assert!(
        managers.contains(&("someone-else".to_owned(), "Apply".to_owned()))
            && managers.contains(&("commerce-operator".to_owned(), "Apply".to_owned())),
        "{managers:?}"
    );

    // A spec change: a new image rolls every Deployment; disabling chat removes it.
    shops
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": "ghcr.io/commerce/commerce:0.2.0",
                                          "services": {"chat": {"enabled": false}}}})),
        )
        .await
        .unwrap();
    eventually("the new image on the order Deployment", || {
        let deployments = deployments.clone();
        async move {
            let deployment = deployments.get("demo-order").await.ok()?;
            let image = deployment.spec?.template.spec?.containers[0]
                .image
                .clone()?;
            (image == "ghcr.io/commerce/commerce:0.2.0").then_some(())
        }
    })
    .await;
    eventually("chat's Microservice and Deployment gone", || {
        let (microservices, deployments) = (microservices.clone(), deployments.clone());
        async move {
            let gone = microservices.get_opt("demo-chat").await.ok()?.is_none()
                && deployments.get_opt("demo-chat").await.ok()?.is_none();
            gone.then_some(())
        }
    })
    .await;

    // Events were recorded on the resources.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(admin.clone(), &namespace);
    let reasons: BTreeSet<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|event| event.reason)
        .collect();
    for reason in ["SigningKeyCreated", "Created", "Ready", "ServiceRemoved"] {
        assert!(reasons.contains(reason), "no {reason} event in {reasons:?}");
    }

    // Deleting the shop: the garbage collector takes its children (owner references), the
    // KafkaTopic finalizers delete the topics from the broker first.
    shops
        .delete("demo", &DeleteParams::background())
        .await
        .unwrap();
    eventually("every child gone", || {
        let (microservices, deployments, topics) =
            (microservices.clone(), deployments.clone(), topics.clone());
        async move {
            let left = microservices
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .len()
                + deployments
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .len()
                + topics.list(&ListParams::default()).await.ok()?.items.len();
            (left == 0).then_some(())
        }
    })
    .await;
    // The controller has committed the deletion; the broker answering metadata may learn of it
    // a moment later.
    eventually("the broker forgets the deleted topic", || {
        let (broker, order_events) = (broker.clone(), order_events.clone());
        async move {
            match broker.describe(&brokers(), &order_events).await {
                Ok(None) => Some(()),
                _ => None,
            }
        }
    })
    .await;

    // Reconciles were counted and timed, per controller.
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for controller in ["shop", "microservice", "kafkatopic", "sagapolicy"] {
        assert!(
            metrics.contains(&format!(
                "operator_reconciles_total{{controller=\"{controller}\",result=\"ok\"}}"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "operator_reconcile_duration_seconds_count{{controller=\"{controller}\"}}"
            )),
            "{metrics}"
        );
    }
    controllers.abort();
}

#[tokio::test]
async fn one_replica_leads_until_its_lease_lapses() {
    let admin = admin().await;
    let namespace = namespace(&admin).await;
    let lease = |identity: &str| {
        LeaderLease::new(
            admin.clone(),
            LeaseSettings {
                namespace: namespace.clone(),
                name: "commerce-operator".to_owned(),
                identity: identity.to_owned(),
                duration: Duration::from_secs(2),
            },
        )
    };
    let (first, second) = (lease("operator-a"), lease("operator-b"));
    assert!(first.try_acquire().await.unwrap());
    assert!(!second.try_acquire().await.unwrap(), "held by the first");
    assert!(first.try_acquire().await.unwrap(), "the holder renews");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        second.try_acquire().await.unwrap(),
        "a lapsed lease is taken"
    );
    assert!(
        !first.try_acquire().await.unwrap(),
        "and the old leader knows it lost"
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(admin.clone(), &namespace);
    let spec = leases.get("commerce-operator").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("operator-b"));
    assert_eq!(spec.lease_transitions, Some(2));
}

/// The install commands of the README's operator section, run as written (the control
/// plane's kubectl first on the PATH, its kubeconfig as KUBECONFIG) from the repository's
/// root: client-side apply keeps each object in an annotation of at most 256 KiB, which a
/// CRD that inlines big schemas overflows.
#[tokio::test]
async fn the_readme_installs_the_operator_and_a_shop_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .find(|block| block.starts_with("kubectl apply -k manifests/operator"))
        .expect("the README's install block")
        .split("```")
        .next()
        .unwrap();
    let commands: Vec<&str> = block
        .lines()
        .filter(|line| line.starts_with("kubectl "))
        .map(|line| line.split(" #").next().unwrap().trim())
        .collect();
    assert!(commands.len() >= 3, "{commands:?}");
    let kubectl = std::env::var("COMMERCE_KUBECTL").expect("COMMERCE_KUBECTL");
    let path = format!(
        "{}:{}",
        std::path::Path::new(&kubectl).parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // As on a new cluster: no `commerce` namespace yet.
    let admin = admin().await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    if namespaces.get_opt("commerce").await.unwrap().is_some() {
        namespaces
            .delete("commerce", &DeleteParams::default())
            .await
            .unwrap();
        eventually("the namespace of an earlier run gone", || {
            let namespaces = namespaces.clone();
            async move {
                namespaces
                    .get_opt("commerce")
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            }
        })
        .await;
    }
    for command in &commands {
        let output = std::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(&root)
            .env("PATH", &path)
            .env("KUBECONFIG", kubeconfig_path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "`{command}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let shops: Api<Shop> = Api::namespaced(admin.clone(), "commerce");
    let shop = shops.get("demo").await.unwrap();
    assert_eq!(shop.spec.hostname, "shop.example.com");
    let operators: Api<Deployment> = Api::namespaced(admin.clone(), "commerce-system");
    let operator = operators.get("commerce-operator").await.unwrap();
    assert_eq!(operator.spec.unwrap().replicas, Some(2));
    // What client-side apply kept of the biggest CRD fits in its annotation.
    let crds: Api<CustomResourceDefinition> = Api::all(admin);
    let shop_crd = crds.get("shops.commerce.dev").await.unwrap();
    let kept = shop_crd
        .annotations()
        .get("kubectl.kubernetes.io/last-applied-configuration")
        .map_or(0, String::len);
    assert!(kept > 0 && kept < 256 * 1024, "{kept} bytes");
}

/// A child the server refuses is reported where people look: the Microservice's
/// conditions (the object, and the server's words), a Warning Event, and the Shop's Ready
/// message naming the service; fixing the Shop clears it.
#[tokio::test]
async fn a_refused_child_shows_in_status_and_in_the_shops_ready_message() {
    let (admin, namespace, controllers) =
        operator_in_a_new_namespace(Arc::new(RdKafkaAdmin::new(Duration::from_secs(20)))).await;
    let prefix = format!("{}.", unique("k8s"));
    let mut shop = shop_resource(&namespace, &prefix);
    // Valid for the Shop's schema; the Deployment's own validation refuses it.
    shop.spec.services.cart.resources = Some(
        serde_json::from_value(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})).unwrap(),
    );
    let shops: Api<Shop> = Api::namespaced(admin.clone(), &namespace);
    shops.create(&PostParams::default(), &shop).await.unwrap();

    let microservices: Api<Microservice> = Api::namespaced(admin.clone(), &namespace);
    let degraded = eventually("the cart Microservice Degraded", || {
        let microservices = microservices.clone();
        async move {
            let status = microservices.get("demo-cart").await.ok()?.status?;
            let condition = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded" && c.status == "True")?;
            Some(condition.clone())
        }
    })
    .await;
    assert_eq!(degraded.reason, "ApplyFailed");
    assert!(
        degraded
            .message
            .starts_with("applying apps/v1 Deployment demo-cart: ")
            && degraded
                .message
                .contains("must be less than or equal to cpu limit"),
        "{}",
        degraded.message
    );
    let not_ready = eventually("the shop's Ready message naming cart", || {
        let shops = shops.clone();
        async move {
            let status = shops.get("demo").await.ok()?.status?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "False" && ready.message.contains("cart (Degraded: applying"))
                .then(|| ready.message.clone())
        }
    })
    .await;
    assert!(not_ready.starts_with("services not ready: "), "{not_ready}");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(admin.clone(), &namespace);
    let warning = eventually("a Warning Event on the cart Microservice", || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|event| {
                event.type_.as_deref() == Some("Warning")
                    && event.reason.as_deref() == Some("ApplyFailed")
                    && event
                        .regarding
                        .as_ref()
                        .is_some_and(|object| object.name.as_deref() == Some("demo-cart"))
            })
        }
    })
    .await;
    assert!(warning.note.unwrap().contains("demo-cart"));

    // Fixed: the cart rolls out and the shop is Ready with nothing to say.
    shops
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"services": {"cart": {"resources": {"limits": {"cpu": "4"}}}}}}),
            ),
        )
        .await
        .unwrap();
    let ready = eventually("the shop Ready after the fix", || {
        let shops = shops.clone();
        async move {
            let status = shops.get("demo").await.ok()?.status?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "True").then(|| ready.clone())
        }
    })
    .await;
    assert_eq!(ready.message, "");
    let cart = microservices
        .get("demo-cart")
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(!crd::is_true(&cart.conditions, "Degraded"));
    controllers.abort();
}

/// A shop that names no Redis gets one the operator runs: a password-protected
/// StatefulSet on its own volume, reachable from the shop's pods only, whose URL and
/// password reach every service (the password through a Secret, never in a ConfigMap).
#[tokio::test]
async fn a_shop_without_redis_urls_gets_a_redis_of_its_own() {
    let (admin, namespace, controllers) =
        operator_in_a_new_namespace(Arc::new(RdKafkaAdmin::new(Duration::from_secs(20)))).await;
    // A volume for the claim to bind (this control plane has no storage provisioner).
    let storage_class = unique("local");
    let volumes: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(admin.clone());
    volumes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": storage_class},
                "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
                         "storageClassName": storage_class,
                         "hostPath": {"path": format!("/tmp/{storage_class}")}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut shop = shop_resource(&namespace, &format!("{}.", unique("k8s")));
    shop.spec.redis = serde_json::from_value(json!({
        "provisioned": {"storageClass": storage_class}
    }))
    .unwrap();
    let shops: Api<Shop> = Api::namespaced(admin.clone(), &namespace);
    shops.create(&PostParams::default(), &shop).await.unwrap();

    let redis_url = format!("redis://demo-redis.{namespace}.svc:6379");
    let status = eventually("the shop Ready with its Redis", || {
        let shops = shops.clone();
        async move {
            let status = shops.get("demo").await.ok()?.status?;
            (status.phase.as_deref() == Some("Ready")).then_some(status)
        }
    })
    .await;
    let redis = status.redis.unwrap();
    assert_eq!(
        (redis.provisioned, redis.urls, redis.ready_replicas),
        (true, vec![redis_url.clone()], 1)
    );

    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    let data = secrets.get("demo-redis").await.unwrap().data.unwrap();
    let password = String::from_utf8(data["password"].0.clone()).unwrap();
    assert_eq!(password.len(), 64);
    let config = String::from_utf8(data["redis.conf"].0.clone()).unwrap();
    assert!(
        config.contains(&format!("requirepass {password}")) && config.contains("appendonly yes")
    );
    let sets: Api<StatefulSet> = Api::namespaced(admin.clone(), &namespace);
    let set = sets.get("demo-redis").await.unwrap();
    assert!(!serde_json::to_string(&set).unwrap().contains(&password));
    assert_eq!(set.owner_references()[0].kind, "Shop");

    // Every service is pointed at it; the password comes from the Secret.
    let microservices: Api<Microservice> = Api::namespaced(admin.clone(), &namespace);
    let cart = microservices.get("demo-cart").await.unwrap();
    assert!(cart.spec.config.unwrap().contains(&redis_url));
    let password_env = cart
        .spec
        .env
        .iter()
        .find(|env| env.name == "COMMERCE_REDIS__PASSWORD")
        .expect("the Redis password in the cart's environment");
    let reference = password_env
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (reference.name.as_str(), reference.key.as_str()),
        ("demo-redis", "password")
    );
    // Only the shop's pods may connect, and the shop's pods carry the label it lets in.
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(admin.clone(), &namespace);
    let policy = serde_json::to_value(policies.get("demo-redis").await.unwrap()).unwrap();
    let allowed = &policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    assert_eq!(allowed, &json!({"commerce.dev/shop": "demo"}));
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let cart_pods = deployments
        .get("demo-cart")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template;
    assert_eq!(
        cart_pods.metadata.unwrap().labels.unwrap()["commerce.dev/shop"],
        "demo"
    );

    // A provisioned Redis is a single instance: asking for a cluster without URLs is refused.
    let error = shops
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"redis": {"mode": "cluster"}}})),
        )
        .await
        .expect_err("a provisioned cluster");
    assert_refused(error, "a provisioned Redis is standalone");
    controllers.abort();
    volumes
        .delete(&storage_class, &DeleteParams::default())
        .await
        .unwrap();
}
