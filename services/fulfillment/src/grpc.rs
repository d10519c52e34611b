//! gRPC `FulfillmentService` (service tokens only): shipping costs for the order saga.

use commerce_proto::fulfillment::v1 as pb;

use crate::domain::ParcelLine;
use crate::service::{FulfillmentError, FulfillmentService};

pub(crate) struct GrpcHandler {
    pub(crate) fulfillment: FulfillmentService,
}

#[tonic::async_trait]
impl pb::fulfillment_service_server::FulfillmentService for GrpcHandler {
    async fn get_shipping_cost(
        &self,
        request: tonic::Request<pb::GetShippingCostRequest>,
    ) -> Result<tonic::Response<pb::GetShippingCostResponse>, tonic::Status> {
        let request = request.into_inner();
        let lines: Vec<ParcelLine> = request
            .items
            .iter()
            .map(|item| ParcelLine {
                quantity: item.quantity,
                unit_weight_g: (item.weight_grams != 0).then_some(item.weight_grams),
            })
            .collect();
        let quote = self
            .fulfillment
            .shipping_cost(&request.courier, &request.destination_country, &lines)
            .await
            .map_err(|error| match error {
                FulfillmentError::Invalid(invalid) => {
                    tonic::Status::invalid_argument(invalid.to_string())
                }
                FulfillmentError::UnknownCourier(_) => tonic::Status::not_found(error.to_string()),
                FulfillmentError::NotDeliverable(_) => {
                    tonic::Status::failed_precondition(error.to_string())
                }
                FulfillmentError::Storage(_) => commerce_runtime::api::storage_status(&error),
            })?;
        Ok(tonic::Response::new(pb::GetShippingCostResponse {
            cost: Some(commerce_proto::common::v1::Money {
                amount: quote.rate.price.to_string(),
                currency: quote.rate.currency.clone(),
            }),
            courier: request.courier.trim().to_lowercase(),
            zone: quote.rate.zone,
            weight_grams: quote.weight_g,
            estimated_days: quote.rate.estimated_days,
        }))
    }
}
