//! Catalogue entities and their invariants. No I/O here.

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

impl Money {
    pub fn new(amount: Decimal, currency: &str) -> Result<Self, ValidationError> {
        if amount.is_sign_negative() {
            return Err(invalid("price.amount", "must not be negative"));
        }
        if amount.scale() > 4 {
            return Err(invalid("price.amount", "has more than 4 decimal places"));
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

#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub version: i64,
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
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(invalid("name", "must be 1 to 200 characters"));
        }
        let category = category.trim();
        if category.is_empty() || category.chars().count() > 100 {
            return Err(invalid("category", "must be 1 to 100 characters"));
        }
        if stock < 0 {
            return Err(invalid("stock", "must not be negative"));
        }
        Ok(Self {
            sku: sku.to_owned(),
            name: name.to_owned(),
            description: description.trim().to_owned(),
            category: category.to_owned(),
            price,
            stock,
        })
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
