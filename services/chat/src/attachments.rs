//! Attachments: which files are accepted (declared type checked against the bytes), and
//! where they are kept — behind [`AttachmentStore`]: a directory ([`DiskStore`], `make run`)
//! or an S3 bucket ([`S3Store`], shared by every replica on Kubernetes).

use std::path::PathBuf;

/// The types a chat accepts, by their first bytes. Text has no signature: it must be
/// valid UTF-8 without NUL bytes.
const SIGNATURES: &[(&str, &[u8])] = &[
    ("image/png", b"\x89PNG\r\n\x1a\n"),
    ("image/jpeg", b"\xff\xd8\xff"),
    ("image/gif", b"GIF8"),
    ("application/pdf", b"%PDF-"),
];

pub const ACCEPTED: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
];

/// Checks that `bytes` are what `content_type` claims; the error says why not.
pub fn check_content(content_type: &str, bytes: &[u8]) -> Result<(), String> {
    if !ACCEPTED.contains(&content_type) {
        return Err(format!(
            "`{content_type}` is not accepted; send one of {}",
            ACCEPTED.join(", ")
        ));
    }
    let matches = match content_type {
        "image/webp" => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        "text/plain" => std::str::from_utf8(bytes).is_ok_and(|text| !text.contains('\0')),
        declared => SIGNATURES
            .iter()
            .any(|(kind, magic)| *kind == declared && bytes.starts_with(magic)),
    };
    if matches {
        Ok(())
    } else {
        Err(format!("the content is not {content_type}"))
    }
}

/// A file name safe to put in a header: no path, no control or quote characters.
pub fn clean_file_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err("must be 1 to 200 characters");
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '"' | ';'))
    {
        return Err("must not contain control characters, quotes or `;`");
    }
    Ok(name.to_owned())
}

/// `attachment; filename="…"` with an ASCII fallback and the exact name as RFC 5987
/// `filename*`, so any name fits in a header.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // RFC 5987's attr-chars pass; everything else is encoded.
    const ATTR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("attachment store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("attachment store: bad key `{0}`")]
    BadKey(String),
    #[error("attachment bucket {bucket}: {source}")]
    Bucket {
        bucket: String,
        #[source]
        source: object_store::Error,
    },
}

impl StoreError {
    fn at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Where attachment bytes are kept.
#[async_trait::async_trait]
pub trait AttachmentStore: Send + Sync {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Keys are generated ids, never user input; anything else (a path, an empty name) is
/// refused before it reaches a store.
fn checked_key(key: &str) -> Result<&str, StoreError> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(StoreError::BadKey(key.to_owned()));
    }
    Ok(key)
}

/// Files under one directory; keys are generated ids, never user input.
pub struct DiskStore {
    root: PathBuf,
}

impl DiskStore {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(StoreError::at(&root))?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join(checked_key(key)?))
    }
}

#[async_trait::async_trait]
impl AttachmentStore for DiskStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        // Written aside and renamed, so a reader never sees half a file.
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, bytes)
            .await
            .map_err(StoreError::at(&partial))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(StoreError::at(&path))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StoreError::at(&path)(error)),
        }
    }
}

/// Objects in an S3 bucket (AWS, or any S3-compatible server at `endpoint`), under
/// `<prefix>/<key>`.
pub struct S3Store {
    store: object_store::aws::AmazonS3,
    bucket: String,
    prefix: String,
}

impl S3Store {
    pub fn new(settings: &crate::settings::AttachmentBucket) -> Result<Self, StoreError> {
        use secrecy::ExposeSecret;
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(settings.secret_access_key.expose_secret());
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|source| StoreError::Bucket {
            bucket: settings.bucket.clone(),
            source,
        })?;
        Ok(Self {
            store,
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.trim_matches('/').to_owned(),
        })
    }

    fn path(&self, key: &str) -> Result<object_store::path::Path, StoreError> {
        Ok(object_store::path::Path::from(format!(
            "{}/{}",
            self.prefix,
            checked_key(key)?
        )))
    }

    fn failed(&self) -> impl FnOnce(object_store::Error) -> StoreError + '_ {
        move |source| StoreError::Bucket {
            bucket: self.bucket.clone(),
            source,
        }
    }
}

#[async_trait::async_trait]
impl AttachmentStore for S3Store {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        use object_store::ObjectStoreExt;
        // One PUT: the object appears whole or not at all.
        self.store
            .put(&self.path(key)?, bytes.to_vec().into())
            .await
            .map(drop)
            .map_err(self.failed())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        use object_store::ObjectStoreExt;
        match self.store.get(&self.path(key)?).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(self.failed())?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.failed()(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_must_match_the_bytes() {
        assert!(check_content("image/png", b"\x89PNG\r\n\x1a\n....").is_ok());
        assert!(check_content("image/png", b"<html><script>").is_err());
        assert!(check_content("text/plain", "héllo".as_bytes()).is_ok());
        assert!(check_content("text/plain", b"\xff\xfe").is_err());
        assert!(check_content("image/webp", b"RIFF\0\0\0\0WEBPVP8 ").is_ok());
        let refused = check_content("text/html", b"<p>").unwrap_err();
        assert!(refused.contains("not accepted"), "{refused}");
    }

    #[test]
    fn file_names_lose_paths_and_header_breakers() {
        assert_eq!(clean_file_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(
            clean_file_name("C:\\x\\receipt.pdf").unwrap(),
            "receipt.pdf"
        );
        assert!(clean_file_name("a\"b.png").is_err());
        assert!(clean_file_name("a\r\nb.png").is_err());
        assert!(clean_file_name("  ").is_err());
    }

    #[test]
    fn any_name_fits_in_the_header() {
        assert_eq!(
            content_disposition("résumé 1.pdf"),
            "attachment; filename=\"r_sum_ 1.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%201.pdf"
        );
    }

    #[tokio::test]
    async fn the_disk_store_keeps_bytes_under_safe_keys() {
        let directory = tempfile::tempdir().unwrap();
        let store = DiskStore::new(directory.path()).unwrap();
        store.put("abc-1", b"bytes").await.unwrap();
        assert_eq!(
            store.get("abc-1").await.unwrap().as_deref(),
            Some(&b"bytes"[..])
        );
        assert_eq!(store.get("missing").await.unwrap(), None);
        assert!(store.put("../escape", b"x").await.is_err());
    }
}
