//! Start-up: the cart service's parts from `services.cart` (peers, caches, consumers, the
//! abandonment worker, cleanup, relay, servers).

use std::sync::Arc;
use std::time::Duration;

use commerce_access::{RequireServiceToken, ServiceTokenSource, TokenVerifier};
use commerce_messaging::{ConsumerSettings, TopicSpec};
use commerce_proto::cart::v1 as pb;
use commerce_runtime::health::KafkaCheck;
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
use tower::Layer;

use crate::consumers::{AbandonCheck, DEAD_LETTER_TOPIC, ORDER_TOPIC, OrderEvents};
use crate::domain::GuestCartKey;
use crate::grpc::GrpcHandler;
use crate::peers::{PeerEndpoints, Peers};
use crate::service::{self, CartService};
use crate::settings::CartSettings;

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: CartSettings = context.settings()?;
    let guest_carts = GuestCartKey::derive(settings.client_secret.expose());
    let pool = context.database()?;
    let (auth_http, client_secret) = (
        settings.peers.auth_http.clone(),
        settings.client_secret.clone(),
    );
    let peers = Peers::new(PeerEndpoints {
        product_grpc: settings.peers.product_grpc.clone(),
        auth_grpc: settings.peers.auth_grpc.clone(),
        payment_grpc: settings.peers.payment_grpc.clone(),
        tokens: Box::new(move |audience| {
            ServiceTokenSource::new(&auth_http, "cart", client_secret.expose(), audience)
        }),
    })?;
    let redis = context.redis().await?;
    let queue = commerce_redis::TaskQueue::new(redis.clone(), &settings.task_queue());
    let abandonment = service::Abandonment {
        queue: queue.clone(),
        after: settings.abandon_after,
    };
    let cache = commerce_redis::VersionedCache::new(
        redis.clone(),
        &format!("{}-state", settings.redis_prefix),
        settings.cache_ttl,
    );
    let carts = CartService::new(
        pool.clone(),
        peers,
        settings.session_ttl,
        Some(abandonment),
        Some(cache),
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
    let service_tokens = TokenVerifier::for_service(&jwks, &settings.issuer, "cart");

    let relay_task = context.outbox_relay(&[TopicSpec::new(service::TOPIC, 3)])?;
    let worker =
        commerce_redis::TaskWorker::new(queue.clone(), commerce_redis::WorkerSettings::default())
            .handle(
                service::ABANDON_TASK,
                Arc::new(AbandonCheck {
                    carts: carts.clone(),
                }),
            );
    let shutdown = context.shutdown.clone();
    let worker_task = Box::pin(async move { worker.run(shutdown).await.map_err(BoxError::from) });
    let cleanup_task = Box::pin(clean_up_periodically(
        carts.clone(),
        settings.retention,
        settings.cleanup_interval,
        context.shutdown.clone(),
    ));
    let consumer = context.inbox_consumer(
        ConsumerSettings {
            group: settings.consumer_group.clone(),
            topics: vec![ORDER_TOPIC.to_owned()],
            dead_letter_topic: DEAD_LETTER_TOPIC.to_owned(),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
        },
        3,
        Arc::new(OrderEvents),
    )?;
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::cart_service_server::CartServiceServer::new(GrpcHandler {
            carts: carts.clone(),
        }),
    );
    Ok(ServiceParts {
        http: crate::http::routes(carts, user_tokens, guest_carts, queue),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: vec![relay_task, worker_task, cleanup_task, consumer.task],
        readiness: vec![
            Arc::new(commerce_runtime::health::RedisCheck(redis)),
            Arc::new(KafkaCheck(context.broker_probe()?)),
            consumer.readiness,
        ],
    })
}

async fn clean_up_periodically(
    carts: CartService,
    retention: Duration,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), BoxError> {
    loop {
        match carts.clean_up(retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted stale carts"),
            Err(error) => tracing::warn!(%error, "cart cleanup failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}
