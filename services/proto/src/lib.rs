//! Generated protobuf messages and gRPC stubs, one module per `proto/` package.

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("commerce.auth.v1");
    }
}

pub mod cart {
    pub mod v1 {
        tonic::include_proto!("commerce.cart.v1");
    }
}

pub mod common {
    pub mod v1 {
        tonic::include_proto!("commerce.common.v1");
    }
}

pub mod fulfillment {
    pub mod v1 {
        tonic::include_proto!("commerce.fulfillment.v1");
    }
}

pub mod notification {
    pub mod v1 {
        tonic::include_proto!("commerce.notification.v1");
    }
}

pub mod order {
    pub mod v1 {
        tonic::include_proto!("commerce.order.v1");
    }
}

pub mod payment {
    pub mod v1 {
        tonic::include_proto!("commerce.payment.v1");
    }
}

pub mod product {
    pub mod v1 {
        tonic::include_proto!("commerce.product.v1");
    }
}
