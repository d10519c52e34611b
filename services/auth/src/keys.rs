//! The RS256 signing keys. Keys are PEM files in one directory (a mounted Kubernetes
//! Secret in production), the file stem is the `kid`; or PEM text in the configuration
//! (`keys.inline.<kid>`, e.g. `COMMERCE_SERVICES__AUTH__KEYS__INLINE__K1` from a Secret). Every key is published in the JWKS;
//! the active one (configured, or the greatest `kid`) signs. Rotation: add a key, let
//! verifiers see it, make it active, later delete the old one.

use std::path::{Path, PathBuf};

use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
    RSAKeyParameters, RSAKeyType,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct KeySettings {
    /// Directory of `<kid>.pem` RSA private keys.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// `kid` → PEM, for keys delivered through the environment.
    #[serde(default)]
    pub inline: std::collections::BTreeMap<String, String>,
    /// Create one key when the directory has none (local runs only).
    #[serde(default)]
    pub generate: bool,
    /// The `kid` that signs; default: the greatest one.
    #[serde(default)]
    pub active: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing keys in {dir}: {message}")]
    Load { dir: String, message: String },
    #[error("signing: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

pub struct KeyRing {
    active_kid: String,
    signing: EncodingKey,
    jwks: JwkSet,
}

impl KeyRing {
    pub fn load(settings: &KeySettings) -> Result<Self, KeyError> {
        let failure = |message: String| KeyError::Load {
            dir: settings
                .dir
                .as_ref()
                .map_or("configuration".to_owned(), |dir| dir.display().to_string()),
            message,
        };
        let mut keys = match &settings.dir {
            Some(dir) => read_keys(dir).map_err(failure)?,
            None => Vec::new(),
        };
        for (kid, pem) in &settings.inline {
            let key =
                parse_key(pem).map_err(|error| failure(format!("inline key `{kid}`: {error}")))?;
            keys.push((kid.clone(), key));
        }
        if keys.is_empty() && settings.generate {
            let dir = settings.dir.as_ref().ok_or_else(|| {
                failure("generate = true needs keys.dir to keep the key in".to_owned())
            })?;
            keys.push(generate_into(dir).map_err(failure)?);
        }
        if keys.is_empty() {
            return Err(failure(
                "no keys: put <kid>.pem files in keys.dir, set keys.inline.<kid>, or generate = true for a local key"
                    .to_owned(),
            ));
        }
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        let active_kid = match &settings.active {
            Some(kid) => kid.clone(),
            None => keys.last().map(|(kid, _)| kid.clone()).unwrap_or_default(),
        };
        let (_, active_key) = keys
            .iter()
            .find(|(kid, _)| *kid == active_kid)
            .ok_or_else(|| failure(format!("active key `{active_kid}` is not among the keys")))?;
        let pem = active_key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|error| failure(error.to_string()))?;
        let signing = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|error| failure(error.to_string()))?;
        let jwks = JwkSet {
            keys: keys.iter().map(|(kid, key)| public_jwk(kid, key)).collect(),
        };
        Ok(Self {
            active_kid,
            signing,
            jwks,
        })
    }

    pub fn active_kid(&self) -> &str {
        &self.active_kid
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.active_kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.signing)?)
    }
}

fn read_keys(dir: &Path) -> Result<Vec<(String, RsaPrivateKey)>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error.to_string()),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry.map_err(|error| error.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let kid = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .ok_or_else(|| format!("{} has no usable name", path.display()))?
            .to_owned();
        let pem = std::fs::read_to_string(&path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
            .map_err(|error| format!("{}: not an RSA private key: {error}", path.display()))?;
        if key.size() < 256 {
            return Err(format!(
                "{}: RSA keys must be at least 2048 bits",
                path.display()
            ));
        }
        keys.push((kid, key));
    }
    Ok(keys)
}

fn parse_key(pem: &str) -> Result<RsaPrivateKey, String> {
    let key = RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|error| format!("not an RSA private key: {error}"))?;
    if key.size() < 256 {
        return Err("RSA keys must be at least 2048 bits".to_owned());
    }
    Ok(key)
}

fn generate_into(dir: &Path) -> Result<(String, RsaPrivateKey), String> {
    std::fs::create_dir_all(dir).map_err(|error| error.to_string())?;
    let key =
        RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(|error| error.to_string())?;
    let kid = format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|error| error.to_string())?;
    let path = dir.join(format!("{kid}.pem"));
    write_private(&path, pem.as_bytes()).map_err(|error| format!("{}: {error}", path.display()))?;
    tracing::info!(%kid, path = %path.display(), "generated a signing key");
    Ok((kid, key))
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)
}

fn public_jwk(kid: &str, key: &RsaPrivateKey) -> Jwk {
    let encode = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::RS256),
            key_id: Some(kid.to_owned()),
            ..CommonParameters::default()
        },
        algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: encode(key.n().to_bytes_be()),
            e: encode(key.e().to_bytes_be()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses_and_publishes_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let settings = KeySettings {
            dir: Some(dir.path().to_owned()),
            inline: Default::default(),
            generate: true,
            active: None,
        };
        let first = KeyRing::load(&settings).unwrap();
        let again = KeyRing::load(&settings).unwrap();
        assert_eq!(
            first.active_kid(),
            again.active_kid(),
            "a generated key is kept"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // A second key: both are published, the greatest kid signs unless told otherwise.
        let second = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        std::fs::write(
            dir.path().join("z-next.pem"),
            second.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        let rotated = KeyRing::load(&settings).unwrap();
        assert_eq!(rotated.active_kid(), "z-next");
        assert_eq!(rotated.jwks().keys.len(), 2);
        let pinned = KeyRing::load(&KeySettings {
            active: Some(first.active_kid().to_owned()),
            ..settings.clone()
        })
        .unwrap();
        assert_eq!(pinned.active_kid(), first.active_kid());

        let missing = KeyRing::load(&KeySettings {
            active: Some("nope".into()),
            ..settings
        });
        assert!(missing.err().unwrap().to_string().contains("`nope`"));
    }

    #[test]
    fn an_empty_directory_without_generate_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = KeyRing::load(&KeySettings {
            dir: Some(dir.path().to_owned()),
            inline: Default::default(),
            generate: false,
            active: None,
        })
        .err()
        .unwrap();
        assert!(error.to_string().contains("no keys"), "{error}");
    }

    #[test]
    fn keys_can_come_from_the_configuration() {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let ring = KeyRing::load(&KeySettings {
            dir: None,
            inline: [("from-env".to_owned(), pem)].into(),
            generate: false,
            active: None,
        })
        .unwrap();
        assert_eq!(ring.active_kid(), "from-env");
        assert_eq!(ring.jwks().keys.len(), 1);
        let broken = KeyRing::load(&KeySettings {
            dir: None,
            inline: [("bad".to_owned(), "not a pem".to_owned())].into(),
            generate: false,
            active: None,
        });
        assert!(
            broken
                .err()
                .unwrap()
                .to_string()
                .contains("inline key `bad`")
        );
    }
}
