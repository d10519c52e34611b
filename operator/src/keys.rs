//! RS256 signing keys for auth, as the PEM files its key directory holds.

use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating an RSA key: {0}")]
    Generate(#[from] rsa::Error),
    #[error("encoding the key as PKCS#8: {0}")]
    Encode(#[from] rsa::pkcs8::Error),
    #[error("key generation task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A new 2048-bit RSA key as PKCS#8 PEM.
pub fn generate_pem() -> Result<String, KeyError> {
    let mut rng = rsa::rand_core::OsRng;
    let key = RsaPrivateKey::new(&mut rng, 2048)?;
    Ok(key.to_pkcs8_pem(LineEnding::LF)?.to_string())
}

/// A key id that sorts after every earlier one (auth signs with the greatest).
pub fn new_key_id(now: k8s_openapi::jiff::Timestamp) -> String {
    format!("k{}", now.strftime("%Y%m%dT%H%M%SZ"))
}
