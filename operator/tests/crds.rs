//! The CRDs: the checked-in YAML matches the Rust types, the examples are valid resources,
//! and the CEL rules refuse what they should (evaluated client-side with kube's CEL
//! library, the same rules the API server runs).

use commerce_operator::crd::{self, KafkaTopic, Microservice, SagaPolicy, Shop};
use kube::core::cel::{validate_cel, validate_cel_update};
use kube::{CustomResourceExt, ResourceExt};

fn root(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let text = std::fs::read_to_string(root("manifests/examples").join(file)).unwrap();
    yaml_serde::from_str(&text).unwrap_or_else(|error| panic!("{file}: {error}"))
}

#[test]
fn checked_in_crds_are_current() {
    let rendered = crd::rendered();
    assert_eq!(rendered.len(), 4);
    for (file, yaml) in rendered {
        let checked_in = std::fs::read_to_string(root("crds").join(&file)).unwrap_or_default();
        assert!(
            checked_in == yaml,
            "crds/{file} is stale: run `cargo run -p commerce-operator -- crds --out crds`"
        );
    }
}

/// `kubectl apply` keeps the whole object in an annotation of at most 256 KiB; the Shop CRD
/// once inlined the per-service schema ten times and came to 937 KB.
#[test]
fn every_crd_fits_in_a_client_side_apply_annotation() {
    for crd in crd::all() {
        let size = serde_json::to_vec(&crd).unwrap().len();
        assert!(size < 128 * 1024, "{}: {size} bytes", crd.name_any());
    }
}

#[test]
fn crds_have_status_printer_columns_and_one_served_version() {
    for crd in crd::all() {
        assert_eq!(crd.spec.group, "commerce.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert_eq!(crd.spec.versions.len(), 1);
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|column| column.name.as_str())
            .collect();
        assert!(
            columns.contains(&"Age"),
            "{}: {columns:?}",
            crd.spec.names.kind
        );
    }
    let shop = Shop::crd();
    let columns: Vec<_> = shop.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|column| (column.name.as_str(), column.json_path.as_str()))
        .collect();
    assert!(columns.contains(&("Phase", ".status.phase")));
    assert!(columns.contains(&("Ready", ".status.readyServices")));
}

#[test]
fn examples_are_valid_resources() {
    let shop: Shop = example("shop.yaml");
    validate_cel(&shop).unwrap();
    let policy: SagaPolicy = example("sagapolicy.yaml");
    validate_cel(&policy).unwrap();
    assert!(commerce_operator::controller::saga_policy::validate(&policy.spec).is_ok());
    let topic: KafkaTopic = example("kafkatopic.yaml");
    validate_cel(&topic).unwrap();
    assert_eq!(topic.topic_name(), "analytics.orders");
    let microservice: Microservice = example("microservice.yaml");
    validate_cel(&microservice).unwrap();
    // Every example renders.
    assert!(commerce_operator::render::everything(&shop).unwrap().len() > 50);
}

fn rejected<T: kube::CustomResourceExt + serde::Serialize>(object: &T, message: &str) {
    let error = validate_cel(object).expect_err("the rule should refuse this");
    assert!(error.to_string().contains(message), "{error}");
}

#[test]
fn cel_rules_refuse_what_spans_fields() {
    let mut both: Shop = example("shop.yaml");
    both.spec.saga_policy_ref = Some("black-friday".to_owned());
    rejected(&both, "not both");

    let mut late: SagaPolicy = example("sagapolicy.yaml");
    late.spec
        .reminders
        .push(crd::saga_policy::Duration("3h".to_owned()));
    rejected(&late, "before the end of the payment window");

    let mut short_lease: SagaPolicy = example("sagapolicy.yaml");
    short_lease.spec.lease = "5s".to_owned();
    rejected(&short_lease, "lease must be longer");

    let mut backoff: SagaPolicy = example("sagapolicy.yaml");
    backoff.spec.step.max_backoff = "100ms".to_owned();
    rejected(&backoff, "maxBackoff must not be less than backoff");

    let mut scaling: Shop = example("shop.yaml");
    scaling
        .spec
        .services
        .gateway
        .autoscaling
        .as_mut()
        .unwrap()
        .max_replicas = 1;
    rejected(&scaling, "maxReplicas must not be less than minReplicas");
}

#[test]
fn transition_rules_keep_topic_identity() {
    let old: KafkaTopic = example("kafkatopic.yaml");
    let mut grown = old.clone();
    grown.spec.partitions = 24;
    validate_cel_update(&grown, &old).unwrap();
    let mut replicated = old.clone();
    replicated.spec.replication_factor = 1;
    let error = validate_cel_update(&replicated, &old).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("replicationFactor cannot change"),
        "{error}"
    );
    let mut renamed = old.clone();
    renamed.spec.topic_name = Some("analytics.orders.v2".to_owned());
    let mut named = old.clone();
    named.spec.topic_name = Some("analytics.orders".to_owned());
    let error = validate_cel_update(&renamed, &named).unwrap_err();
    assert!(
        error.to_string().contains("topicName cannot change"),
        "{error}"
    );
}

#[test]
fn the_operator_validates_saga_policies_again() {
    use commerce_operator::controller::saga_policy::validate;
    let mut unknown: SagaPolicy = example("sagapolicy.yaml");
    unknown
        .spec
        .steps
        .insert("reserve".to_owned(), Default::default());
    assert_eq!(validate(&unknown.spec).unwrap_err().0, "steps.reserve");
    let mut late: SagaPolicy = example("sagapolicy.yaml");
    late.spec
        .reminders
        .push(crd::saga_policy::Duration("2h".to_owned()));
    assert_eq!(validate(&late.spec).unwrap_err().0, "reminders[2]");
    let mut garbled: SagaPolicy = example("sagapolicy.yaml");
    garbled.spec.payment_window = "soon".to_owned();
    assert_eq!(validate(&garbled.spec).unwrap_err().0, "paymentWindow");
}
