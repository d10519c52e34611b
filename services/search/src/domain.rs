//! What is searched and how a search is asked. No I/O here.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A product as the index keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductDoc {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    pub currency: String,
    /// Units available to buy now.
    pub stock: i64,
    pub image: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// The product's revision this document shows (the catalogue's `revision`): an
    /// event carrying an older one changes nothing. Kept in a fast field, not shown.
    #[serde(skip_serializing, default)]
    pub revision: i64,
    /// Units sold (the catalogue's `units_sold`): the "best selling" order and a boost
    /// in relevance. Kept in a fast field, not shown.
    #[serde(skip_serializing, default)]
    pub units_sold: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchSort {
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
    BestSelling,
}

impl SearchSort {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "relevance" => Some(Self::Relevance),
            "price_asc" => Some(Self::PriceAsc),
            "price_desc" => Some(Self::PriceDesc),
            "newest" => Some(Self::Newest),
            "best_selling" => Some(Self::BestSelling),
            _ => None,
        }
    }
}

/// A rule a search broke, naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidSearch {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidSearch {
    InvalidSearch {
        field,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    pub text: String,
    pub category: Option<String>,
    pub min_price: Option<Decimal>,
    pub max_price: Option<Decimal>,
    pub in_stock: Option<bool>,
    pub sort: SearchSort,
    pub page: u32,
    pub page_size: u32,
}

impl SearchQuery {
    pub const MAX_PAGE_SIZE: u32 = 100;

    pub fn validate(mut self) -> Result<Self, InvalidSearch> {
        self.text = self.text.trim().to_owned();
        if self.text.chars().count() > 200 {
            return Err(invalid("q", "must be at most 200 characters"));
        }
        if self.page == 0 {
            return Err(invalid("page", "starts at 1"));
        }
        if self.page_size == 0 || self.page_size > Self::MAX_PAGE_SIZE {
            return Err(invalid(
                "pageSize",
                format!("must be 1 to {}", Self::MAX_PAGE_SIZE),
            ));
        }
        if let (Some(min), Some(max)) = (self.min_price, self.max_price)
            && min > max
        {
            return Err(invalid("minPrice", "must not exceed maxPrice"));
        }
        if self.page.saturating_mul(self.page_size) > 10_000 {
            return Err(invalid(
                "page",
                "results beyond the first 10000 are not served; refine the search",
            ));
        }
        Ok(self)
    }

    pub fn offset(&self) -> usize {
        (self.page as usize - 1) * self.page_size as usize
    }
}

/// Words of a query as the index sees them: lower case, split on anything not a letter or
/// digit.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// How many typos a word may carry: none for short words, then one, then two.
pub fn typo_budget(word: &str) -> u8 {
    match word.chars().count() {
        0..=3 => 0,
        4..=5 => 1,
        _ => 2,
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResults {
    pub items: Vec<ProductDoc>,
    pub total: usize,
    pub page: u32,
    pub page_size: u32,
    /// Counts per category for this search with every filter but the category.
    pub categories: Vec<FacetCount>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> SearchQuery {
        SearchQuery {
            page: 1,
            page_size: 20,
            ..SearchQuery::default()
        }
    }

    #[test]
    fn validation_names_the_parameter() {
        assert!(query().validate().is_ok());
        assert_eq!(
            SearchQuery { page: 0, ..query() }
                .validate()
                .unwrap_err()
                .field,
            "page"
        );
        assert_eq!(
            SearchQuery {
                page_size: 101,
                ..query()
            }
            .validate()
            .unwrap_err()
            .field,
            "pageSize"
        );
        let inverted = SearchQuery {
            min_price: Some(Decimal::TEN),
            max_price: Some(Decimal::ONE),
            ..query()
        };
        assert_eq!(inverted.validate().unwrap_err().field, "minPrice");
        assert_eq!(
            SearchQuery {
                text: "x".repeat(201),
                ..query()
            }
            .validate()
            .unwrap_err()
            .field,
            "q"
        );
    }

    #[test]
    fn words_and_typo_budgets() {
        assert_eq!(words("Desk-Lamp, USB-C!"), ["desk", "lamp", "usb", "c"]);
        assert_eq!(
            (
                typo_budget("mug"),
                typo_budget("lamp"),
                typo_budget("iphnoe")
            ),
            (0, 1, 2)
        );
    }
}
