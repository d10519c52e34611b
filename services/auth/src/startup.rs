//! Builds the auth service from its configuration: key ring, database, Redis, outbox relay,
//! the REST router and the service-token-guarded gRPC server.

use std::sync::Arc;

use commerce_access::RequireServiceToken;
use commerce_messaging::TopicSpec;
use commerce_proto::auth::v1 as pb;
use commerce_runtime::health::{KafkaCheck, RedisCheck};
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
use tower::Layer;

use crate::grpc::GrpcHandler;
use crate::http::routes;
use crate::keys::KeyRing;
use crate::service::{self, AuthService};
use crate::settings::AuthSettings;

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: AuthSettings = context.settings()?;
    settings.validate().map_err(|(key, message)| {
        commerce_runtime::ConfigError::new(format!("services.auth.{key}"), message)
    })?;
    let keys = KeyRing::load(&settings.keys)?;
    let pool = context.database()?;
    let redis = context.redis().await?;
    let auth = AuthService::new(pool.clone(), redis.clone(), keys, settings)?;

    let relay_task = context.outbox_relay(&[TopicSpec::new(service::TOPIC, 3)])?;
    let grpc = RequireServiceToken::new(auth.service_token_verifier("auth")?).layer(
        pb::auth_service_server::AuthServiceServer::new(GrpcHandler { auth: auth.clone() }),
    );
    Ok(ServiceParts {
        http: routes(auth),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: vec![relay_task],
        readiness: vec![
            Arc::new(RedisCheck(redis)),
            Arc::new(KafkaCheck(context.broker_probe()?)),
        ],
    })
}
