//! What the operator knows about the `commerce` binary: its services, their ports,
//! databases and the Kafka topics they publish to or read from. It mirrors
//! `config/commerce.toml` and the services' topic constants (ARCHITECTURE section 3).

/// One service of the `commerce` binary (`serve --target <name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: &'static str,
    pub http_port: i32,
    pub grpc_port: Option<i32>,
    /// Owns a PostgreSQL database (named like the service).
    pub database: bool,
    /// Talks to Kafka (publishes through an outbox or consumes through an inbox).
    pub kafka: bool,
    /// Other services it calls, by name.
    pub peers: &'static [&'static str],
    /// Verifies access tokens against auth's JWKS.
    pub verifies_tokens: bool,
}

const fn service(
    name: &'static str,
    http_port: i32,
    grpc_port: Option<i32>,
    database: bool,
    kafka: bool,
    peers: &'static [&'static str],
) -> ServiceInfo {
    ServiceInfo {
        name,
        http_port,
        grpc_port,
        database,
        kafka,
        peers,
        verifies_tokens: true,
    }
}

/// Every service, in start order (auth first: the others fetch its keys).
pub const SERVICES: &[ServiceInfo] = &[
    ServiceInfo {
        verifies_tokens: false,
        ..service("auth", 8081, Some(9081), true, true, &[])
    },
    service("product", 8082, Some(9082), true, true, &["auth"]),
    service(
        "cart",
        8083,
        Some(9083),
        true,
        true,
        &["auth", "product", "payment"],
    ),
    service(
        "order",
        8084,
        Some(9084),
        true,
        true,
        &["auth", "cart", "product", "fulfillment", "payment"],
    ),
    service("payment", 8085, Some(9085), true, true, &["auth"]),
    service("fulfillment", 8086, Some(9086), true, true, &["auth"]),
    service(
        "notification",
        8087,
        Some(9087),
        true,
        true,
        &["auth", "cart"],
    ),
    service("chat", 8088, None, true, false, &["auth"]),
    service("search", 8089, Some(9089), true, true, &["auth", "product"]),
    service(
        "gateway",
        8080,
        None,
        false,
        false,
        &[
            "auth",
            "product",
            "cart",
            "order",
            "payment",
            "fulfillment",
            "search",
            "notification",
            "chat",
        ],
    ),
];

pub fn find(name: &str) -> Option<&'static ServiceInfo> {
    SERVICES.iter().find(|service| service.name == name)
}

/// A topic the services need: event topics carry the outbox relays' events, dead-letter
/// topics the inbox consumers' poison messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: &'static str,
    /// The service that creates it when it runs without the operator.
    pub owner: &'static str,
    pub dead_letter: bool,
}

const fn events(name: &'static str, owner: &'static str) -> TopicInfo {
    TopicInfo {
        name,
        owner,
        dead_letter: false,
    }
}

const fn dead_letters(name: &'static str, owner: &'static str) -> TopicInfo {
    TopicInfo {
        name,
        owner,
        dead_letter: true,
    }
}

pub const TOPICS: &[TopicInfo] = &[
    events("commerce.auth.events", "auth"),
    events("commerce.product.events", "product"),
    events("commerce.cart.events", "cart"),
    events("commerce.order.events", "order"),
    events("commerce.payment.events", "payment"),
    events("commerce.fulfillment.events", "fulfillment"),
    dead_letters("commerce.cart.dlq", "cart"),
    dead_letters("commerce.order.dlq", "order"),
    dead_letters("commerce.fulfillment.dlq", "fulfillment"),
    dead_letters("commerce.notification.dlq", "notification"),
    dead_letters("commerce.search.dlq", "search"),
];

/// The order sagas' step names (what `SagaPolicy.spec.steps` may name): placement,
/// payment, expiry, cancellation and delivery change, as the order service lists them.
pub const SAGA_STEPS: &[&str] = &[
    "get_checkout_session",
    "reserve_stock",
    "quote_shipping",
    "price_order",
    "create_payment_intent",
    "complete_checkout_session",
    "await_payment",
    "schedule_payment_reminders",
    "record_payment",
    "refund_unwanted_payment",
    "deduct_stock",
    "confirm_order",
    "cancel_payment_reminders",
    "claim_expiry",
    "cancel_expired_intent",
    "release_expired_stock",
    "claim_cancel",
    "cancel_unpaid_intent",
    "refund_canceled_payment",
    "return_stock",
    "drop_reminders",
    "claim_delivery_change",
    "quote_delivery",
    "reprice_payment",
    "apply_delivery_change",
];
