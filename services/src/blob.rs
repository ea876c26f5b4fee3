//! Blob storage: containers of named blobs, behind `object_store`.
//!
//! The embedded mode keeps containers as sub-folders of a data directory (`--data-dir`); the
//! Azure mode keeps them in an Azure Blob Storage account (the backend's). GDAL works on local
//! files: [`Blobs::local_path`] gives a readable path for a blob (the file itself on a local
//! store, a cached download under the data directory on Azure), and outputs are written to a
//! scratch directory, checked, then uploaded with [`Blobs::put_file`] (object_store's local
//! store writes through a temporary file and a rename, and an Azure blob appears whole at the
//! end of its upload: a reader never sees half a blob).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::azure::{AzureConfigKey, AzureCredential, MicrosoftAzureBuilder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, CredentialProvider, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use tokio::io::AsyncWriteExt;

/// A blob-store failure, naming the container and blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("container {container:?} does not exist")]
    NoContainer { container: String },
    #[error("blob {container}/{blob} does not exist")]
    NotFound { container: String, blob: String },
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("blob storage error on {container}/{blob}")]
    Store {
        container: String,
        blob: String,
        #[source]
        source: object_store::Error,
    },
    #[error("container {container:?} could not be created: {message}")]
    CreateContainer { container: String, message: String },
    #[error("local file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One listed blob.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlobMeta {
    pub name: String,
    pub size: u64,
}

/// Containers of blobs: sub-folders of a directory, or containers of an Azure account.
#[derive(Clone, Debug)]
pub struct Blobs {
    /// The containers (local mode) or the cache of downloaded blobs (Azure mode).
    root: PathBuf,
    azure: Option<Arc<Azure>>,
}

/// An Azure Blob Storage account holding the data.
#[derive(Clone, Debug)]
pub struct AzureBlobAccount {
    pub account: String,
    /// Blob endpoint: `https://{account}.blob.core.windows.net`, or Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: String,
    pub auth: AzureBlobAuth,
}

/// How to authenticate to the data account.
#[derive(Clone)]
pub enum AzureBlobAuth {
    AccessKey(String),
    /// A SAS token (`sv=...&sig=...`).
    Sas(String),
    /// Entra ID bearer tokens: the identity the platform provides, from the composition root
    /// (the Azure backend's credential chain).
    EntraId(Arc<dyn StorageToken>),
}

impl fmt::Debug for AzureBlobAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AzureBlobAuth::AccessKey(_) => "AccessKey(..)",
            AzureBlobAuth::Sas(_) => "Sas(..)",
            AzureBlobAuth::EntraId(_) => "EntraId(..)",
        })
    }
}

/// Entra ID bearer tokens for Azure Storage (scope `https://storage.azure.com/.default`).
/// The source caches them: it is asked before every request.
#[async_trait]
pub trait StorageToken: Send + Sync {
    /// A valid token, or why none could be had.
    async fn token(&self) -> Result<String, String>;
}

/// A [`StorageToken`] as `object_store`'s credential provider.
struct EntraTokens(Arc<dyn StorageToken>);

impl fmt::Debug for EntraTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EntraTokens")
    }
}

#[async_trait]
impl CredentialProvider for EntraTokens {
    type Credential = AzureCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        match self.0.token().await {
            Ok(token) => Ok(Arc::new(AzureCredential::BearerToken(token))),
            Err(message) => Err(object_store::Error::Generic {
                store: "MicrosoftAzure",
                source: message.into(),
            }),
        }
    }
}

/// Creates a missing container (`object_store` reads and writes blobs but does not manage
/// containers); the Azure backend provides it.
#[async_trait]
pub trait CreateContainer: Send + Sync {
    async fn create_container(&self, name: &str) -> Result<(), String>;
}

struct Azure {
    account: AzureBlobAccount,
    creator: Option<Arc<dyn CreateContainer>>,
    /// One client per container.
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl fmt::Debug for Azure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Azure")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl Azure {
    fn store(&self, container: &str) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
        let mut stores = self.stores.lock().expect("blob store lock");
        if let Some(store) = stores.get(container) {
            return Ok(store.clone());
        }
        let a = &self.account;
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(&a.account)
            .with_container_name(container)
            .with_endpoint(a.endpoint.clone())
            // Bounded: an unreachable account fails in seconds, not after minutes of retries.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(10),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(a.endpoint.starts_with("http://"))
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(15 * 60)),
            );
        builder = match &a.auth {
            AzureBlobAuth::AccessKey(key) => builder.with_access_key(key),
            AzureBlobAuth::Sas(sas) => {
                builder.with_config(AzureConfigKey::SasKey, sas.trim_start_matches('?'))
            }
            AzureBlobAuth::EntraId(tokens) => {
                builder.with_credentials(Arc::new(EntraTokens(tokens.clone())))
            }
        };
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
        stores.insert(container.to_owned(), store.clone());
        Ok(store)
    }
}

/// Check a container name: a single path segment (Azure's rules are stricter still: 3-63
/// lowercase letters, digits and dashes; the local store accepts the same plus `_` and `.`).
pub fn check_container(name: &str) -> Result<(), BlobError> {
    let invalid = |reason| BlobError::InvalidName {
        what: "container",
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 63 {
        return Err(invalid("must be 1 to 63 characters long"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(invalid(
            "only letters, digits, '-', '_' and '.' (not first) are allowed",
        ));
    }
    Ok(())
}

/// Check a blob name: a relative path without `..`, empty or absolute segments.
pub fn check_blob(name: &str) -> Result<(), BlobError> {
    let invalid = |reason| BlobError::InvalidName {
        what: "blob",
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 1024 {
        return Err(invalid("must be 1 to 1024 characters long"));
    }
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
        || name.contains('\\')
    {
        return Err(invalid(
            "must be a relative path without empty, '.' or '..' segments",
        ));
    }
    Ok(())
}

/// Azure answered that the container does not exist. `object_store` reports a 404 on a blob
/// as `NotFound` but a failed listing as a generic error; Azure's error code
/// (`ContainerNotFound`, part of its REST API) tells them apart.
fn container_missing(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. }) || e.to_string().contains("ContainerNotFound")
}

impl Blobs {
    /// Containers are the sub-folders of `root` (created if missing).
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Blobs {
            root: root.into(),
            azure: None,
        }
    }

    /// Containers of an Azure Blob account; blobs GDAL reads are downloaded under `cache`.
    /// Missing containers are created through `creator` when a blob is written to them.
    pub fn azure(
        account: AzureBlobAccount,
        cache: impl Into<PathBuf>,
        creator: Option<Arc<dyn CreateContainer>>,
    ) -> Self {
        Blobs {
            root: cache.into(),
            azure: Some(Arc::new(Azure {
                account,
                creator,
                stores: Mutex::new(HashMap::new()),
            })),
        }
    }

    fn container_dir(&self, container: &str) -> Result<PathBuf, BlobError> {
        check_container(container)?;
        Ok(self.root.join(container))
    }

    /// Local mode: whether `path` (under the data directory) resolves inside it. A symbolic
    /// link in a container may point to another place of the data directory, not outside it
    /// (the API serves these files). A path that does not exist yet is inside.
    fn resolves_inside(&self, path: &Path) -> Result<bool, BlobError> {
        let io = |source| BlobError::Io {
            path: path.to_owned(),
            source,
        };
        let resolved = match std::fs::canonicalize(path) {
            Ok(resolved) => resolved,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(io(e)),
        };
        let root = std::fs::canonicalize(&self.root).map_err(io)?;
        Ok(resolved.starts_with(root))
    }

    /// Local mode: refuse a blob whose file resolves outside the data directory.
    fn check_local_blob(&self, container: &str, blob: &str) -> Result<(), BlobError> {
        if self.azure.is_some() {
            return Ok(());
        }
        let path = self.container_dir(container)?.join(blob);
        if self.resolves_inside(&path)? {
            Ok(())
        } else {
            tracing::warn!(path = %path.display(), "a blob resolving outside the data directory is refused");
            Err(BlobError::InvalidName {
                what: "blob",
                name: format!("{container}/{blob}"),
                reason: "resolves outside the data directory (a symbolic link): refused",
            })
        }
    }

    fn store(&self, container: &str, create: bool) -> Result<Arc<dyn ObjectStore>, BlobError> {
        if let Some(azure) = &self.azure {
            check_container(container)?;
            return azure
                .store(container)
                .map_err(|e| Self::store_error(container, "", e));
        }
        let dir = self.container_dir(container)?;
        if create {
            std::fs::create_dir_all(&dir).map_err(|source| BlobError::Io {
                path: dir.clone(),
                source,
            })?;
        } else if !dir.is_dir() {
            return Err(BlobError::NoContainer {
                container: container.to_owned(),
            });
        }
        if !self.resolves_inside(&dir)? {
            tracing::warn!(path = %dir.display(), "a container resolving outside the data directory is refused");
            return Err(BlobError::InvalidName {
                what: "container",
                name: container.to_owned(),
                reason: "resolves outside the data directory (a symbolic link): refused",
            });
        }
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(|source| BlobError::Store {
            container: container.to_owned(),
            blob: String::new(),
            source,
        })?;
        Ok(Arc::new(store))
    }

    fn store_error(container: &str, blob: &str, source: object_store::Error) -> BlobError {
        match source {
            object_store::Error::NotFound { .. } => BlobError::NotFound {
                container: container.to_owned(),
                blob: blob.to_owned(),
            },
            source => BlobError::Store {
                container: container.to_owned(),
                blob: blob.to_owned(),
                source,
            },
        }
    }

    /// Blobs of a container whose names start with `prefix`, sorted by name.
    pub async fn list(&self, container: &str, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        let store = self.store(container, false)?;
        let mut out: Vec<BlobMeta> = store
            .list(None)
            .map_ok(|m| BlobMeta {
                name: m.location.to_string(),
                size: m.size,
            })
            .try_collect()
            .await
            .map_err(|e| match container_missing(&e) {
                true => BlobError::NoContainer {
                    container: container.to_owned(),
                },
                false => Self::store_error(container, prefix, e),
            })?;
        out.retain(|b| b.name.starts_with(prefix));
        if self.azure.is_none() {
            // Listed through symbolic links: leave out what resolves outside the data directory.
            let mut inside = Vec::with_capacity(out.len());
            for blob in out {
                match self.check_local_blob(container, &blob.name) {
                    Ok(()) => inside.push(blob),
                    Err(BlobError::InvalidName { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            out = inside;
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Size of a blob, or `NotFound`.
    pub async fn head(&self, container: &str, blob: &str) -> Result<BlobMeta, BlobError> {
        Ok(self.head_object(container, blob).await?.0)
    }

    async fn head_object(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<(BlobMeta, Option<String>), BlobError> {
        check_blob(blob)?;
        self.check_local_blob(container, blob)?;
        let store = self.store(container, false).map_err(|e| match e {
            BlobError::NoContainer { .. } => BlobError::NotFound {
                container: container.to_owned(),
                blob: blob.to_owned(),
            },
            e => e,
        })?;
        let meta = store
            .head(&ObjectPath::from(blob))
            .await
            .map_err(|e| Self::store_error(container, blob, e))?;
        let listed = BlobMeta {
            name: blob.to_owned(),
            size: meta.size,
        };
        Ok((listed, meta.e_tag))
    }

    /// A local file with the blob's bytes, for GDAL: the file itself in local mode; on Azure a
    /// download under the data directory, reused while the blob's ETag is unchanged.
    pub async fn local_path(&self, container: &str, blob: &str) -> Result<PathBuf, BlobError> {
        let (meta, e_tag) = self.head_object(container, blob).await?;
        let path = self.container_dir(container)?.join(blob);
        if self.azure.is_none() {
            return Ok(path);
        }
        let tag_path = PathBuf::from(format!("{}.etag", path.display()));
        let e_tag = e_tag.unwrap_or_else(|| format!("size-{}", meta.size));
        let cached = tokio::fs::read_to_string(&tag_path).await.ok();
        if cached.as_deref() == Some(e_tag.as_str()) && path.is_file() {
            return Ok(path);
        }
        self.download(container, blob, &path).await?;
        let io = |source| BlobError::Io {
            path: tag_path.clone(),
            source,
        };
        tokio::fs::write(&tag_path, &e_tag).await.map_err(io)?;
        Ok(path)
    }

    /// Stream a blob to `path` through a temporary file and a rename.
    async fn download(&self, container: &str, blob: &str, path: &Path) -> Result<(), BlobError> {
        let io = |source| BlobError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        let store = self.store(container, false)?;
        let mut stream = store
            .get(&ObjectPath::from(blob))
            .await
            .map_err(|e| Self::store_error(container, blob, e))?
            .into_stream();
        let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(io)?);
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| Self::store_error(container, blob, e))?
        {
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    pub async fn get(&self, container: &str, blob: &str) -> Result<Bytes, BlobError> {
        check_blob(blob)?;
        self.check_local_blob(container, blob)?;
        let store = self.store(container, false)?;
        let got = store
            .get(&ObjectPath::from(blob))
            .await
            .map_err(|e| Self::store_error(container, blob, e))?;
        got.bytes()
            .await
            .map_err(|e| Self::store_error(container, blob, e))
    }

    /// Write a blob (atomically: readers see the old blob or the whole new one).
    pub async fn put(&self, container: &str, blob: &str, bytes: Bytes) -> Result<(), BlobError> {
        check_blob(blob)?;
        let store = self.store(container, true)?;
        let path = ObjectPath::from(blob);
        let put = store.put(&path, PutPayload::from(bytes.clone())).await;
        let put = match (put, self.azure.as_ref().and_then(|a| a.creator.as_ref())) {
            // Azure: the container does not exist yet.
            (Err(e), Some(creator)) if container_missing(&e) => {
                creator
                    .create_container(container)
                    .await
                    .map_err(|message| BlobError::CreateContainer {
                        container: container.to_owned(),
                        message,
                    })?;
                store.put(&path, PutPayload::from(bytes)).await
            }
            (put, _) => put,
        };
        put.map_err(|e| Self::store_error(container, blob, e))?;
        Ok(())
    }

    /// Upload a local file as a blob.
    pub async fn put_file(
        &self,
        container: &str,
        blob: &str,
        file: &Path,
    ) -> Result<(), BlobError> {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|source| BlobError::Io {
                path: file.to_owned(),
                source,
            })?;
        self.put(container, blob, Bytes::from(bytes)).await
    }

    /// Remove every blob under `prefix` (a re-run clears a previous attempt's partial output).
    pub async fn delete_prefix(&self, container: &str, prefix: &str) -> Result<u64, BlobError> {
        let Ok(store) = self.store(container, false) else {
            return Ok(0);
        };
        let blobs = match self.list(container, prefix).await {
            // No container (Azure answers either): nothing to delete.
            Err(BlobError::NoContainer { .. } | BlobError::NotFound { .. }) => return Ok(0),
            listed => listed?,
        };
        let mut n = 0;
        for blob in blobs {
            store
                .delete(&ObjectPath::from(blob.name.as_str()))
                .await
                .map_err(|e| Self::store_error(container, &blob.name, e))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_container("rasters").is_ok());
        assert!(check_container("").is_err());
        assert!(check_container("a/b").is_err());
        assert!(check_container("..").is_err());
        assert!(check_blob("dir/file.tif").is_ok());
        assert!(check_blob("../etc/passwd").is_err());
        assert!(check_blob("/abs").is_err());
        assert!(check_blob("a//b").is_err());
    }

    #[tokio::test]
    async fn put_list_get_head() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path());
        assert!(matches!(
            blobs.list("c", "").await,
            Err(BlobError::NoContainer { .. })
        ));
        blobs
            .put("c", "a/x.tif", Bytes::from_static(b"12345"))
            .await
            .unwrap();
        blobs
            .put("c", "b.txt", Bytes::from_static(b"1"))
            .await
            .unwrap();
        let listed = blobs.list("c", "").await.unwrap();
        assert_eq!(
            listed,
            vec![
                BlobMeta {
                    name: "a/x.tif".into(),
                    size: 5
                },
                BlobMeta {
                    name: "b.txt".into(),
                    size: 1
                },
            ]
        );
        assert_eq!(blobs.list("c", "a/").await.unwrap().len(), 1);
        assert_eq!(blobs.get("c", "a/x.tif").await.unwrap().as_ref(), b"12345");
        assert!(matches!(
            blobs.head("c", "missing.tif").await,
            Err(BlobError::NotFound { .. })
        ));
        let path = blobs.local_path("c", "a/x.tif").await.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"12345");
        assert_eq!(blobs.delete_prefix("c", "a/").await.unwrap(), 1);
        assert_eq!(blobs.list("c", "").await.unwrap().len(), 1);
    }

    /// Tokens from a fixed answer, counting the requests.
    struct FixedToken(Result<String, String>, std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl StorageToken for FixedToken {
        async fn token(&self) -> Result<String, String> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0.clone()
        }
    }

    /// A fake Blob endpoint: every request gets an empty listing; the heads are recorded.
    async fn fake_blob_endpoint() -> (String, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/acct", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let body = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs></Blobs></EnumerationResults>"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn entra_id_requests_carry_the_bearer_token() {
        let (endpoint, seen) = fake_blob_endpoint().await;
        let tokens = Arc::new(FixedToken(Ok("tok-123".into()), Default::default()));
        let dir = tempfile::tempdir().unwrap();
        let account = AzureBlobAccount {
            account: "acct".into(),
            endpoint,
            auth: AzureBlobAuth::EntraId(tokens.clone()),
        };
        let blobs = Blobs::azure(account, dir.path(), None);
        assert_eq!(blobs.list("rasters", "").await.unwrap(), vec![]);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].starts_with("GET /acct/rasters?"), "{}", seen[0]);
        let auth = seen[0]
            .lines()
            .find_map(|l| l.strip_prefix("authorization: "))
            .unwrap_or_else(|| panic!("no authorization header: {}", seen[0]));
        assert_eq!(auth, "Bearer tok-123");
        assert_eq!(tokens.1.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_token_is_an_error_that_says_why() {
        let (endpoint, seen) = fake_blob_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let account = AzureBlobAccount {
            account: "acct".into(),
            endpoint,
            auth: AzureBlobAuth::EntraId(Arc::new(FixedToken(
                Err("no Entra ID credential gave a token: IMDS: unreachable".into()),
                Default::default(),
            ))),
        };
        let blobs = Blobs::azure(account, dir.path(), None);
        let e = blobs.list("rasters", "").await.unwrap_err();
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(chain.contains("IMDS: unreachable"), "{chain}");
        assert!(seen.lock().unwrap().is_empty());
    }

    /// A symbolic link in a container is followed only while it stays in the data directory.
    #[cfg(unix)]
    #[tokio::test]
    async fn links_out_of_the_data_directory_are_refused() {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path().join("data"));
        blobs
            .put("c", "real.txt", Bytes::from_static(b"ok"))
            .await
            .unwrap();
        blobs
            .put("other", "shared.txt", Bytes::from_static(b"shared"))
            .await
            .unwrap();
        let c = dir.path().join("data/c");
        symlink(outside.path().join("secret.txt"), c.join("leak.txt")).unwrap();
        symlink(outside.path(), c.join("leakdir")).unwrap();
        symlink(
            dir.path().join("data/other/shared.txt"),
            c.join("inside.txt"),
        )
        .unwrap();
        symlink(outside.path(), dir.path().join("data/evil")).unwrap();

        let names: Vec<String> = blobs
            .list("c", "")
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["inside.txt", "real.txt"]);
        assert_eq!(
            blobs.get("c", "inside.txt").await.unwrap().as_ref(),
            b"shared"
        );
        for blob in ["leak.txt", "leakdir/secret.txt"] {
            for e in [
                blobs.get("c", blob).await.unwrap_err(),
                blobs.head("c", blob).await.unwrap_err(),
                blobs.local_path("c", blob).await.unwrap_err(),
            ] {
                assert!(
                    e.to_string()
                        .contains("resolves outside the data directory"),
                    "{blob}: {e}"
                );
            }
        }
        let e = blobs.list("evil", "").await.unwrap_err();
        assert!(e.to_string().contains("resolves outside"), "{e}");
        let e = blobs.get("evil", "secret.txt").await.unwrap_err();
        assert!(e.to_string().contains("resolves outside"), "{e}");
    }
}
