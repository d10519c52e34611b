//! The public REST API's contract, `openapi/openapi.yaml`, and the code cannot drift apart:
//! every route a service serves is documented and every documented operation is served,
//! the gateway's configured route table sends each to the service that serves it (and lets
//! anonymous callers through where the document says no credentials are needed), and the
//! document is internally whole. `scripts/api-check.sh` then runs schemathesis against
//! the running shop to hold the answers to the documented shapes.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (METHOD, path) → the service that serves it, from the services' own route tables.
fn served() -> BTreeMap<(String, String), &'static str> {
    let services: [(&str, Vec<(Method, &'static str)>); 9] = [
        ("auth", commerce_auth::http::api().operations().to_vec()),
        (
            "product",
            commerce_product::http::api().operations().to_vec(),
        ),
        ("search", commerce_search::http::api().operations().to_vec()),
        ("cart", commerce_cart::http::api().operations().to_vec()),
        ("order", commerce_order::http::api().operations().to_vec()),
        (
            "payment",
            commerce_payment::http::api().operations().to_vec(),
        ),
        ("fulfillment", commerce_fulfillment::http::operations()),
        (
            "notification",
            commerce_notification::http::api().operations().to_vec(),
        ),
        ("chat", commerce_chat::http::api().operations().to_vec()),
    ];
    let mut served = BTreeMap::new();
    for (service, operations) in services {
        for (method, path) in operations {
            let previous = served.insert((method.to_string(), path.to_owned()), service);
            assert!(
                previous.is_none(),
                "{method} {path} is served by both {service} and {previous:?}"
            );
        }
    }
    served
}

fn document() -> Value {
    commerce_gateway::openapi::document().expect("the document parses")
}

/// (METHOD, path) → the operation object.
fn documented(document: &Value) -> BTreeMap<(String, String), Value> {
    let mut operations = BTreeMap::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                operations.insert((method.to_uppercase(), path.clone()), operation.clone());
            }
        }
    }
    operations
}

#[test]
fn every_served_route_is_documented_and_every_documented_operation_is_served() {
    let served = served();
    let document = document();
    let documented = documented(&document);
    let undocumented: Vec<_> = served
        .keys()
        .filter(|key| !documented.contains_key(*key))
        .collect();
    let unserved: Vec<_> = documented
        .keys()
        .filter(|key| !served.contains_key(*key))
        .collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "openapi/openapi.yaml and the services disagree.\n\
         served but not documented: {undocumented:?}\n\
         documented but not served: {unserved:?}"
    );
    assert!(documented.len() >= 50, "{} operations", documented.len());
}

/// A concrete path for a template: every parameter becomes a UUID.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "0190b3c4-0000-7000-8000-000000000001"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn the_gateway_routes_every_operation_to_its_service() {
    let config = commerce_runtime::Config::from_toml_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/commerce.toml"
        ))
        .unwrap(),
    )
    .unwrap();
    let settings: commerce_gateway::settings::GatewaySettings =
        config.service_section("gateway").unwrap();
    let table = settings.route_table().unwrap();
    let document = document();
    let documented = documented(&document);
    let mut problems = Vec::new();
    for ((method, path), service) in served() {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let Some(route) = table.find(&method, &concrete(&path)) else {
            problems.push(format!("{method} {path}: no gateway route"));
            continue;
        };
        if route.upstream != service {
            problems.push(format!(
                "{method} {path}: routed to {} but served by {service}",
                route.upstream
            ));
        }
        // An operation documented without credentials must not meet the edge's token check.
        let operation = &documented[&(method.to_string(), path.clone())];
        let anonymous = operation
            .get("security")
            .and_then(Value::as_array)
            .is_none_or(|requirements| requirements.is_empty());
        if anonymous && route.access != commerce_gateway::domain::Access::Public {
            problems.push(format!(
                "{method} {path}: documented as public but the gateway route `{}` wants {:?}",
                route.name, route.access
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `$ref` in `value`, with where it was found.
fn references<'a>(value: &'a Value, at: String, found: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref" {
                    if let Some(target) = inner.as_str() {
                        found.push((at.clone(), target));
                    }
                } else {
                    references(inner, format!("{at}/{key}"), found);
                }
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                references(inner, format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_whole() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    let mut found = Vec::new();
    references(&document, String::new(), &mut found);
    assert!(found.len() > 100, "{} references", found.len());
    for (at, target) in found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: `{target}` is not a local reference"));
        assert!(
            document.pointer(pointer).is_some(),
            "{at}: `{target}` points at nothing"
        );
    }

    let mut operation_ids = BTreeSet::new();
    for ((method, path), operation) in documented(&document) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(
            operation_ids.insert(id.to_owned()),
            "operationId {id} twice"
        );
        let statuses: Vec<&String> = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has no responses"))
            .keys()
            .collect();
        assert!(
            // 101: a WebSocket upgrade's success.
            statuses
                .iter()
                .any(|status| status.starts_with('2') || status.as_str() == "101"),
            "{method} {path} documents no success"
        );
        // Every operation can be rate limited at the edge; clients must expect 429.
        assert!(
            statuses.iter().any(|status| *status == "429"),
            "{method} {path} does not document 429"
        );
        // Path parameters are declared for each `{name}` in the template.
        for segment in path.split('/').filter(|segment| segment.starts_with('{')) {
            let name = segment.trim_matches(['{', '}']);
            let item = &document["paths"][&path];
            let declared = [item.get("parameters"), operation.get("parameters")]
                .into_iter()
                .flatten()
                .filter_map(Value::as_array)
                .flatten()
                .map(
                    |parameter| match parameter.get("$ref").and_then(Value::as_str) {
                        Some(target) => document
                            .pointer(target.trim_start_matches('#'))
                            .cloned()
                            .unwrap_or_default(),
                        None => parameter.clone(),
                    },
                )
                .any(|parameter| parameter["in"] == "path" && parameter["name"] == name);
            assert!(
                declared,
                "{method} {path}: path parameter `{name}` is not declared"
            );
        }
    }
}
