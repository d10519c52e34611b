//! The payment service's edges: provider webhooks, payments for their owners, the offline
//! gateway's "customer pays", admin analytics, gRPC `PaymentService` (service tokens
//! only) and the outbox relay.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use chrono::Utc;
use commerce_access::{Principal, RequireServiceToken, Role, TokenVerifier, VerifierSettings};
use commerce_messaging::{BrokerProbe, TopicSpec};
use commerce_proto::payment::v1 as pb;
use commerce_runtime::api::ApiRoutes;
use commerce_runtime::health::KafkaCheck;
use commerce_runtime::{ApiError, BoxError, ServiceContext, ServiceParts};
use serde::Deserialize;
use tower::Layer;
use uuid::Uuid;

use crate::domain::Charge;
use crate::gateway::{GatewayError, Gateways, OfflineGateway, WebhookError};
use crate::service::{self, PaymentError, PaymentService, Viewer};
use crate::stripe::{StripeGateway, StripeSettings};
use crate::xendit::{XenditGateway, XenditSettings};

/// `services.payment` beyond what the runtime reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettings {
    /// Where the auth service publishes its keys.
    pub jwks_url: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default)]
    pub offline: OfflineSettings,
    /// Stripe credentials; without them the `stripe` gateway is not offered.
    pub stripe: Option<StripeSettings>,
    /// Xendit credentials; without them the `xendit` gateway is not offered.
    pub xendit: Option<XenditSettings>,
    /// How old a signed webhook delivery may be.
    #[serde(default = "default_tolerance", with = "humantime_serde")]
    pub webhook_tolerance: Duration,
}

/// The offline gateway settles a payment when the customer presses "pay": no money moves.
/// It exists for local development and tests, so it is off unless `enabled` says so.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineSettings {
    #[serde(default)]
    pub enabled: bool,
    /// Signs the offline gateway's webhook deliveries; random per process when unset.
    pub webhook_secret: Option<commerce_runtime::Secret>,
}

fn default_issuer() -> String {
    "commerce-auth".to_owned()
}

fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: PaymentSettings = context.settings()?;
    // Gateways join when their credentials are configured.
    let mut providers: Vec<Box<dyn crate::gateway::PaymentGateway>> = Vec::new();
    if let Some(stripe) = &settings.stripe {
        providers.push(Box::new(StripeGateway::new(
            stripe.clone(),
            settings.webhook_tolerance,
        )?));
    }
    if let Some(xendit) = &settings.xendit {
        providers.push(Box::new(XenditGateway::new(xendit.clone())?));
    }
    let mut gateways = Gateways::new(providers);
    if settings.offline.enabled {
        tracing::warn!(
            "the offline payment gateway is enabled: customers can settle their own payments without paying (services.payment.offline.enabled)"
        );
        gateways = gateways.with_offline(OfflineGateway::new(
            settings
                .offline
                .webhook_secret
                .as_ref()
                .map(|secret| secret.expose().to_owned()),
            settings.webhook_tolerance,
        ));
    }
    let payments = PaymentService::new(context.database()?, gateways);
    let service_tokens = TokenVerifier::with_jwks_url(
        &settings.jwks_url,
        VerifierSettings::new(&settings.issuer, &["payment"]),
    );
    let redis = context.redis().await?;
    let user_tokens = TokenVerifier::with_jwks_url(
        &settings.jwks_url,
        VerifierSettings::new(&settings.issuer, &["commerce"]),
    )
    .checking_revocations(commerce_access::RevokedSessions::new(redis.clone()));
    let relay_task = context.outbox_relay(&[TopicSpec::new(service::TOPIC, 3)])?;
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::payment_service_server::PaymentServiceServer::new(GrpcHandler {
            payments: payments.clone(),
        }),
    );
    Ok(ServiceParts {
        http: routes(payments, user_tokens),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: vec![relay_task],
        readiness: vec![Arc::new(KafkaCheck(BrokerProbe::new(
            &context.config.app.kafka,
        )?))],
    })
}

/// The public REST API (see `openapi/openapi.yaml`).
pub fn api() -> ApiRoutes<PaymentService> {
    ApiRoutes::new()
        .get("/v1/payments/gateways", gateways)
        .post("/v1/payments/webhooks/{gateway}", webhook)
        .get("/v1/payments/{id}", show)
        .post("/v1/payments/{id}/offline/pay", pay_offline)
        .get("/v1/admin/payments/stats", stats)
}

pub fn routes(payments: PaymentService, verifier: TokenVerifier) -> Router {
    api()
        .into_router()
        .layer(Extension(verifier))
        .with_state(payments)
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::Invalid(invalid) => ApiError::invalid(invalid.field, invalid.message),
            PaymentError::NotFound(_) => ApiError::not_found(error.to_string()),
            PaymentError::Forbidden(_) => ApiError::forbidden(error.to_string()),
            PaymentError::Conflict(_) => ApiError::conflict(error.to_string()),
            PaymentError::Gateway(GatewayError::NotConfigured(_)) => {
                ApiError::not_found(error.to_string())
            }
            PaymentError::Webhook(WebhookError::Payload(_)) => {
                ApiError::invalid("body", error.to_string())
            }
            PaymentError::Webhook(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_signature",
                error.to_string(),
            ),
            PaymentError::Gateway(_) => ApiError::unavailable(2, error.to_string()),
            PaymentError::Storage(_) | PaymentError::Outbox(_) => ApiError::internal(error),
        }
    }
}

fn viewer(principal: &Principal) -> Result<Viewer, ApiError> {
    Ok(Viewer {
        user_id: principal.user_id()?,
        staff: [Role::Admin, Role::Support].contains(&principal.role()),
        admin: principal.role() == Role::Admin,
    })
}

fn parse_id(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

/// Providers call this; it is authenticated by the delivery's signature, not a token.
async fn webhook(
    State(payments): State<PaymentService>,
    Path(gateway): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let outcome = payments.webhook(&gateway, &headers, &body).await?;
    Ok(Json(
        serde_json::json!({ "received": true, "outcome": outcome }),
    ))
}

async fn show(
    State(payments): State<PaymentService>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        payments
            .view(viewer(&principal)?, parse_id("id", &id)?)
            .await?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OfflinePay {
    /// `succeeded` (default) or `failed`.
    outcome: Option<String>,
}

/// Public: which payment gateways checkout offers, with the public half of their setup.
async fn gateways(State(payments): State<PaymentService>) -> Json<serde_json::Value> {
    let items: Vec<serde_json::Value> = payments
        .offered_gateways()
        .into_iter()
        .map(|(code, flow)| {
            let mut item = serde_json::to_value(flow).unwrap_or_default();
            item["code"] = code.into();
            item
        })
        .collect();
    Json(serde_json::json!({ "items": items }))
}

async fn pay_offline(
    State(payments): State<PaymentService>,
    principal: Principal,
    Path(id): Path<String>,
    body: Result<Option<Json<OfflinePay>>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body
        .map_err(commerce_runtime::api::json_rejection)?
        .map(|Json(body)| body)
        .unwrap_or_default();
    let succeed = match body.outcome.as_deref() {
        None | Some("succeeded") => true,
        Some("failed") => false,
        Some(_) => {
            return Err(ApiError::invalid(
                "outcome",
                "must be `succeeded` or `failed`",
            ));
        }
    };
    let outcome = payments
        .pay_offline(viewer(&principal)?, parse_id("id", &id)?, succeed)
        .await?;
    Ok(Json(serde_json::json!({ "outcome": outcome })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// First day, inclusive (YYYY-MM-DD); 30 days ago by default.
    from: Option<chrono::NaiveDate>,
    /// Last day, inclusive; today by default.
    to: Option<chrono::NaiveDate>,
}

async fn stats(
    State(payments): State<PaymentService>,
    principal: Principal,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Admin, Role::Support])?;
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid("query", rejection.body_text()))?;
    let today = Utc::now().date_naive();
    let to = query.to.unwrap_or(today);
    let from = query.from.unwrap_or(to - chrono::Days::new(29));
    let start = from.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let end = (to + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let rows = payments.stats(start, end).await?;
    Ok(Json(serde_json::json!({
        "from": from,
        "to": to,
        "rows": rows,
        "byStatus": crate::domain::totals_by(&rows, |row| row.status.clone()),
        "byGateway": crate::domain::totals_by(&rows, |row| row.gateway.clone()),
    })))
}

struct GrpcHandler {
    payments: PaymentService,
}

fn grpc_status(error: PaymentError) -> tonic::Status {
    match error {
        PaymentError::Invalid(invalid) => tonic::Status::invalid_argument(invalid.to_string()),
        PaymentError::NotFound(_) => tonic::Status::not_found(error.to_string()),
        PaymentError::Forbidden(_) => tonic::Status::permission_denied(error.to_string()),
        PaymentError::Conflict(_)
        | PaymentError::Gateway(GatewayError::NotConfigured(_) | GatewayError::Refused(_)) => {
            tonic::Status::failed_precondition(error.to_string())
        }
        PaymentError::Gateway(_) => tonic::Status::unavailable(error.to_string()),
        PaymentError::Webhook(_) | PaymentError::Storage(_) | PaymentError::Outbox(_) => {
            tracing::error!(%error, "payment call failed");
            tonic::Status::internal("internal error")
        }
    }
}

fn grpc_uuid(field: &str, raw: &str) -> Result<Uuid, tonic::Status> {
    Uuid::parse_str(raw)
        .map_err(|_| tonic::Status::invalid_argument(format!("{field}: `{raw}` is not a UUID")))
}

#[tonic::async_trait]
impl pb::payment_service_server::PaymentService for GrpcHandler {
    async fn create_payment_intent(
        &self,
        request: tonic::Request<pb::CreatePaymentIntentRequest>,
    ) -> Result<tonic::Response<pb::CreatePaymentIntentResponse>, tonic::Status> {
        let request = request.into_inner();
        let order = grpc_uuid("order_id", &request.order_id)?;
        let user = grpc_uuid("user_id", &request.user_id)?;
        let amount = request.amount.unwrap_or_default();
        let charge = Charge::parse(&amount.amount, &amount.currency)
            .map_err(|invalid| tonic::Status::invalid_argument(invalid.to_string()))?;
        let payment = self
            .payments
            .create_intent(order, user, charge, &request.gateway)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::CreatePaymentIntentResponse {
            payment_id: payment.id.to_string(),
            client_secret: payment.client_secret,
            status: payment.status.as_str().to_owned(),
            gateway: payment.gateway,
        }))
    }

    async fn replace_payment_intent(
        &self,
        request: tonic::Request<pb::ReplacePaymentIntentRequest>,
    ) -> Result<tonic::Response<pb::ReplacePaymentIntentResponse>, tonic::Status> {
        let request = request.into_inner();
        let order = grpc_uuid("order_id", &request.order_id)?;
        let amount = request.amount.unwrap_or_default();
        let charge = Charge::parse(&amount.amount, &amount.currency)
            .map_err(|invalid| tonic::Status::invalid_argument(invalid.to_string()))?;
        let payment = self
            .payments
            .replace_intent(order, charge, request.revision)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::ReplacePaymentIntentResponse {
            payment_id: payment.id.to_string(),
            client_secret: payment.client_secret,
            status: payment.status.as_str().to_owned(),
            revision: payment.revision,
        }))
    }

    async fn cancel_payment_intent(
        &self,
        request: tonic::Request<pb::CancelPaymentIntentRequest>,
    ) -> Result<tonic::Response<pb::CancelPaymentIntentResponse>, tonic::Status> {
        let order = grpc_uuid("order_id", &request.into_inner().order_id)?;
        let status = self
            .payments
            .cancel_intent(order)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::CancelPaymentIntentResponse {
            status: status
                .map(|status| status.as_str().to_owned())
                .unwrap_or_default(),
        }))
    }

    async fn refund_payment(
        &self,
        request: tonic::Request<pb::RefundPaymentRequest>,
    ) -> Result<tonic::Response<pb::RefundPaymentResponse>, tonic::Status> {
        let request = request.into_inner();
        let order = grpc_uuid("order_id", &request.order_id)?;
        let requested = match request.amount {
            Some(amount) if !amount.amount.is_empty() => Some(
                Charge::parse(&amount.amount, &amount.currency)
                    .map_err(|invalid| tonic::Status::invalid_argument(invalid.to_string()))?,
            ),
            _ => None,
        };
        let answer = self
            .payments
            .refund(order, requested, &request.reason, &request.idempotency_key)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::RefundPaymentResponse {
            refund_id: answer.refund_id.to_string(),
            amount: Some(commerce_proto::common::v1::Money {
                amount: commerce_runtime::api::money_scale(answer.amount).to_string(),
                currency: answer.currency,
            }),
            status: answer.status,
            payment_status: answer.payment_status,
        }))
    }

    async fn list_gateways(
        &self,
        _request: tonic::Request<pb::ListGatewaysRequest>,
    ) -> Result<tonic::Response<pb::ListGatewaysResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::ListGatewaysResponse {
            gateways: self
                .payments
                .offered_gateways()
                .into_iter()
                .map(|(code, _)| code.to_owned())
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use commerce_runtime::ExposeSecret;

    use super::*;

    #[test]
    fn settings_never_print_their_credentials() {
        let credentials = [
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "whsec_stripe_signing_secret_value",
            "xnd_production_secret_key_value",
            "xendit-callback-verification-token",
            "offline-webhook-secret-of-this-shop-0123",
        ];
        let settings: PaymentSettings = serde_json::from_value(serde_json::json!({
            "jwks_url": "http://auth/.well-known/jwks.json",
            "offline": { "enabled": true, "webhook_secret": credentials[4] },
            "stripe": { "secret_key": credentials[0], "webhook_secret": credentials[1] },
            "xendit": { "secret_key": credentials[2], "callback_token": credentials[3] },
        }))
        .unwrap();
        let printed = format!("{settings:?}");
        assert!(printed.contains("jwks.json"), "{printed}");
        for credential in credentials {
            assert!(!printed.contains(credential), "{printed}");
        }
        // The values are all there for the code that needs them.
        let stripe = settings.stripe.unwrap();
        assert_eq!(stripe.secret_key.expose_secret(), credentials[0]);
        assert_eq!(
            settings.offline.webhook_secret.unwrap().expose(),
            credentials[4]
        );
    }
}
