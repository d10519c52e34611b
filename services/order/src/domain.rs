//! Orders and their prices, without I/O.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an order is in its life. Placement ends in PENDING_PAYMENT or FAILED; the rest
/// belong to the lifecycle after payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
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

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placing => "PLACING",
            Self::PendingPayment => "PENDING_PAYMENT",
            Self::Failed => "FAILED",
            Self::Paid => "PAID",
            Self::Confirmed => "CONFIRMED",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
            Self::Expired => "EXPIRED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Placing,
            Self::PendingPayment,
            Self::Failed,
            Self::Paid,
            Self::Confirmed,
            Self::Shipped,
            Self::Delivered,
            Self::Expired,
            Self::Canceled,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }

    /// The customer's money was taken and the order goes on: what staff may refund.
    pub fn paid(self) -> bool {
        matches!(
            self,
            Self::Paid | Self::Confirmed | Self::Shipped | Self::Delivered
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub recipient: String,
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    pub city: String,
    #[serde(default)]
    pub region: String,
    pub postal_code: String,
    pub country: String,
    #[serde(default)]
    pub phone: String,
}

impl Address {
    /// Trims every field and checks what shipping needs; the error names the field
    /// (as the API spells it) and says what is wrong.
    pub fn normalized(mut self) -> Result<Self, (&'static str, String)> {
        for field in [
            &mut self.recipient,
            &mut self.line1,
            &mut self.line2,
            &mut self.city,
            &mut self.region,
            &mut self.postal_code,
            &mut self.country,
            &mut self.phone,
        ] {
            *field = field.trim().to_owned();
        }
        self.country = self.country.to_uppercase();
        for (field, value) in [
            ("address.recipient", &self.recipient),
            ("address.line1", &self.line1),
            ("address.city", &self.city),
            ("address.postalCode", &self.postal_code),
        ] {
            if value.is_empty() {
                return Err((field, "is required".to_owned()));
            }
            if value.chars().count() > 200 {
                return Err((field, "is longer than 200 characters".to_owned()));
            }
        }
        if self.country.len() != 2 || !self.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err((
                "address.country",
                "must be an ISO 3166-1 alpha-2 code such as DE".to_owned(),
            ));
        }
        Ok(self)
    }
}

/// The checkout session as the cart handed it over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutSnapshot {
    pub items: Vec<LineItem>,
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub subtotal: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub discount: Decimal,
    pub promo_code: Option<String>,
    pub address: Address,
    pub courier: String,
    pub payment_gateway: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippingQuote {
    #[serde(with = "rust_decimal::serde::str")]
    pub cost: Decimal,
    pub currency: String,
    pub zone: String,
    pub estimated_days: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    #[serde(with = "rust_decimal::serde::str")]
    pub subtotal: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub discount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub shipping: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("{what} is priced in {found}, the order in {expected}")]
    CurrencyMismatch {
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("the order has no items")]
    Empty,
}

/// The final prices: the reserved unit prices (the catalogue's price when stock was held),
/// the checkout's discount — never more than the new subtotal — and the shipping quote.
pub fn final_totals(
    reserved: &[LineItem],
    checkout: &CheckoutSnapshot,
    shipping: &ShippingQuote,
) -> Result<Totals, PricingError> {
    if reserved.is_empty() {
        return Err(PricingError::Empty);
    }
    if !shipping.currency.eq_ignore_ascii_case(&checkout.currency) {
        return Err(PricingError::CurrencyMismatch {
            what: "shipping",
            expected: checkout.currency.clone(),
            found: shipping.currency.clone(),
        });
    }
    let subtotal: Decimal = reserved
        .iter()
        .map(|item| item.unit_price * Decimal::from(item.quantity))
        .sum();
    let subtotal = commerce_runtime::api::money_scale(subtotal);
    let discount =
        commerce_runtime::api::money_scale(checkout.discount.max(Decimal::ZERO)).min(subtotal);
    let shipping_cost = commerce_runtime::api::money_scale(shipping.cost);
    Ok(Totals {
        subtotal,
        discount,
        shipping: shipping_cost,
        total: subtotal - discount + shipping_cost,
    })
}

/// An order as stored and shown.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    pub checkout_session_id: Uuid,
    pub items: Vec<LineItem>,
    pub currency: Option<String>,
    pub totals: Option<Totals>,
    pub promo_code: Option<String>,
    pub shipping_address: Option<Address>,
    pub courier: Option<String>,
    pub payment_gateway: Option<String>,
    pub payment_id: Option<Uuid>,
    #[serde(skip)]
    pub payment_client_secret: Option<String>,
    pub payment_due_at: Option<DateTime<Utc>>,
    pub reminders_sent: i32,
    pub failure_reason: Option<String>,
    /// Money given back so far (staff refunds, or a canceled order's payment).
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded_amount: Decimal,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A line of an order's history: a change of status, or a note under the same status.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub status: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A refund the payment service made on an order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRefund {
    pub refund_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    /// "pending", "succeeded" or "failed", as the provider answered.
    pub status: String,
    /// "succeeded" while partly refunded, "refunded" once nothing is left.
    pub payment_status: String,
}

/// The order-history line of a refund.
pub fn refund_note(amount: Decimal, currency: &str, reason: &str) -> String {
    let amount = commerce_runtime::api::money_scale(amount);
    match reason.trim() {
        "" => format!("refunded {amount} {currency}"),
        reason => format!("refunded {amount} {currency}: {reason}"),
    }
}

/// The order's totals with a new shipping cost (a delivery change keeps items and discount).
pub fn with_shipping(totals: Totals, shipping: &ShippingQuote) -> Totals {
    let shipping = commerce_runtime::api::money_scale(shipping.cost);
    Totals {
        shipping,
        total: totals.subtotal - totals.discount + shipping,
        ..totals
    }
}

/// The moments, counted from placement, at which an unpaid order's owner is reminded.
/// Reminders at or after the payment deadline are pointless and dropped.
pub fn reminder_times(
    placed_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    offsets: &[std::time::Duration],
) -> Vec<DateTime<Utc>> {
    let mut times: Vec<DateTime<Utc>> = offsets
        .iter()
        .filter_map(|offset| chrono::Duration::from_std(*offset).ok())
        .map(|offset| placed_at + offset)
        .filter(|at| *at < due_at)
        .collect();
    times.sort();
    times
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(raw: &str) -> Decimal {
        Decimal::from_str(raw).unwrap()
    }

    fn item(price: &str, quantity: i64) -> LineItem {
        LineItem {
            product_id: Uuid::now_v7(),
            sku: "SKU".into(),
            name: "Thing".into(),
            quantity,
            unit_price: dec(price),
        }
    }

    #[test]
    fn a_refund_note_says_how_much_and_why() {
        assert_eq!(
            refund_note(dec("5"), "USD", " a scratched mug "),
            "refunded 5.00 USD: a scratched mug"
        );
        assert_eq!(refund_note(dec("19.5"), "EUR", ""), "refunded 19.50 EUR");
    }

    fn checkout(discount: &str) -> CheckoutSnapshot {
        CheckoutSnapshot {
            items: vec![],
            currency: "USD".into(),
            subtotal: dec("0"),
            discount: dec(discount),
            promo_code: None,
            address: Address::default(),
            courier: "standard".into(),
            payment_gateway: "offline".into(),
        }
    }

    fn quote(cost: &str, currency: &str) -> ShippingQuote {
        ShippingQuote {
            cost: dec(cost),
            currency: currency.into(),
            zone: "US".into(),
            estimated_days: 3,
        }
    }

    #[test]
    fn totals_use_reserved_prices_discount_and_shipping() {
        let totals = final_totals(
            &[item("19.99", 2), item("5.00", 1)],
            &checkout("4.50"),
            &quote("7.25", "USD"),
        )
        .unwrap();
        assert_eq!(totals.subtotal, dec("44.98"));
        assert_eq!(totals.discount, dec("4.50"));
        assert_eq!(totals.shipping, dec("7.25"));
        assert_eq!(totals.total, dec("47.73"));
    }

    #[test]
    fn discount_never_exceeds_the_subtotal() {
        let totals = final_totals(&[item("3.00", 1)], &checkout("10"), &quote("2", "usd")).unwrap();
        assert_eq!(totals.discount, dec("3.00"));
        assert_eq!(totals.total, dec("2.00"));
    }

    #[test]
    fn shipping_in_another_currency_is_refused() {
        let error =
            final_totals(&[item("3.00", 1)], &checkout("0"), &quote("2", "EUR")).unwrap_err();
        assert!(error.to_string().contains("shipping is priced in EUR"));
        assert_eq!(
            final_totals(&[], &checkout("0"), &quote("2", "USD")).unwrap_err(),
            PricingError::Empty
        );
    }

    #[test]
    fn reminders_fall_before_the_deadline_in_order() {
        let placed = Utc::now();
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        let times = reminder_times(
            placed,
            placed + chrono::Duration::hours(24),
            &[hours(12), hours(4), hours(22), hours(30)],
        );
        assert_eq!(
            times,
            vec![
                placed + chrono::Duration::hours(4),
                placed + chrono::Duration::hours(12),
                placed + chrono::Duration::hours(22)
            ]
        );
    }

    #[test]
    fn statuses_round_trip() {
        for raw in ["PLACING", "PENDING_PAYMENT", "FAILED", "CANCELED"] {
            assert_eq!(OrderStatus::parse(raw).unwrap().as_str(), raw);
        }
        assert_eq!(OrderStatus::parse("pending"), None);
    }
}
