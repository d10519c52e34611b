//! Payments and their rules. No I/O here.

use std::str::FromStr;

use rust_decimal::Decimal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

/// A validated amount to charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub amount: Decimal,
    pub currency: String,
}

impl Charge {
    pub fn parse(amount: &str, currency: &str) -> Result<Self, Invalid> {
        let invalid = |field, message: &str| Invalid {
            field,
            message: message.to_owned(),
        };
        let amount = Decimal::from_str(amount.trim())
            .map_err(|_| invalid("amount", "must be a decimal string"))?;
        if amount <= Decimal::ZERO {
            return Err(invalid("amount", "must be positive"));
        }
        if amount.scale() > 4 {
            return Err(invalid("amount", "has more than 4 decimal places"));
        }
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "amount.currency",
                "must be an ISO 4217 code such as USD",
            ));
        }
        Ok(Self {
            amount: amount.normalize(),
            currency: currency.to_owned(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    RequiresPayment,
    Succeeded,
    Failed,
    Canceled,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresPayment => "requires_payment",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::RequiresPayment,
            Self::Succeeded,
            Self::Failed,
            Self::Canceled,
            Self::Refunded,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
    }

    /// Whether an intent in this status may still be cancelled.
    pub fn cancellable(self) -> bool {
        matches!(self, Self::RequiresPayment | Self::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_validated() {
        assert_eq!(
            Charge::parse("19.90", "USD").unwrap().amount.to_string(),
            "19.9"
        );
        assert_eq!(Charge::parse("0", "USD").unwrap_err().field, "amount");
        assert_eq!(Charge::parse("abc", "USD").unwrap_err().field, "amount");
        assert_eq!(
            Charge::parse("1", "usd").unwrap_err().field,
            "amount.currency"
        );
    }

    #[test]
    fn statuses_round_trip_and_cancel_rules() {
        assert_eq!(
            PaymentStatus::parse("canceled"),
            Some(PaymentStatus::Canceled)
        );
        assert!(PaymentStatus::RequiresPayment.cancellable());
        assert!(!PaymentStatus::Succeeded.cancellable());
    }
}
