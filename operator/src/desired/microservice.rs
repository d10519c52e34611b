//! What one `Microservice` wants: pure functions from the resource to the objects the
//! controller applies. Nothing here talks to the API server.

use std::collections::BTreeMap;

use gateway_api::httproutes::{
    HttpRoute, HttpRouteParentRefs, HttpRouteRules, HttpRouteRulesBackendRefs,
    HttpRouteRulesMatches, HttpRouteRulesMatchesPath, HttpRouteRulesMatchesPathType, HttpRouteSpec,
};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use sha2::{Digest, Sha256};

use crate::cnpg::{
    AffinityConfiguration, BootstrapConfiguration, BootstrapInitDb, Cluster, ClusterSpec,
    StorageConfiguration,
};
use crate::crd::Microservice;
use crate::crd::microservice::MicroserviceSpec;

/// Where the configuration file is mounted, and the variable that names it.
pub const CONFIG_DIR: &str = "/etc/commerce";
pub const CONFIG_FILE: &str = "/etc/commerce/commerce.toml";
/// The unprivileged user the images run as.
pub const RUN_AS_USER: i64 = 10001;

/// Every object one Microservice owns.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroserviceChildren {
    pub service_account: ServiceAccount,
    pub config_map: Option<ConfigMap>,
    /// The pods: a Deployment, or a StatefulSet when each replica keeps a volume (the
    /// other is absent).
    pub deployment: Option<Deployment>,
    pub stateful_set: Option<StatefulSet>,
    pub service: Service,
    pub database: Option<Cluster>,
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    pub disruption_budget: Option<PodDisruptionBudget>,
    pub routes: Vec<HttpRoute>,
    pub network_policy: NetworkPolicy,
}

impl MicroserviceChildren {
    /// The pods' template, whichever of the two kinds runs them.
    pub fn pod_template(&self) -> &PodTemplateSpec {
        match (&self.deployment, &self.stateful_set) {
            (Some(deployment), _) => &deployment.spec.as_ref().expect("desired spec").template,
            (None, Some(stateful_set)) => {
                &stateful_set.spec.as_ref().expect("desired spec").template
            }
            (None, None) => unreachable!("desired() makes one of the two"),
        }
    }
}

pub fn labels(microservice: &Microservice) -> BTreeMap<String, String> {
    let name = microservice.metadata.name.clone().unwrap_or_default();
    let component = microservice
        .spec
        .target
        .clone()
        .unwrap_or_else(|| name.clone());
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), component),
        ("app.kubernetes.io/instance".to_owned(), name),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "commerce".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "commerce-operator".to_owned(),
        ),
    ]);
    // The shop's pods carry their shop, which its Redis NetworkPolicy lets in.
    if let Some(shop) = microservice
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(crate::crd::shop::SHOP_LABEL))
    {
        labels.insert(crate::crd::shop::SHOP_LABEL.to_owned(), shop.clone());
    }
    labels
}

fn selector(microservice: &Microservice) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app.kubernetes.io/instance".to_owned(),
        microservice.metadata.name.clone().unwrap_or_default(),
    )])
}

/// Metadata of a child: same namespace, the Microservice as controlling owner.
fn child_meta(microservice: &Microservice, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: microservice.metadata.namespace.clone(),
        labels: Some(labels(microservice)),
        owner_references: owner_reference(microservice).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(microservice: &Microservice) -> Option<OwnerReference> {
    microservice.controller_owner_ref(&())
}

pub fn database_cluster_name(microservice_name: &str) -> String {
    format!("{microservice_name}-db")
}

/// `auth` → `COMMERCE_SERVICES__AUTH__`.
pub fn env_prefix(target: &str) -> String {
    format!(
        "COMMERCE_SERVICES__{}__",
        target.to_ascii_uppercase().replace('-', "_")
    )
}

pub fn desired(microservice: &Microservice) -> MicroserviceChildren {
    let spec = &microservice.spec;
    let name = microservice.metadata.name.clone().unwrap_or_default();

    let config_map = spec.config.as_ref().map(|config| ConfigMap {
        metadata: child_meta(microservice, format!("{name}-config")),
        data: Some(BTreeMap::from([(
            "commerce.toml".to_owned(),
            config.clone(),
        )])),
        ..ConfigMap::default()
    });

    let database = spec.database.as_ref().map(|database| Cluster {
        metadata: child_meta(microservice, database_cluster_name(&name)),
        spec: ClusterSpec {
            instances: database.instances,
            image_name: database.image_name.clone(),
            storage: StorageConfiguration {
                size: database.storage_size.clone(),
                storage_class: database.storage_class.clone(),
            },
            bootstrap: BootstrapConfiguration {
                initdb: BootstrapInitDb {
                    database: database.name.clone(),
                    owner: database.name.clone(),
                },
            },
            affinity: AffinityConfiguration {
                enable_pod_anti_affinity: true,
                topology_key: "kubernetes.io/hostname".to_owned(),
                node_selector: database
                    .scheduling
                    .as_ref()
                    .map(|s| s.node_selector.clone())
                    .unwrap_or_default(),
                tolerations: database
                    .scheduling
                    .as_ref()
                    .map(|s| s.tolerations.clone())
                    .unwrap_or_default(),
            },
            priority_class_name: database
                .scheduling
                .as_ref()
                .and_then(|s| s.priority_class_name.clone()),
        },
        status: None,
    });

    MicroserviceChildren {
        service_account: ServiceAccount {
            metadata: child_meta(microservice, name.clone()),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        },
        deployment: spec
            .persistent_volume
            .is_none()
            .then(|| deployment(microservice, &name)),
        stateful_set: spec
            .persistent_volume
            .as_ref()
            .map(|volume| stateful_set(microservice, &name, volume)),
        service: service(microservice, &name),
        autoscaler: autoscaler(microservice, &name),
        disruption_budget: disruption_budget(microservice, &name),
        routes: routes(microservice, &name),
        network_policy: network_policy(microservice, &name),
        config_map,
        database,
    }
}

fn env(microservice: &Microservice, name: &str) -> Vec<EnvVar> {
    let spec = &microservice.spec;
    let mut env = Vec::new();
    if spec.config.is_some() {
        env.push(EnvVar {
            name: "COMMERCE_CONFIG".to_owned(),
            value: Some(CONFIG_FILE.to_owned()),
            ..EnvVar::default()
        });
    }
    if let (Some(_), Some(target)) = (&spec.database, &spec.target) {
        env.push(EnvVar {
            name: format!("{}DATABASE__URL", env_prefix(target)),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: crate::cnpg::app_secret_name(&database_cluster_name(name)),
                    key: "uri".to_owned(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    env.extend(spec.env.iter().cloned());
    env
}

fn volumes(microservice: &Microservice, name: &str) -> (Vec<Volume>, Vec<VolumeMount>) {
    let spec = &microservice.spec;
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    }];
    if spec.config.is_some() {
        volumes.push(Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: format!("{name}-config"),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "config".to_owned(),
            mount_path: CONFIG_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    // Secrets and ConfigMaps mounted read-only, as the spec lists them.
    let sources = spec
        .secret_mounts
        .iter()
        .enumerate()
        .map(|(index, mount)| {
            let volume = Volume {
                name: format!("secret-{index}"),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(mount.name.clone()),
                    optional: Some(mount.optional),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            };
            (volume, mount)
        })
        .chain(
            spec.config_map_mounts
                .iter()
                .enumerate()
                .map(|(index, mount)| {
                    let volume = Volume {
                        name: format!("configmap-{index}"),
                        config_map: Some(ConfigMapVolumeSource {
                            name: mount.name.clone(),
                            optional: Some(mount.optional),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    };
                    (volume, mount)
                }),
        );
    for (volume, mount) in sources {
        mounts.push(VolumeMount {
            name: volume.name.clone(),
            mount_path: mount.mount_path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(volume);
    }
    if let Some(volume) = &spec.persistent_volume {
        mounts.push(VolumeMount {
            name: PERSISTENT_VOLUME.to_owned(),
            mount_path: volume.mount_path.clone(),
            ..VolumeMount::default()
        });
    }
    for (index, path) in spec.scratch_dirs.iter().enumerate() {
        let volume = format!("scratch-{index}");
        volumes.push(Volume {
            name: volume.clone(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: volume,
            mount_path: path.clone(),
            ..VolumeMount::default()
        });
    }
    (volumes, mounts)
}

/// The container port that answers probes: `ops` when the service has one.
fn probe_port(spec: &MicroserviceSpec) -> &'static str {
    if spec.ops_port.is_some() {
        "ops"
    } else {
        "http"
    }
}

fn probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("100m".to_owned())),
            ("memory".to_owned(), Quantity("128Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("512Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// The pods' template, the same for a Deployment and a StatefulSet.
fn pod_template(microservice: &Microservice, name: &str) -> PodTemplateSpec {
    let spec = &microservice.spec;
    let env = env(microservice, name);
    let (volumes, mounts) = volumes(microservice, name);
    let mut ports = vec![ContainerPort {
        name: Some("http".to_owned()),
        container_port: spec.http_port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }];
    if let Some(grpc) = spec.grpc_port {
        ports.push(ContainerPort {
            name: Some("grpc".to_owned()),
            container_port: grpc,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        });
    }
    if let Some(ops) = spec.ops_port {
        ports.push(ContainerPort {
            name: Some("ops".to_owned()),
            container_port: ops,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        });
    }
    let probe_port = probe_port(spec);
    let resources = spec.resources.clone().unwrap_or_else(default_resources);
    let container = Container {
        name: "service".to_owned(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        args: spec
            .target
            .as_ref()
            .map(|target| vec!["serve".to_owned(), "--target".to_owned(), target.clone()]),
        ports: Some(ports),
        env: Some(env.clone()),
        resources: Some(resources.clone()),
        readiness_probe: Some(probe(&spec.readiness_path, probe_port, 5, 3)),
        liveness_probe: Some(probe(&spec.liveness_path, probe_port, 10, 3)),
        // Migrations ran in the init container; a cold start still loads keys and
        // connects to the broker, so give it a minute before liveness counts.
        startup_probe: Some(probe(&spec.liveness_path, probe_port, 2, 30)),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts.clone()),
        ..Container::default()
    };
    // The new version's migrations run before its server starts; a failing migration
    // keeps the pod from becoming ready and the rollout (maxUnavailable 0) from
    // replacing the pods still serving.
    let init_containers = match (&spec.database, &spec.target) {
        (Some(_), Some(target)) => Some(vec![Container {
            name: "migrate".to_owned(),
            image: Some(spec.image.clone()),
            image_pull_policy: spec.image_pull_policy.clone(),
            args: Some(vec![
                "migrate".to_owned(),
                "--target".to_owned(),
                target.clone(),
            ]),
            env: Some(env),
            resources: Some(resources),
            security_context: Some(container_security()),
            volume_mounts: Some(mounts),
            ..Container::default()
        }]),
        _ => None,
    };

    let mut annotations = spec.pod_annotations.clone();
    if let Some(ops) = spec.ops_port {
        // Alloy (manifests/infrastructure/monitoring) scrapes annotated pods on port `ops`.
        annotations.insert("prometheus.io/scrape".to_owned(), "true".to_owned());
        annotations.insert("prometheus.io/port".to_owned(), ops.to_string());
        annotations.insert("prometheus.io/path".to_owned(), "/metrics".to_owned());
    }
    if let Some(config) = &spec.config {
        annotations.insert(
            "commerce.dev/config-hash".to_owned(),
            hex::encode(&Sha256::digest(config.as_bytes())[..8]),
        );
    }
    let mut pod_labels = labels(microservice);
    pod_labels.extend(selector(microservice));

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(name.to_owned()),
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            init_containers,
            containers: vec![container],
            node_selector: spec
                .scheduling
                .as_ref()
                .map(|s| s.node_selector.clone())
                .filter(|selector| !selector.is_empty()),
            tolerations: spec
                .scheduling
                .as_ref()
                .map(|s| s.tolerations.clone())
                .filter(|tolerations| !tolerations.is_empty()),
            affinity: spec.scheduling.as_ref().and_then(|s| s.affinity.clone()),
            priority_class_name: spec
                .scheduling
                .as_ref()
                .and_then(|s| s.priority_class_name.clone()),
            // Replicas on different nodes where the cluster allows it.
            topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "kubernetes.io/hostname".to_owned(),
                when_unsatisfiable: "ScheduleAnyway".to_owned(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector(microservice)),
                    ..LabelSelector::default()
                }),
                ..TopologySpreadConstraint::default()
            }]),
            volumes: Some(volumes),
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        }),
    }
}

fn deployment(microservice: &Microservice, name: &str) -> Deployment {
    let spec = &microservice.spec;
    Deployment {
        metadata: child_meta(microservice, name.to_owned()),
        spec: Some(DeploymentSpec {
            // With an autoscaler the replica count is its to set; leaving the field out of
            // the applied object gives up ownership of it.
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector(microservice)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: pod_template(microservice, name),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The claim each replica of a StatefulSet gets, mounted at the volume's path.
const PERSISTENT_VOLUME: &str = "data";

/// Replicas that each keep their own volume: pods `<name>-0`, `<name>-1`, … each with the
/// claim `data-<name>-<n>`, kept when the pod moves or restarts.
fn stateful_set(
    microservice: &Microservice,
    name: &str,
    volume: &crate::crd::microservice::PersistentVolume,
) -> StatefulSet {
    let spec = &microservice.spec;
    StatefulSet {
        metadata: child_meta(microservice, name.to_owned()),
        spec: Some(StatefulSetSpec {
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            service_name: Some(name.to_owned()),
            // The replicas do not depend on each other: start and replace them together.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(selector(microservice)),
                ..LabelSelector::default()
            },
            template: pod_template(microservice, name),
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(PERSISTENT_VOLUME.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: volume.storage_class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(volume.size.clone()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                status: None,
            }]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

fn service(microservice: &Microservice, name: &str) -> Service {
    let spec = &microservice.spec;
    let mut ports = vec![ServicePort {
        name: Some("http".to_owned()),
        port: spec.http_port,
        target_port: Some(IntOrString::String("http".to_owned())),
        protocol: Some("TCP".to_owned()),
        app_protocol: Some("http".to_owned()),
        ..ServicePort::default()
    }];
    if let Some(grpc) = spec.grpc_port {
        ports.push(ServicePort {
            name: Some("grpc".to_owned()),
            port: grpc,
            target_port: Some(IntOrString::String("grpc".to_owned())),
            protocol: Some("TCP".to_owned()),
            app_protocol: Some("kubernetes.io/h2c".to_owned()),
            ..ServicePort::default()
        });
    }
    Service {
        metadata: child_meta(microservice, name.to_owned()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector(microservice)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn autoscaler(microservice: &Microservice, name: &str) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = microservice.spec.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: child_meta(microservice, name.to_owned()),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: if microservice.spec.persistent_volume.is_some() {
                    "StatefulSet"
                } else {
                    "Deployment"
                }
                .to_owned(),
                name: name.to_owned(),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(autoscaling.target_cpu_utilization),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        },
        status: None,
    })
}

/// A budget only where it can be met: with one replica, `maxUnavailable: 1` would be
/// meaningless and `minAvailable: 1` would block node drains for good.
fn disruption_budget(microservice: &Microservice, name: &str) -> Option<PodDisruptionBudget> {
    let spec = &microservice.spec;
    let least = spec
        .autoscaling
        .as_ref()
        .map_or(spec.replicas, |autoscaling| autoscaling.min_replicas);
    (least > 1).then(|| PodDisruptionBudget {
        metadata: child_meta(microservice, name.to_owned()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(microservice)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

/// The Gateway's namespace: its pods may reach every service's API (routes).
pub const GATEWAY_NAMESPACE: &str = "traefik";

/// Where Alloy runs (manifests/infrastructure/monitoring): the only reader of ops ports.
pub const MONITORING_NAMESPACE: &str = "monitoring";

/// Ingress only to the service's own ports: its API from the shop's other pods and the
/// Gateway's namespace, its ops port (probes come from the node) from monitoring only; a
/// service without an ops port is scraped on its API port.
/// Egress stays open: services reach databases, brokers and outside providers (Stripe,
/// SMTP) whose addresses the operator does not know.
fn network_policy(microservice: &Microservice, name: &str) -> NetworkPolicy {
    let spec = &microservice.spec;
    let tcp = |port: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    };
    let namespace = |namespace: &str| NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                namespace.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let mut api_ports = vec![tcp(spec.http_port)];
    api_ports.extend(spec.grpc_port.map(tcp));
    let mut from = vec![NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "app.kubernetes.io/part-of".to_owned(),
                "commerce".to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }];
    from.push(namespace(GATEWAY_NAMESPACE));
    let mut ingress = Vec::new();
    match spec.ops_port {
        Some(ops) => ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![namespace(MONITORING_NAMESPACE)]),
            ports: Some(vec![tcp(ops)]),
        }),
        None => from.push(namespace(MONITORING_NAMESPACE)),
    }
    ingress.insert(
        0,
        NetworkPolicyIngressRule {
            from: Some(from),
            ports: Some(api_ports),
        },
    );
    NetworkPolicy {
        metadata: child_meta(microservice, name.to_owned()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector(microservice)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    }
}

fn routes(microservice: &Microservice, name: &str) -> Vec<HttpRoute> {
    microservice
        .spec
        .routes
        .iter()
        .enumerate()
        .map(|(index, route)| {
            let route_name = if index == 0 {
                name.to_owned()
            } else {
                format!("{name}-{index}")
            };
            HttpRoute {
                metadata: child_meta(microservice, route_name),
                spec: HttpRouteSpec {
                    parent_refs: Some(vec![HttpRouteParentRefs {
                        group: Some("gateway.networking.k8s.io".to_owned()),
                        kind: Some("Gateway".to_owned()),
                        name: route.parent.name.clone(),
                        namespace: route.parent.namespace.clone(),
                        section_name: route.parent.section_name.clone(),
                        ..HttpRouteParentRefs::default()
                    }]),
                    hostnames: Some(route.hostnames.clone()),
                    rules: Some(vec![HttpRouteRules {
                        matches: Some(
                            route
                                .path_prefixes
                                .iter()
                                .map(|prefix| HttpRouteRulesMatches {
                                    path: Some(HttpRouteRulesMatchesPath {
                                        r#type: Some(HttpRouteRulesMatchesPathType::PathPrefix),
                                        value: Some(prefix.clone()),
                                    }),
                                    ..HttpRouteRulesMatches::default()
                                })
                                .collect(),
                        ),
                        backend_refs: Some(vec![HttpRouteRulesBackendRefs {
                            name: name.to_owned(),
                            port: Some(microservice.spec.http_port),
                            ..HttpRouteRulesBackendRefs::default()
                        }]),
                        ..HttpRouteRules::default()
                    }]),
                },
                status: None,
            }
        })
        .collect()
}
