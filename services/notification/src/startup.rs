//! Builds the notification service from its configuration: mailer and SMS client, database,
//! the inbox consumer of the shop's events, the delivery worker, the SSE hub, the REST router and
//! the service-token-guarded gRPC server.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use commerce_access::{RequireServiceToken, ServiceTokenSource, TokenVerifier};
use commerce_messaging::{ConsumerSettings, TopicSpec};
use commerce_proto::notification::v1 as pb;
use commerce_redis::Fanout;
use commerce_runtime::health::{KafkaCheck, RedisCheck};
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
use tower::Layer;

use crate::consumers::{DEAD_LETTER_TOPIC, Links, ShopEvents, TOPICS};
use crate::delivery::{DeliveryWorker, UserDirectory};
use crate::email::SmtpMailer;
use crate::grpc::GrpcHandler;
use crate::http::*;
use crate::service::NotificationService;
use crate::settings::*;
use crate::sms::{self};
use crate::stream::StreamHub;

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: NotificationSettings = context.settings()?;
    let pool = context.database()?;
    let redis = context.redis().await?;
    let mailer = settings.smtp.as_ref().map(SmtpMailer::new).transpose()?;
    let sms = sms::from_settings(&settings.sms)?;
    let directory = match (&settings.peers, &settings.client_secret) {
        (Some(peers), Some(secret)) => Some(UserDirectory::new(
            &peers.auth_grpc,
            ServiceTokenSource::new(&peers.auth_http, "notification", secret.expose(), "auth"),
        )?),
        (Some(_), None) => {
            return Err("services.notification.client_secret: needed with `peers`".into());
        }
        _ => None,
    };
    let carts = match (&settings.peers, &settings.client_secret) {
        (
            Some(Peers {
                cart_grpc: Some(cart_grpc),
                auth_http,
                ..
            }),
            Some(secret),
        ) => Some(crate::peers::Carts::new(
            cart_grpc,
            ServiceTokenSource::new(auth_http, "notification", secret.expose(), "cart"),
        )?),
        _ => None,
    };
    let worker = DeliveryWorker {
        pool: pool.clone(),
        mailer,
        sms,
        redis: redis.clone(),
        push_prefix: settings.redis_prefix.clone(),
        directory,
        max_attempts: settings.max_attempts.max(1),
        poll_interval: settings.poll_interval,
        concurrency: 8,
    };
    let worker_shutdown = context.shutdown.clone();
    let worker_task: commerce_runtime::service::BackgroundTask =
        Box::pin(async move { worker.run(worker_shutdown).await.map_err(BoxError::from) });
    let consumer = context.inbox_consumer(
        ConsumerSettings {
            group: settings.consumer_group.clone(),
            topics: TOPICS.iter().map(|t| (*t).to_owned()).collect(),
            dead_letter_topic: DEAD_LETTER_TOPIC.to_owned(),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
        },
        3,
        Arc::new(ShopEvents {
            links: Links {
                verify_email: settings.verify_email_url.clone(),
                reset_password: settings.reset_password_url.clone(),
                order: settings.order_url.clone(),
                cart: settings.cart_url.clone(),
            },
            carts,
        }),
    )?;
    // The dead-letter topic is this service's only topic; the relay creates it.
    let relay_task = context.outbox_relay(&[TopicSpec::new(DEAD_LETTER_TOPIC, 1)])?;
    let fanout = Fanout::start(
        &context.config.app.redis,
        settings.stream_buffer,
        context.shutdown.clone(),
    );
    let notifications = NotificationService::new(pool.clone());
    let state = AppState {
        notifications: notifications.clone(),
        streams: StreamHub {
            pool: pool.clone(),
            fanout,
            prefix: settings.redis_prefix.clone(),
            heartbeat: settings.heartbeat,
            shutdown: context.shutdown.clone(),
        },
    };
    let user_tokens = TokenVerifier::for_users(
        &settings.jwks_url,
        &settings.issuer,
        commerce_access::RevokedSessions::new(redis.clone()),
    );
    let service_tokens =
        TokenVerifier::for_service(&settings.jwks_url, &settings.issuer, "notification");
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::notification_service_server::NotificationServiceServer::new(GrpcHandler {
            notifications,
        }),
    );
    Ok(ServiceParts {
        http: api()
            .into_router()
            .layer(Extension(user_tokens))
            .with_state(state),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: vec![worker_task, consumer.task, relay_task],
        readiness: vec![
            Arc::new(RedisCheck(redis)),
            Arc::new(KafkaCheck(context.broker_probe()?)),
            consumer.readiness,
        ],
    })
}
