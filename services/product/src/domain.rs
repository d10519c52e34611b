//! Catalogue entities and their invariants. No I/O here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A rule a value broke, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field,
        message: message.into(),
    }
}

/// A non-negative decimal amount in an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
}

/// More units than any shelf holds: larger counts are typing mistakes (and would overflow
/// the sums stock is checked with).
pub const MAX_STOCK: i64 = 1_000_000_000;

impl Money {
    pub fn new(amount: Decimal, currency: &str) -> Result<Self, ValidationError> {
        if amount.is_sign_negative() {
            return Err(invalid("price.amount", "must not be negative"));
        }
        if amount.scale() > 4 {
            return Err(invalid("price.amount", "has more than 4 decimal places"));
        }
        // Stored as NUMERIC(19, 4): at most 15 integer digits.
        if amount >= Decimal::from(1_000_000_000_000_000_i64) {
            return Err(invalid("price.amount", "is too large"));
        }
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "price.currency",
                "must be a three-letter ISO 4217 code such as USD",
            ));
        }
        Ok(Self {
            amount,
            currency: currency.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    pub stock: i64,
    pub reserved: i64,
    pub attributes: BTreeMap<String, String>,
    pub images: Vec<String>,
    pub active: bool,
    pub version: i64,
    /// Changes with every write, stock included; orders cache entries.
    #[serde(skip)]
    pub revision: i64,
    /// Units deducted for paid orders, less those restocked. Not shown to shoppers; search
    /// ranks by it.
    #[serde(skip)]
    pub units_sold: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    pub fn available(&self) -> i64 {
        self.stock - self.reserved
    }
}

/// A product about to enter the catalogue, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    pub stock: i64,
    pub attributes: BTreeMap<String, String>,
    pub images: Vec<String>,
    pub active: bool,
}

/// The editable description of a product (everything but SKU and stock, which have their
/// own rules), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductDetails {
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    pub attributes: BTreeMap<String, String>,
    pub images: Vec<String>,
    pub active: bool,
}

impl ProductDetails {
    pub fn validate(mut self) -> Result<Self, ValidationError> {
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() || self.name.chars().count() > 200 {
            return Err(invalid("name", "must be 1 to 200 characters"));
        }
        self.category = self.category.trim().to_owned();
        if self.category.is_empty() || self.category.chars().count() > 100 {
            return Err(invalid("category", "must be 1 to 100 characters"));
        }
        self.description = self.description.trim().to_owned();
        if self.description.chars().count() > 5000 {
            return Err(invalid("description", "must be at most 5000 characters"));
        }
        if self.attributes.len() > 50 {
            return Err(invalid("attributes", "at most 50 attributes"));
        }
        if let Some((key, _)) = self
            .attributes
            .iter()
            .find(|(key, value)| key.is_empty() || key.len() > 64 || value.len() > 500)
        {
            return Err(invalid(
                "attributes",
                format!("`{key}`: keys are 1 to 64 characters, values at most 500"),
            ));
        }
        if self.images.len() > 20 {
            return Err(invalid("images", "at most 20 images"));
        }
        if let Some(bad) = self.images.iter().find(|url| {
            !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048
        }) {
            return Err(invalid("images", format!("`{bad}` is not an http(s) URL")));
        }
        Ok(self)
    }
}

impl NewProduct {
    pub fn new(
        sku: &str,
        name: &str,
        description: &str,
        category: &str,
        price: Money,
        stock: i64,
    ) -> Result<Self, ValidationError> {
        Self::with_details(
            sku,
            ProductDetails {
                name: name.to_owned(),
                description: description.to_owned(),
                category: category.to_owned(),
                price,
                attributes: BTreeMap::new(),
                images: Vec::new(),
                active: true,
            },
            stock,
        )
    }

    pub fn with_details(
        sku: &str,
        details: ProductDetails,
        stock: i64,
    ) -> Result<Self, ValidationError> {
        let sku = sku.trim();
        if sku.is_empty() || sku.len() > 64 {
            return Err(invalid("sku", "must be 1 to 64 characters"));
        }
        if !sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("sku", "may hold only letters, digits, '-' and '_'"));
        }
        if !(0..=MAX_STOCK).contains(&stock) {
            return Err(invalid("stock", format!("must be 0 to {MAX_STOCK}")));
        }
        let details = details.validate()?;
        Ok(Self {
            sku: sku.to_owned(),
            name: details.name,
            description: details.description,
            category: details.category,
            price: details.price,
            stock,
            attributes: details.attributes,
            images: details.images,
            active: details.active,
        })
    }
}

/// One line of a reservation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationLine {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// Merges repeated products and checks quantities: the shape every reservation has.
pub fn normalize_lines(lines: &[ReservationLine]) -> Result<Vec<ReservationLine>, ValidationError> {
    if lines.is_empty() {
        return Err(invalid("items", "at least one item is required"));
    }
    if lines.len() > 100 {
        return Err(invalid("items", "at most 100 items per order"));
    }
    let mut merged: BTreeMap<Uuid, i64> = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        if line.quantity <= 0 || line.quantity > 10_000 {
            return Err(ValidationError {
                field: "items.quantity",
                message: format!("items[{index}]: quantity must be 1 to 10000"),
            });
        }
        *merged.entry(line.product_id).or_default() += line.quantity;
    }
    // Sorted by id: rows are locked in one global order, so reservations never deadlock.
    Ok(merged
        .into_iter()
        .map(|(product_id, quantity)| ReservationLine {
            product_id,
            quantity,
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Reserved,
    Deducted,
    Released,
    /// Deducted, then given back to stock (an order canceled after payment).
    Restocked,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Deducted => "deducted",
            Self::Released => "released",
            Self::Restocked => "restocked",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "reserved" => Some(Self::Reserved),
            "deducted" => Some(Self::Deducted),
            "released" => Some(Self::Released),
            "restocked" => Some(Self::Restocked),
            _ => None,
        }
    }
}

/// One page of a listing, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: u32,
    pub size: u32,
}

impl Page {
    pub const MAX_SIZE: u32 = 100;

    pub fn new(number: Option<u32>, size: Option<u32>) -> Result<Self, ValidationError> {
        let number = number.unwrap_or(1);
        let size = size.unwrap_or(20);
        if number == 0 {
            return Err(invalid("page", "starts at 1"));
        }
        if size == 0 || size > Self::MAX_SIZE {
            return Err(invalid(
                "pageSize",
                format!("must be 1 to {}", Self::MAX_SIZE),
            ));
        }
        Ok(Self { number, size })
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.number - 1) * i64::from(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn usd(amount: &str) -> Money {
        Money::new(Decimal::from_str(amount).unwrap(), "USD").unwrap()
    }

    #[test]
    fn money_rejects_negative_and_bad_currency() {
        assert_eq!(
            Money::new(Decimal::from_str("-1").unwrap(), "USD")
                .unwrap_err()
                .field,
            "price.amount"
        );
        assert_eq!(
            Money::new(Decimal::ONE, "usd").unwrap_err().field,
            "price.currency"
        );
        assert_eq!(
            Money::new(Decimal::from_str("1.00001").unwrap(), "USD")
                .unwrap_err()
                .field,
            "price.amount"
        );
        assert_eq!(usd("19.99").amount.to_string(), "19.99");
        assert_eq!(
            Money::new(Decimal::from(1_000_000_000_000_000_i64), "USD")
                .unwrap_err()
                .field,
            "price.amount"
        );
    }

    #[test]
    fn new_product_validates_each_field() {
        let ok = NewProduct::new(" MUG-1 ", " Mug ", "", "kitchen", usd("9.50"), 3).unwrap();
        assert_eq!((ok.sku.as_str(), ok.name.as_str()), ("MUG-1", "Mug"));
        let field = |sku, name, category, stock| {
            NewProduct::new(sku, name, "", category, usd("1"), stock)
                .unwrap_err()
                .field
        };
        assert_eq!(field("", "Mug", "k", 1), "sku");
        assert_eq!(field("a b", "Mug", "k", 1), "sku");
        assert_eq!(field("A", " ", "k", 1), "name");
        assert_eq!(field("A", "Mug", "", 1), "category");
        assert_eq!(field("A", "Mug", "k", -1), "stock");
        assert_eq!(field("A", "Mug", "k", MAX_STOCK + 1), "stock");
    }

    #[test]
    fn details_check_urls_and_attributes() {
        let details = || ProductDetails {
            name: " Lamp ".into(),
            description: String::new(),
            category: "home".into(),
            price: usd("1"),
            attributes: BTreeMap::new(),
            images: vec!["https://cdn.example.com/lamp.jpg".into()],
            active: true,
        };
        assert_eq!(details().validate().unwrap().name, "Lamp");
        let mut bad = details();
        bad.images = vec!["javascript:alert(1)".into()];
        assert_eq!(bad.validate().unwrap_err().field, "images");
        let mut bad = details();
        bad.attributes.insert(String::new(), "x".into());
        assert_eq!(bad.validate().unwrap_err().field, "attributes");
    }

    #[test]
    fn reservation_lines_merge_and_sort() {
        let (a, b) = (Uuid::from_u128(2), Uuid::from_u128(1));
        let lines = normalize_lines(&[
            ReservationLine {
                product_id: a,
                quantity: 2,
            },
            ReservationLine {
                product_id: b,
                quantity: 1,
            },
            ReservationLine {
                product_id: a,
                quantity: 3,
            },
        ])
        .unwrap();
        assert_eq!(
            lines,
            [
                ReservationLine {
                    product_id: b,
                    quantity: 1
                },
                ReservationLine {
                    product_id: a,
                    quantity: 5
                }
            ]
        );
        assert_eq!(normalize_lines(&[]).unwrap_err().field, "items");
        let zero = [ReservationLine {
            product_id: a,
            quantity: 0,
        }];
        assert_eq!(normalize_lines(&zero).unwrap_err().field, "items.quantity");
    }

    #[test]
    fn pages_are_bounded() {
        assert_eq!(
            Page::new(None, None).unwrap(),
            Page {
                number: 1,
                size: 20
            }
        );
        assert_eq!(Page::new(Some(3), Some(10)).unwrap().offset(), 20);
        assert_eq!(Page::new(Some(0), None).unwrap_err().field, "page");
        assert_eq!(Page::new(None, Some(101)).unwrap_err().field, "pageSize");
    }
}
