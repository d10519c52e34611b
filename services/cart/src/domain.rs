//! Carts, promo codes and checkout totals. No I/O here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

/// A rule a value broke, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

pub fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

pub const MAX_QUANTITY: i64 = 999;
pub const MAX_LINES: usize = 100;

pub fn check_quantity(quantity: i64) -> Result<(), Invalid> {
    if (1..=MAX_QUANTITY).contains(&quantity) {
        Ok(())
    } else {
        Err(invalid("quantity", format!("must be 1 to {MAX_QUANTITY}")))
    }
}

/// A cart line priced against the catalogue now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricedLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
    pub currency: String,
    /// Units the catalogue can still sell.
    pub available: i64,
}

impl PricedLine {
    pub fn total(&self) -> Decimal {
        self.unit_price * Decimal::from(self.quantity)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromoKind {
    Percent,
    Fixed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromoCode {
    pub code: String,
    pub kind: PromoKind,
    #[serde(with = "rust_decimal::serde::str")]
    pub value: Decimal,
    pub currency: Option<String>,
    #[serde(with = "rust_decimal::serde::str")]
    pub min_subtotal: Decimal,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub max_uses: Option<i32>,
    pub max_uses_per_user: Option<i32>,
    pub uses: i32,
}

/// Amounts are stored as NUMERIC(19, 4): at most 15 integer digits and 4 decimal places.
fn check_amount(field: &'static str, amount: Decimal) -> Result<(), Invalid> {
    if amount.scale() > 4 {
        return Err(invalid(field, "has more than 4 decimal places"));
    }
    if amount.abs() >= Decimal::from(1_000_000_000_000_000_i64) {
        return Err(invalid(field, "is too large"));
    }
    Ok(())
}

impl PromoCode {
    /// Codes are case-insensitive; stored upper case.
    pub fn normalize(code: &str) -> String {
        code.trim().to_uppercase()
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if self.code.is_empty()
            || self.code.len() > 32
            || !self
                .code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid("code", "must be 1 to 32 letters, digits or '-'"));
        }
        if self.value <= Decimal::ZERO {
            return Err(invalid("value", "must be positive"));
        }
        check_amount("value", self.value)?;
        if self.min_subtotal < Decimal::ZERO {
            return Err(invalid("minSubtotal", "must not be negative"));
        }
        check_amount("minSubtotal", self.min_subtotal)?;
        if let Some(currency) = &self.currency
            && (currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(invalid(
                "currency",
                "must be a three-letter ISO 4217 code such as USD",
            ));
        }
        match self.kind {
            PromoKind::Percent if self.value > Decimal::ONE_HUNDRED => {
                Err(invalid("value", "a percentage is at most 100"))
            }
            PromoKind::Fixed if self.currency.is_none() => {
                Err(invalid("currency", "a fixed discount needs a currency"))
            }
            _ if self.ends_at.is_some_and(|end| end <= self.starts_at) => {
                Err(invalid("endsAt", "must be after startsAt"))
            }
            _ if self.max_uses.is_some_and(|n| n < 1) => {
                Err(invalid("maxUses", "must be at least 1"))
            }
            _ if self.max_uses_per_user.is_some_and(|n| n < 1) => {
                Err(invalid("maxUsesPerUser", "must be at least 1"))
            }
            _ => Ok(()),
        }
    }

    /// The discount on `subtotal`, or why the code does not apply. `user_uses` is how often
    /// this customer has redeemed it.
    pub fn discount(
        &self,
        subtotal: Decimal,
        currency: &str,
        now: DateTime<Utc>,
        user_uses: i64,
    ) -> Result<Decimal, String> {
        if now < self.starts_at {
            return Err(format!("code {} is not valid yet", self.code));
        }
        if self.ends_at.is_some_and(|end| now >= end) {
            return Err(format!("code {} has expired", self.code));
        }
        if self.max_uses.is_some_and(|max| self.uses >= max) {
            return Err(format!("code {} has been used up", self.code));
        }
        if self
            .max_uses_per_user
            .is_some_and(|max| user_uses >= i64::from(max))
        {
            return Err(format!("you have already used code {}", self.code));
        }
        if subtotal < self.min_subtotal {
            return Err(format!(
                "code {} needs a subtotal of at least {}",
                self.code,
                self.min_subtotal.normalize()
            ));
        }
        let discount = match self.kind {
            PromoKind::Percent => (subtotal * self.value / Decimal::ONE_HUNDRED)
                .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero),
            PromoKind::Fixed => {
                if self.currency.as_deref() != Some(currency) {
                    return Err(format!(
                        "code {} is for {} carts",
                        self.code,
                        self.currency.as_deref().unwrap_or("other")
                    ));
                }
                self.value
            }
        };
        // Never more than the goods cost.
        Ok(discount.min(subtotal))
    }
}

/// What a cart adds up to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    #[serde(with = "rust_decimal::serde::str")]
    pub subtotal: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub discount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    pub currency: String,
}

/// Sums the lines; a cart holds one currency.
pub fn totals(lines: &[PricedLine], discount: Decimal) -> Result<Totals, Invalid> {
    let currency = lines
        .first()
        .map(|line| line.currency.clone())
        .unwrap_or_else(|| "USD".to_owned());
    if lines.iter().any(|line| line.currency != currency) {
        return Err(invalid("items", "a cart cannot mix currencies"));
    }
    let subtotal: Decimal = lines.iter().map(PricedLine::total).sum();
    Ok(Totals {
        subtotal,
        discount,
        total: subtotal - discount,
        currency,
    })
}

/// Signs and checks guest cart tokens: `<cart owner id>.<HMAC-SHA256 of it>`, both
/// base64url. The server issues them, so a guest cart is held only by the client it was
/// given to; the key derives from the cart service's client secret (one per install or
/// Shop), and rotating that secret ends every guest cart.
#[derive(Clone)]
pub struct GuestCartKey(Hmac<Sha256>);

/// Labels the derived key so it is used for nothing else.
const GUEST_CART_KEY_LABEL: &[u8] = b"commerce guest-cart token v1";

impl GuestCartKey {
    pub fn derive(secret: &str) -> Self {
        let mut derivation =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        derivation.update(GUEST_CART_KEY_LABEL);
        let key = derivation.finalize().into_bytes();
        Self(Hmac::new_from_slice(&key).expect("HMAC takes any key length"))
    }

    /// A token for a new guest cart.
    pub fn issue(&self) -> (Uuid, String) {
        let id = Uuid::new_v4();
        (id, self.sign(id))
    }

    pub fn sign(&self, id: Uuid) -> String {
        let mut mac = self.0.clone();
        mac.update(id.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(id.as_bytes()),
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The guest cart a token names, if this key signed it (compared in constant time).
    pub fn verify(&self, token: &str) -> Option<Uuid> {
        let (id, signature) = token.trim().split_once('.')?;
        let id = Uuid::from_slice(&URL_SAFE_NO_PAD.decode(id).ok()?).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.0.clone();
        mac.update(id.as_bytes());
        mac.verify_slice(&signature).ok().map(|()| id)
    }
}

impl std::fmt::Debug for GuestCartKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("GuestCartKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn code(kind: PromoKind, value: &str) -> PromoCode {
        PromoCode {
            code: "SAVE".into(),
            kind,
            value: Decimal::from_str(value).unwrap(),
            currency: Some("USD".into()),
            min_subtotal: Decimal::from(20),
            starts_at: Utc::now() - chrono::Duration::hours(1),
            ends_at: Some(Utc::now() + chrono::Duration::hours(1)),
            max_uses: Some(2),
            max_uses_per_user: Some(1),
            uses: 0,
        }
    }

    #[test]
    fn percent_and_fixed_discounts_round_and_cap() {
        let now = Utc::now();
        let percent = code(PromoKind::Percent, "15");
        assert_eq!(
            percent.discount(Decimal::from_str("33.33").unwrap(), "USD", now, 0),
            Ok(Decimal::from_str("5.00").unwrap())
        );
        let fixed = code(PromoKind::Fixed, "50");
        assert_eq!(
            fixed.discount(Decimal::from(30), "USD", now, 0),
            Ok(Decimal::from(30)),
            "capped at the subtotal"
        );
        assert!(
            fixed
                .discount(Decimal::from(30), "EUR", now, 0)
                .unwrap_err()
                .contains("USD")
        );
    }

    #[test]
    fn amounts_must_fit_the_stored_precision() {
        let field_of = |promo: PromoCode| promo.validate().map_err(|invalid| invalid.field);
        assert_eq!(field_of(code(PromoKind::Fixed, "5.5")), Ok(()));
        assert_eq!(field_of(code(PromoKind::Fixed, "1.00001")), Err("value"));
        assert_eq!(
            field_of(code(PromoKind::Fixed, "1000000000000000")),
            Err("value")
        );
        let mut negative = code(PromoKind::Percent, "10");
        negative.min_subtotal = Decimal::from_str("-1").unwrap();
        assert_eq!(field_of(negative), Err("minSubtotal"));
        let mut huge = code(PromoKind::Percent, "10");
        huge.min_subtotal = Decimal::from_str("-7370857783268215998489.7")
            .unwrap()
            .abs();
        assert_eq!(field_of(huge), Err("minSubtotal"));
        let mut currency = code(PromoKind::Fixed, "5");
        currency.currency = Some("usd".into());
        assert_eq!(field_of(currency), Err("currency"));
    }

    #[test]
    fn every_rule_gives_its_reason() {
        let now = Utc::now();
        let promo = code(PromoKind::Percent, "10");
        assert!(
            promo
                .discount(Decimal::from(10), "USD", now, 0)
                .unwrap_err()
                .contains("at least 20")
        );
        assert!(
            promo
                .discount(Decimal::from(30), "USD", now, 1)
                .unwrap_err()
                .contains("already used")
        );
        let used_up = PromoCode {
            uses: 2,
            ..promo.clone()
        };
        assert!(
            used_up
                .discount(Decimal::from(30), "USD", now, 0)
                .unwrap_err()
                .contains("used up")
        );
        let later = now + chrono::Duration::hours(2);
        assert!(
            promo
                .discount(Decimal::from(30), "USD", later, 0)
                .unwrap_err()
                .contains("expired")
        );
        let earlier = now - chrono::Duration::hours(2);
        assert!(
            promo
                .discount(Decimal::from(30), "USD", earlier, 0)
                .unwrap_err()
                .contains("not valid yet")
        );
    }

    #[test]
    fn promo_definitions_are_checked() {
        assert!(code(PromoKind::Percent, "10").validate().is_ok());
        assert_eq!(
            code(PromoKind::Percent, "150")
                .validate()
                .unwrap_err()
                .field,
            "value"
        );
        let no_currency = PromoCode {
            currency: None,
            ..code(PromoKind::Fixed, "5")
        };
        assert_eq!(no_currency.validate().unwrap_err().field, "currency");
        let bad_code = PromoCode {
            code: "NO SPACES".into(),
            ..code(PromoKind::Fixed, "5")
        };
        assert_eq!(bad_code.validate().unwrap_err().field, "code");
        assert_eq!(PromoCode::normalize(" save10 "), "SAVE10");
    }

    #[test]
    fn totals_refuse_mixed_currencies() {
        let line = |currency: &str, price: i64, quantity: i64| PricedLine {
            product_id: Uuid::new_v4(),
            sku: "S".into(),
            name: "N".into(),
            quantity,
            unit_price: Decimal::from(price),
            currency: currency.into(),
            available: 10,
        };
        let sum = totals(&[line("USD", 3, 2), line("USD", 4, 1)], Decimal::ONE).unwrap();
        assert_eq!(
            (sum.subtotal, sum.total),
            (Decimal::from(10), Decimal::from(9))
        );
        assert_eq!(
            totals(&[line("USD", 1, 1), line("EUR", 1, 1)], Decimal::ZERO)
                .unwrap_err()
                .field,
            "items"
        );
        assert_eq!(check_quantity(0).unwrap_err().field, "quantity");
        assert!(check_quantity(999).is_ok());
    }

    #[test]
    fn guest_cart_tokens_are_issued_and_checked_by_the_key() {
        let key = GuestCartKey::derive("a-secret-of-at-least-twenty-four-chars");
        let (id, token) = key.issue();
        assert_eq!(key.verify(&token), Some(id));
        assert_ne!(key.issue().0, id, "each token names a new cart");

        // Another install's key, a chosen id, a changed id or signature: none is a cart.
        let other = GuestCartKey::derive("another-secret-of-twenty-four-chars");
        assert_eq!(other.verify(&token), None);
        assert_eq!(key.verify(&id.to_string()), None);
        let (_, signature) = token.split_once('.').unwrap();
        let someone_else = URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes());
        assert_eq!(key.verify(&format!("{someone_else}.{signature}")), None);
        let mut tampered = token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(key.verify(&tampered), None);
        assert_eq!(key.verify(""), None);
        assert_eq!(key.verify("."), None);
        assert_eq!(format!("{key:?}"), "GuestCartKey(***)");
    }
}
