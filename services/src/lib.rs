//! Task handlers: one module per handler family. Handlers see only their context (params,
//! results of other tasks, progress, cancellation), never the store.

pub mod blob;
pub mod cog;
pub mod cog_validate;
pub mod failure;
pub mod hello;
pub mod listing;
pub mod raster;
pub mod stac;
pub mod synthetic;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tiles;

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
    /// One permit per core: CPU-bound work (GDAL, pixels) of all tasks of the process shares
    /// them, so many concurrent tasks neither oversubscribe the CPU nor hold many buffers.
    cpu: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Services {
    /// Blobs under `data_dir` (containers are its sub-folders), scratch in the system's
    /// temporary directory.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        Services::new(Blobs::local(data_dir))
    }

    /// These blobs (local or Azure), scratch in the system's temporary directory.
    pub fn new(blobs: Blobs) -> Self {
        // GDAL's block cache defaults to 5 % of RAM per process; tiles and COGs stream through
        // it, so a bounded cache keeps workers small (GDAL_CACHEMAX in the environment wins).
        if std::env::var_os("GDAL_CACHEMAX").is_none() {
            let _ = gdal::config::set_config_option("GDAL_CACHEMAX", "256");
        }
        route_gdal_messages();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Services {
            blobs,
            scratch: std::env::temp_dir(),
            cpu: std::sync::Arc::new(tokio::sync::Semaphore::new(cores)),
        }
    }

    /// Wait for a core to run CPU-bound work on; hold the permit while it runs.
    pub async fn cpu_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.cpu
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// A fresh scratch directory, removed when dropped.
    pub fn scratch_dir(&self) -> std::io::Result<tempfile::TempDir> {
        std::fs::create_dir_all(&self.scratch)?;
        tempfile::Builder::new()
            .prefix("tessera-")
            .tempdir_in(&self.scratch)
    }
}

/// GDAL's own messages go to `tracing` (with the task's span) instead of straight to stderr:
/// probing a blob that is not a raster is expected, and its error comes back as a typed
/// error anyway (GDAL still records the last message for the binding).
fn route_gdal_messages() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gdal::config::set_error_handler(|class, number, message| {
            use gdal::errors::CplErrType;
            match class {
                CplErrType::Fatal => tracing::error!(gdal_error = number, "GDAL: {message}"),
                CplErrType::Failure | CplErrType::Warning => {
                    tracing::debug!(gdal_error = number, "GDAL: {message}")
                }
                _ => tracing::trace!(gdal_error = number, "GDAL: {message}"),
            }
        });
    });
}

/// Register every handler of this crate.
pub fn register(registry: Registry, services: &Services) -> Registry {
    registry
        .with_handler(tiles::tasks::PlanPyramid(services.clone()))
        .with_handler(tiles::tasks::RenderTiles(services.clone()))
        .with_handler(tiles::tasks::BuildOverviews(services.clone()))
        .with_handler(tiles::tasks::PublishTiles(services.clone()))
        .with_handler(tiles::tasks::SourceCog(services.clone()))
        .with_handler(listing::ListContainer {
            services: services.clone(),
        })
        .with_handler(cog::Cog {
            services: services.clone(),
        })
        .with_handler(cog::CollectCogs)
        .with_handler(stac::CatalogContainer {
            services: services.clone(),
        })
        .with_handler(stac::CatalogFile {
            services: services.clone(),
        })
        .with_handler(stac::WriteCollection {
            services: services.clone(),
        })
        .with_handler(hello::Greet)
        .with_handler(hello::Summarize)
        .with_handler(synthetic::Noop)
        .with_handler(synthetic::NoopBarrier)
}
