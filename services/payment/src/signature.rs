//! Signed webhook payloads in Stripe's scheme, which the offline gateway uses too: the
//! header is `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` (several `v1`
//! entries while a secret is being rotated). A delivery older than the tolerance is
//! refused, so a captured one cannot be replayed later.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing or malformed")]
    Malformed,
    #[error("no signature matches the payload")]
    Mismatch,
    #[error("the signature is {age_seconds}s old, beyond the tolerance")]
    Stale { age_seconds: i64 },
}

fn mac(secret: &str, timestamp: i64, payload: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The header value for `payload` signed at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let signature = hex::encode(mac(secret, timestamp, payload).finalize().into_bytes());
    format!("t={timestamp},v1={signature}")
}

/// Verifies the signature a delivery carries in its `header_name` header, now.
pub fn verify_delivery(
    headers: &http::HeaderMap,
    header_name: &str,
    secret: &str,
    payload: &[u8],
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    let header = headers
        .get(header_name)
        .and_then(|value| value.to_str().ok())
        .ok_or(SignatureError::Malformed)?;
    verify(secret, header, payload, unix_now(), tolerance)
}

/// Checks `header` against `payload`; returns the signed timestamp.
pub fn verify(
    secret: &str,
    header: &str,
    payload: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            Some(("v1", value)) => {
                signatures.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // Constant-time comparison through the MAC itself.
    if !signatures.iter().any(|signature| {
        mac(secret, timestamp, payload)
            .verify_slice(signature)
            .is_ok()
    }) {
        return Err(SignatureError::Mismatch);
    }
    let age = now - timestamp;
    if age.unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::Stale { age_seconds: age });
    }
    Ok(timestamp)
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);

    #[test]
    fn a_signed_payload_verifies() {
        let header = sign("whsec_test", 1_700_000_000, b"{\"id\":\"evt_1\"}");
        assert_eq!(
            verify(
                "whsec_test",
                &header,
                b"{\"id\":\"evt_1\"}",
                1_700_000_100,
                TOLERANCE
            ),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn a_known_vector_from_the_scheme() {
        // HMAC-SHA256("secret", "1.body"), computed independently with openssl.
        assert_eq!(
            sign("secret", 1, b"body"),
            "t=1,v1=842b24d9575dee4b6ec460b7e3af7d683501d84fe6279102340787c79d2e2bab"
        );
    }

    #[test]
    fn tampering_wrong_secrets_and_old_deliveries_are_refused() {
        let header = sign("whsec_test", 1_700_000_000, b"amount=10");
        let now = 1_700_000_010;
        assert_eq!(
            verify("whsec_test", &header, b"amount=99", now, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_other", &header, b"amount=10", now, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                "whsec_test",
                &header,
                b"amount=10",
                1_700_000_301,
                TOLERANCE
            ),
            Err(SignatureError::Stale { age_seconds: 301 })
        );
        assert_eq!(
            verify("whsec_test", "v1=abc", b"amount=10", now, TOLERANCE),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify("whsec_test", "t=1", b"amount=10", now, TOLERANCE),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let good = sign("new_secret", 5, b"x");
        let signature = good.split_once(",v1=").unwrap().1;
        let header = format!("t=5,v1={},v1={signature}", "00".repeat(32));
        assert_eq!(verify("new_secret", &header, b"x", 5, TOLERANCE), Ok(5));
    }
}
