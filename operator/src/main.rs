//! `commerce-operator`: runs the controllers, or prints the CRDs and what a Shop renders to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use commerce_operator::leader::LeaseSettings;
use commerce_operator::run::{self, Settings};

#[derive(Parser)]
#[command(
    name = "commerce-operator",
    version,
    about = "Runs commerce shops on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile Shops, Microservices, KafkaTopics and SagaPolicies.
    Run {
        /// Watch one namespace only (default: all).
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
        metrics_addr: SocketAddr,
        /// Namespace of the leader-election Lease; leader election is off without it.
        #[arg(long, env = "LEASE_NAMESPACE")]
        lease_namespace: Option<String>,
        #[arg(long, default_value = "commerce-operator")]
        lease_name: String,
        #[arg(long, default_value = "15s", value_parser = humantime_serde::re::humantime::parse_duration)]
        lease_duration: Duration,
        #[arg(long, default_value = "30s", value_parser = humantime_serde::re::humantime::parse_duration)]
        kafka_timeout: Duration,
        /// OTLP/gRPC collector for traces, e.g. http://alloy.monitoring:4317.
        #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
        otlp_endpoint: Option<String>,
    },
    /// Print the CustomResourceDefinitions (or write one file per CRD into a directory).
    Crds {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print every object a Shop (YAML file) becomes, as the controllers would apply them.
    Render { shop: PathBuf },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds { out: None } => {
            for (_, yaml) in commerce_operator::crd::rendered() {
                print!("---\n{yaml}");
            }
        }
        Command::Crds { out: Some(dir) } => {
            std::fs::create_dir_all(&dir)?;
            for (file, yaml) in commerce_operator::crd::rendered() {
                std::fs::write(dir.join(&file), yaml).with_context(|| format!("writing {file}"))?;
            }
        }
        Command::Render { shop } => {
            let text = std::fs::read_to_string(&shop)
                .with_context(|| format!("reading {}", shop.display()))?;
            let shop: commerce_operator::crd::Shop = yaml_serde::from_str(&text)
                .with_context(|| format!("{} is not a Shop", shop.display()))?;
            for object in commerce_operator::render::everything(&shop)? {
                print!("---\n{}", yaml_serde::to_string(&object)?);
            }
        }
        Command::Run {
            namespace,
            metrics_addr,
            lease_namespace,
            lease_name,
            lease_duration,
            kafka_timeout,
            otlp_endpoint,
        } => {
            let traces = commerce_operator::telemetry::init(otlp_endpoint.as_deref())?;
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API")?;
            let identity = std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("commerce-operator-{}", std::process::id()));
            let settings = Settings {
                namespace,
                metrics_addr,
                lease: lease_namespace.map(|namespace| LeaseSettings {
                    namespace,
                    name: lease_name,
                    identity,
                    duration: lease_duration,
                }),
                kafka_timeout,
            };
            let outcome = run::run(client, settings).await;
            if let Err(error) = tokio::task::spawn_blocking(move || traces.shutdown()).await {
                eprintln!("telemetry shutdown: {error}");
            }
            outcome?;
        }
    }
    Ok(())
}
