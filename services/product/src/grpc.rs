//! gRPC `ProductService` (service tokens only): lookups and stock reservations for peers.

use commerce_proto::product::v1 as pb;
use uuid::Uuid;

use crate::domain::ReservationLine;
use crate::service::{self, ProductError, ProductService};

pub(crate) struct GrpcHandler {
    pub(crate) products: ProductService,
}

fn grpc_status(error: ProductError) -> tonic::Status {
    match error {
        ProductError::Invalid(invalid) => tonic::Status::invalid_argument(invalid.to_string()),
        ProductError::NotFound(_) => tonic::Status::not_found(error.to_string()),
        ProductError::InsufficientStock { .. } | ProductError::FailedPrecondition(_) => {
            tonic::Status::failed_precondition(error.to_string())
        }
        ProductError::StaleVersion { .. } | ProductError::DuplicateSku(_) => {
            tonic::Status::aborted(error.to_string())
        }
        ProductError::Database(_) | ProductError::Outbox(_) | ProductError::Cache(_) => {
            commerce_runtime::api::storage_status(&error)
        }
    }
}

fn grpc_uuid(field: &str, raw: &str) -> Result<Uuid, tonic::Status> {
    Uuid::parse_str(raw)
        .map_err(|_| tonic::Status::invalid_argument(format!("{field}: `{raw}` is not a UUID")))
}

fn reservation_items(rows: Vec<crate::repository::ReservationRow>) -> Vec<pb::ReservationItem> {
    rows.into_iter()
        .map(|row| pb::ReservationItem {
            product_id: row.product_id.to_string(),
            quantity: row.quantity,
        })
        .collect()
}

/// Products per database query of a catalogue stream.
const CATALOGUE_PAGE: i64 = 500;

type CatalogueStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::ListCatalogueResponse, tonic::Status>> + Send>,
>;

/// The active catalogue, a page at a time: the next page is read only when the reader has
/// taken the previous one (a slow reader holds no more than a page in memory).
fn catalogue(products: ProductService, after: Option<Uuid>) -> CatalogueStream {
    use futures::TryStreamExt;
    let pages = futures::stream::try_unfold(Some(after), move |next| {
        let products = products.clone();
        async move {
            let Some(after) = next else {
                return Ok(None);
            };
            let page = products
                .catalogue_page(after, CATALOGUE_PAGE)
                .await
                .map_err(grpc_status)?;
            let next = (page.len() as i64 == CATALOGUE_PAGE)
                .then(|| page.last().map(|product| product.id));
            let items: Vec<Result<pb::ListCatalogueResponse, tonic::Status>> = page
                .iter()
                .map(|product| {
                    Ok(pb::ListCatalogueResponse {
                        product: Some(service::to_proto(product)),
                    })
                })
                .collect();
            Ok::<_, tonic::Status>(Some((futures::stream::iter(items), next)))
        }
    });
    Box::pin(pages.try_flatten())
}

#[tonic::async_trait]
impl pb::product_service_server::ProductService for GrpcHandler {
    type ListCatalogueStream = CatalogueStream;

    async fn list_catalogue(
        &self,
        request: tonic::Request<pb::ListCatalogueRequest>,
    ) -> Result<tonic::Response<Self::ListCatalogueStream>, tonic::Status> {
        let after_id = request.into_inner().after_id;
        let after = if after_id.is_empty() {
            None
        } else {
            Some(grpc_uuid("after_id", &after_id)?)
        };
        Ok(tonic::Response::new(catalogue(
            self.products.clone(),
            after,
        )))
    }

    async fn get_products(
        &self,
        request: tonic::Request<pb::GetProductsRequest>,
    ) -> Result<tonic::Response<pb::GetProductsResponse>, tonic::Status> {
        let ids = request.into_inner().ids;
        if ids.len() > 500 {
            return Err(tonic::Status::invalid_argument("ids: at most 500 per call"));
        }
        let ids = ids
            .iter()
            .enumerate()
            .map(|(index, id)| grpc_uuid(&format!("ids[{index}]"), id))
            .collect::<Result<Vec<_>, _>>()?;
        let products = self.products.get_many(&ids).await.map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::GetProductsResponse {
            products: products.iter().map(service::to_proto).collect(),
        }))
    }

    async fn reserve_products(
        &self,
        request: tonic::Request<pb::ReserveProductsRequest>,
    ) -> Result<tonic::Response<pb::ReserveProductsResponse>, tonic::Status> {
        let request = request.into_inner();
        let order_id = grpc_uuid("order_id", &request.order_id)?;
        let lines = request
            .items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                Ok(ReservationLine {
                    product_id: grpc_uuid(&format!("items[{index}].product_id"), &item.product_id)?,
                    quantity: item.quantity,
                })
            })
            .collect::<Result<Vec<_>, tonic::Status>>()?;
        let reserved = self
            .products
            .reserve(order_id, &lines)
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::ReserveProductsResponse {
            items: reserved
                .into_iter()
                .map(|(product, quantity)| pb::ReservedItem {
                    product_id: product.id.to_string(),
                    sku: product.sku.clone(),
                    name: product.name.clone(),
                    quantity,
                    unit_price: Some(commerce_proto::common::v1::Money {
                        amount: product.price.amount.to_string(),
                        currency: product.price.currency.clone(),
                    }),
                })
                .collect(),
        }))
    }

    async fn deduct_stock(
        &self,
        request: tonic::Request<pb::DeductStockRequest>,
    ) -> Result<tonic::Response<pb::DeductStockResponse>, tonic::Status> {
        let order_id = grpc_uuid("order_id", &request.into_inner().order_id)?;
        let rows = self.products.deduct(order_id).await.map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::DeductStockResponse {
            items: reservation_items(rows),
        }))
    }

    async fn release_reservation(
        &self,
        request: tonic::Request<pb::ReleaseReservationRequest>,
    ) -> Result<tonic::Response<pb::ReleaseReservationResponse>, tonic::Status> {
        let order_id = grpc_uuid("order_id", &request.into_inner().order_id)?;
        let rows = self.products.release(order_id).await.map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::ReleaseReservationResponse {
            items: reservation_items(rows),
        }))
    }

    async fn restock_order(
        &self,
        request: tonic::Request<pb::RestockOrderRequest>,
    ) -> Result<tonic::Response<pb::RestockOrderResponse>, tonic::Status> {
        let order_id = grpc_uuid("order_id", &request.into_inner().order_id)?;
        let rows = self.products.restock(order_id).await.map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::RestockOrderResponse {
            items: reservation_items(rows),
        }))
    }
}
