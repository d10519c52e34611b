//! Builds the gateway from its configuration: the routes, Redis for shared rate limits, and
//! the HTTP router.

use std::sync::Arc;

use commerce_runtime::health::RedisCheck;
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};

use crate::http::router;
use crate::service::Gateway;
use crate::settings::GatewaySettings;

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: GatewaySettings = context.settings()?;
    let redis = context.redis().await?;
    let gateway = Arc::new(Gateway::new(&settings, redis.clone())?);
    Ok(ServiceParts {
        http: router(gateway, &settings)?,
        readiness: vec![Arc::new(RedisCheck(redis))],
        ..ServiceParts::default()
    })
}
