//! The module table and the process that runs any subset of it.
//!
//! Each service is a [`ServiceDefinition`]: a name, its migrations and a `start` function
//! that turns a [`ServiceContext`] into [`ServiceParts`] (HTTP routes, gRPC routes,
//! background work, readiness checks). [`run`] gives each service its own HTTP and gRPC
//! listeners, so services still meet only over the network even inside one process.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures::future::BoxFuture;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tower_http::classify::{GrpcCode, GrpcErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;

use crate::config::{Config, ConfigError, ServiceEndpoints};
use crate::health::{self, ReadinessCheck};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A long-running piece of a service (consumer, relay, worker). It must return once the
/// context's shutdown token is cancelled.
pub type BackgroundTask = BoxFuture<'static, Result<(), BoxError>>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("unknown service `{0}`; known services: {1}")]
    UnknownService(String, String),
    #[error("service `{0}` needs `services.{0}.database` to be configured")]
    NoDatabase(&'static str),
    #[error("database of `{service}`: {source}")]
    Database {
        service: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrations of `{service}`: {source}")]
    Migrate {
        service: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("`{service}` cannot listen on {addr}: {source}")]
    Bind {
        service: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("`{service}` failed to start: {source}")]
    Start {
        service: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("`{service}` stopped with an error: {source}")]
    Stopped {
        service: &'static str,
        #[source]
        source: BoxError,
    },
}

/// One entry of the module table.
pub struct ServiceDefinition {
    pub name: &'static str,
    pub summary: &'static str,
    /// The service's own migrations, from `migrations/<name>/`.
    pub migrator: Option<&'static Migrator>,
    /// Whether the service publishes or consumes events (and so needs the outbox/inbox tables).
    pub messaging: bool,
    pub start: fn(ServiceContext) -> BoxFuture<'static, Result<ServiceParts, BoxError>>,
}

/// What a service gets to build itself from.
#[derive(Clone)]
pub struct ServiceContext {
    pub name: &'static str,
    pub config: Arc<Config>,
    pub endpoints: ServiceEndpoints,
    pub shutdown: CancellationToken,
    pub database: Option<PgPool>,
    /// The process's one Kafka producer, shared by every service it runs (when one of them
    /// uses messaging). Each librdkafka client costs a main thread, a thread per broker and
    /// a polling thread whose 100 ms poll spins through its last millisecond (the idle
    /// profile in README, "Load, faults and invariants"): one client per process, not one
    /// per relay and dead-letter queue.
    pub producer: Option<commerce_messaging::SharedProducer>,
}

impl ServiceContext {
    /// The service's own typed section, `services.<name>`.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.config.service_section(self.name)
    }

    /// The service's database pool (already migrated).
    pub fn database(&self) -> Result<PgPool, RuntimeError> {
        self.database
            .clone()
            .ok_or(RuntimeError::NoDatabase(self.name))
    }

    pub async fn redis(&self) -> Result<commerce_redis::RedisClient, commerce_redis::RedisError> {
        commerce_redis::RedisClient::connect(&self.config.app.redis).await
    }

    /// The process's shared producer.
    fn shared_producer(&self) -> Result<commerce_messaging::SharedProducer, BoxError> {
        self.producer.clone().ok_or_else(|| {
            format!(
                "`{}` uses messaging but the process has no producer",
                self.name
            )
            .into()
        })
    }

    /// A broker reachability probe over the process's shared producer.
    pub fn broker_probe(&self) -> Result<commerce_messaging::BrokerProbe, BoxError> {
        Ok(commerce_messaging::BrokerProbe::sharing(
            &self.shared_producer()?,
        ))
    }

    /// The service's outbox relay as a background task: it creates `topics` (retrying until
    /// the broker answers, so a late broker is no start-up failure), then publishes until
    /// shutdown.
    pub fn outbox_relay(
        &self,
        topics: &[commerce_messaging::TopicSpec],
    ) -> Result<BackgroundTask, BoxError> {
        let kafka = self.config.app.kafka.clone();
        let relay = commerce_messaging::OutboxRelay::sharing(
            self.shared_producer()?,
            self.name,
            self.database()?,
            &kafka,
            commerce_messaging::RelaySettings::default(),
        );
        let (topics, shutdown) = (topics.to_vec(), self.shutdown.clone());
        Ok(Box::pin(async move {
            commerce_messaging::ensure_topics_with_retry(&kafka, &topics, &shutdown).await;
            relay.run(shutdown).await.map_err(BoxError::from)
        }))
    }

    /// The service's inbox consumer as a background task: it creates the subscribed topics
    /// (`partitions` each) and the dead-letter topic, then consumes until shutdown. Its
    /// readiness check fails while the consumer is stuck outside its group.
    pub fn inbox_consumer(
        &self,
        settings: commerce_messaging::ConsumerSettings,
        partitions: i32,
        handler: Arc<dyn commerce_messaging::EventHandler>,
    ) -> Result<InboxTask, BoxError> {
        let kafka = self.config.app.kafka.clone();
        let pool = self.database()?;
        let dead_letters = self.shared_producer()?;
        let shutdown = self.shutdown.clone();
        let topics: Vec<commerce_messaging::TopicSpec> = settings
            .topics
            .iter()
            .map(|topic| commerce_messaging::TopicSpec::new(topic.clone(), partitions))
            .chain([commerce_messaging::TopicSpec::new(
                settings.dead_letter_topic.clone(),
                1,
            )])
            .collect();
        let consumer_health = Arc::new(commerce_messaging::ConsumerHealth::new(
            settings.group.clone(),
        ));
        let reporting_to = consumer_health.clone();
        let task = Box::pin(async move {
            commerce_messaging::ensure_topics_with_retry(&kafka, &topics, &shutdown).await;
            commerce_messaging::InboxConsumer::reporting_to(
                &kafka,
                dead_letters,
                pool,
                settings,
                handler,
                reporting_to,
            )?
            .run(shutdown)
            .await
            .map_err(BoxError::from)
        });
        Ok(InboxTask {
            task,
            readiness: Arc::new(health::ConsumerCheck(consumer_health)),
        })
    }
}

/// A service's inbox consumer: the task that consumes, and the check that says whether it
/// is a working member of its group.
pub struct InboxTask {
    pub task: BackgroundTask,
    pub readiness: Arc<dyn ReadinessCheck>,
}

/// What a started service hands to the runtime.
#[derive(Default)]
pub struct ServiceParts {
    pub http: Router,
    pub grpc: Option<tonic::service::Routes>,
    pub background: Vec<BackgroundTask>,
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
}

/// Resolves `--target` values (`all`, or names separated by commas) against the table.
pub fn resolve_targets<'a>(
    table: &'a [ServiceDefinition],
    targets: &[String],
) -> Result<Vec<&'a ServiceDefinition>, RuntimeError> {
    let mut wanted = BTreeSet::new();
    for target in targets.iter().flat_map(|t| t.split(',')).map(str::trim) {
        if target.is_empty() {
            continue;
        }
        if target == "all" {
            wanted.extend(table.iter().map(|definition| definition.name));
            continue;
        }
        let definition = table
            .iter()
            .find(|definition| definition.name == target)
            .ok_or_else(|| {
                let known: Vec<_> = table.iter().map(|definition| definition.name).collect();
                RuntimeError::UnknownService(target.to_owned(), known.join(", "))
            })?;
        wanted.insert(definition.name);
    }
    Ok(table
        .iter()
        .filter(|definition| wanted.contains(definition.name))
        .collect())
}

/// Connects to a service's database and applies its migrations.
pub async fn connect_and_migrate(
    config: &Config,
    definition: &ServiceDefinition,
) -> Result<Option<PgPool>, RuntimeError> {
    let endpoints = config.endpoints(definition.name)?;
    let Some(database) = endpoints.database else {
        return match definition.migrator {
            Some(_) => Err(RuntimeError::NoDatabase(definition.name)),
            None => Ok(None),
        };
    };
    let pool = PgPoolOptions::new()
        .max_connections(database.max_connections)
        .acquire_timeout(database.acquire_timeout)
        .connect(&database.url)
        .await
        .map_err(|source| RuntimeError::Database {
            service: definition.name,
            source,
        })?;
    let shared = definition
        .messaging
        .then_some(&commerce_messaging::MIGRATOR);
    for migrator in shared.into_iter().chain(definition.migrator) {
        // Two migration sets share one history table; each ignores the other's versions.
        let migrator = Migrator {
            migrations: migrator.migrations.clone(),
            ignore_missing: true,
            ..Migrator::DEFAULT
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| RuntimeError::Migrate {
                service: definition.name,
                source,
            })?;
    }
    Ok(Some(pool))
}

/// A running set of services.
pub struct Running {
    pub http_addrs: Vec<(&'static str, SocketAddr)>,
    pub grpc_addrs: Vec<(&'static str, SocketAddr)>,
    /// The services that serve `/healthz`, `/readyz` and `/metrics` apart (`ops_addr`).
    pub ops_addrs: Vec<(&'static str, SocketAddr)>,
    shutdown: CancellationToken,
    tasks: JoinSet<Result<(), RuntimeError>>,
    /// What each task is, so a drain that runs out of time says what it waited for.
    task_names: Vec<(String, tokio::task::AbortHandle)>,
    grace: Duration,
}

impl Running {
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    fn spawn(
        &mut self,
        name: String,
        task: impl Future<Output = Result<(), RuntimeError>> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.task_names.push((name, handle));
    }

    /// Waits until the token is cancelled (by a signal or a caller), then drains: servers
    /// finish in-flight requests and background tasks return, within the grace period.
    pub async fn wait(mut self) -> Result<(), RuntimeError> {
        let mut first_error = None;
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            Some(joined) = self.tasks.join_next() => {
                // A server or task ended on its own: that is a failure; stop the rest.
                if let Ok(Err(error)) = joined {
                    tracing::error!(%error, "service part failed; shutting down");
                    first_error = Some(error);
                }
                self.shutdown.cancel();
            }
        }
        tracing::info!(grace = ?self.grace, "draining");
        let drained = tokio::time::timeout(self.grace, async {
            while let Some(joined) = self.tasks.join_next().await {
                if let Ok(Err(error)) = joined {
                    tracing::error!(%error, "error while draining");
                    first_error.get_or_insert(error);
                }
            }
        })
        .await;
        if drained.is_err() {
            let unfinished: Vec<&str> = self
                .task_names
                .iter()
                .filter(|(_, handle)| !handle.is_finished())
                .map(|(name, _)| name.as_str())
                .collect();
            tracing::warn!(?unfinished, "grace period over; aborting what is left");
            self.tasks.abort_all();
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Starts the given services. Every one connects, migrates, builds its parts and binds its
/// listeners before this returns, so a bad address or an unreachable database fails fast.
pub async fn start(
    config: Arc<Config>,
    definitions: &[&ServiceDefinition],
    shutdown: CancellationToken,
) -> Result<Running, RuntimeError> {
    let mut running = Running {
        http_addrs: Vec::new(),
        grpc_addrs: Vec::new(),
        ops_addrs: Vec::new(),
        shutdown: shutdown.clone(),
        tasks: JoinSet::new(),
        task_names: Vec::new(),
        grace: config.app.shutdown_grace,
    };
    let producer = if definitions.iter().any(|definition| definition.messaging) {
        Some(
            config
                .app
                .kafka
                .producer()
                .map_err(|source| RuntimeError::Start {
                    service: "kafka producer",
                    source: source.into(),
                })?,
        )
    } else {
        None
    };
    for definition in definitions {
        let endpoints = config.endpoints(definition.name)?;
        let database = connect_and_migrate(&config, definition).await?;
        let context = ServiceContext {
            name: definition.name,
            config: config.clone(),
            endpoints: endpoints.clone(),
            shutdown: shutdown.clone(),
            database: database.clone(),
            producer: producer.clone(),
        };
        let mut parts =
            (definition.start)(context)
                .await
                .map_err(|source| RuntimeError::Start {
                    service: definition.name,
                    source,
                })?;
        if let Some(pool) = database {
            parts
                .readiness
                .insert(0, Arc::new(health::PostgresCheck(pool)));
        }
        let checks = Arc::new(std::mem::take(&mut parts.readiness));
        spawn_http(
            &mut running,
            definition.name,
            &endpoints,
            parts.http,
            checks.clone(),
        )
        .await?;
        match (endpoints.grpc_addr, parts.grpc) {
            (Some(addr), routes) => {
                spawn_grpc(&mut running, definition.name, addr, routes, checks).await?
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    format!("services.{}.grpc_addr", definition.name),
                    "is required but missing: this service serves gRPC",
                )
                .into());
            }
            (None, None) => {}
        }
        for (index, task) in parts.background.into_iter().enumerate() {
            let service = definition.name;
            running.spawn(format!("{service} background task {index}"), async move {
                task.await
                    .map_err(|source| RuntimeError::Stopped { service, source })
            });
        }
        tracing::info!(service = definition.name, "service started");
    }
    Ok(running)
}

/// The service's HTTP listener, and its operational endpoints (`/healthz`, `/readyz`,
/// `/metrics`) on `ops_addr` when it is set: a port the public edge never routes, so
/// probes, scrapes and dependency errors stay inside. Without it they share `http_addr`.
async fn spawn_http(
    running: &mut Running,
    service: &'static str,
    endpoints: &ServiceEndpoints,
    business: Router,
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
) -> Result<(), RuntimeError> {
    let operational = crate::http::operational_router(service, checks);
    let business = match endpoints.ops_addr {
        Some(ops_addr) => {
            let addr = spawn_server(running, service, "operational", ops_addr, operational).await?;
            running.ops_addrs.push((service, addr));
            business
        }
        None => business.merge(operational),
    };
    let router = crate::http::service_router(service, business);
    let addr = spawn_server(running, service, "HTTP", endpoints.http_addr, router).await?;
    running.http_addrs.push((service, addr));
    Ok(())
}

async fn spawn_server(
    running: &mut Running,
    service: &'static str,
    what: &'static str,
    configured: SocketAddr,
    router: Router,
) -> Result<SocketAddr, RuntimeError> {
    let bind_failed = |source| RuntimeError::Bind {
        service,
        addr: configured,
        source,
    };
    let listener = tokio::net::TcpListener::bind(configured)
        .await
        .map_err(bind_failed)?;
    let addr = listener.local_addr().map_err(bind_failed)?;
    let shutdown = running.shutdown.clone();
    running.spawn(format!("{service} {what} server"), async move {
        tracing::info!(service, %addr, "{what} listening");
        // Peer addresses reach handlers as `ConnectInfo<SocketAddr>` (per-client rate limits).
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| RuntimeError::Stopped {
            service,
            source: Box::new(source),
        })
    });
    Ok(addr)
}

async fn spawn_grpc(
    running: &mut Running,
    service: &'static str,
    configured: SocketAddr,
    routes: Option<tonic::service::Routes>,
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
) -> Result<(), RuntimeError> {
    let listener = tokio::net::TcpListener::bind(configured)
        .await
        .map_err(|source| RuntimeError::Bind {
            service,
            addr: configured,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RuntimeError::Bind {
        service,
        addr: configured,
        source,
    })?;
    running.grpc_addrs.push((service, addr));
    let (reporter, health_service) = tonic_health::server::health_reporter();
    // The gRPC health status follows the same checks as /readyz.
    let shutdown = running.shutdown.clone();
    running.spawn(format!("{service} gRPC health"), async move {
        loop {
            let status = if health::evaluate(&checks).await.ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(service, status).await;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    reporter.set_service_status("", ServingStatus::NotServing).await;
                    return Ok(());
                }
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    });
    let routes = routes.unwrap_or_default().add_service(health_service);
    let classifier = grpc_failures();
    let trace = TraceLayer::new(SharedClassifier::new(classifier)).make_span_with(
        move |request: &http::Request<_>| {
            let span = tracing::info_span!(
                "grpc.request",
                otel.name = %request.uri().path(),
                otel.kind = "server",
                service,
                rpc.system = "grpc",
                rpc.method = %request.uri().path(),
                trace_id = tracing::field::Empty,
            );
            crate::telemetry::set_parent_from_headers(&span, request.headers());
            span
        },
    );
    let incoming = tokio_stream_from(listener);
    let shutdown = running.shutdown.clone();
    running.spawn(format!("{service} gRPC server"), async move {
        tracing::info!(service, %addr, "gRPC listening");
        tonic::transport::Server::builder()
            .layer(trace)
            .layer(crate::grpc_metrics::GrpcMetricsLayer::new(service))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
            .map_err(|source| RuntimeError::Stopped {
                service,
                source: Box::new(source),
            })
    });
    Ok(())
}

/// Like HTTP 4xx, codes that answer a caller's mistake are outcomes, not failures: only the
/// server-side codes (Unknown, DeadlineExceeded, Unimplemented, Internal, Unavailable,
/// DataLoss) are logged as errors.
fn grpc_failures() -> GrpcErrorsAsFailures {
    [
        GrpcCode::Cancelled,
        GrpcCode::InvalidArgument,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unauthenticated,
    ]
    .into_iter()
    .fold(
        GrpcErrorsAsFailures::new(),
        GrpcErrorsAsFailures::with_success,
    )
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    })
}

/// Resolves on SIGTERM or Ctrl-C and cancels `token`.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
    token.cancel();
}

#[cfg(test)]
mod tests {
    use tower_http::classify::{ClassifiedResponse, ClassifyResponse};

    use super::*;

    fn is_failure(code: i32) -> bool {
        let response = http::Response::builder()
            .header("grpc-status", code)
            .body(())
            .unwrap();
        match grpc_failures().classify_response(&response) {
            ClassifiedResponse::Ready(outcome) => outcome.is_err(),
            ClassifiedResponse::RequiresEos(_) => {
                panic!("trailers-only answers are classified at once")
            }
        }
    }

    #[test]
    fn only_server_side_grpc_codes_are_failures() {
        // NotFound, InvalidArgument, FailedPrecondition, Unauthenticated: the caller's.
        for code in [5, 3, 9, 16] {
            assert!(!is_failure(code), "code {code}");
        }
        // Unknown, Internal, Unavailable, DataLoss: ours.
        for code in [2, 13, 14, 15] {
            assert!(is_failure(code), "code {code}");
        }
        assert!(!is_failure(0));
    }
}
