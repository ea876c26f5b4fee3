//! `backup`: a consistent copy of a database that other processes keep using.

use std::path::{Path, PathBuf};

use crate::migration::{SCHEMA_VERSION, readable, user_version};
use crate::open::connect_read_only;
use crate::{OpenError, SqliteConfig};

/// `backup` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("backup target {path} already exists: choose a new file")]
    TargetExists { path: PathBuf },
    #[error("backup target {path}: directory {directory} does not exist")]
    TargetDirectory { path: PathBuf, directory: PathBuf },
    #[error("cannot back up database {path} to {to}")]
    Sqlite {
        path: PathBuf,
        to: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// Copy the database at `path` to the new file `to` while other processes keep using it: one
/// read transaction (`VACUUM INTO`), so the copy is a consistent snapshot of the last commit,
/// compacted, in rollback-journal mode (tessera switches it to WAL when it opens it).
pub fn backup(path: &Path, to: &Path, config: &SqliteConfig) -> Result<(), BackupError> {
    if to.exists() {
        return Err(BackupError::TargetExists {
            path: to.to_path_buf(),
        });
    }
    if let Some(directory) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !directory.is_dir() {
            return Err(BackupError::TargetDirectory {
                path: to.to_path_buf(),
                directory: directory.to_path_buf(),
            });
        }
    }
    let (conn, _) = connect_read_only(path, config)?;
    let found = user_version(&conn).map_err(|source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    })?;
    if !readable(found) {
        return Err(OpenError::SchemaVersion {
            path: path.to_path_buf(),
            found,
            expected: SCHEMA_VERSION,
        }
        .into());
    }
    let target = to.to_string_lossy().into_owned();
    conn.execute("VACUUM INTO ?1", [target])
        .map(drop)
        .map_err(|source| BackupError::Sqlite {
            path: path.to_path_buf(),
            to: to.to_path_buf(),
            source,
        })
}
