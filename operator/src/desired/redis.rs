//! The Redis the operator runs for a shop whose `spec.redis.urls` is empty: one instance
//! as a StatefulSet (append-only persistence on its own volume), a Service, and a
//! NetworkPolicy that lets only the shop's pods in. The password and the server's
//! configuration file live in a Secret the controller generates once
//! (`controller::shop`), never in these objects.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use kube::ResourceExt;

use crate::crd::Shop;
use crate::crd::shop::SHOP_LABEL;

pub const REDIS_PORT: i32 = 6379;
/// The key of the generated password in the shop's Redis Secret.
pub const PASSWORD_KEY: &str = "password";
/// The key of the server's configuration file (with the password) in that Secret.
pub const CONFIG_KEY: &str = "redis.conf";
/// The official image runs as this user.
const REDIS_USER: i64 = 999;

/// The StatefulSet, Service, NetworkPolicy and Secret of a shop's provisioned Redis.
pub fn redis_name(shop: &str) -> String {
    format!("{shop}-redis")
}

/// What the shop's services connect to: the given URLs, or the provisioned Redis.
pub fn urls(shop: &Shop) -> Vec<String> {
    if shop.spec.redis.is_provisioned() {
        vec![format!(
            "redis://{}.{}.svc:{REDIS_PORT}",
            redis_name(&shop.name_any()),
            shop.metadata.namespace.clone().unwrap_or_default()
        )]
    } else {
        shop.spec.redis.urls.clone()
    }
}

/// The server's configuration: the password, append-only persistence on the volume.
pub fn server_config(password: &str) -> String {
    format!("port {REDIS_PORT}\nrequirepass {password}\ndir /data\nappendonly yes\n")
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisChildren {
    pub stateful_set: StatefulSet,
    pub service: Service,
    pub network_policy: NetworkPolicy,
}

/// The objects of the provisioned Redis, or nothing when the shop gives URLs. `meta` is the
/// shop's child metadata for them (name, namespace, labels, owner).
pub fn desired(shop: &Shop, meta: ObjectMeta) -> Option<RedisChildren> {
    if !shop.spec.redis.is_provisioned() {
        return None;
    }
    let settings = &shop.spec.redis.provisioned;
    let name = redis_name(&shop.name_any());
    let selector = BTreeMap::from([("app.kubernetes.io/instance".to_owned(), name.clone())]);
    let meta = || {
        let mut meta = meta.clone();
        let labels = meta.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(selector.clone());
        labels.insert("app.kubernetes.io/name".to_owned(), "redis".to_owned());
        meta
    };
    let tcp_probe = |period: i32| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("redis".to_owned()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    let resources = settings
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("50m".to_owned())),
                ("memory".to_owned(), Quantity("64Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("512Mi".to_owned()),
            )])),
            ..ResourceRequirements::default()
        });
    let container = Container {
        name: "redis".to_owned(),
        image: Some(settings.image.clone()),
        command: Some(vec![
            "redis-server".to_owned(),
            format!("/etc/redis/{CONFIG_KEY}"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("redis".to_owned()),
            container_port: REDIS_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(tcp_probe(5)),
        liveness_probe: Some(tcp_probe(10)),
        resources: Some(resources),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".to_owned(),
                mount_path: "/data".to_owned(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "config".to_owned(),
                mount_path: "/etc/redis".to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    let stateful_set = StatefulSet {
        metadata: meta(),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: meta().labels,
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(REDIS_USER),
                        run_as_group: Some(REDIS_USER),
                        fs_group: Some(REDIS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "config".to_owned(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(name.clone()),
                            default_mode: Some(0o440),
                            ..SecretVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: settings.storage_class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(settings.storage_size.clone()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    };
    let service = Service {
        metadata: meta(),
        spec: Some(ServiceSpec {
            selector: Some(selector.clone()),
            ports: Some(vec![ServicePort {
                name: Some("redis".to_owned()),
                port: REDIS_PORT,
                target_port: Some(IntOrString::String("redis".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    let network_policy = NetworkPolicy {
        metadata: meta(),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                // The shop's own pods, in this namespace.
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            SHOP_LABEL.to_owned(),
                            shop.name_any(),
                        )])),
                        ..LabelSelector::default()
                    }),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(REDIS_PORT)),
                    protocol: Some("TCP".to_owned()),
                    ..NetworkPolicyPort::default()
                }]),
            }]),
            ..NetworkPolicySpec::default()
        }),
    };
    Some(RedisChildren {
        stateful_set,
        service,
        network_policy,
    })
}
