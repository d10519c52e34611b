//! The order subgraph at `/graphql`: `Order` with its items referencing `Product` (resolved
//! by the product subgraph) and its customer referencing `User` (the auth subgraph). The
//! caller is the bearer token the gateway forwards: customers see their own orders, admin
//! and support everyone's — the same rule as `GET /v1/orders`.

use std::convert::Infallible;

use async_graphql::{Context, EmptyMutation, Enum, ID, Object, Schema, SimpleObject};
use axum::Extension;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use commerce_access::{MaybePrincipal, Role};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use crate::domain::{LineItem, Order, OrderStatus};
use crate::error::OrderError;
use crate::service::{OrderService, Viewer};
use crate::status_feed::StatusFeed;

pub type OrderSchema = Schema<Query, EmptyMutation, Subscription>;

/// The schema; executing it needs the `OrderService` and the `StatusFeed` in its data.
pub fn schema(services: Option<(OrderService, StatusFeed)>) -> OrderSchema {
    let builder = Schema::build(Query, EmptyMutation, Subscription)
        .enable_federation()
        .enable_subscription_in_federation()
        // Bounds on what one request may ask for; the gateway's entity fetches stay far below.
        .limit_depth(12)
        .limit_complexity(1000);
    match services {
        Some((orders, feed)) => builder.data(orders).data(feed).finish(),
        None => builder.finish(),
    }
}

/// The subgraph's SDL as the federation gateway composes it (`graphql/order.graphql`).
pub fn sdl() -> String {
    schema(None).sdl_with_options(async_graphql::SDLExportOptions::new().federation())
}

/// Queries answer with JSON; with `Accept: text/event-stream` the operation (a
/// subscription, typically) streams as GraphQL over SSE in its distinct-connections mode:
/// a `next` event per result, then `complete` — what the federation gateway speaks to
/// subgraphs for subscriptions.
pub async fn handler(
    Extension(schema): Extension<OrderSchema>,
    caller: MaybePrincipal,
    headers: HeaderMap,
    request: async_graphql_axum::GraphQLRequest,
) -> Response {
    let mut request = request.into_inner();
    if let Some(user_id) = caller
        .0
        .as_ref()
        .and_then(|principal| principal.claims().user_id())
    {
        request = request.data(Viewer {
            user_id,
            staff: caller.has_role(&[Role::Admin, Role::Support]),
        });
    }
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    if !wants_stream {
        return async_graphql_axum::GraphQLResponse::from(schema.execute(request).await)
            .into_response();
    }
    let results = schema.execute_stream(request).map(|result| {
        Ok::<_, Infallible>(
            Event::default()
                .event("next")
                .json_data(result)
                .unwrap_or_else(|_| Event::default().event("next").data("{}")),
        )
    });
    let complete = futures::stream::once(async {
        Ok::<_, Infallible>(Event::default().event("complete").data(""))
    });
    Sse::new(results.chain(complete))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A product of the catalogue; its fields come from the product subgraph.
#[derive(SimpleObject)]
#[graphql(name = "Product", unresolvable = "id")]
struct ProductReference {
    id: ID,
}

/// An account; its fields come from the auth subgraph.
#[derive(SimpleObject)]
#[graphql(name = "User", unresolvable = "id")]
struct UserReference {
    id: ID,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "OrderStatus", rename_items = "SCREAMING_SNAKE_CASE")]
enum Status {
    Placing,
    PendingPayment,
    Failed,
    Paid,
    Confirmed,
    Shipped,
    Delivered,
    Expired,
    Canceled,
}

impl From<OrderStatus> for Status {
    fn from(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Placing => Self::Placing,
            OrderStatus::PendingPayment => Self::PendingPayment,
            OrderStatus::Failed => Self::Failed,
            OrderStatus::Paid => Self::Paid,
            OrderStatus::Confirmed => Self::Confirmed,
            OrderStatus::Shipped => Self::Shipped,
            OrderStatus::Delivered => Self::Delivered,
            OrderStatus::Expired => Self::Expired,
            OrderStatus::Canceled => Self::Canceled,
        }
    }
}

fn money(amount: rust_decimal::Decimal) -> String {
    commerce_runtime::api::money_scale(amount).to_string()
}

struct OrderItem(LineItem);

#[Object]
impl OrderItem {
    async fn product(&self) -> ProductReference {
        ProductReference {
            id: ID(self.0.product_id.to_string()),
        }
    }
    /// The SKU and name as they were when the order was placed.
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn quantity(&self) -> i64 {
        self.0.quantity
    }
    /// A decimal string, in the order's currency.
    async fn unit_price(&self) -> String {
        money(self.0.unit_price)
    }
}

/// Amounts as decimal strings, in `currency`.
#[derive(SimpleObject)]
struct OrderTotals {
    subtotal: String,
    discount: String,
    shipping: String,
    total: String,
    currency: String,
}

struct OrderObject(Order);

#[Object(name = "Order")]
impl OrderObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn status(&self) -> Status {
        self.0.status.into()
    }
    async fn customer(&self) -> UserReference {
        UserReference {
            id: ID(self.0.user_id.to_string()),
        }
    }
    async fn items(&self) -> Vec<OrderItem> {
        self.0.items.iter().cloned().map(OrderItem).collect()
    }
    /// Known once the placement has priced the order.
    async fn totals(&self) -> Option<OrderTotals> {
        let totals = self.0.totals?;
        Some(OrderTotals {
            subtotal: money(totals.subtotal),
            discount: money(totals.discount),
            shipping: money(totals.shipping),
            total: money(totals.total),
            currency: self.0.currency.clone().unwrap_or_default(),
        })
    }
    async fn courier(&self) -> Option<&str> {
        self.0.courier.as_deref()
    }
    async fn payment_due_at(&self) -> Option<String> {
        self.0.payment_due_at.map(|at| at.to_rfc3339())
    }
    async fn created_at(&self) -> String {
        self.0.created_at.to_rfc3339()
    }
}

fn viewer(context: &Context<'_>) -> async_graphql::Result<Viewer> {
    context
        .data_opt::<Viewer>()
        .copied()
        .ok_or_else(|| async_graphql::Error::new("sign in to see orders"))
}

fn orders<'a>(context: &'a Context<'_>) -> &'a OrderService {
    context.data_unchecked::<OrderService>()
}

fn failure(error: OrderError) -> async_graphql::Error {
    match error {
        OrderError::Invalid { field, message } => {
            async_graphql::Error::new(format!("{field}: {message}"))
        }
        other => {
            tracing::error!(error = %other, "GraphQL query failed");
            async_graphql::Error::new("internal error")
        }
    }
}

/// A status an order reached.
struct OrderStatusChange {
    order_id: ID,
    status: Status,
}

#[Object]
impl OrderStatusChange {
    async fn order_id(&self) -> &ID {
        &self.order_id
    }
    async fn status(&self) -> Status {
        self.status
    }
    /// The order as it is now, with any of its fields (items' products and the customer
    /// come from their subgraphs).
    async fn order(&self, context: &Context<'_>) -> async_graphql::Result<Option<OrderObject>> {
        Query.order(context, self.order_id.clone()).await
    }
}

/// Statuses after which nothing changes.
fn is_final(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Delivered | OrderStatus::Expired | OrderStatus::Canceled | OrderStatus::Failed
    )
}

/// A subscriber's place in one order's history.
struct Follow {
    changes: tokio::sync::broadcast::Receiver<crate::status_feed::StatusChange>,
    orders: OrderService,
    viewer: Viewer,
    order_id: Uuid,
    id: ID,
    last: OrderStatus,
    started: bool,
}

impl Follow {
    fn change(&self) -> OrderStatusChange {
        OrderStatusChange {
            order_id: self.id.clone(),
            status: self.last.into(),
        }
    }
}

pub struct Subscription;

#[async_graphql::Subscription]
impl Subscription {
    /// The order's status now, then every change as it is committed, until a final one
    /// (DELIVERED, EXPIRED, CANCELED, FAILED).
    async fn order_status(
        &self,
        context: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = OrderStatusChange> + use<>> {
        let viewer = viewer(context)?;
        let Ok(order_id) = Uuid::parse_str(&id) else {
            return Err(async_graphql::Error::new("id must be a UUID"));
        };
        // Listen first, then read: a change between the two is not lost.
        let changes = context.data_unchecked::<StatusFeed>().subscribe();
        let orders = orders(context).clone();
        let current = match orders.order(viewer, order_id).await {
            Ok(order) => order.status,
            Err(OrderError::NotFound(_)) => return Err(async_graphql::Error::new("no such order")),
            Err(error) => return Err(failure(error)),
        };
        let follow = Follow {
            changes,
            orders,
            viewer,
            order_id,
            id,
            last: current,
            started: false,
        };
        Ok(futures::stream::unfold(follow, |mut follow| async move {
            if !follow.started {
                follow.started = true;
                let change = follow.change();
                return Some((change, follow));
            }
            if is_final(follow.last) {
                return None;
            }
            loop {
                let status = match follow.changes.recv().await {
                    Ok(change) if change.id == follow.order_id => change.status,
                    Ok(_) => continue,
                    // Fell behind: the order itself says where it is now.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        follow
                            .orders
                            .order(follow.viewer, follow.order_id)
                            .await
                            .ok()?
                            .status
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                };
                if status != follow.last {
                    follow.last = status;
                    let change = follow.change();
                    return Some((change, follow));
                }
            }
        }))
    }
}

pub struct Query;

#[Object]
impl Query {
    /// One of the caller's orders (any order for admin and support); null when there is
    /// no such order or it is somebody else's.
    async fn order(
        &self,
        context: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<OrderObject>> {
        let viewer = viewer(context)?;
        let Ok(id) = Uuid::parse_str(&id) else {
            return Err(async_graphql::Error::new("id must be a UUID"));
        };
        match orders(context).order(viewer, id).await {
            Ok(order) => Ok(Some(OrderObject(order))),
            Err(OrderError::NotFound(_)) => Ok(None),
            Err(error) => Err(failure(error)),
        }
    }

    /// The caller's orders, newest first.
    async fn orders(
        &self,
        context: &Context<'_>,
        #[graphql(default = 20)] first: i64,
    ) -> async_graphql::Result<Vec<OrderObject>> {
        let viewer = viewer(context)?;
        let found = orders(context)
            .orders(viewer, Some(viewer.user_id), None, first)
            .await
            .map_err(failure)?;
        Ok(found.into_iter().map(OrderObject).collect())
    }
}
