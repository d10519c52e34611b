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
    /// The same money: equal amounts (whatever their scale) in the same currency.
    pub fn same_as(&self, amount: Decimal, currency: &str) -> bool {
        self.amount == amount && self.currency.eq_ignore_ascii_case(currency)
    }

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

/// How much a refund returns: `requested`, or everything left when `None`. Refused when
/// nothing is left or more is asked than is left.
pub fn refund_amount(
    paid: Decimal,
    refunded: Decimal,
    requested: Option<Decimal>,
) -> Result<Decimal, Invalid> {
    let left = paid - refunded;
    if left <= Decimal::ZERO {
        return Err(Invalid {
            field: "amount",
            message: "the payment is already fully refunded".to_owned(),
        });
    }
    match requested {
        None => Ok(left),
        Some(amount) if amount <= Decimal::ZERO => Err(Invalid {
            field: "amount",
            message: "must be positive".to_owned(),
        }),
        Some(amount) if amount > left => Err(Invalid {
            field: "amount",
            message: format!("{amount} is more than the {left} left to refund"),
        }),
        Some(amount) => Ok(amount),
    }
}

/// What a verified webhook says happened, in the platform's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookKind {
    PaymentSucceeded {
        reference: String,
        /// What the provider says it took. The offline gateway says nothing: it takes
        /// exactly what it was asked for.
        paid: Option<Charge>,
    },
    PaymentFailed {
        reference: String,
        reason: String,
    },
    RefundSucceeded {
        payment_reference: String,
        refund_reference: String,
    },
    RefundFailed {
        payment_reference: String,
        refund_reference: String,
    },
    Dispute {
        payment_reference: String,
        dispute_reference: String,
        reason: String,
        amount: Option<Decimal>,
        status: String,
    },
    /// A kind of event the platform does not act on.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The provider's event id: replays carry the same one.
    pub id: String,
    pub event_type: String,
    pub kind: WebhookKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refunds_never_exceed_what_was_paid() {
        let dec = |raw: &str| Decimal::from_str(raw).unwrap();
        assert_eq!(refund_amount(dec("30"), dec("0"), None).unwrap(), dec("30"));
        assert_eq!(
            refund_amount(dec("30"), dec("10"), Some(dec("5"))).unwrap(),
            dec("5")
        );
        assert!(
            refund_amount(dec("30"), dec("10"), Some(dec("25")))
                .unwrap_err()
                .message
                .contains("more than the 20 left")
        );
        assert_eq!(
            refund_amount(dec("30"), dec("30"), None).unwrap_err().field,
            "amount"
        );
        assert!(refund_amount(dec("30"), dec("0"), Some(dec("-1"))).is_err());
    }

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
