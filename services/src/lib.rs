//! Task handlers: one module per handler family. Handlers see only their context (params,
//! results of other tasks, progress, cancellation), never the store.

pub mod blob;
pub mod cog;
pub mod failure;
pub mod hello;
pub mod listing;
pub mod raster;
pub mod stac;
pub mod synthetic;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tiles;

/// COG validation (GDAL's validation script without GDAL) is its own crate; `services` uses it
/// and re-exports it under its former path.
pub use cog_validate;

use std::path::PathBuf;

use engine::Registry;

pub use blob::Blobs;
pub use tiles::publish::MapAssets;

/// What the geospatial handlers get from the process: where the blobs live, where GDAL
/// may write its working files, and the browser assets of the map page.
#[derive(Clone, Debug)]
pub struct Services {
    pub blobs: Blobs,
    /// Scratch space for outputs before they are validated and uploaded.
    pub scratch: PathBuf,
    /// Leaflet, inlined into `tiled_raster`'s map page: the host supplies it
    /// ([`Services::with_map_assets`]); none by default.
    pub map_assets: MapAssets,
    /// One permit per core (see [`Services::with_slots`]): CPU-bound work (GDAL, pixels) of
    /// all tasks of the process shares them through [`Services::gdal`], so many concurrent
    /// tasks neither oversubscribe the CPU nor hold many buffers.
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
            map_assets: MapAssets::default(),
            cpu: std::sync::Arc::new(tokio::sync::Semaphore::new(cores)),
        }
    }

    /// The same services with `slots` CPU slots instead of one per core (at least one): at
    /// most `slots` GDAL jobs of the process run at once. For tests, and for a process that
    /// shares its machine.
    pub fn with_slots(mut self, slots: usize) -> Self {
        self.cpu = std::sync::Arc::new(tokio::sync::Semaphore::new(slots.max(1)));
        self
    }

    /// The same services with the map page's browser assets, which the host embeds (this
    /// crate does not, so that it builds without npm). Without them `tiled_raster`'s
    /// `publish_tiles` fails with `NO_MAP_ASSETS`.
    pub fn with_map_assets(mut self, assets: MapAssets) -> Self {
        self.map_assets = assets;
        self
    }

    /// Run GDAL (or other CPU-bound) work `f` on a blocking thread once one of the process's
    /// CPU slots is free. Every GDAL call of the handlers and of `Controller::check` goes
    /// through here, so however many tasks run concurrently, at most one GDAL job per slot
    /// runs at a time. The slot is held until `f` returns, even when the caller stops
    /// waiting (a cancelled or timed-out task). A panic in `f` is `HANDLER_PANICKED`, a
    /// cancelled blocking task (runtime shutting down) `INTERNAL` ([`failure::join_failure`]).
    pub async fn gdal<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, engine::HandlerError> {
        self.in_cpu_slot(f).await.map_err(failure::join_failure)
    }

    /// [`Services::gdal`] for `Controller::check`: a blocking job that did not finish is not
    /// the input's fault, so it is reported as `field` being unavailable
    /// ([`failure::check_join_failure`]).
    pub async fn gdal_check<T: Send + 'static>(
        &self,
        field: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, engine::CheckError> {
        self.in_cpu_slot(f)
            .await
            .map_err(|e| failure::check_join_failure(field, e))
    }

    /// Wait for a CPU slot, then run `f` on a blocking thread holding it.
    async fn in_cpu_slot<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::raster::RasterInfo;
    use crate::testing::fixture;

    /// More GDAL jobs at once than there are slots, each from its own task: at most `slots`
    /// run at the same time (high-water mark of the jobs inside their closures), and the
    /// slots are all used (the jobs meet `slots` at a time at a barrier, which also proves
    /// they overlap). Issue 13: COG, STAC, listing and check ran GDAL without a slot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn gdal_jobs_never_run_on_more_than_the_slots() {
        let slots = 2;
        let jobs = 4 * slots;
        let dir = tempfile::tempdir().unwrap();
        let services = Services::local(dir.path()).with_slots(slots);
        let running = Arc::new(AtomicUsize::new(0));
        let high = Arc::new(AtomicUsize::new(0));
        let met = Arc::new(Barrier::new(slots));
        let path = fixture("RGB.byte.tif");
        let tasks: Vec<_> = (0..jobs)
            .map(|_| {
                let (services, running, high, met, path) = (
                    services.clone(),
                    running.clone(),
                    high.clone(),
                    met.clone(),
                    path.clone(),
                );
                tokio::spawn(async move {
                    services
                        .gdal(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            high.fetch_max(now, Ordering::SeqCst);
                            met.wait();
                            // Real GDAL work: describe the raster and read every band.
                            let info = RasterInfo::read(&path).unwrap();
                            let ds = crate::raster::open(&path).unwrap();
                            let mut sum = 0u64;
                            for b in 1..=ds.raster_count() {
                                let band = ds.rasterband(b).unwrap();
                                let buf = band
                                    .read_as::<u8>((0, 0), band.size(), band.size(), None)
                                    .unwrap();
                                sum += buf.data().iter().map(|&v| u64::from(v)).sum::<u64>();
                            }
                            running.fetch_sub(1, Ordering::SeqCst);
                            (info.width, sum)
                        })
                        .await
                })
            })
            .collect();
        let mut sums = Vec::new();
        for t in tasks {
            sums.push(t.await.unwrap().unwrap());
        }
        assert_eq!(sums.len(), jobs);
        assert!(sums.iter().all(|s| *s == sums[0] && s.0 == 791), "{sums:?}");
        assert_eq!(
            high.load(Ordering::SeqCst),
            slots,
            "GDAL jobs running at once (slots: {slots})"
        );
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }

    /// A panic in the GDAL job is the handler's permanent `HANDLER_PANICKED`, and its slot
    /// is given back.
    #[tokio::test]
    async fn a_panicking_gdal_job_fails_permanently_and_frees_its_slot() {
        let dir = tempfile::tempdir().unwrap();
        let services = Services::local(dir.path()).with_slots(1);
        let e = services
            .gdal(|| -> () { panic!("boom") })
            .await
            .unwrap_err();
        assert_eq!(e.code, engine::model::codes::HANDLER_PANICKED);
        assert_eq!(services.gdal(|| 7).await.unwrap(), 7);
    }
}
