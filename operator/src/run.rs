//! The running operator: metrics and probes over HTTP, leader election, and the four
//! controllers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use kube::{Api, Client};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::controller::{self, Context};
use crate::crd::{KafkaTopic, Microservice, SagaPolicy, Shop};
use crate::kafka::{RdKafkaAdmin, TopicAdmin};
use crate::leader::{LeaderLease, LeaseSettings};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    pub metrics_addr: SocketAddr,
    /// Leader election; `None` runs without it (a single replica, or tests).
    pub lease: Option<LeaseSettings>,
    pub kafka_timeout: Duration,
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz`.
pub async fn serve_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics and probes");
    axum::serve(listener, app).await?;
    Ok(())
}

/// Runs the controllers until a shutdown signal (or loss of leadership).
pub async fn run(client: Client, settings: Settings) -> anyhow::Result<()> {
    let metrics = tokio::spawn(serve_metrics(settings.metrics_addr));
    let lease = settings
        .lease
        .clone()
        .map(|lease| LeaderLease::new(client.clone(), lease));
    if let Some(lease) = &lease {
        lease.acquire().await;
    }
    let topics: Arc<dyn TopicAdmin> = Arc::new(RdKafkaAdmin::new(settings.kafka_timeout));
    let context = Arc::new(Context::new(client.clone(), topics));
    let controllers = controllers(client, settings.namespace.clone(), context);
    tokio::select! {
        () = controllers => Ok(()),
        () = async {
            match &lease {
                Some(lease) => lease.hold().await,
                None => std::future::pending().await,
            }
        } => anyhow::bail!("lost leadership; exiting so a new term starts clean"),
        result = metrics => anyhow::bail!("metrics server stopped: {result:?}"),
    }
}

/// The four controllers, until a shutdown signal.
pub async fn controllers(client: Client, namespace: Option<String>, context: Arc<Context>) {
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=commerce-operator");
    let shops = Controller::new(api::<Shop>(&client, &namespace), watcher::Config::default())
        .owns(api::<Microservice>(&client, &namespace), owned.clone())
        .owns(api::<KafkaTopic>(&client, &namespace), owned.clone())
        .owns(api::<SagaPolicy>(&client, &namespace), owned.clone())
        .owns(api::<StatefulSet>(&client, &namespace), owned.clone())
        .shutdown_on_signal()
        .run(
            controller::shop::reconcile,
            controller::shop::error_policy,
            context.clone(),
        )
        .for_each(|result| async move { log("shop", result) });
    let microservices = Controller::new(
        api::<Microservice>(&client, &namespace),
        watcher::Config::default(),
    )
    .owns(api::<Deployment>(&client, &namespace), owned.clone())
    .owns(api::<StatefulSet>(&client, &namespace), owned.clone())
    .shutdown_on_signal()
    .run(
        controller::microservice::reconcile,
        controller::microservice::error_policy,
        context.clone(),
    )
    .for_each(|result| async move { log("microservice", result) });
    let topics = Controller::new(
        api::<KafkaTopic>(&client, &namespace),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(
        controller::kafka_topic::reconcile,
        controller::kafka_topic::error_policy,
        context.clone(),
    )
    .for_each(|result| async move { log("kafkatopic", result) });
    let policies = Controller::new(
        api::<SagaPolicy>(&client, &namespace),
        watcher::Config::default(),
    )
    .owns(api::<ConfigMap>(&client, &namespace), owned)
    .shutdown_on_signal()
    .run(
        controller::saga_policy::reconcile,
        controller::saga_policy::error_policy,
        context,
    )
    .for_each(|result| async move { log("sagapolicy", result) });
    futures::join!(shops, microservices, topics, policies);
}

fn log<T: std::fmt::Debug, E: std::fmt::Display>(controller: &str, result: Result<T, E>) {
    match result {
        Ok(object) => tracing::debug!(controller, ?object, "reconciled"),
        Err(error) => tracing::debug!(controller, %error, "reconcile did not finish"),
    }
}
