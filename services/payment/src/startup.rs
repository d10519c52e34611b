//! Builds the payment service from its configuration: the configured gateways, database,
//! outbox relay, the REST router and the service-token-guarded gRPC server.

use std::sync::Arc;

use commerce_access::{RequireServiceToken, TokenVerifier};
use commerce_messaging::TopicSpec;
use commerce_proto::payment::v1 as pb;
use commerce_runtime::health::KafkaCheck;
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
use tower::Layer;

use crate::gateway::{Gateways, OfflineGateway};
use crate::grpc::GrpcHandler;
use crate::http::routes;
use crate::service::{self, PaymentService};
use crate::settings::PaymentSettings;
use crate::stripe::StripeGateway;
use crate::xendit::XenditGateway;

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
    let service_tokens =
        TokenVerifier::for_service(&settings.jwks_url, &settings.issuer, "payment");
    let redis = context.redis().await?;
    let user_tokens = TokenVerifier::for_users(
        &settings.jwks_url,
        &settings.issuer,
        commerce_access::RevokedSessions::new(redis.clone()),
    );
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
        readiness: vec![Arc::new(KafkaCheck(context.broker_probe()?))],
    })
}
