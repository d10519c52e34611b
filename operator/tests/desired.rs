//! The pure "this resource wants these objects" functions, called directly.

use std::collections::BTreeSet;

use commerce_operator::catalog;
use commerce_operator::crd::microservice::Autoscaling;
use commerce_operator::crd::{Microservice, MicroserviceSpec, SagaPolicySpec, Shop};
use commerce_operator::desired::microservice as ms;
use commerce_operator::desired::shop::{self, DesiredError, Observed};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::ResourceExt;

fn example_shop() -> Shop {
    let mut shop: Shop = yaml_serde::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/examples/shop.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    // As the API server returns it: with a uid, so children get owner references.
    shop.metadata.uid = Some("3f1c1e7e-0000-4000-8000-000000000001".to_owned());
    shop
}

fn observed() -> Observed {
    Observed {
        signing_key_ids: vec!["k20261201T000000Z".to_owned()],
        referenced_saga_engine: None,
    }
}

fn find<'a>(children: &'a shop::ShopChildren, service: &str) -> &'a Microservice {
    children
        .microservices
        .iter()
        .find(|m| m.spec.target.as_deref() == Some(service))
        .unwrap_or_else(|| panic!("no Microservice for {service}"))
}

fn config(microservice: &Microservice) -> toml::Table {
    microservice.spec.config.as_ref().unwrap().parse().unwrap()
}

#[test]
fn a_shop_wants_one_microservice_per_enabled_service_plus_the_storefront() {
    let shop = example_shop();
    let children = shop::desired(&shop, &observed()).unwrap();
    let names: BTreeSet<String> = children
        .microservices
        .iter()
        .map(|m| m.name_any())
        .collect();
    let mut expected: BTreeSet<String> = catalog::SERVICES
        .iter()
        .map(|s| format!("demo-{}", s.name))
        .collect();
    expected.insert("demo-storefront".to_owned());
    expected.insert("demo-graphql".to_owned());
    assert_eq!(names, expected);
    for microservice in &children.microservices {
        let owner = &microservice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "Shop");
        assert_eq!(owner.name, "demo");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(microservice.namespace().as_deref(), Some("commerce"));
    }
    // Overrides land where they were written, defaults elsewhere.
    assert_eq!(find(&children, "order").spec.replicas, 3);
    assert_eq!(find(&children, "cart").spec.replicas, 2);
    assert_eq!(find(&children, "search").spec.replicas, 2);
    assert_eq!(
        find(&children, "gateway")
            .spec
            .autoscaling
            .as_ref()
            .map(|a| a.max_replicas),
        Some(10)
    );
    assert!(find(&children, "gateway").spec.database.is_none());
    assert_eq!(
        find(&children, "auth").spec.database.as_ref().map(|d| (
            d.name.as_str(),
            d.instances,
            d.storage_size.as_str()
        )),
        Some(("auth", 2, "5Gi"))
    );
}

#[test]
fn disabling_a_service_drops_its_microservice() {
    let mut shop = example_shop();
    shop.spec.services.chat.enabled = false;
    shop.spec.storefront = None;
    shop.spec.graphql = None;
    let children = shop::desired(&shop, &observed()).unwrap();
    assert!(
        children
            .microservices
            .iter()
            .all(|m| m.spec.target.as_deref() != Some("chat"))
    );
    assert_eq!(children.microservices.len(), catalog::SERVICES.len() - 1);
    // The gateway neither routes to chat nor knows it.
    let gateway = config(find(&children, "gateway"));
    let own = &gateway["services"]["gateway"];
    assert!(own["upstreams"].get("chat").is_none());
    assert!(
        own["routes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["upstream"].as_str() != Some("chat"))
    );
}

#[test]
fn topics_follow_the_kafka_settings() {
    let shop = example_shop();
    let children = shop::desired(&shop, &observed()).unwrap();
    assert_eq!(children.topics.len(), catalog::TOPICS.len());
    let events = children
        .topics
        .iter()
        .find(|t| t.name_any() == "demo-commerce.order.events")
        .unwrap();
    assert_eq!(events.spec.partitions, 6);
    assert_eq!(events.spec.replication_factor, 3);
    assert_eq!(
        events.spec.topic_name.as_deref(),
        Some("commerce.order.events")
    );
    assert_eq!(
        events
            .spec
            .config
            .get("min.insync.replicas")
            .map(String::as_str),
        Some("2")
    );
    let dead_letters = children
        .topics
        .iter()
        .find(|t| t.name_any() == "demo-commerce.order.dlq")
        .unwrap();
    assert_eq!(dead_letters.spec.partitions, 1);

    let mut prefixed = example_shop();
    prefixed.spec.kafka.topic_prefix = Some("staging.".to_owned());
    let children = shop::desired(&prefixed, &observed()).unwrap();
    assert!(children.topics.iter().all(|t| {
        t.spec
            .topic_name
            .as_deref()
            .unwrap()
            .starts_with("staging.commerce.")
    }));
    let order = config(find(&children, "order"));
    assert_eq!(order["kafka"]["topic_prefix"].as_str(), Some("staging."));
}

#[test]
fn the_offline_gateway_is_off_unless_the_shop_turns_it_on() {
    let offline = |shop: &Shop| {
        let children = shop::desired(shop, &observed()).unwrap();
        config(find(&children, "payment"))["services"]["payment"]["offline"]["enabled"].as_bool()
    };
    let mut shop = example_shop();
    assert_eq!(offline(&shop), Some(false), "written, and off");
    shop.spec.payments.offline = true;
    assert_eq!(offline(&shop), Some(true));
}

#[test]
fn each_service_is_configured_with_in_cluster_peers_and_no_credentials() {
    let shop = example_shop();
    let children = shop::desired(&shop, &observed()).unwrap();
    let order = config(find(&children, "order"));
    let own = &order["services"]["order"];
    assert_eq!(own["http_addr"].as_str(), Some("0.0.0.0:8084"));
    assert_eq!(own["grpc_addr"].as_str(), Some("0.0.0.0:9084"));
    assert_eq!(
        own["peers"]["payment_grpc"].as_str(),
        Some("http://demo-payment:9085")
    );
    assert_eq!(
        own["peers"]["auth_http"].as_str(),
        Some("http://demo-auth:8081")
    );
    assert_eq!(
        own["saga_file"].as_str(),
        Some("/etc/commerce/saga/saga.toml")
    );
    assert_eq!(order["redis"]["mode"].as_str(), Some("cluster"));
    assert_eq!(
        order["kafka"]["brokers"].as_str(),
        Some("commerce-kafka-bootstrap.kafka:9092")
    );
    // Secrets travel as secretKeyRefs, never in the ConfigMap.
    assert!(
        !find(&children, "order")
            .spec
            .config
            .as_ref()
            .unwrap()
            .contains("secret")
    );
    let env: Vec<_> = find(&children, "order")
        .spec
        .env
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["COMMERCE_SERVICES__ORDER__CLIENT_SECRET"]);
    let auth_env: Vec<_> = find(&children, "auth")
        .spec
        .env
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(auth_env.len(), shop::SERVICE_CLIENTS.len());
    // Each client may get tokens only for the services it calls, and every client with a
    // credential has such a list.
    let auth = config(find(&children, "auth"));
    let audiences = auth["services"]["auth"]["client_audiences"]
        .as_table()
        .unwrap();
    let clients: Vec<&str> = audiences.keys().map(String::as_str).collect();
    let mut expected = shop::SERVICE_CLIENTS.to_vec();
    expected.sort_unstable();
    assert_eq!(clients, expected);
    assert_eq!(
        audiences["notification"].as_array().unwrap(),
        &[
            toml::Value::String("auth".to_owned()),
            toml::Value::String("cart".to_owned())
        ],
        "addresses from auth; whether an abandoned cart still is from cart"
    );
    let notification = config(find(&children, "notification"));
    assert_eq!(
        notification["services"]["notification"]["peers"]["cart_grpc"].as_str(),
        Some("http://demo-cart:9083")
    );
    assert_eq!(
        notification["services"]["notification"]["cart_url"].as_str(),
        Some("https://shop.example.com/cart")
    );

    // Checkout asks the payment service which gateways it offers.
    assert_eq!(
        config(find(&children, "cart"))["services"]["cart"]["peers"]["payment_grpc"].as_str(),
        Some("http://demo-payment:9085")
    );

    let gateway = config(find(&children, "gateway"));
    let upstreams = gateway["services"]["gateway"]["upstreams"]
        .as_table()
        .unwrap();
    assert_eq!(upstreams.len(), 10, "nine services and GraphQL");
    assert_eq!(
        upstreams["chat"]["url"].as_str(),
        Some("http://demo-chat:8088")
    );
    assert_eq!(
        gateway["services"]["gateway"]["cors"]["allowed_origins"][0].as_str(),
        Some("https://shop.example.com")
    );
    let routes = &find(&children, "gateway").spec.routes;
    assert_eq!(routes[0].hostnames, ["shop.example.com"]);
    assert_eq!(routes[0].path_prefixes, ["/v1", "/.well-known"]);
    assert_eq!(routes[0].parent.section_name.as_deref(), Some("websecure"));
    assert_eq!(
        find(&children, "notification").spec.env.len(),
        2,
        "client secret + the SMTP password override"
    );
}

#[test]
fn a_storefront_served_elsewhere_is_in_the_gateways_cors_list_once() {
    let mut shop = example_shop();
    shop.spec.storefront_origins = vec![
        "https://www.example.com".to_owned(),
        "https://shop.example.com".to_owned(),
    ];
    let children = shop::desired(&shop, &observed()).unwrap();
    let gateway = config(find(&children, "gateway"));
    let origins: Vec<&str> = gateway["services"]["gateway"]["cors"]["allowed_origins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|origin| origin.as_str().unwrap())
        .collect();
    assert_eq!(
        origins,
        ["https://shop.example.com", "https://www.example.com"]
    );
}

#[test]
fn a_shop_with_an_attachment_bucket_points_chat_at_it_with_credentials_from_its_secret() {
    let mut shop = example_shop();
    shop.spec.attachments = Some(
        serde_json::from_value(serde_json::json!({
            "bucket": "shop-attachments", "endpoint": "https://s3.example.com",
            "credentialsSecret": "attachment-credentials"
        }))
        .unwrap(),
    );
    let children = shop::desired(&shop, &observed()).unwrap();
    let chat = find(&children, "chat");
    let bucket = &config(chat)["services"]["chat"]["attachment_bucket"];
    assert_eq!(bucket["bucket"].as_str(), Some("shop-attachments"));
    assert_eq!(bucket["region"].as_str(), Some("us-east-1"));
    assert_eq!(bucket["endpoint"].as_str(), Some("https://s3.example.com"));
    let credentials: Vec<(String, String, String)> = chat
        .spec
        .env
        .iter()
        .filter_map(|env| {
            let reference = env.value_from.as_ref()?.secret_key_ref.as_ref()?;
            (reference.name == "attachment-credentials").then(|| {
                (
                    env.name.clone(),
                    reference.name.clone(),
                    reference.key.clone(),
                )
            })
        })
        .collect();
    assert_eq!(
        credentials,
        [
            (
                "COMMERCE_SERVICES__CHAT__ATTACHMENT_BUCKET__ACCESS_KEY_ID".to_owned(),
                "attachment-credentials".to_owned(),
                "access-key-id".to_owned()
            ),
            (
                "COMMERCE_SERVICES__CHAT__ATTACHMENT_BUCKET__SECRET_ACCESS_KEY".to_owned(),
                "attachment-credentials".to_owned(),
                "secret-access-key".to_owned()
            ),
        ]
    );
    // With a shared bucket chat runs two replicas; without one, a single pod holds every
    // attachment.
    assert_eq!(chat.spec.replicas, 2);
    let without = shop::desired(&example_shop(), &observed()).unwrap();
    assert_eq!(find(&without, "chat").spec.replicas, 1);
    // No other service gets them.
    assert!(
        find(&children, "cart")
            .spec
            .env
            .iter()
            .all(|env| !env.name.contains("ATTACHMENT_BUCKET"))
    );
}

#[test]
fn config_overrides_merge_over_the_generated_file() {
    let shop = example_shop();
    let children = shop::desired(&shop, &observed()).unwrap();
    let notification = config(find(&children, "notification"));
    let own = &notification["services"]["notification"];
    assert_eq!(own["smtp"]["host"].as_str(), Some("smtp.example.com"));
    // Generated keys beside the override survive.
    assert_eq!(own["http_addr"].as_str(), Some("0.0.0.0:8087"));
    assert_eq!(
        own["verify_email_url"].as_str(),
        Some("https://shop.example.com/v1/auth/verify-email?token={token}")
    );

    let mut broken = example_shop();
    broken.spec.services.payment.config = Some("[services.payment\nstripe = 1".to_owned());
    match shop::desired(&broken, &observed()) {
        Err(DesiredError::ConfigOverride { service, .. }) => assert_eq!(service, "payment"),
        other => panic!("expected a config error, got {other:?}"),
    }
    let mut clobbering = example_shop();
    clobbering.spec.services.cart.config = Some("services = 1".to_owned());
    let error = shop::desired(&clobbering, &observed()).unwrap_err();
    assert!(
        error.to_string().contains("spec.services.cart.config"),
        "{error}"
    );
}

#[test]
fn the_saga_policy_is_owned_unless_the_shop_refers_to_another() {
    let shop = example_shop();
    let children = shop::desired(&shop, &observed()).unwrap();
    let policy = children.saga_policy.clone().unwrap();
    assert_eq!(policy.name_any(), "demo");
    assert_eq!(policy.spec.steps["reserve_stock"].attempts, 5);
    let mounts = &find(&children, "order").spec.config_map_mounts;
    assert_eq!(mounts[0].name, "demo-saga-policy");
    assert!(mounts[0].optional);

    let mut referring = example_shop();
    referring.spec.saga = None;
    referring.spec.saga_policy_ref = Some("black-friday".to_owned());
    let children = shop::desired(&referring, &observed()).unwrap();
    assert!(children.saga_policy.is_none());
    assert_eq!(
        find(&children, "order").spec.config_map_mounts[0].name,
        "black-friday-saga-policy"
    );
}

#[test]
fn the_saga_file_is_what_the_order_service_reads() {
    let mut spec = SagaPolicySpec {
        payment_window: "30m".to_owned(),
        reminders: vec![commerce_operator::crd::saga_policy::Duration(
            "10m".to_owned(),
        )],
        ..SagaPolicySpec::default()
    };
    spec.steps.insert(
        "reserve_stock".to_owned(),
        commerce_operator::crd::saga_policy::StepPolicy {
            attempts: 7,
            ..Default::default()
        },
    );
    let file = shop::saga_file(&spec);
    // The order service's own parser takes it, with the values written.
    let policy: commerce_order::policy::OrderPolicy = toml::from_str(&file).unwrap();
    assert_eq!(policy.payment_window, std::time::Duration::from_secs(1800));
    assert_eq!(policy.saga.for_step("reserve_stock").attempts, 7);
    assert_eq!(
        policy.reminder_offsets(),
        vec![std::time::Duration::from_secs(600)]
    );
    let names: Vec<&str> = [
        commerce_order::placement::STEP_NAMES,
        commerce_order::lifecycle::PAYMENT_STEPS,
        commerce_order::lifecycle::EXPIRY_STEPS,
        commerce_order::lifecycle::CANCEL_STEPS,
        commerce_order::delivery::DELIVERY_STEPS,
    ]
    .concat();
    assert_eq!(
        commerce_saga::ServicePolicy::validate(&policy, &names),
        Ok(())
    );
}

#[test]
fn the_catalogue_matches_the_services() {
    let names: Vec<&str> = [
        commerce_order::placement::STEP_NAMES,
        commerce_order::lifecycle::PAYMENT_STEPS,
        commerce_order::lifecycle::EXPIRY_STEPS,
        commerce_order::lifecycle::CANCEL_STEPS,
        commerce_order::delivery::DELIVERY_STEPS,
    ]
    .concat();
    assert_eq!(catalog::SAGA_STEPS, names.as_slice());

    // Ports as the local configuration has them.
    let local: toml::Table = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/commerce.toml"
    ))
    .unwrap()
    .parse()
    .unwrap();
    let services = local["services"].as_table().unwrap();
    for service in catalog::SERVICES {
        let entry = services
            .get(service.name)
            .unwrap_or_else(|| panic!("{} is not in config/commerce.toml", service.name));
        let port = |key: &str| {
            entry
                .get(key)
                .and_then(|v| v.as_str())
                .and_then(|addr| addr.rsplit_once(':'))
                .map(|(_, port)| port.parse::<i32>().unwrap())
        };
        assert_eq!(
            port("http_addr"),
            Some(service.http_port),
            "{}",
            service.name
        );
        assert_eq!(port("grpc_addr"), service.grpc_port, "{}", service.name);
        assert_eq!(
            entry.get("database").is_some(),
            service.database,
            "{}",
            service.name
        );
    }
    // And the order worker's, whose section is `order_worker`.
    assert_eq!(
        services["order_worker"]["http_addr"].as_str(),
        Some(format!("127.0.0.1:{}", shop::ORDER_WORKER_PORT).as_str())
    );
    assert_eq!(services.len(), catalog::SERVICES.len() + 1);
}

#[test]
fn with_temporal_the_order_service_uses_it_and_an_order_worker_runs() {
    let mut shop = example_shop();
    let children = shop::desired(&shop, &observed()).unwrap();
    assert!(
        children
            .microservices
            .iter()
            .all(|m| m.spec.target.as_deref() != Some(shop::ORDER_WORKER))
    );
    assert!(
        config(find(&children, "order"))["services"]["order"]
            .get("temporal")
            .is_none()
    );

    shop.spec.temporal = Some(
        yaml_serde::from_str(
            "address: http://temporal-frontend.temporal:7233\nworker: {replicas: 3}",
        )
        .unwrap(),
    );
    let children = shop::desired(&shop, &observed()).unwrap();
    let order = find(&children, "order");
    let order_config = config(order);
    let temporal = &order_config["services"]["order"]["temporal"];
    assert_eq!(
        temporal["url"].as_str(),
        Some("http://temporal-frontend.temporal:7233")
    );
    assert_eq!(temporal["namespace"].as_str(), Some("default"));
    assert_eq!(temporal["task_queue"].as_str(), Some("commerce-orders"));

    let worker = find(&children, shop::ORDER_WORKER);
    assert_eq!(worker.name_any(), "demo-order-worker");
    assert_eq!(worker.spec.replicas, 3);
    assert_eq!(worker.spec.http_port, shop::ORDER_WORKER_PORT);
    assert!(worker.spec.grpc_port.is_none());
    assert_eq!(worker.spec.ops_port, Some(shop::OPS_PORT));
    assert_eq!(
        config(worker)["services"]["order_worker"]["ops_addr"].as_str(),
        Some("0.0.0.0:9464")
    );
    assert!(worker.spec.routes.is_empty());
    assert!(worker.spec.database.is_none(), "it uses the order database");
    assert_eq!(
        worker.spec.config_map_mounts, order.spec.config_map_mounts,
        "the saga policy file"
    );
    let worker_config = config(worker);
    assert_eq!(
        worker_config["services"]["order"], order_config["services"]["order"],
        "the worker reads services.order"
    );
    assert_eq!(
        worker_config["services"]["order_worker"]["http_addr"].as_str(),
        Some("0.0.0.0:8091")
    );

    // The order database's credentials (the ones the order pods get) and the order
    // client secret, from Secrets.
    let order_env = ms::desired(order)
        .pod_template()
        .spec
        .clone()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    let pod = ms::desired(worker).pod_template().spec.clone().unwrap();
    assert!(pod.init_containers.is_none(), "the order pods migrate");
    let container = &pod.containers[0];
    assert_eq!(
        container.args.as_deref(),
        Some(
            ["serve", "--target", "order-worker"]
                .map(str::to_owned)
                .as_slice()
        )
    );
    let worker_env = container.env.clone().unwrap();
    let source = |env: &[k8s_openapi::api::core::v1::EnvVar], name: &str| {
        env.iter()
            .find(|var| var.name == name)
            .and_then(|var| var.value_from.clone())
            .and_then(|from| from.secret_key_ref)
            .map(|secret| (secret.name, secret.key))
            .unwrap_or_else(|| panic!("no {name} from a Secret"))
    };
    assert_eq!(
        source(
            &worker_env,
            "COMMERCE_SERVICES__ORDER_WORKER__DATABASE__URL"
        ),
        source(&order_env, "COMMERCE_SERVICES__ORDER__DATABASE__URL")
    );
    assert_eq!(
        source(&worker_env, "COMMERCE_SERVICES__ORDER__CLIENT_SECRET"),
        source(&order_env, "COMMERCE_SERVICES__ORDER__CLIENT_SECRET")
    );

    // Without the order service there is nothing to work for.
    shop.spec.services.order.enabled = false;
    let children = shop::desired(&shop, &observed()).unwrap();
    assert!(
        children
            .microservices
            .iter()
            .all(|m| m.spec.target.as_deref() != Some(shop::ORDER_WORKER))
    );
}

#[test]
fn search_replicas_each_keep_an_index_and_a_consumer_group_of_their_own() {
    let mut shop = example_shop();
    let children = shop::desired(&shop, &observed()).unwrap();
    let search = ms::desired(find(&children, "search"));
    assert!(search.deployment.is_none());
    let stateful_set = search.stateful_set.as_ref().unwrap();
    let spec = stateful_set.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.service_name.as_deref(), Some("demo-search"));
    let claims = spec.volume_claim_templates.as_ref().unwrap();
    assert_eq!(claims.len(), 1);
    let claim = claims[0].spec.as_ref().unwrap();
    assert_eq!(
        claim.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "1Gi"
    );
    assert_eq!(
        claim.storage_class_name, None,
        "the cluster's default class"
    );
    let container = &spec.template.spec.as_ref().unwrap().containers[0];
    let mount = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|mount| mount.name == claims[0].metadata.name.clone().unwrap())
        .unwrap();
    assert_eq!(mount.mount_path, shop::SEARCH_INDEX_DIR);
    let env = container.env.as_ref().unwrap();
    let pod_name = env.iter().position(|var| var.name == "POD_NAME").unwrap();
    assert_eq!(
        env[pod_name]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.name"
    );
    let group = env
        .iter()
        .position(|var| var.name == "COMMERCE_SERVICES__SEARCH__CONSUMER_GROUP")
        .unwrap();
    assert!(
        pod_name < group,
        "$(POD_NAME) expands only if defined before"
    );
    assert_eq!(env[group].value.as_deref(), Some("search-$(POD_NAME)"));
    // Its credential and where it rebuilds from.
    assert!(env.iter().any(|var| {
        var.name == "COMMERCE_SERVICES__SEARCH__CLIENT_SECRET"
            && var
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .key
                == "search"
    }));
    let config: toml::Table =
        search.config_map.as_ref().unwrap().data.as_ref().unwrap()["commerce.toml"]
            .parse()
            .unwrap();
    let search_config = &config["services"]["search"];
    assert_eq!(
        search_config["peers"]["product_grpc"].as_str(),
        Some("http://demo-product:9082")
    );
    assert_eq!(
        search_config["index_dir"].as_str(),
        Some(shop::SEARCH_INDEX_DIR)
    );
    let auth = ms::desired(find(&children, "auth"));
    let audiences: toml::Table =
        auth.config_map.as_ref().unwrap().data.as_ref().unwrap()["commerce.toml"]
            .parse()
            .unwrap();
    assert_eq!(
        audiences["services"]["auth"]["client_audiences"]["search"],
        toml::Value::Array(vec![toml::Value::String("product".to_owned())])
    );

    // Autoscaled and on another class: the autoscaler scales the StatefulSet.
    let overrides = &mut shop.spec.services.search;
    overrides.autoscaling = Some(Autoscaling {
        min_replicas: 2,
        max_replicas: 4,
        target_cpu_utilization: 70,
    });
    overrides.storage = Some(commerce_operator::crd::shop::ServiceStorage {
        size: Some("5Gi".to_owned()),
        storage_class: Some("premium-rwo".to_owned()),
    });
    let children = shop::desired(&shop, &observed()).unwrap();
    let search = ms::desired(find(&children, "search"));
    let autoscaler = search.autoscaler.unwrap();
    assert_eq!(autoscaler.spec.scale_target_ref.kind, "StatefulSet");
    let spec = search.stateful_set.unwrap().spec.unwrap();
    assert_eq!(spec.replicas, None, "the autoscaler owns the count");
    let claim = spec.volume_claim_templates.unwrap()[0]
        .spec
        .clone()
        .unwrap();
    assert_eq!(claim.storage_class_name.as_deref(), Some("premium-rwo"));
    assert_eq!(
        claim.resources.unwrap().requests.unwrap()["storage"].0,
        "5Gi"
    );
}

#[test]
fn an_image_upgrade_changes_every_deployment_and_nothing_else() {
    let before = shop::desired(&example_shop(), &observed()).unwrap();
    let mut upgraded = example_shop();
    upgraded.spec.image = "ghcr.io/commerce/commerce:0.2.0".to_owned();
    let after = shop::desired(&upgraded, &observed()).unwrap();
    for (old, new) in before.microservices.iter().zip(&after.microservices) {
        let old = ms::desired(old);
        let new = ms::desired(new);
        let image = |children: &ms::MicroserviceChildren| {
            children.pod_template().spec.as_ref().unwrap().containers[0]
                .image
                .clone()
                .unwrap()
        };
        if !image(&old).starts_with("ghcr.io/commerce/commerce:") {
            assert_eq!(old.deployment, new.deployment);
            continue;
        }
        assert_eq!(image(&new), "ghcr.io/commerce/commerce:0.2.0");
        // The configuration (and so its hash annotation) does not change with the image.
        assert_eq!(old.config_map, new.config_map);
        assert_eq!(old.service, new.service);
        assert_eq!(old.database, new.database);
        let migrate = &new.pod_template().spec.as_ref().unwrap().init_containers;
        if let Some(migrate) = migrate {
            assert_eq!(
                migrate[0].image.as_deref(),
                Some("ghcr.io/commerce/commerce:0.2.0")
            );
        }
    }
}

#[test]
fn a_new_signing_key_rolls_auth_and_a_config_change_rolls_only_its_service() {
    let shop = example_shop();
    let before = shop::desired(&shop, &observed()).unwrap();
    let rotated = shop::desired(
        &shop,
        &Observed {
            signing_key_ids: vec![
                "k20261201T000000Z".to_owned(),
                "k20261202T000000Z".to_owned(),
            ],
            referenced_saga_engine: None,
        },
    )
    .unwrap();
    let template_annotations = |children: &shop::ShopChildren, service: &str| {
        ms::desired(find(children, service))
            .pod_template()
            .metadata
            .clone()
            .unwrap()
            .annotations
            .unwrap_or_default()
    };
    assert_ne!(
        template_annotations(&before, "auth"),
        template_annotations(&rotated, "auth")
    );
    assert_eq!(
        template_annotations(&rotated, "auth")[shop::SIGNING_KEYS_ANNOTATION],
        "k20261201T000000Z,k20261202T000000Z"
    );
    assert_eq!(
        template_annotations(&before, "cart"),
        template_annotations(&rotated, "cart")
    );

    let mut tuned = example_shop();
    tuned.spec.services.cart.config = Some("[services.cart]\nsession_ttl = \"1h\"".to_owned());
    let after = shop::desired(&tuned, &observed()).unwrap();
    assert_ne!(
        template_annotations(&before, "cart")["commerce.dev/config-hash"],
        template_annotations(&after, "cart")["commerce.dev/config-hash"]
    );
    assert_eq!(
        template_annotations(&before, "order"),
        template_annotations(&after, "order")
    );
}

fn microservice(spec: MicroserviceSpec) -> Microservice {
    let mut microservice = Microservice::new("demo-cart", spec);
    microservice.metadata.namespace = Some("commerce".to_owned());
    microservice.metadata.uid = Some("3f1c1e7e-0000-4000-8000-000000000002".to_owned());
    microservice
}

fn cart_spec() -> MicroserviceSpec {
    let shop = example_shop();
    find(&shop::desired(&shop, &observed()).unwrap(), "cart")
        .spec
        .clone()
}

#[test]
fn a_microservice_wants_its_deployment_service_and_database() {
    let children = ms::desired(&microservice(cart_spec()));
    let deployment = children.deployment.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(deployment.replicas, Some(2));
    let pod = deployment.template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.args.as_ref().unwrap(),
        &["serve", "--target", "cart"]
    );
    assert_eq!(
        container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    let migrate = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        migrate.args.as_ref().unwrap(),
        &["migrate", "--target", "cart"]
    );
    let database_url = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "COMMERCE_SERVICES__CART__DATABASE__URL")
        .unwrap();
    let secret = database_url
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("demo-cart-db-app", "uri")
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("demo-cart"));
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );

    let ports: Vec<(String, i32)> = children
        .service
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.port))
        .collect();
    assert_eq!(
        ports,
        [("http".to_owned(), 8083), ("grpc".to_owned(), 9083)]
    );

    let database = children.database.unwrap();
    assert_eq!(database.name_any(), "demo-cart-db");
    assert_eq!(database.spec.bootstrap.initdb.database, "cart");
    assert_eq!(database.spec.instances, 2);
    // Two replicas: a budget that lets one go at a time.
    assert!(children.disruption_budget.is_some());
    assert!(children.autoscaler.is_none());
    assert!(children.routes.is_empty());
    for owner in [
        &children.deployment.as_ref().unwrap().metadata,
        &children.service.metadata,
        &children.service_account.metadata,
        &database.metadata,
    ] {
        assert_eq!(
            owner.owner_references.as_ref().unwrap()[0].kind,
            "Microservice"
        );
    }
}

#[test]
fn autoscaling_takes_the_replica_count_and_one_replica_gets_no_budget() {
    let mut spec = cart_spec();
    spec.autoscaling = Some(Autoscaling {
        min_replicas: 3,
        max_replicas: 8,
        target_cpu_utilization: 60,
    });
    let children = ms::desired(&microservice(spec));
    assert_eq!(
        children
            .deployment
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .replicas,
        None
    );
    let autoscaler = children.autoscaler.unwrap();
    assert_eq!(autoscaler.spec.min_replicas, Some(3));
    assert_eq!(autoscaler.spec.max_replicas, 8);
    assert!(children.disruption_budget.is_some());

    let mut single = cart_spec();
    single.replicas = 1;
    single.database = None;
    single.config = None;
    let children = ms::desired(&microservice(single));
    assert!(children.disruption_budget.is_none());
    assert!(children.database.is_none());
    assert!(children.config_map.is_none());
    let pod = children.pod_template().spec.clone().unwrap();
    assert!(pod.init_containers.is_none(), "no database, no migrations");
}

#[test]
fn routes_send_their_prefixes_to_the_http_port() {
    let shop = example_shop();
    let children = shop::desired(&shop, &observed()).unwrap();
    let gateway = ms::desired(find(&children, "gateway"));
    let route = &gateway.routes[0];
    let parent = &route.spec.parent_refs.as_ref().unwrap()[0];
    assert_eq!(parent.name, "traefik-gateway");
    assert_eq!(parent.namespace.as_deref(), Some("traefik"));
    let rule = &route.spec.rules.as_ref().unwrap()[0];
    let backend = &rule.backend_refs.as_ref().unwrap()[0];
    assert_eq!(
        (backend.name.as_str(), backend.port),
        ("demo-gateway", Some(8080))
    );
    let prefixes: Vec<_> = rule
        .matches
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.path.as_ref().unwrap().value.clone().unwrap())
        .collect();
    assert_eq!(prefixes, ["/v1", "/.well-known"]);
    let storefront = children
        .microservices
        .iter()
        .find(|m| m.name_any() == "demo-storefront")
        .unwrap();
    let storefront = ms::desired(storefront);
    assert_eq!(storefront.routes.len(), 1);
    assert!(
        storefront.pod_template().spec.clone().unwrap().containers[0]
            .args
            .is_none()
    );
}

#[test]
fn scheduling_puts_services_on_the_stateless_pool_and_databases_on_the_stateful_one() {
    let mut shop = example_shop();
    shop.spec.services.order.scheduling = Some(commerce_operator::crd::microservice::Scheduling {
        priority_class_name: Some("commerce-critical".to_owned()),
        ..Default::default()
    });
    let children = shop::desired(&shop, &observed()).unwrap();
    let pod = |service: &str| {
        ms::desired(find(&children, service))
            .pod_template()
            .spec
            .clone()
            .unwrap()
    };
    let cart = pod("cart");
    assert_eq!(
        cart.node_selector.unwrap()["commerce.dev/pool"],
        "stateless"
    );
    assert_eq!(
        cart.tolerations.unwrap()[0].key.as_deref(),
        Some("cloud.google.com/gke-spot")
    );
    assert_eq!(
        cart.topology_spread_constraints.unwrap()[0].topology_key,
        "kubernetes.io/hostname"
    );
    // A service's own placement replaces the shop's.
    let order = pod("order");
    assert!(order.node_selector.is_none() && order.tolerations.is_none());
    assert_eq!(
        order.priority_class_name.as_deref(),
        Some("commerce-critical")
    );
    let database = ms::desired(find(&children, "cart")).database.unwrap();
    assert_eq!(
        database.spec.affinity.node_selector["commerce.dev/pool"],
        "stateful"
    );
    assert!(
        database.spec.affinity.tolerations.is_empty(),
        "no databases on spot nodes"
    );
    assert!(database.spec.affinity.enable_pod_anti_affinity);
}

#[test]
fn the_gateway_gets_the_local_route_table_and_graphql_when_the_shop_runs_it() {
    let local: toml::Table = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/commerce.toml"
    ))
    .unwrap()
    .parse()
    .unwrap();
    let local_routes = local["services"]["gateway"]["routes"]
        .as_array()
        .unwrap()
        .clone();
    assert!(local_routes.len() > 20);

    let shop = example_shop();
    let children = shop::desired(&shop, &observed()).unwrap();
    let gateway = config(find_named(&children, "demo-gateway"));
    let own = &gateway["services"]["gateway"];
    assert_eq!(own["routes"].as_array().unwrap(), &local_routes);
    assert_eq!(
        own["upstreams"]["graphql"]["url"].as_str(),
        Some("http://demo-graphql:8090")
    );
    let graphql = find_named(&children, "demo-graphql");
    assert!(graphql.spec.target.is_none());
    assert_eq!(graphql.spec.readiness_path, "/readiness");
    assert!(
        graphql.spec.routes.is_empty(),
        "reached through the REST gateway only"
    );
    let env: Vec<(String, String)> = graphql
        .spec
        .env
        .iter()
        .map(|e| (e.name.clone(), e.value.clone().unwrap()))
        .collect();
    assert!(env.contains(&(
        "COMMERCE_SUBGRAPH_ORDER_URL".to_owned(),
        "http://demo-order:8084/graphql".to_owned()
    )));

    let mut without = example_shop();
    without.spec.graphql = None;
    let children = shop::desired(&without, &observed()).unwrap();
    let gateway = config(find_named(&children, "demo-gateway"));
    let routes = gateway["services"]["gateway"]["routes"].as_array().unwrap();
    assert_eq!(routes.len(), local_routes.len() - 1);
    assert!(
        routes
            .iter()
            .all(|r| r["prefix"].as_str() != Some("/graphql"))
    );
}

fn find_named<'a>(children: &'a shop::ShopChildren, name: &str) -> &'a Microservice {
    children
        .microservices
        .iter()
        .find(|m| m.name_any() == name)
        .unwrap_or_else(|| panic!("no Microservice {name}"))
}

#[test]
fn a_service_admits_only_the_shop_the_gateway_and_monitoring() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let children = ms::desired(&microservice(cart_spec()));
    let spec = children.network_policy.spec.unwrap();
    assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    let rule = &spec.ingress.as_ref().unwrap()[0];
    let ports: Vec<_> = rule
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.port.clone().unwrap())
        .collect();
    assert_eq!(ports, [IntOrString::Int(8083), IntOrString::Int(9083)]);
    let from = rule.from.as_ref().unwrap();
    let shop_pods = from[0]
        .pod_selector
        .as_ref()
        .unwrap()
        .match_labels
        .as_ref()
        .unwrap();
    assert_eq!(shop_pods["app.kubernetes.io/part-of"], "commerce");
    let namespaces = |peers: &[NetworkPolicyPeer]| -> Vec<String> {
        peers
            .iter()
            .map(|peer| {
                let labels = peer
                    .namespace_selector
                    .as_ref()
                    .unwrap()
                    .match_labels
                    .as_ref()
                    .unwrap();
                labels["kubernetes.io/metadata.name"].clone()
            })
            .collect()
    };
    // The API: the shop's pods and the Gateway; monitoring scrapes the ops port only.
    assert_eq!(namespaces(&from[1..]), ["traefik"]);
    let ops_rule = &spec.ingress.as_ref().unwrap()[1];
    assert_eq!(
        ops_rule.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(9464))
    );
    assert_eq!(namespaces(ops_rule.from.as_ref().unwrap()), ["monitoring"]);
    assert_eq!(spec.ingress.as_ref().unwrap().len(), 2);
    let selected = spec.pod_selector.unwrap().match_labels.unwrap();
    assert_eq!(selected["app.kubernetes.io/instance"], "demo-cart");

    // A service without an ops port is scraped on its API port.
    let mut without_ops = cart_spec();
    without_ops.ops_port = None;
    let spec = ms::desired(&microservice(without_ops))
        .network_policy
        .spec
        .unwrap();
    let rules = spec.ingress.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        namespaces(&rules[0].from.as_ref().unwrap()[1..]),
        ["traefik", "monitoring"]
    );
}

#[test]
fn probes_and_scrapes_use_the_ops_port_which_the_service_does_not_expose() {
    let spec = cart_spec();
    assert_eq!(spec.ops_port, Some(9464));
    assert_eq!(
        config(&microservice(spec.clone()))["services"]["cart"]["ops_addr"].as_str(),
        Some("0.0.0.0:9464")
    );
    let children = ms::desired(&microservice(spec));
    let template = children.pod_template();
    let container = &template.spec.as_ref().unwrap().containers[0];
    let ports: Vec<(String, i32)> = container
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("http".to_owned(), 8083),
            ("grpc".to_owned(), 9083),
            ("ops".to_owned(), 9464)
        ]
    );
    for probe in [
        &container.readiness_probe,
        &container.liveness_probe,
        &container.startup_probe,
    ] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("ops".to_owned())
        );
    }
    let annotations = template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9464");
    let service_ports: Vec<String> = children
        .service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| p.name.unwrap())
        .collect();
    assert_eq!(service_ports, ["http", "grpc"]);
}

#[test]
fn a_saga_engine_change_rolls_the_order_pods_and_only_them() {
    use commerce_operator::crd::saga_policy::Engine;
    let annotation = |children: &shop::ShopChildren, target: &str| {
        let deployment = ms::desired(find(children, target)).deployment.unwrap();
        deployment
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap_or_default()
            .get(shop::SAGA_ENGINE_ANNOTATION)
            .cloned()
    };
    let mut shop = example_shop();
    shop.spec.temporal = Some(yaml_serde::from_str("address: http://temporal:7233").unwrap());
    let before = shop::desired(&shop, &observed()).unwrap();
    assert_eq!(annotation(&before, "order").as_deref(), Some("postgres"));
    assert_eq!(
        annotation(&before, shop::ORDER_WORKER).as_deref(),
        Some("postgres")
    );

    shop.spec.saga.get_or_insert_with(Default::default).engine = Engine::Temporal;
    let after = shop::desired(&shop, &observed()).unwrap();
    assert_eq!(annotation(&after, "order").as_deref(), Some("temporal"));
    assert_eq!(
        annotation(&after, shop::ORDER_WORKER).as_deref(),
        Some("temporal")
    );
    assert_eq!(annotation(&after, "cart"), None);
    assert_eq!(
        ms::desired(find(&before, "cart")).deployment,
        ms::desired(find(&after, "cart")).deployment,
        "other services do not roll"
    );

    // A policy managed separately: its engine as read from the cluster.
    shop.spec.saga = None;
    shop.spec.saga_policy_ref = Some("black-friday".to_owned());
    let unread = shop::desired(&shop, &observed()).unwrap();
    assert_eq!(annotation(&unread, "order").as_deref(), Some("postgres"));
    let read = shop::desired(
        &shop,
        &Observed {
            referenced_saga_engine: Some(Engine::Temporal),
            ..observed()
        },
    )
    .unwrap();
    assert_eq!(annotation(&read, "order").as_deref(), Some("temporal"));
}
