//! Credentials in configuration. A [`Secret`] refuses placeholders when the configuration
//! is read (so a shop started from a copied example stops, naming the key) and never
//! prints. [`LocalSecrets`] generates the service-to-service credentials of a local
//! install once, into a file outside the repository; in Kubernetes the operator generates
//! them into a Secret per Shop instead.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use figment::providers::Serialized;
pub use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// Shorter secrets are refused: a service credential is guessed offline from one token.
pub const MIN_SECRET_CHARS: usize = 24;

/// Text that only an example or a copied development value contains.
const PLACEHOLDER_MARKERS: &[&str] = &[
    "not-for-production",
    "not_for_production",
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "placeholder",
    "example",
    "...",
];

/// A credential this shop generates and shares between its own services, read from
/// configuration: long enough, not a placeholder, shown as `***` by `Debug`, and wiped
/// from memory when dropped. Credentials other parties issue (Stripe keys, SMTP
/// passwords) are plain [`SecretString`]s: their length is not ours to set.
#[derive(Clone)]
pub struct Secret(SecretString);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("must be at least {MIN_SECRET_CHARS} characters (generate one: openssl rand -hex 32)")]
    TooShort,
    #[error("is a placeholder (it contains `{0}`): set a generated value (openssl rand -hex 32)")]
    Placeholder(&'static str),
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Result<Self, SecretError> {
        let value = value.into();
        if value.chars().count() < MIN_SECRET_CHARS {
            return Err(SecretError::TooShort);
        }
        let lowercase = value.to_ascii_lowercase();
        if let Some(marker) = PLACEHOLDER_MARKERS
            .iter()
            .find(|marker| lowercase.contains(**marker))
        {
            return Err(SecretError::Placeholder(marker));
        }
        Ok(Self(value.into()))
    }

    /// 32 random bytes, hex-encoded.
    pub fn generate() -> Self {
        Self(hex::encode(rand::random::<[u8; 32]>()).into())
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Secret::new(value).map_err(serde::de::Error::custom)
    }
}

/// `[local_secrets]`: the service credentials of a local install (`make run`, the tests,
/// Compose), generated on first start and kept in `file`. Client `c` gets one secret,
/// read as auth's `services.auth.service_clients.c` and as its own
/// `services.c.client_secret`; values set in the file or environment win.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSecrets {
    pub file: PathBuf,
    pub clients: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalSecretsError {
    #[error("`{0}` is not a service name (lowercase letters and `_`)")]
    ClientName(String),
    #[error("{file}: {action}")]
    File {
        file: String,
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl LocalSecretsError {
    /// The configuration key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            Self::ClientName(_) => "local_secrets.clients",
            Self::File { .. } => "local_secrets.file",
        }
    }
}

impl LocalSecrets {
    /// The generated credentials as a configuration layer; missing clients are generated
    /// and added to the file first.
    pub fn provider(&self) -> Result<Serialized<toml::Table>, LocalSecretsError> {
        if let Some(client) = self.clients.iter().find(|client| {
            client.is_empty() || !client.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        }) {
            return Err(LocalSecretsError::ClientName(client.clone()));
        }
        let secrets = self.load_or_generate()?;
        let mut services = toml::Table::new();
        let mut service_clients = toml::Table::new();
        for client in &self.clients {
            let secret = toml::Value::String(secrets[client].clone());
            service_clients.insert(client.clone(), secret.clone());
            services.insert(
                client.clone(),
                toml::Value::Table(toml::Table::from_iter([(
                    "client_secret".to_owned(),
                    secret,
                )])),
            );
        }
        let auth = services
            .entry("auth")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(auth) = auth {
            auth.insert(
                "service_clients".to_owned(),
                toml::Value::Table(service_clients),
            );
        }
        Ok(Serialized::default("services", services))
    }

    /// Every service of a Compose project starts at once on one volume: the file is read
    /// and completed under an exclusive lock, so they all end up with the same values.
    fn load_or_generate(&self) -> Result<BTreeMap<String, String>, LocalSecretsError> {
        let failed = |action| {
            let file = self.file.display().to_string();
            move |source: std::io::Error| LocalSecretsError::File {
                file,
                action,
                source: Box::new(source),
            }
        };
        if let Some(directory) = self.file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(directory).map_err(failed("creating its directory"))?;
        }
        let mut file = open_private(&self.file).map_err(failed("opening"))?;
        file.lock().map_err(failed("locking"))?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(failed("reading"))?;
        let mut secrets: BTreeMap<String, String> =
            toml::from_str(&text).map_err(|source| LocalSecretsError::File {
                file: self.file.display().to_string(),
                action: "parsing (delete it to generate new credentials)",
                source: Box::new(source),
            })?;
        let missing: Vec<&String> = self
            .clients
            .iter()
            .filter(|client| !secrets.contains_key(*client))
            .collect();
        if !missing.is_empty() {
            for client in missing {
                secrets.insert(client.clone(), Secret::generate().expose().to_owned());
            }
            let text = format!(
                "# Service credentials of this local install, generated by commerce. Delete \
                 the file to rotate them.\n{}",
                toml::to_string(&secrets).expect("a map of strings serialises")
            );
            file.set_len(0).map_err(failed("truncating"))?;
            file.rewind().map_err(failed("rewinding"))?;
            file.write_all(text.as_bytes()).map_err(failed("writing"))?;
            file.sync_all().map_err(failed("syncing"))?;
        }
        Ok(secrets)
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_short_values_are_refused() {
        assert_eq!(
            Secret::new("local-cart-secret-not-for-production").err(),
            Some(SecretError::Placeholder("not-for-production"))
        );
        assert_eq!(
            Secret::new("whsec_....................").err(),
            Some(SecretError::Placeholder("..."))
        );
        assert_eq!(
            Secret::new("CHANGEME-CHANGEME-CHANGEME").err(),
            Some(SecretError::Placeholder("changeme"))
        );
        assert_eq!(
            Secret::new("short-secret").err(),
            Some(SecretError::TooShort)
        );
        let generated = Secret::generate();
        assert_eq!(generated.expose().len(), 64);
        assert_eq!(
            Secret::new(generated.expose()).unwrap().expose(),
            generated.expose()
        );
        assert_ne!(generated.expose(), Secret::generate().expose());
        assert_eq!(format!("{generated:?}"), "Secret(***)");
    }

    fn secrets_of(layer: Serialized<toml::Table>) -> (toml::Table, toml::Table) {
        let services: toml::Table = figment::Figment::from(layer)
            .extract_inner("services")
            .unwrap();
        let auth = services["auth"]["service_clients"]
            .as_table()
            .unwrap()
            .clone();
        (services, auth)
    }

    #[test]
    fn each_client_and_auth_get_one_generated_secret_kept_across_starts() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("state/local-secrets.toml");
        let local = LocalSecrets {
            file: file.clone(),
            clients: vec!["cart".to_owned(), "order".to_owned()],
        };
        let (services, auth) = secrets_of(local.provider().unwrap());
        for client in ["cart", "order"] {
            let secret = services[client]["client_secret"].as_str().unwrap();
            assert_eq!(auth[client].as_str(), Some(secret));
            Secret::new(secret).unwrap();
        }
        assert_ne!(auth["cart"], auth["order"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // A second start reads them back; a new client is added beside them.
        let more = LocalSecrets {
            file,
            clients: vec![
                "cart".to_owned(),
                "order".to_owned(),
                "notification".to_owned(),
            ],
        };
        let (_, again) = secrets_of(more.provider().unwrap());
        assert_eq!(again["cart"], auth["cart"]);
        assert_eq!(again["order"], auth["order"]);
        assert_ne!(again["notification"], auth["cart"]);
        let (_, third) = secrets_of(more.provider().unwrap());
        assert_eq!(third, again);
    }

    #[test]
    fn services_starting_together_agree_on_the_secrets() {
        let directory = tempfile::tempdir().unwrap();
        let local = LocalSecrets {
            file: directory.path().join("local-secrets.toml"),
            clients: vec!["cart".to_owned(), "order".to_owned()],
        };
        let seen: Vec<toml::Table> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| secrets_of(local.provider().unwrap()).1))
                .collect();
            starts
                .into_iter()
                .map(|start| start.join().unwrap())
                .collect()
        });
        assert!(seen.iter().all(|secrets| *secrets == seen[0]), "{seen:?}");
    }

    #[test]
    fn a_client_that_is_not_a_service_name_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let local = LocalSecrets {
            file: directory.path().join("local-secrets.toml"),
            clients: vec!["cart\"]\nx = [\"".to_owned()],
        };
        let error = local.provider().unwrap_err();
        assert_eq!(error.key(), "local_secrets.clients");
        assert!(!local.file.exists());
    }
}
