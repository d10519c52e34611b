//! Builds the chat service from its configuration: database, attachment store, Redis fan-out,
//! and the REST and WebSocket router.

use std::sync::Arc;

use axum::Extension;
use axum::extract::DefaultBodyLimit;
use commerce_access::TokenVerifier;
use commerce_redis::Fanout;
use commerce_runtime::health::RedisCheck;
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};

use crate::attachments::{AttachmentStore, DiskStore, S3Store};
use crate::http::*;
use crate::service::ChatService;
use crate::settings::*;
use crate::socket::SocketLimits;

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: ChatSettings = context.settings()?;
    let pool = context.database()?;
    let redis = context.redis().await?;
    let verifier = TokenVerifier::for_users(
        &settings.jwks_url,
        &settings.issuer,
        commerce_access::RevokedSessions::new(redis.clone()),
    );
    let state = AppState {
        chat: ChatService::new(
            pool,
            redis.clone(),
            &settings.redis_prefix,
            attachment_store(&settings)?,
            settings.max_attachment_bytes,
        ),
        fanout: Fanout::start(
            &context.config.app.redis,
            settings.feed_buffer,
            context.shutdown.clone(),
        ),
        limits: SocketLimits {
            outbound_queue: settings.outbound_queue,
            write_timeout: settings.write_timeout,
            frames_per_second: settings.frames_per_second,
            burst: settings.burst,
        },
        verifier: verifier.clone(),
        shutdown: context.shutdown.clone(),
    };
    // Room for the largest attachment; the service answers 413 with JSON above its limit.
    let body_limit = DefaultBodyLimit::max(settings.max_attachment_bytes + 64 * 1024);
    Ok(ServiceParts {
        http: api()
            .into_router()
            .layer(Extension(verifier))
            .layer(body_limit)
            .with_state(state),
        grpc: None,
        background: Vec::new(),
        readiness: vec![Arc::new(RedisCheck(redis))],
    })
}

/// The bucket when one is configured (every replica sees every attachment), else the
/// directory.
fn attachment_store(settings: &ChatSettings) -> Result<Arc<dyn AttachmentStore>, BoxError> {
    Ok(match &settings.attachment_bucket {
        Some(bucket) => Arc::new(S3Store::new(bucket)?),
        None => Arc::new(DiskStore::new(&settings.attachment_dir)?),
    })
}
