//! RS256 signing keys for auth, as the PEM files its key directory holds.

use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

/// A new 2048-bit RSA key as PKCS#8 PEM.
pub fn generate_pem() -> Result<String, String> {
    let mut rng = rsa::rand_core::OsRng;
    let key = RsaPrivateKey::new(&mut rng, 2048).map_err(|error| error.to_string())?;
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|error| error.to_string())
}

/// A key id that sorts after every earlier one (auth signs with the greatest).
pub fn new_key_id(now: k8s_openapi::jiff::Timestamp) -> String {
    format!("k{}", now.strftime("%Y%m%dT%H%M%SZ"))
}
