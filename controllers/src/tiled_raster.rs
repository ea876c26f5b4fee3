//! `tiled_raster` v1: an XYZ tile pyramid (Web Mercator PNG tiles, gdal2tiles-compatible),
//! TileJSON, a COG of the source, its STAC item and a map page.
//!
//! Params: `container`, `blob` (the source raster), `output_container`, `output_prefix`
//! (default: the blob's file stem), `min_zoom` / `max_zoom` (0..=22, min <= max), `tile_size`
//! (256 or 512, default 256), `resampling` (`average`, gdal2tiles' default, or `near`).
//!
//! Tasks: `plan_pyramid` (orchestrator: one `render_tiles` per block of base-zoom tiles) and
//! `source_cog` run at once; `build_overviews` waits for every block; `publish_tiles` checks
//! the tile set and writes TileJSON, STAC item and map page last.

use async_trait::async_trait;
use engine::graph::PlanError;
use engine::{
    CheckError, Controller, HandlerError, JobId, JobRecord, JobResults, TaskSpec, ValidationError,
};
use serde_json::{Value, json};
use services::Services;
use services::raster::{RasterError, RasterInfo};
use services::tiles::mercator::tile_range;
use services::tiles::tasks::{RENDER_GROUP, TiledRasterParams};

use crate::params::Params;

/// Most tiles one job may produce (a guard against a max_zoom far too deep for the raster).
pub const MAX_TILES: u64 = 2_000_000;

pub struct TiledRaster(pub Services);

#[async_trait]
impl Controller for TiledRaster {
    fn job_type(&self) -> &'static str {
        "tiled_raster"
    }
    fn description(&self) -> &'static str {
        "XYZ PNG tile pyramid (gdal2tiles-compatible), TileJSON, COG, STAC item and map page of a raster"
    }
    fn validate(&self, params: Value) -> Result<Value, ValidationError> {
        let mut p = Params::new(params)?;
        declare(&mut p)?;
        p.finish()
    }
    fn params_schema(&self) -> Value {
        Params::describe(declare)
    }
    /// The source exists; when it is small enough to read at once (at most
    /// [`OPENED_AT_SUBMISSION_BYTES`]), also the raster checks of [`TiledRaster::check_raster`].
    async fn check(&self, params: &Value) -> Result<(), CheckError> {
        let p = params_of(params)?;
        if self.source_size(&p).await? <= OPENED_AT_SUBMISSION_BYTES {
            self.check_raster(&p).await?;
        }
        Ok(())
    }
    /// A large source (downloaded from Azure to be read) is opened at expansion.
    async fn check_at_expansion(&self, params: &Value) -> Result<(), CheckError> {
        let p = params_of(params)?;
        if self.source_size(&p).await? > OPENED_AT_SUBMISSION_BYTES {
            self.check_raster(&p).await?;
        }
        Ok(())
    }
    /// The command line's path: the source's existence and size once, then it is opened.
    async fn check_all(&self, params: &Value) -> Result<(), CheckError> {
        let p = params_of(params)?;
        self.source_size(&p).await?;
        self.check_raster(&p).await
    }
    fn plan(&self, _job_id: &JobId, _params: &Value) -> Result<Vec<TaskSpec>, PlanError> {
        Ok(vec![
            TaskSpec::orchestrator("plan_pyramid", 0).children_in(RENDER_GROUP),
            TaskSpec::parallel("source_cog", 0),
            TaskSpec::barrier("build_overviews", 0, RENDER_GROUP),
            TaskSpec::sequential("publish_tiles", 0)
                .after("build_overviews", 0)
                .after("source_cog", 0),
        ])
    }
    async fn aggregate(
        &self,
        _job: &JobRecord,
        results: &JobResults,
    ) -> Result<Value, HandlerError> {
        let published = results.task("publish_tiles", 0).await?;
        Ok(published
            .and_then(|t| t.result)
            .unwrap_or_else(|| json!({ "tiles": 0 })))
    }
}

/// Sources up to this size are opened with GDAL when the job is submitted; larger ones (a
/// download from Azure before GDAL can read them) when it is expanded.
pub const OPENED_AT_SUBMISSION_BYTES: u64 = 64 * 1024 * 1024;

fn params_of(params: &Value) -> Result<TiledRasterParams, ValidationError> {
    serde_json::from_value(params.clone())
        .map_err(|e| ValidationError::new("params", e.to_string()))
}

impl TiledRaster {
    /// The source's size (a HEAD: no download); a missing source is refused naming `blob`.
    async fn source_size(&self, p: &TiledRasterParams) -> Result<u64, CheckError> {
        let meta = self
            .0
            .blobs
            .head(&p.container, &p.blob)
            .await
            .map_err(|e| services::failure::check_failure("blob", e))?;
        Ok(meta.size)
    }

    /// The source is a georeferenced raster whose CRS reaches Web Mercator, and the zooms do
    /// not ask for an absurd number of tiles.
    async fn check_raster(&self, p: &TiledRasterParams) -> Result<(), CheckError> {
        let path = self
            .0
            .blobs
            .local_path(&p.container, &p.blob)
            .await
            .map_err(|e| services::failure::check_failure("blob", e))?;
        let (min_zoom, max_zoom, tile_size) = (p.min_zoom, p.max_zoom, p.tile_size);
        let checked = self
            .0
            .gdal_check("blob", move || -> Result<u64, RasterError> {
                let ds = services::raster::open(&path)?;
                RasterInfo::of(&ds, &path)?;
                let warped =
                    services::tiles::warp::to_web_mercator(ds, None).map_err(|reason| {
                        RasterError::UnknownCrs {
                            file: services::raster::file_name(&path),
                            reason,
                        }
                    })?;
                let bounds = warped.bounds();
                Ok((min_zoom..=max_zoom)
                    .map(|z| tile_range(bounds, z, tile_size).count())
                    .sum())
            })
            .await?;
        let tiles = checked.map_err(|e| ValidationError::new("blob", e.to_string()))?;
        if tiles > MAX_TILES {
            return Err(ValidationError::new(
                "max_zoom",
                format!(
                    "zooms {min_zoom}..{max_zoom} of this raster make {tiles} tiles, more than the {MAX_TILES} one job may write; lower max_zoom"
                ),
            )
            .into());
        }
        Ok(())
    }
}

/// The params of `tiled_raster` (validation and schema).
fn declare(p: &mut Params) -> Result<(), ValidationError> {
    let container = p.string("container", 1..=63, None)?;
    let blob = p.string("blob", 1..=1024, None)?;
    let output_container = p.string("output_container", 1..=63, None)?;
    let names = |check: fn(&str) -> Result<(), services::blob::BlobError>, name: &str| {
        check(name).map_err(|e| e.to_string())
    };
    p.check("container", || {
        names(services::blob::check_container, &container)
    })?;
    p.check("blob", || names(services::blob::check_blob, &blob))?;
    p.check("output_container", || {
        names(services::blob::check_container, &output_container)
    })?;
    // Absent, the prefix is the blob's stem, recorded so that the job ID hashes it.
    let prefix = p
        .optional_string("output_prefix", 1..=512)?
        .unwrap_or_else(|| TiledRasterParams::stem_of(&blob));
    p.check("output_prefix", || {
        names(services::blob::check_blob, &prefix)
    })?;
    p.set("output_prefix", prefix.into());
    let min_zoom = p.int("min_zoom", 0..=22, None)?;
    let max_zoom = p.int("max_zoom", 0..=22, None)?;
    p.check("min_zoom", || {
        if min_zoom > max_zoom {
            Err(format!(
                "must not be greater than max_zoom ({min_zoom} > {max_zoom})"
            ))
        } else {
            Ok(())
        }
    })?;
    let tile_size = p.int("tile_size", 256..=512, Some(256))?;
    p.check("tile_size", || {
        if tile_size != 256 && tile_size != 512 {
            Err(format!("must be 256 or 512, got {tile_size}"))
        } else {
            Ok(())
        }
    })?;
    p.choice("resampling", &["average", "near"], "average")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cog_conversion::tests::data_dir;

    /// A small source is opened at submission; a large one (here a sparse file of 65 MiB that
    /// is no raster) only at expansion, where it is refused naming `blob`.
    #[tokio::test]
    async fn large_sources_are_opened_at_expansion() {
        let (dir, services) = data_dir(&[
            ("in/small.tif", "text:not a raster"),
            ("in/ok.tif", "byte.tif"),
        ]);
        let large = dir.path().join("in/large.tif");
        std::fs::File::create(&large)
            .unwrap()
            .set_len(OPENED_AT_SUBMISSION_BYTES + 1024 * 1024)
            .unwrap();
        let c = TiledRaster(services);
        let params = |blob: &str| {
            c.validate(json!({"container": "in", "blob": blob, "output_container": "tiles", "min_zoom": 8, "max_zoom": 9}))
                .unwrap()
        };
        let text = |r: Result<(), CheckError>| r.map_err(|e| e.to_string());

        let small = params("small.tif");
        let e = text(c.check(&small).await).unwrap_err();
        assert!(e.starts_with("invalid params: blob: small.tif"), "{e}");

        let large = params("large.tif");
        assert_eq!(
            text(c.check(&large).await),
            Ok(()),
            "not opened at submission"
        );
        let e = text(c.check_at_expansion(&large).await).unwrap_err();
        assert!(e.starts_with("invalid params: blob: large.tif"), "{e}");

        let ok = params("ok.tif");
        assert_eq!(text(c.check(&ok).await), Ok(()));
        assert_eq!(text(c.check_at_expansion(&ok).await), Ok(()));

        let missing = params("missing.tif");
        assert_eq!(
            text(c.check(&missing).await),
            Err("invalid params: blob: blob in/missing.tif does not exist".into())
        );
    }
}
