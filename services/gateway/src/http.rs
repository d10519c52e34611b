//! The gateway's HTTP face: `/openapi.json`, `/openapi.yaml` and `/docs` are its own, every
//! other path goes to the proxy; all wrapped in CORS and the security headers. Request ids, the
//! request span, access logs and request metrics come from the runtime's HTTP edge like every
//! service's.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use commerce_runtime::{BoxError, ConfigError};
use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::service::Gateway;
use crate::settings::GatewaySettings;

pub fn router(gateway: Arc<Gateway>, settings: &GatewaySettings) -> Result<Router, BoxError> {
    let security = &settings.security_headers;
    let header_value = |key: &str, value: &str| {
        HeaderValue::from_str(value).map_err(|_| {
            ConfigError::new(
                format!("services.gateway.security_headers.{key}"),
                "is not a valid header value",
            )
        })
    };
    let hsts = header_value(
        "strict_transport_security",
        &security.strict_transport_security,
    )?;
    let csp = header_value("content_security_policy", &security.content_security_policy)?;
    let origins = settings
        .cors
        .allowed_origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin).map_err(|_| {
                ConfigError::new(
                    "services.gateway.cors.allowed_origins",
                    format!("`{origin}` is not an origin"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-guest-cart"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("ratelimit-policy"),
            header::RETRY_AFTER,
            HeaderName::from_static("x-guest-cart"),
        ])
        .max_age(settings.cors.max_age);
    // The contract and its documentation page are the gateway's own; all else is proxied.
    Ok(crate::openapi::routes()?
        .fallback(proxy)
        .with_state(gateway)
        .layer(cors)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            hsts,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            csp,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        )))
}

async fn proxy(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    gateway.handle(request, peer).await
}
