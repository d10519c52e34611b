//! Identity entities and their rules. No I/O here.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use commerce_access::Role;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Unverified,
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unverified => "unverified",
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "unverified" => Some(Self::Unverified),
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The form e-mail addresses are stored and compared in.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Password policy: 12 to 128 characters, at least one letter and one digit, not all one
/// character. Length matters more than classes; the classes stop the most common picks.
pub fn check_password(password: &str) -> Result<(), &'static str> {
    let length = password.chars().count();
    if length < 12 {
        return Err("must be at least 12 characters");
    }
    if length > 128 {
        return Err("must be at most 128 characters");
    }
    if !password.chars().any(char::is_alphabetic) || !password.chars().any(|c| c.is_ascii_digit()) {
        return Err("must contain a letter and a digit");
    }
    let first = password.chars().next().unwrap_or_default();
    if password.chars().all(|c| c == first) {
        return Err("must not repeat one character");
    }
    Ok(())
}

/// A random secret (verification link, refresh token): 32 bytes, URL-safe base64.
pub fn new_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Secrets are stored only as their SHA-256: a database leak does not leak usable tokens.
/// (They are high-entropy, so a fast hash is enough; passwords use argon2id.)
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    pub label: String,
    pub recipient: String,
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: String,
    pub phone: String,
    pub is_default: bool,
}

/// Checks an ISO 3166-1 alpha-2 code's shape.
/// Who is really asking. Behind the gateway every request comes from the gateway's
/// address, and the client's is the first `X-Forwarded-For` entry (the gateway replaces
/// the header, so the entry is its own observation). That header is believed only from a
/// trusted proxy: anyone else could write any address into it to dodge the limits.
pub fn client_address(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    if !trusted_proxies.iter().any(|proxy| proxy.contains(&peer)) {
        return peer;
    }
    forwarded_for
        .and_then(|header| header.split(',').next())
        .and_then(|first| first.trim().parse().ok())
        .unwrap_or(peer)
}

pub fn check_country(country: &str) -> Result<(), &'static str> {
    if country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err("must be a two-letter ISO 3166-1 code such as DE")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: Uuid,
    pub user_agent: String,
    pub ip: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The services that may be named as a service token's audience.
pub const SERVICES: &[&str] = &[
    "auth",
    "product",
    "cart",
    "order",
    "payment",
    "fulfillment",
    "notification",
    "chat",
    "search",
    "gateway",
    "graphql",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        assert!(check_password("correct horse 42").is_ok());
        assert_eq!(
            check_password("short1"),
            Err("must be at least 12 characters")
        );
        assert_eq!(
            check_password("onlyletterslong"),
            Err("must contain a letter and a digit")
        );
        assert_eq!(
            check_password("123456789012"),
            Err("must contain a letter and a digit")
        );
        assert!(check_password(&"a1".repeat(65)).is_err());
    }

    #[test]
    fn emails_are_normalized() {
        assert_eq!(normalize_email("  Ada@Example.COM "), "ada@example.com");
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(secret_hash(&a), secret_hash(&a));
        assert_ne!(secret_hash(&a), secret_hash(&b));
        assert_eq!(secret_hash(&a).len(), 32);
    }

    #[test]
    fn countries() {
        assert!(check_country("DE").is_ok());
        assert!(check_country("de").is_err());
        assert!(check_country("DEU").is_err());
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let gateway: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.7".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_address(gateway, Some("198.51.100.9, 10.9.9.9"), &trusted),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        // A client writing the header itself is still itself.
        assert_eq!(
            client_address(stranger, Some("198.51.100.9"), &trusted),
            stranger
        );
        assert_eq!(client_address(gateway, Some("198.51.100.9"), &[]), gateway);
        // From the gateway, but nothing usable in the header.
        assert_eq!(client_address(gateway, None, &trusted), gateway);
        assert_eq!(
            client_address(gateway, Some("not an address"), &trusted),
            gateway
        );
    }
}
