//! The operator against a real Kubernetes API server: `scripts/kube-apiserver.sh` builds
//! and starts kube-apiserver and kube-controller-manager 1.20 (with etcd) on loopback.
//!
//! Kubernetes 1.20 serves neither autoscaling/v2 (HPA) nor policy/v1 (PDB), nor CEL rules,
//! and has no CloudNativePG or Gateway API installed: the shop here runs one replica per
//! service (no budget, no autoscaler), the Microservices report the missing dependencies
//! as `Degraded`, and HPA/PDB/Cluster/HTTPRoute objects themselves are covered by the
//! pure and mock-server tests and validated offline against current schemas.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use commerce_operator::controller::Context;
use commerce_operator::crd::{self, KafkaTopic, Microservice, SagaPolicy, Shop};
use commerce_operator::kafka::{RdKafkaAdmin, TopicAdmin};
use commerce_operator::leader::{LeaderLease, LeaseSettings};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
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

/// The CRDs as the operator ships them. 1.20's API server drops the CEL rules it does not
/// know (no strict field validation before 1.25).
async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crd::all() {
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(response)) if response.code == 409 => {}
            Err(error) => panic!("installing {}: {error}", crd.name_any()),
        }
    }
    for crd in crd::all() {
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
    // 1.20's token controller writes the account's token into a Secret.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let secret_name = eventually("the operator's token Secret", || {
        let accounts = accounts.clone();
        async move {
            let account = accounts.get("commerce-operator").await.ok()?;
            account.secrets?.first()?.name.clone()
        }
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    let secret = secrets.get(&secret_name).await.unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
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
    for service in commerce_operator::catalog::SERVICES {
        let overrides = match service.name {
            "auth" => &mut shop.spec.services.auth,
            "product" => &mut shop.spec.services.product,
            "cart" => &mut shop.spec.services.cart,
            "order" => &mut shop.spec.services.order,
            "payment" => &mut shop.spec.services.payment,
            "fulfillment" => &mut shop.spec.services.fulfillment,
            "notification" => &mut shop.spec.services.notification,
            "chat" => &mut shop.spec.services.chat,
            "search" => &mut shop.spec.services.search,
            _ => &mut shop.spec.services.gateway,
        };
        overrides.replicas = Some(1);
    }
    shop
}

#[tokio::test]
async fn the_operator_runs_a_shop_on_a_real_api_server() {
    let admin = admin().await;
    install_crds(&admin).await;
    let namespace = namespace(&admin).await;
    let operator = operator_client(&admin, &namespace).await;
    let broker = Arc::new(RdKafkaAdmin::new(Duration::from_secs(20)));
    let context = Arc::new(Context::new(operator.clone(), broker.clone()));
    let metrics_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    tokio::spawn(commerce_operator::run::serve_metrics(
        format!("127.0.0.1:{metrics_port}").parse().unwrap(),
    ));
    let controllers = tokio::spawn(commerce_operator::run::controllers(
        operator,
        Some(namespace.clone()),
        context,
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
    let managers: Vec<(String, String)> = order
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|entry| {
            (
                entry.manager.clone().unwrap_or_default(),
                entry.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("commerce-operator".to_owned(), "Apply".to_owned())),
        "{managers:?}"
    );
    assert_eq!(order.owner_references()[0].kind, "Microservice");

    // Status and conditions written: every service is Degraded (no CloudNativePG here).
    let degraded = eventually("the order Microservice's status", || {
        let microservices = microservices.clone();
        async move {
            let status = microservices.get("demo-order").await.ok()?.status?;
            let condition = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded")?
                .clone();
            Some((condition, status.observed_generation))
        }
    })
    .await;
    assert_eq!(degraded.0.status, "True");
    assert_eq!(degraded.0.reason, "DependencyMissing");
    assert!(degraded.0.message.contains("CloudNativePG"));
    assert_eq!(degraded.1, Some(1));
    let shop_status = eventually("the shop's rolled-up status", || {
        let shops = shops.clone();
        async move {
            let status = shops.get("demo").await.ok()?.status?;
            (status.phase.as_deref() == Some("Degraded") && status.services.len() == 10)
                .then_some(status)
        }
    })
    .await;
    assert_eq!(shop_status.ready_services.as_deref(), Some("0/10"));

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
        ["cart", "notification", "order", "payment-offline-webhook"]
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

    // An invalid policy (1.20 has no CEL to refuse it) is reported, the ConfigMap kept.
    shops
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"saga": {"paymentWindow": "2h", "reminders": ["3h"]}}})),
        )
        .await
        .unwrap();
    let invalid = eventually("the SagaPolicy to be invalid", || {
        let policies = policies.clone();
        async move {
            let status = policies.get("demo").await.ok()?.status?;
            let valid = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Valid")?
                .clone();
            (valid.status == "False").then_some(valid)
        }
    })
    .await;
    assert!(
        invalid.message.contains("reminders[0]"),
        "{}",
        invalid.message
    );
    let saga = config_maps.get("demo-saga-policy").await.unwrap();
    assert!(saga.data.unwrap()["saga.toml"].contains("reminders = [\"1h\"]"));

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
    for reason in [
        "SigningKeyCreated",
        "DependencyMissing",
        "Created",
        "Invalid",
        "ServiceRemoved",
    ] {
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
