//! The public API's contract, `openapi/openapi.yaml`, compiled into the gateway and served
//! as `/openapi.json` and `/openapi.yaml`, with Swagger UI at `/docs`. Swagger UI's assets
//! are compiled in too (vendored), so the page works without a network.

use axum::Router;
use axum::response::IntoResponse;
use http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// The document as written; a test keeps it equal to the routes the services serve.
pub const DOCUMENT: &str = include_str!("../../../openapi/openapi.yaml");

/// Swagger UI styles its widgets inline; everything it loads still comes from here.
const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'";

#[derive(Debug, thiserror::Error)]
#[error("openapi/openapi.yaml is not a valid YAML document: {0}")]
pub struct DocumentError(#[from] yaml_serde::Error);

/// The document as JSON.
pub fn document() -> Result<serde_json::Value, DocumentError> {
    Ok(yaml_serde::from_str(DOCUMENT)?)
}

/// `/openapi.json`, `/openapi.yaml` and `/docs`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Result<Router<S>, DocumentError> {
    let docs: Router<S> = utoipa_swagger_ui::SwaggerUi::new("/docs")
        .external_url_unchecked("/openapi.json", document()?)
        .into();
    Ok(docs
        .route(
            "/openapi.yaml",
            axum::routing::get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
                    DOCUMENT,
                )
                    .into_response()
            }),
        )
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DOCS_CSP),
        )))
}
