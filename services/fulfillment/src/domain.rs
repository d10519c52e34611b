//! Parcels and rates. No I/O here.

use rust_decimal::Decimal;

/// A rule a value broke, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// One line of a parcel: how many units, and one unit's weight (None: the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParcelLine {
    pub quantity: i64,
    pub unit_weight_g: Option<i64>,
}

/// The parcel's weight in grams, checking every line.
pub fn parcel_weight(lines: &[ParcelLine], default_unit_weight_g: i64) -> Result<i64, Invalid> {
    if lines.is_empty() {
        return Err(invalid("items", "at least one item is required"));
    }
    let mut total: i64 = 0;
    for (index, line) in lines.iter().enumerate() {
        if !(1..=10_000).contains(&line.quantity) {
            return Err(invalid(
                format!("items[{index}].quantity"),
                "must be 1 to 10000",
            ));
        }
        let unit = line.unit_weight_g.unwrap_or(default_unit_weight_g);
        if !(1..=1_000_000).contains(&unit) {
            return Err(invalid(
                format!("items[{index}].weight_grams"),
                "must be 1 to 1000000",
            ));
        }
        total = total.saturating_add(unit.saturating_mul(line.quantity));
    }
    Ok(total)
}

pub fn check_country(country: &str) -> Result<(), Invalid> {
    if country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(invalid(
            "destination_country",
            "must be a two-letter ISO 3166-1 code such as US",
        ))
    }
}

/// One row of a rate table.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    pub zone: String,
    pub max_weight_g: i64,
    pub price: Decimal,
    pub currency: String,
    pub estimated_days: i32,
}

/// The rate for a parcel: the destination's own zone if the courier serves it, else the
/// rest-of-world zone; within it, the smallest bracket that holds the weight.
pub fn choose_rate<'a>(rates: &'a [Rate], country: &str, weight_g: i64) -> Option<&'a Rate> {
    let zone = if rates.iter().any(|rate| rate.zone == country) {
        country
    } else {
        "*"
    };
    rates
        .iter()
        .filter(|rate| rate.zone == zone && rate.max_weight_g >= weight_g)
        .min_by_key(|rate| rate.max_weight_g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(zone: &str, max: i64, price: i64) -> Rate {
        Rate {
            zone: zone.into(),
            max_weight_g: max,
            price: Decimal::from(price),
            currency: "USD".into(),
            estimated_days: 3,
        }
    }

    #[test]
    fn weights_add_up_with_defaults() {
        let lines = [
            ParcelLine {
                quantity: 2,
                unit_weight_g: Some(300),
            },
            ParcelLine {
                quantity: 1,
                unit_weight_g: None,
            },
        ];
        assert_eq!(parcel_weight(&lines, 500), Ok(1100));
        assert_eq!(parcel_weight(&[], 500).unwrap_err().field, "items");
        let zero = [ParcelLine {
            quantity: 0,
            unit_weight_g: None,
        }];
        assert_eq!(
            parcel_weight(&zero, 500).unwrap_err().field,
            "items[0].quantity"
        );
    }

    #[test]
    fn the_smallest_bracket_of_the_right_zone_applies() {
        let rates = [
            rate("US", 1000, 5),
            rate("US", 5000, 9),
            rate("*", 5000, 24),
        ];
        assert_eq!(
            choose_rate(&rates, "US", 800).unwrap().price,
            Decimal::from(5)
        );
        assert_eq!(
            choose_rate(&rates, "US", 1000).unwrap().price,
            Decimal::from(5)
        );
        assert_eq!(
            choose_rate(&rates, "US", 1001).unwrap().price,
            Decimal::from(9)
        );
        assert_eq!(choose_rate(&rates, "DE", 800).unwrap().zone, "*");
        assert!(choose_rate(&rates, "US", 6000).is_none());
        assert!(check_country("us").is_err());
    }
}

/// Where a parcel goes (or comes from).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// A fulfillment's status; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FulfillmentStatus {
    Pending,
    InProgress,
    Shipped,
    Delivered,
}

impl FulfillmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InProgress => "IN_PROGRESS",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::InProgress,
            Self::Shipped,
            Self::Delivered,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }

    /// Whether a report of `to` moves a fulfillment in this status: only forward, and
    /// only once the carrier has the shipment.
    pub fn advances_to(self, to: Self) -> bool {
        self >= Self::InProgress && to > self && to >= Self::Shipped
    }
}

#[cfg(test)]
mod status_tests {
    use super::FulfillmentStatus::*;

    #[test]
    fn statuses_only_move_forward_after_the_carrier_has_it() {
        assert!(InProgress.advances_to(Shipped));
        assert!(InProgress.advances_to(Delivered));
        assert!(Shipped.advances_to(Delivered));
        assert!(!Delivered.advances_to(Shipped));
        assert!(!Shipped.advances_to(Shipped));
        assert!(
            !Pending.advances_to(Shipped),
            "nothing ships before the carrier has it"
        );
    }
}
