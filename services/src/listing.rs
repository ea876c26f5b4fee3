//! `list_container`: an inventory of a container (or of the blobs under a prefix): how many
//! blobs, how many bytes, counts per extension, and the rasters among them.
//!
//! A blob is a raster when GDAL opens it as one (whatever its extension). Side-car files of
//! another listed blob (`x.tif.ovr`, `x.tif.msk`, `x.tif.aux.xml`) are counted but not opened:
//! GDAL would open an `.ovr` as a raster of its own. The same scan feeds `sync_container`'s
//! orchestrator ([`inventory`]).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use async_trait::async_trait;
use engine::{CheckError, HandlerError, TaskContext, TaskHandler, TaskOutput};
use serde::{Deserialize, Serialize};
use tracing::{Instrument, debug, info_span};

use crate::Services;
use crate::blob::{BlobMeta, Blobs};
use crate::failure::{blob_failure, job_params};
use crate::raster::{self, RasterError};

/// Extension key of blobs without one.
pub const NO_EXTENSION: &str = "(none)";

/// Side-car extensions GDAL reads along with their base file.
const SIDECARS: &[&str] = &[".ovr", ".msk", ".aux.xml"];

/// Submission check: `container` (the value of params field `field`) exists.
pub async fn check_container_exists(
    blobs: &Blobs,
    field: &str,
    container: &str,
) -> Result<(), CheckError> {
    blobs
        .list(container, "")
        .await
        .map(drop)
        .map_err(|e| crate::failure::check_failure(field, e))
}

/// Blobs per extension.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionCount {
    pub count: u64,
    pub bytes: u64,
}

/// A blob GDAL opens as a raster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RasterEntry {
    pub name: String,
    pub size: u64,
    /// GDAL driver short name (`GTiff`, `PNG`, ...).
    pub driver: String,
    pub width: usize,
    pub height: usize,
    pub bands: usize,
    /// EPSG code of its CRS, when it has one with a code.
    pub epsg: Option<u32>,
    /// Has a geotransform and a CRS (what a STAC item or a map tile needs).
    pub georeferenced: bool,
}

/// What `list_container` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub container: String,
    pub prefix: String,
    /// Blobs under the prefix.
    pub count: u64,
    pub total_bytes: u64,
    /// Lower-case extension without the dot (`tif`; `(none)` for none) -> count and bytes.
    pub extensions: BTreeMap<String, ExtensionCount>,
    /// The rasters, sorted by name.
    pub rasters: Vec<RasterEntry>,
}

/// Lower-case extension of a blob name's last segment, without the dot.
pub fn extension(name: &str) -> String {
    let file = name.rsplit('/').next().unwrap_or(name);
    match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => ext.to_ascii_lowercase(),
        _ => NO_EXTENSION.to_owned(),
    }
}

/// `x.tif.ovr` when `x.tif` is listed too.
fn is_sidecar(name: &str, names: &HashSet<&str>) -> bool {
    SIDECARS.iter().any(|ext| {
        name.len() > ext.len()
            && name[name.len() - ext.len()..].eq_ignore_ascii_case(ext)
            && names.contains(&name[..name.len() - ext.len()])
    })
}

/// Describe a local file as a raster, georeferenced or not (blocking: GDAL).
pub fn describe(path: &Path, blob: &BlobMeta) -> Result<RasterEntry, RasterError> {
    let ds = raster::open(path)?;
    let (width, height) = ds.raster_size();
    let georeferenced = raster::RasterInfo::of(&ds, path).is_ok();
    let epsg = ds.spatial_ref().ok().and_then(|srs| raster::epsg_of(&srs));
    Ok(RasterEntry {
        name: blob.name.clone(),
        size: blob.size,
        driver: ds.driver().short_name(),
        width,
        height,
        bands: ds.raster_count(),
        epsg,
        georeferenced,
    })
}

/// List `container` under `prefix` and open every candidate with GDAL. `progress` is called
/// with (blobs looked at, blobs in all) after each one; cancellation is honoured between blobs.
pub async fn inventory(
    services: &Services,
    container: &str,
    prefix: &str,
    ctx: Option<&TaskContext>,
) -> Result<Inventory, HandlerError> {
    let blobs = &services.blobs;
    let listed = blobs.list(container, prefix).await.map_err(blob_failure)?;
    let names: HashSet<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    let mut extensions: BTreeMap<String, ExtensionCount> = BTreeMap::new();
    let mut rasters = Vec::new();
    let total = listed.len();
    for (i, blob) in listed.iter().enumerate() {
        let ext = extensions.entry(extension(&blob.name)).or_default();
        ext.count += 1;
        ext.bytes += blob.size;
        if !is_sidecar(&blob.name, &names) {
            let path = blobs
                .local_path(container, &blob.name)
                .await
                .map_err(blob_failure)?;
            let meta = blob.clone();
            let described = services.gdal(move || describe(&path, &meta)).await?;
            match described {
                Ok(entry) => rasters.push(entry),
                Err(e) => debug!(blob = %blob.name, reason = %e, "not a raster"),
            }
        }
        if let Some(ctx) = ctx {
            if ctx.is_cancelled() {
                return Err(HandlerError::permanent(
                    "CANCELLED",
                    "stopped on cancellation",
                ));
            }
            ctx.progress(
                (i + 1) as f64 / total.max(1) as f64,
                format!("{}/{total} blobs looked at", i + 1),
            )
            .await;
        }
    }
    Ok(Inventory {
        container: container.to_owned(),
        prefix: prefix.to_owned(),
        count: listed.len() as u64,
        total_bytes: listed.iter().map(|b| b.size).sum(),
        extensions,
        rasters,
    })
}

/// The job params of `list_container` (and `sync_container`'s listing part).
#[derive(Debug, Deserialize)]
struct ListParams {
    container: String,
    #[serde(default)]
    prefix: String,
}

/// The `list_container` task: one inventory.
pub struct ListContainer {
    pub services: Services,
}

#[async_trait]
impl TaskHandler for ListContainer {
    fn name(&self) -> &'static str {
        "list_container"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let p: ListParams = job_params(ctx)?;
        let span = info_span!("list_container", container = %p.container, prefix = %p.prefix);
        let inv = inventory(&self.services, &p.container, &p.prefix, Some(ctx))
            .instrument(span)
            .await?;
        TaskOutput::value(inv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn extensions_are_lower_case_without_the_dot() {
        assert_eq!(extension("a/B.TIF"), "tif");
        assert_eq!(extension("x.tif.ovr"), "ovr");
        assert_eq!(extension("dir.d/README"), NO_EXTENSION);
        assert_eq!(extension(".hidden"), NO_EXTENSION);
        assert_eq!(extension("trailing."), NO_EXTENSION);
    }

    #[test]
    fn sidecars_need_their_base_file() {
        let names: HashSet<&str> = ["a.tif", "a.tif.ovr", "a.tif.AUX.XML", "b.ovr"].into();
        assert!(is_sidecar("a.tif.ovr", &names));
        assert!(is_sidecar("a.tif.AUX.XML", &names));
        assert!(!is_sidecar("b.ovr", &names));
        assert!(!is_sidecar("a.tif", &names));
    }

    #[tokio::test]
    async fn inventory_counts_and_finds_rasters() {
        let dir = tempfile::tempdir().unwrap();
        let services = Services::local(dir.path());
        let c = dir.path().join("c");
        std::fs::create_dir_all(c.join("sub")).unwrap();
        for name in ["RGB.byte.tif", "slc_no_georef.tif"] {
            std::fs::copy(fixture(name), c.join(name)).unwrap();
        }
        std::fs::copy(
            fixture("invalid-cog/image_external.tif"),
            c.join("sub/ext.tif"),
        )
        .unwrap();
        std::fs::copy(
            fixture("invalid-cog/image_external.tif.ovr"),
            c.join("sub/ext.tif.ovr"),
        )
        .unwrap();
        std::fs::write(c.join("notes.txt"), "not a raster").unwrap();
        std::fs::write(c.join("README"), "hello").unwrap();

        let inv = inventory(&services, "c", "", None).await.unwrap();
        let fixtures: u64 = [
            "RGB.byte.tif",
            "slc_no_georef.tif",
            "invalid-cog/image_external.tif",
            "invalid-cog/image_external.tif.ovr",
        ]
        .iter()
        .map(|n| std::fs::metadata(fixture(n)).unwrap().len())
        .sum();
        let sizes = fixtures + "not a raster".len() as u64 + "hello".len() as u64;
        assert_eq!((inv.count, inv.total_bytes), (6, sizes));
        assert_eq!(inv.extensions["tif"].count, 3);
        assert_eq!(inv.extensions["ovr"].count, 1);
        assert_eq!(
            inv.extensions["txt"],
            ExtensionCount {
                count: 1,
                bytes: 12
            }
        );
        assert_eq!(inv.extensions[NO_EXTENSION].count, 1);
        let names: Vec<&str> = inv.rasters.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["RGB.byte.tif", "slc_no_georef.tif", "sub/ext.tif"]);
        let rgb = &inv.rasters[0];
        assert_eq!(
            (
                rgb.width,
                rgb.height,
                rgb.bands,
                rgb.epsg,
                rgb.georeferenced
            ),
            (791, 718, 3, Some(32618), true)
        );
        assert_eq!(rgb.driver, "GTiff");
        let slc = &inv.rasters[1];
        assert_eq!(
            (slc.width, slc.height, slc.georeferenced),
            (1094, 674, false)
        );

        let sub = inventory(&services, "c", "sub/", None).await.unwrap();
        assert_eq!((sub.count, sub.rasters.len()), (2, 1));

        let e = inventory(&services, "missing", "", None).await.unwrap_err();
        assert_eq!(e.code, "NOT_FOUND");
        assert!(e.message.contains("\"missing\""), "{e}");
    }
}
