//! `commerce`: one binary for every service. `--target` picks which services this process
//! runs: `all` on a laptop, one name per Deployment in Kubernetes.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use commerce_redis::TaskQueue;
use commerce_runtime::service::{self, ServiceDefinition};
use commerce_runtime::{Config, telemetry};
use tokio_util::sync::CancellationToken;

/// The module table: every service this binary can run.
const SERVICES: &[ServiceDefinition] = &[
    commerce_auth::DEFINITION,
    commerce_product::DEFINITION,
    commerce_cart::DEFINITION,
    commerce_fulfillment::DEFINITION,
    commerce_payment::DEFINITION,
    commerce_order::DEFINITION,
    commerce_order::WORKER_DEFINITION,
    commerce_notification::DEFINITION,
    commerce_chat::DEFINITION,
    commerce_search::DEFINITION,
    commerce_gateway::DEFINITION,
];

/// Services of the platform that are not in this build yet (ARCHITECTURE section 3).
const PLANNED: &[(&str, &str)] = &[(
    "graphql",
    "the federated GraphQL gateway: Hive Gateway over the supergraph in graphql/ (`make run` starts it)",
)];

fn services_help() -> String {
    let mut help = String::from("Services (use with --target, comma-separated, or `all`):\n");
    for definition in SERVICES {
        help.push_str(&format!(
            "  {:<13} {}\n",
            definition.name, definition.summary
        ));
    }
    for (name, summary) in PLANNED {
        help.push_str(&format!(
            "  {name:<13} {summary} (planned; not in this build)\n"
        ));
    }
    help
}

#[derive(Parser)]
#[command(name = "commerce", version, about = "The commerce platform", after_help = services_help())]
struct Cli {
    /// Configuration file; environment variables COMMERCE_<SECTION>__<KEY> override it.
    #[arg(long, global = true, env = "COMMERCE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run services until SIGTERM or Ctrl-C, then drain and exit.
    #[command(after_help = services_help())]
    Serve {
        #[arg(long, short, default_value = "all", value_delimiter = ',')]
        target: Vec<String>,
    },
    /// Apply the database migrations of the targeted services, then exit.
    #[command(after_help = services_help())]
    Migrate {
        #[arg(long, short, default_value = "all", value_delimiter = ',')]
        target: Vec<String>,
    },
    /// Load the demo catalogue into an empty shop.
    Seed,
    /// Rebuild the search index from the product service's catalogue. Stop the search
    /// service first; the new index replaces the one at `services.search.index_dir`. (A
    /// search service that starts with an empty or stale index does this by itself.)
    SearchRebuild,
    /// List the services.
    Services,
    /// Drive the shop through its gateway with virtual shoppers and staff, and report
    /// throughput, latency percentiles and failures (README: "Load, faults and invariants").
    Simulate(Box<commerce_simulator::SimulateArgs>),
    /// The delayed-task queues (order: payment reminders and expiries; cart: abandonment
    /// checks): how many tasks are scheduled, retrying, running and dead; the dead ones
    /// listed, run again or dropped.
    Tasks {
        #[command(subcommand)]
        action: Option<TasksAction>,
    },
    /// Check the shop's invariants from its databases and Kafka: no oversell, orders final
    /// or waiting, money following orders, outboxes published, consumers caught up. Names
    /// the ids that break one and exits non-zero.
    Invariants {
        /// Keep checking this long for the shop to settle before giving the verdict.
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        settle: std::time::Duration,
    },
}

#[derive(Subcommand)]
enum TasksAction {
    /// Counts per queue and state (what `commerce tasks` alone shows).
    List,
    /// A queue's dead tasks with their last error.
    Dead { queue: QueueName },
    /// Run a dead task again now, from its first attempt.
    Retry { queue: QueueName, id: String },
    /// Forget a dead task.
    Drop { queue: QueueName, id: String },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QueueName {
    Order,
    Cart,
}

/// The queues as the services name them under this configuration.
async fn task_queues(config: &Config) -> anyhow::Result<Vec<(QueueName, TaskQueue)>> {
    let redis = commerce_redis::RedisClient::connect(&config.app.redis).await?;
    let order: commerce_order::settings::OrderSettings = config.service_section("order")?;
    let cart: commerce_cart::settings::CartSettings = config.service_section("cart")?;
    Ok(vec![
        (
            QueueName::Order,
            TaskQueue::new(redis.clone(), &order.task_queue()),
        ),
        (QueueName::Cart, TaskQueue::new(redis, &cart.task_queue())),
    ])
}

async fn tasks(config: &Config, action: TasksAction) -> anyhow::Result<()> {
    let queues = task_queues(config).await?;
    let queue = |name: QueueName| {
        queues
            .iter()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, queue)| queue)
            .expect("every queue name has a queue")
    };
    match action {
        TasksAction::List => {
            println!(
                "{:<24} {:>10} {:>10} {:>10} {:>10}",
                "QUEUE", "SCHEDULED", "RETRYING", "RUNNING", "DEAD"
            );
            for (_, queue) in &queues {
                let counts = queue.counts().await?;
                println!(
                    "{:<24} {:>10} {:>10} {:>10} {:>10}",
                    queue.name(),
                    counts.scheduled,
                    counts.retrying,
                    counts.running,
                    counts.dead
                );
            }
        }
        TasksAction::Dead { queue: name } => {
            for dead in queue(name).dead().await? {
                println!(
                    "{}\t{}\tattempt {}/{}\t{}",
                    dead.task.id,
                    dead.task.kind,
                    dead.task.attempt,
                    dead.task.max_attempts,
                    dead.error
                );
            }
        }
        TasksAction::Retry { queue: name, id } => match queue(name).retry_dead(&id).await? {
            commerce_redis::Revived::Scheduled => println!("{id}: scheduled to run now"),
            commerce_redis::Revived::NotDead => anyhow::bail!("no dead task {id}"),
            commerce_redis::Revived::IdTaken => {
                anyhow::bail!("a live task holds the id {id}; drop the dead one or wait")
            }
        },
        TasksAction::Drop { queue: name, id } => {
            anyhow::ensure!(queue(name).drop_dead(&id).await?, "no dead task {id}");
            println!("{id}: dropped");
        }
    }
    Ok(())
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let default = PathBuf::from("config/commerce.toml");
    let path = path.or_else(|| default.exists().then(|| default.clone()));
    let from_environment_only = path.is_none();
    Config::load(path.as_deref()).map_err(|error| {
        if from_environment_only {
            // Containers configure through COMMERCE_* alone; elsewhere a missing key most
            // likely means the file was not found.
            let here = std::env::current_dir().unwrap_or_default();
            anyhow::anyhow!(
                "{error} (no configuration file was read: {} is not under {}; run from the \
                 repository, or pass --config or COMMERCE_CONFIG)",
                default.display(),
                here.display()
            )
        } else {
            error.into()
        }
    })
}

fn resolve<'a>(targets: &[String]) -> anyhow::Result<Vec<&'a ServiceDefinition>> {
    let resolved = service::resolve_targets(SERVICES, targets);
    if let Err(service::RuntimeError::UnknownService(name, _)) = &resolved
        && let Some((_, summary)) = PLANNED.iter().find(|(planned, _)| planned == name)
    {
        anyhow::bail!("service `{name}` ({summary}) is planned but not in this build");
    }
    Ok(resolved?)
}

/// Demo data for a local shop: the catalogue and one account per role. The passwords are
/// public (README); never seed a shop that faces the internet.
const DEMO_ACCOUNTS: &[(&str, &str, &str, &str, commerce_access::Role)] = &[
    (
        "admin@commerce.local",
        "admin-demo-password-1",
        "Ada",
        "Admin",
        commerce_access::Role::Admin,
    ),
    (
        "support@commerce.local",
        "support-demo-password-1",
        "Sam",
        "Support",
        commerce_access::Role::Support,
    ),
    (
        "customer@commerce.local",
        "customer-demo-password-1",
        "Cam",
        "Customer",
        commerce_access::Role::Customer,
    ),
];

async fn seed(config: &Config) -> anyhow::Result<()> {
    let redis = commerce_redis::RedisClient::connect(&config.app.redis).await?;
    let pool = service::connect_and_migrate(config, &commerce_product::DEFINITION)
        .await?
        .context("the product service has no database configured")?;
    let product_settings: commerce_product::settings::ProductSettings =
        config.service_section("product")?;
    let cache = commerce_product::cache::ProductCache::new(
        redis.clone(),
        &product_settings.redis_prefix,
        product_settings.cache_ttl,
    );
    let created = commerce_product::service::ProductService::new(pool, cache)
        .seed(commerce_product::demo_catalogue())
        .await?;
    if created == 0 {
        println!("catalogue already has products; left as it is");
    } else {
        println!("seeded {created} products");
    }

    let pool = service::connect_and_migrate(config, &commerce_auth::DEFINITION)
        .await?
        .context("the auth service has no database configured")?;
    let settings: commerce_auth::settings::AuthSettings = config.service_section("auth")?;
    let keys = commerce_auth::keys::KeyRing::load(&settings.keys)?;
    let auth = commerce_auth::service::AuthService::new(pool, redis, keys, settings)?;
    for (email, password, first, last, role) in DEMO_ACCOUNTS {
        if auth
            .ensure_account(email, password, first, last, *role)
            .await?
        {
            println!("created {} account {email}", role.as_str());
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("commerce: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Services => {
            print!("{}", services_help());
            Ok(())
        }
        Command::Serve { target } => {
            let definitions = resolve(&target)?;
            let config = Arc::new(load_config(cli.config)?);
            let names: Vec<_> = definitions.iter().map(|d| d.name).collect();
            let guard = telemetry::init(
                &config.app.telemetry,
                &format!("commerce-{}", names.join("-")),
            )?;
            let shutdown = CancellationToken::new();
            tokio::spawn(service::cancel_on_signal(shutdown.clone()));
            let outcome = async {
                let running = service::start(config, &definitions, shutdown.clone()).await?;
                tracing::info!(services = ?names, "ready to serve");
                running.wait().await
            }
            .await;
            guard.shutdown().await;
            Ok(outcome?)
        }
        Command::Migrate { target } => {
            let definitions = resolve(&target)?;
            let config = load_config(cli.config)?;
            // Edges (the gateway) own no database.
            for definition in definitions
                .into_iter()
                .filter(|definition| definition.migrator.is_some() || definition.messaging)
            {
                service::connect_and_migrate(&config, definition).await?;
                println!("migrated {}", definition.name);
            }
            Ok(())
        }
        Command::SearchRebuild => {
            use std::sync::Arc;
            let config = load_config(cli.config)?;
            let settings: commerce_search::settings::SearchSettings =
                config.service_section("search")?;
            let (Some(peers), Some(secret)) = (&settings.peers, &settings.client_secret) else {
                anyhow::bail!(
                    "services.search.peers and services.search.client_secret must be set: the index is rebuilt from the product service"
                );
            };
            let catalogue = commerce_search::peers::CatalogueSource::new(
                &peers.product_grpc,
                &peers.auth_http,
                secret.expose(),
            )?;
            let target = settings.index_dir.with_extension("rebuild");
            if target.exists() {
                std::fs::remove_dir_all(&target)?;
            }
            let index: Arc<dyn commerce_search::repository::SearchIndex> =
                Arc::new(commerce_search::repository::TantivyIndex::open(&target)?);
            let products = commerce_search::service::rebuild_from_catalogue(
                &index,
                catalogue.products().await?,
            )
            .await?;
            drop(index);
            let previous = settings.index_dir.with_extension("previous");
            if previous.exists() {
                std::fs::remove_dir_all(&previous)?;
            }
            if settings.index_dir.exists() {
                std::fs::rename(&settings.index_dir, &previous)?;
            }
            std::fs::rename(&target, &settings.index_dir)?;
            println!(
                "rebuilt the search index with {products} products into {} (the old one is at {})",
                settings.index_dir.display(),
                previous.display()
            );
            Ok(())
        }
        Command::Simulate(args) => {
            let config = if args.check {
                Some(load_config(cli.config)?)
            } else {
                None
            };
            let (report_path, chart_path) = (args.report.clone(), args.chart.clone());
            let report = commerce_simulator::simulate(*args, config.as_ref()).await?;
            print!("{}", report.table());
            println!(
                "report: {}  chart: {}",
                report_path.display(),
                chart_path.display()
            );
            let broken = report.invariants.iter().filter(|f| !f.holds()).count();
            anyhow::ensure!(broken == 0, "{broken} invariant(s) broken");
            Ok(())
        }
        Command::Invariants { settle } => {
            let config = load_config(cli.config)?;
            let state = commerce_simulator::invariants::ShopState::connect(&config).await?;
            let findings = state.settle(None, settle).await?;
            for finding in &findings {
                println!("{finding}");
            }
            let broken = findings.iter().filter(|f| !f.holds()).count();
            anyhow::ensure!(broken == 0, "{broken} invariant(s) broken");
            Ok(())
        }
        Command::Tasks { action } => {
            let config = load_config(cli.config)?;
            tasks(&config, action.unwrap_or(TasksAction::List)).await
        }
        Command::Seed => {
            let config = load_config(cli.config)?;
            seed(&config).await
        }
    }
}
