//! Builds the fulfillment service from its configuration: carrier client, database, order-event
//! consumer, shipment worker, outbox relay, the REST router and the service-token-guarded gRPC server.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use commerce_access::{RequireServiceToken, TokenVerifier};
use commerce_messaging::{ConsumerSettings, TopicSpec};
use commerce_runtime::health::KafkaCheck;

use crate::carrier::{EasyPostCarrier, LocalCarrier, ShippingProvider};
use crate::shipments::{self, Shipments};
use commerce_proto::fulfillment::v1 as pb;
use commerce_runtime::{BoxError, ServiceContext, ServiceParts};
use tower::Layer;

use crate::consumers::{DEAD_LETTER_TOPIC, ORDER_TOPIC, OrderEvents};
use crate::grpc::GrpcHandler;
use crate::http::*;
use crate::service::FulfillmentService;
use crate::settings::{CarrierSettings, FulfillmentSettings};

pub async fn start(context: ServiceContext) -> Result<ServiceParts, BoxError> {
    let settings: FulfillmentSettings = context.settings()?;
    let pool = context.database()?;
    let fulfillment = FulfillmentService::new(pool.clone(), settings.default_unit_weight_g);
    let carrier: Arc<dyn ShippingProvider> = match &settings.carrier {
        CarrierSettings::Local => Arc::new(LocalCarrier),
        CarrierSettings::Easypost(easypost) => {
            Arc::new(EasyPostCarrier::new(easypost.as_ref().clone())?)
        }
    };
    let shipments = Shipments::new(pool.clone(), carrier);
    let redis = context.redis().await?;
    let user_tokens = TokenVerifier::for_users(
        &settings.jwks_url,
        &settings.issuer,
        commerce_access::RevokedSessions::new(redis.clone()),
    );
    let relay_task = context.outbox_relay(&[TopicSpec::new(shipments::TOPIC, 3)])?;
    let worker_shutdown = context.shutdown.clone();
    let worker = shipments.clone();
    let interval = settings.worker_interval;
    let worker_task: commerce_runtime::service::BackgroundTask = Box::pin(async move {
        worker
            .run_worker(interval, worker_shutdown)
            .await
            .map_err(BoxError::from)
    });
    let consumer = context.inbox_consumer(
        ConsumerSettings {
            group: settings.consumer_group.clone(),
            topics: vec![ORDER_TOPIC.to_owned()],
            dead_letter_topic: DEAD_LETTER_TOPIC.to_owned(),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
        },
        3,
        Arc::new(OrderEvents {
            shipments: shipments.clone(),
            default_unit_weight_g: settings.default_unit_weight_g,
        }),
    )?;
    let service_tokens =
        TokenVerifier::for_service(&settings.jwks_url, &settings.issuer, "fulfillment");
    let grpc = RequireServiceToken::new(service_tokens).layer(
        pb::fulfillment_service_server::FulfillmentServiceServer::new(GrpcHandler {
            fulfillment: fulfillment.clone(),
        }),
    );
    let shipment_routes = shipment_api()
        .into_router()
        .layer(Extension(user_tokens))
        .with_state(shipments);
    Ok(ServiceParts {
        http: courier_api()
            .into_router()
            .with_state(fulfillment)
            .merge(shipment_routes),
        grpc: Some(tonic::service::Routes::new(grpc)),
        background: vec![relay_task, worker_task, consumer.task],
        readiness: vec![
            Arc::new(KafkaCheck(context.broker_probe()?)),
            consumer.readiness,
        ],
    })
}
