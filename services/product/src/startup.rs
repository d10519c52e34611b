//! Builds the product service from its configuration: database, Redis cache, outbox relay,
//! the REST router and the service-token-guarded gRPC server.

use std::sync::Arc;

use commerce_access::{RequireServiceToken, TokenVerifier};
use commerce_messaging::TopicSpec;
use commerce_proto::product::v1 as pb;
use commerce_runtime::health::{KafkaCheck, RedisCheck};
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
use tower::Layer;

use crate::cache::ProductCache;
use crate::grpc::GrpcHandler;
use crate::http::routes;
use crate::service::{self, ProductService};
use crate::settings::ProductSettings;

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: ProductSettings = context.settings()?;
    let pool = context.database()?;
    let redis = context.redis().await?;
    let cache = ProductCache::new(redis.clone(), &settings.redis_prefix, settings.cache_ttl);
    let products = ProductService::new(pool.clone(), cache);
    let user_tokens = TokenVerifier::for_users(
        &settings.auth.jwks_url,
        &settings.auth.issuer,
        commerce_access::RevokedSessions::new(redis.clone()),
    );
    let service_tokens =
        TokenVerifier::for_service(&settings.auth.jwks_url, &settings.auth.issuer, "product");
    let relay_task = context.outbox_relay(&[TopicSpec::new(service::TOPIC, 3)])?;
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::product_service_server::ProductServiceServer::new(GrpcHandler {
            products: products.clone(),
        }),
    );
    Ok(ServiceParts {
        http: routes(products, user_tokens),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: vec![relay_task],
        readiness: vec![
            Arc::new(RedisCheck(redis)),
            Arc::new(KafkaCheck(context.broker_probe()?)),
        ],
    })
}
