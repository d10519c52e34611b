//! Start-up: the order service's parts from `services.order` (sagas on the chosen engine,
//! consumers, task worker, relay, recovery, servers), and what the Temporal worker shares.

use std::sync::Arc;
use std::time::Duration;

use commerce_access::{RequireServiceToken, TokenVerifier};
use commerce_messaging::{ConsumerSettings, TopicSpec};
use commerce_proto::order::v1 as pb;
use commerce_runtime::health::{KafkaCheck, RedisCheck};
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
use tower::Layer;

use crate::consumers::{ExpiryTask, PeerEvents, ReminderTask};
use crate::context::SagaContext;
use crate::engine::PlacementEngine;
use crate::events::{
    DEAD_LETTER_TOPIC, EXPIRY_TASK, FULFILLMENT_TOPIC, PAYMENT_TOPIC, REMINDER_TASK, TOPIC,
};
use crate::grpc::GrpcHandler;
use crate::lifecycle;
use crate::peers::{PeerAddresses, Peers};
use crate::placement::PlacementSaga;
use commerce_saga::Failpoints;
use commerce_saga::policy::Engine;
use commerce_saga::postgres::Orchestrator;

use crate::policy::SharedOrderPolicy;
use crate::service::{Engines, OrderService};
use crate::settings::{OrderSettings, load_settings};
use crate::workflow_client::TemporalOrders;

/// Follows the saga policy file, when there is one, into `policy` until shutdown.
pub(crate) fn policy_watcher(
    settings: &OrderSettings,
    policy: &SharedOrderPolicy,
    step_names: Vec<&'static str>,
    policy_file_text: Option<String>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Option<commerce_runtime::service::BackgroundTask> {
    let watcher = commerce_saga::reload::PolicyWatcher {
        path: settings.saga_file.clone()?,
        shared: policy.clone(),
        step_names,
        interval: settings.saga_reload_interval,
        last: policy_file_text,
    };
    Some(Box::pin(async move {
        watcher.run(shutdown).await;
        Ok(())
    }))
}

/// The saga definitions, over what their steps share.
pub(crate) struct Sagas {
    pub placement: Arc<PlacementSaga>,
    pub payment: Arc<lifecycle::OrderSaga<lifecycle::PaymentReceived>>,
    pub expiry: Arc<lifecycle::OrderSaga<lifecycle::Expiry>>,
    pub cancel: Arc<lifecycle::OrderSaga<lifecycle::Cancellation>>,
    pub delivery: Arc<lifecycle::OrderSaga<crate::delivery::DeliveryChange>>,
}

/// What both the service and the Temporal worker build from `services.order`.
pub(crate) struct Foundation {
    pub sagas: Sagas,
    pub peers: Peers,
    pub queue: commerce_redis::TaskQueue,
    pub redis: commerce_redis::RedisClient,
}

pub(crate) async fn foundation(
    context: &ServiceContext,
    settings: &OrderSettings,
    pool: &sqlx::PgPool,
    policy: &SharedOrderPolicy,
) -> Result<Foundation, BoxError> {
    let peers = Peers::new(
        &PeerAddresses {
            auth_http: &settings.peers.auth_http,
            cart_grpc: &settings.peers.cart_grpc,
            product_grpc: &settings.peers.product_grpc,
            fulfillment_grpc: &settings.peers.fulfillment_grpc,
            payment_grpc: &settings.peers.payment_grpc,
        },
        settings.client_secret.expose(),
    )?;
    let redis = context.redis().await?;
    let queue = commerce_redis::TaskQueue::new(redis.clone(), &settings.task_queue());
    let shared = Arc::new(SagaContext {
        pool: pool.clone(),
        peers: peers.clone(),
        queue: queue.clone(),
        policy: policy.clone(),
    });
    Ok(Foundation {
        sagas: Sagas {
            placement: Arc::new(PlacementSaga::new(shared.clone())),
            payment: Arc::new(lifecycle::payment_saga(shared.clone())),
            expiry: Arc::new(lifecycle::expiry_saga(shared.clone())),
            cancel: Arc::new(lifecycle::cancel_saga(shared.clone())),
            delivery: Arc::new(crate::delivery::delivery_saga(shared)),
        },
        peers,
        queue,
        redis,
    })
}

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let (settings, policy_file_text, step_names) = load_settings(&context.config)?;
    let pool = context.database()?;
    let policy = SharedOrderPolicy::new(settings.saga.clone());
    let Foundation {
        sagas,
        peers,
        queue,
        redis,
    } = foundation(&context, &settings, &pool, &policy).await?;
    let failpoints = Failpoints::new(settings.failpoints.clone());
    // Its recovery runs under either engine, so placements a process on the other engine
    // began still finish where they began.
    let placement_orchestrator = Arc::new(Orchestrator::new(
        pool.clone(),
        sagas.placement.clone(),
        policy.clone(),
        failpoints.clone(),
    ));
    let placement = match settings.saga.engine() {
        Engine::Postgres => PlacementEngine::Postgres(placement_orchestrator.clone()),
        Engine::Temporal => PlacementEngine::Temporal(TemporalOrders::new(
            crate::settings::connect_temporal(&settings.temporal).await?,
            failpoints.clone(),
            settings.temporal.task_queue.clone(),
            sagas.placement,
            sagas.payment.clone(),
            sagas.expiry.clone(),
            policy.clone(),
        )),
    };
    let engines = Engines {
        placement,
        payment: engine(&pool, sagas.payment, &policy, &failpoints),
        expiry: engine(&pool, sagas.expiry, &policy, &failpoints),
        cancel: engine(&pool, sagas.cancel, &policy, &failpoints),
        delivery: engine(&pool, sagas.delivery, &policy, &failpoints),
    };
    let orders = OrderService::new(
        pool.clone(),
        redis.clone(),
        settings.redis_prefix.clone(),
        engines.clone(),
        peers,
        settings.request_wait,
    );

    let jwks = format!(
        "{}/.well-known/jwks.json",
        settings.peers.auth_http.trim_end_matches('/')
    );
    let user_tokens = TokenVerifier::for_users(
        &jwks,
        &settings.issuer,
        commerce_access::RevokedSessions::new(redis.clone()),
    );
    let service_tokens = TokenVerifier::for_service(&jwks, &settings.issuer, "order");

    let relay_task = context.outbox_relay(&[TopicSpec::new(TOPIC, 3)])?;
    let shutdown = context.shutdown.clone();
    let recovery_task: commerce_runtime::service::BackgroundTask = Box::pin(async move {
        let (placement, payment, expiry, cancel, delivery) = tokio::join!(
            placement_orchestrator.run_recovery(shutdown.clone()),
            engines.payment.clone().run_recovery(shutdown.clone()),
            engines.expiry.clone().run_recovery(shutdown.clone()),
            engines.cancel.clone().run_recovery(shutdown.clone()),
            engines.delivery.clone().run_recovery(shutdown.clone()),
        );
        placement
            .and(payment)
            .and(expiry)
            .and(cancel)
            .and(delivery)
            .map_err(BoxError::from)
    });
    let consumer = context.inbox_consumer(
        ConsumerSettings {
            group: settings.consumer_group.clone(),
            topics: vec![PAYMENT_TOPIC.to_owned(), FULFILLMENT_TOPIC.to_owned()],
            dead_letter_topic: DEAD_LETTER_TOPIC.to_owned(),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
        },
        3,
        Arc::new(PeerEvents {
            orders: orders.clone(),
        }),
    )?;
    let worker =
        commerce_redis::TaskWorker::new(queue.clone(), commerce_redis::WorkerSettings::default())
            .handle(
                REMINDER_TASK,
                Arc::new(ReminderTask {
                    orders: orders.clone(),
                }),
            )
            .handle(
                EXPIRY_TASK,
                Arc::new(ExpiryTask {
                    orders: orders.clone(),
                }),
            );
    let shutdown = context.shutdown.clone();
    let worker_task = Box::pin(async move { worker.run(shutdown).await.map_err(BoxError::from) });
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::order_service_server::OrderServiceServer::new(GrpcHandler {
            orders: orders.clone(),
        }),
    );
    let mut background_tasks: Vec<commerce_runtime::service::BackgroundTask> = Vec::new();
    let mut temporal_check = None;
    if let PlacementEngine::Temporal(temporal) = orders.engines().placement.clone() {
        temporal_check = Some(Arc::new(crate::workflow_client::TemporalCheck(
            temporal.client().clone(),
        ))
            as Arc<dyn commerce_runtime::health::ReadinessCheck>);
        let (pool, shutdown) = (pool.clone(), context.shutdown.clone());
        background_tasks.push(Box::pin(async move {
            temporal
                .run_recovery(pool, shutdown)
                .await
                .map_err(BoxError::from)
        }));
    }
    background_tasks.extend(policy_watcher(
        &settings,
        &policy,
        step_names.clone(),
        policy_file_text,
        context.shutdown.clone(),
    ));
    let feed = crate::status_feed::StatusFeed::new();
    let feed_task = {
        let (feed, pool, shutdown) = (feed.clone(), pool.clone(), context.shutdown.clone());
        Box::pin(async move { feed.run(pool, shutdown).await.map_err(BoxError::from) })
    };
    Ok(ServiceParts {
        http: crate::http::routes(orders, feed, user_tokens, queue),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: [
            relay_task,
            recovery_task,
            worker_task,
            consumer.task,
            feed_task,
        ]
        .into_iter()
        .chain(background_tasks)
        .collect(),
        readiness: [
            Arc::new(RedisCheck(redis)) as Arc<dyn commerce_runtime::health::ReadinessCheck>,
            Arc::new(KafkaCheck(context.broker_probe()?)),
            consumer.readiness,
        ]
        .into_iter()
        .chain(temporal_check)
        .collect(),
    })
}

/// An orchestrator for one lifecycle saga, sharing the service's pool, policy and failpoints.
fn engine<D>(
    pool: &sqlx::PgPool,
    definition: Arc<lifecycle::OrderSaga<D>>,
    policy: &SharedOrderPolicy,
    failpoints: &Failpoints,
) -> Arc<Orchestrator<lifecycle::OrderSaga<D>>>
where
    D: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    Arc::new(Orchestrator::new(
        pool.clone(),
        definition,
        policy.clone(),
        failpoints.clone(),
    ))
}
