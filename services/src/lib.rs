//! Task handlers: one module per handler family. Handlers see only their context (params,
//! results of other tasks, progress, cancellation), never the store.

pub mod blob;
pub mod cog_validate;
pub mod hello;
pub mod raster;
pub mod synthetic;
pub mod tiles;
#[cfg(test)]
mod testing;

use std::path::PathBuf;

use engine::Registry;

pub use blob::Blobs;

/// What the geospatial handlers get from the process: where the blobs live and where GDAL
/// may write its working files.
#[derive(Clone, Debug)]
pub struct Services {
    pub blobs: Blobs,
    /// Scratch space for outputs before they are validated and uploaded.
    pub scratch: PathBuf,
}

impl Services {
    /// Blobs under `data_dir` (containers are its sub-folders), scratch in the system's
    /// temporary directory.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        Services {
            blobs: Blobs::local(data_dir),
            scratch: std::env::temp_dir(),
        }
    }

    /// A fresh scratch directory, removed when dropped.
    pub fn scratch_dir(&self) -> std::io::Result<tempfile::TempDir> {
        std::fs::create_dir_all(&self.scratch)?;
        tempfile::Builder::new()
            .prefix("tessera-")
            .tempdir_in(&self.scratch)
    }
}

/// Register every handler of this crate.
pub fn register(registry: Registry, services: &Services) -> Registry {
    let _ = services;
    registry
        .with_handler(hello::Greet)
        .with_handler(hello::Summarize)
        .with_handler(synthetic::Noop)
        .with_handler(synthetic::NoopBarrier)
}
