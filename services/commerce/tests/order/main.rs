//! The order service's flows on the real services, on both saga engines: placing, paying,
//! canceling, delivering, staff refunds, the saga policy, and crashes at every saga step.
//! One test binary, a module per flow, all on the shop in `shop.rs`.

#[path = "../support/mod.rs"]
mod support;

/// The scenarios that hold on either saga engine, once per engine: `<flow>::postgres::<name>`
/// and `<flow>::temporal::<name>`.
macro_rules! on_both_engines {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(crate::shop::Engine::Postgres).await
                }
            )*
        }
        mod temporal {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(crate::shop::Engine::Temporal).await
                }
            )*
        }
    };
}

mod cancel;
mod crash;
mod delivery;
mod payment;
mod placement;
mod policy;
mod refund;
mod shop;
