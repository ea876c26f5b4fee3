//! Blob storage: containers of named blobs, behind `object_store`.
//!
//! The embedded mode keeps containers as sub-folders of a data directory (`--data-dir`). GDAL
//! works on local files: [`Blobs::local_path`] gives a readable path for a blob (the file itself
//! on a local store), and outputs are written to a scratch directory, checked, then uploaded
//! with [`Blobs::put_file`] (object_store's local store writes through a temporary file and a
//! rename, so a reader never sees half a blob).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

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

/// Containers of blobs.
#[derive(Clone, Debug)]
pub struct Blobs {
    root: PathBuf,
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

impl Blobs {
    /// Containers are the sub-folders of `root` (created if missing).
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Blobs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn container_dir(&self, container: &str) -> Result<PathBuf, BlobError> {
        check_container(container)?;
        Ok(self.root.join(container))
    }

    fn store(&self, container: &str, create: bool) -> Result<Arc<dyn ObjectStore>, BlobError> {
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
            .map_err(|e| Self::store_error(container, prefix, e))?;
        out.retain(|b| b.name.starts_with(prefix));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Size of a blob, or `NotFound`.
    pub async fn head(&self, container: &str, blob: &str) -> Result<BlobMeta, BlobError> {
        check_blob(blob)?;
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
        Ok(BlobMeta {
            name: blob.to_owned(),
            size: meta.size,
        })
    }

    /// A local file with the blob's bytes, for GDAL.
    pub async fn local_path(&self, container: &str, blob: &str) -> Result<PathBuf, BlobError> {
        self.head(container, blob).await?;
        Ok(self.container_dir(container)?.join(blob))
    }

    pub async fn get(&self, container: &str, blob: &str) -> Result<Bytes, BlobError> {
        check_blob(blob)?;
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
        store
            .put(&ObjectPath::from(blob), PutPayload::from(bytes))
            .await
            .map_err(|e| Self::store_error(container, blob, e))?;
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
        let mut n = 0;
        for blob in self.list(container, prefix).await? {
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
}
