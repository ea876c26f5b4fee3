//! The `tiled_raster` task handlers:
//! - `plan_pyramid` (orchestrator): reads the source, computes the tile range of every zoom
//!   exactly as gdal2tiles does, and fans out one `render_tiles` task per block of base-zoom
//!   tiles;
//! - `render_tiles`: renders a block of base-zoom tiles and every lower-zoom tile that lies
//!   wholly inside the block (blocks are aligned to their size, a power of two);
//! - `build_overviews` (barrier over the blocks): the zooms below the blocks' reach, from
//!   the tiles of the zoom above;
//! - `publish_tiles` (sequential, last): checks that exactly the expected tiles exist, then
//!   writes `tilejson.json`, the STAC item and `index.html`. Those are written last and only
//!   after the check, so a partial pyramid never looks complete.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use engine::model::codes;
use engine::{HandlerError, TaskContext, TaskHandler, TaskOutput, TaskSpec};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;

use super::mercator::{TileRange, geo_query, meters_to_lon_lat, tile_bounds, tile_range};
use super::render::{self, Resampling, Window};
use super::warp::{self, Stretch, Warped};
use crate::Services;
use crate::raster::{self, RasterInfo};

/// Group of the render tasks (the `build_overviews` barrier waits for it).
pub const RENDER_GROUP: &str = "render";
/// Largest block side in tiles (8 x 8 = 64 base tiles per task).
const MAX_BLOCK: u32 = 8;
/// Smallest number of render tasks worth aiming for (blocks shrink down to 1 tile until then).
const MIN_TASKS: u64 = 8;

/// The normalized params of a `tiled_raster` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TiledRasterParams {
    pub container: String,
    pub blob: String,
    pub output_container: String,
    /// Folder of the outputs in `output_container`.
    pub output_prefix: String,
    pub min_zoom: u32,
    pub max_zoom: u32,
    pub tile_size: u32,
    pub resampling: Resampling,
}

impl TiledRasterParams {
    pub fn from_job(ctx: &TaskContext) -> Result<Self, HandlerError> {
        crate::failure::job_params(ctx)
    }
    fn tile_blob(&self, z: u32, x: u32, y: u32) -> String {
        format!("{}/{z}/{x}/{y}.png", self.output_prefix)
    }
    /// The source's file stem (`RGB.byte` for `scenes/RGB.byte.tif`).
    pub fn stem(&self) -> String {
        Self::stem_of(&self.blob)
    }
    pub fn stem_of(blob: &str) -> String {
        let name = blob.rsplit('/').next().unwrap_or(blob);
        match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
            _ => name.to_owned(),
        }
    }
    pub fn cog_blob(&self) -> String {
        format!("{}/{}.cog.tif", self.output_prefix, self.stem())
    }
    fn out(&self, name: &str) -> String {
        format!("{}/{name}", self.output_prefix)
    }
}

/// What `plan_pyramid` found: the result the other tasks read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pyramid {
    /// Tile range of every zoom from min to max.
    pub ranges: Vec<TileRange>,
    pub block_size: u32,
    /// Lowest zoom the render tasks produce; `build_overviews` makes the zooms below.
    pub block_low_zoom: u32,
    pub blocks: u64,
    pub tiles: u64,
    /// EPSG:3857 bounds of the warped raster.
    pub bounds_3857: [f64; 4],
    pub bbox_wgs84: [f64; 4],
    /// Scaling to 8 bits of every band of a source that is not 8-bit (`gdal_translate
    /// -scale`'s approximate min/max), so that all blocks scale alike.
    pub stretch: Option<Vec<Stretch>>,
    /// How the source was brought to EPSG:3857 (for the record).
    pub reprojection: warp::Reprojection,
}

impl Pyramid {
    /// The tile range of zoom `z`; a stored pyramid without it is corrupt.
    fn range(&self, z: u32) -> Result<TileRange, HandlerError> {
        self.ranges
            .iter()
            .find(|r| r.z == z)
            .copied()
            .ok_or_else(|| {
                HandlerError::permanent(
                    codes::CORRUPT_RESULT,
                    format!("the stored pyramid has no tile range for zoom {z}"),
                )
            })
    }

    /// The range of the highest zoom (where the blocks are cut).
    fn base(&self) -> Result<TileRange, HandlerError> {
        base_range(&self.ranges)
    }
}

fn base_range(ranges: &[TileRange]) -> Result<TileRange, HandlerError> {
    ranges.last().copied().ok_or_else(|| {
        HandlerError::permanent(codes::CORRUPT_RESULT, "the pyramid has no zoom level")
    })
}

/// Params of one `render_tiles` task.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RenderParams {
    /// Base-zoom tiles of the block (clipped to the base range).
    block: TileRange,
}

async fn source_path(services: &Services, p: &TiledRasterParams) -> Result<PathBuf, HandlerError> {
    services
        .blobs
        .local_path(&p.container, &p.blob)
        .await
        .map_err(crate::failure::blob_failure)
}

fn gdal_failure(file: &str, e: impl std::fmt::Display) -> HandlerError {
    HandlerError::permanent("GDAL_ERROR", format!("{file}: {e}"))
}

/// Open the source and warp it to Web Mercator (blocking: call from a blocking thread), with
/// the planned scaling of a source that is not 8-bit (computed when `None`).
fn open_warped(
    path: &std::path::Path,
    stretch: Option<&[Stretch]>,
) -> Result<(Warped, RasterInfo), HandlerError> {
    let ds = raster::open(path)?;
    let info = RasterInfo::of(&ds, path)?;
    let warped = warp::to_web_mercator(ds, stretch)
        .map_err(|e| gdal_failure(&raster::file_name(path), e))?;
    Ok((warped, info))
}

/// Block side (power of two) for a base range: the largest up to [`MAX_BLOCK`] that still
/// gives [`MIN_TASKS`] tasks.
fn block_size(base: &TileRange) -> u32 {
    let mut size = MAX_BLOCK;
    while size > 1 && blocks_of(base, size).count() < MIN_TASKS as usize {
        size /= 2;
    }
    size
}

/// Aligned blocks of `size` x `size` tiles covering `base`, clipped to it.
fn blocks_of(base: &TileRange, size: u32) -> impl Iterator<Item = TileRange> + '_ {
    let (bx0, by0) = (base.min_x / size, base.min_y / size);
    let (bx1, by1) = (base.max_x / size, base.max_y / size);
    (by0..=by1).flat_map(move |by| {
        (bx0..=bx1).filter_map(move |bx| {
            TileRange {
                z: base.z,
                min_x: bx * size,
                min_y: by * size,
                max_x: bx * size + size - 1,
                max_y: by * size + size - 1,
            }
            .intersect(base)
        })
    })
}

/// Plans the pyramid and fans out the render tasks.
pub struct PlanPyramid(pub Services);

#[async_trait]
impl TaskHandler for PlanPyramid {
    fn name(&self) -> &'static str {
        "plan_pyramid"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let p = TiledRasterParams::from_job(ctx)?;
        let path = source_path(&self.0, &p).await?;
        // A previous attempt's completion markers go first: until `publish_tiles` writes
        // them again, the output does not look complete.
        for name in [
            "tilejson.json",
            "index.html",
            &format!("{}.stac.json", p.stem()),
        ] {
            self.0
                .blobs
                .delete_prefix(&p.output_container, &p.out(name))
                .await
                .map_err(crate::failure::blob_failure)?;
        }
        let params = p.clone();
        let pyramid = self
            .0
            .gdal(move || -> Result<_, HandlerError> {
                let stretch = warp::stretch_of(&raster::open(&path)?)
                    .map_err(|e| gdal_failure(&raster::file_name(&path), e))?;
                let (warped, info) = open_warped(&path, stretch.as_deref())?;
                let bounds = warped.bounds();
                let ranges: Vec<TileRange> = (params.min_zoom..=params.max_zoom)
                    .map(|z| tile_range(bounds, z, params.tile_size))
                    .collect();
                let base = base_range(&ranges)?;
                let size = block_size(&base);
                let levels = size.trailing_zeros();
                Ok(Pyramid {
                    tiles: ranges.iter().map(TileRange::count).sum(),
                    blocks: blocks_of(&base, size).count() as u64,
                    block_low_zoom: params.max_zoom.saturating_sub(levels).max(params.min_zoom),
                    block_size: size,
                    ranges,
                    bounds_3857: bounds,
                    bbox_wgs84: info.bbox_wgs84,
                    stretch,
                    reprojection: warped.reprojection,
                })
            })
            .await??;
        let base = pyramid.base()?;
        let children: Vec<TaskSpec> = blocks_of(&base, pyramid.block_size)
            .enumerate()
            .map(|(i, block)| {
                TaskSpec::parallel("render_tiles", i as i64).params(json!(RenderParams { block }))
            })
            .collect();
        info!(
            tiles = pyramid.tiles,
            blocks = pyramid.blocks,
            block_size = pyramid.block_size,
            "pyramid planned"
        );
        ctx.progress(
            1.0,
            format!("{} tiles in {} blocks", pyramid.tiles, pyramid.blocks),
        )
        .await;
        TaskOutput::with_children(pyramid, children)
    }
}

async fn pyramid_of(ctx: &TaskContext) -> Result<Pyramid, HandlerError> {
    let plan = ctx
        .result_of("plan_pyramid", 0)
        .await?
        .and_then(|m| m.result)
        .ok_or_else(|| HandlerError::transient("NOT_READY", "plan_pyramid has no result yet"))?;
    serde_json::from_value(plan)
        .map_err(|e| HandlerError::permanent("INVALID_INPUT", format!("plan_pyramid result: {e}")))
}

fn provenance(ctx: &TaskContext) -> [(String, String); 2] {
    [
        ("tessera:job_id".to_owned(), ctx.job_id.to_string()),
        ("tessera:task_id".to_owned(), ctx.task_id.to_string()),
    ]
}

fn encode(rgba: &[u8], tile_size: u32, prov: &[(String, String)]) -> Result<Vec<u8>, HandlerError> {
    let prov: Vec<(&str, &str)> = prov.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    render::encode_png(rgba, tile_size, &prov)
        .map_err(|e| HandlerError::permanent("PNG_ENCODE", e.to_string()))
}

/// Renders one block: its base tiles and the lower-zoom tiles inside it.
pub struct RenderTiles(pub Services);

#[async_trait]
impl TaskHandler for RenderTiles {
    fn name(&self) -> &'static str {
        "render_tiles"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let p = TiledRasterParams::from_job(ctx)?;
        let params: RenderParams = serde_json::from_value(ctx.params.clone())
            .map_err(|e| HandlerError::permanent("INVALID_INPUT", format!("render params: {e}")))?;
        let pyramid = pyramid_of(ctx).await?;
        let path = source_path(&self.0, &p).await?;
        let prov = provenance(ctx);
        let job = p.clone();
        let tiles = self
            .0
            .gdal(move || -> Result<_, HandlerError> {
                render_block(&path, &job, &pyramid, &params.block, &prov)
            })
            .await??;
        let n = tiles.len();
        for (i, ((z, x, y), png)) in tiles.into_iter().enumerate() {
            self.0
                .blobs
                .put(&p.output_container, &p.tile_blob(z, x, y), Bytes::from(png))
                .await
                .map_err(crate::failure::blob_failure)?;
            if i % 16 == 15 {
                ctx.progress(
                    (i + 1) as f64 / n as f64,
                    format!("{}/{n} tiles written", i + 1),
                )
                .await;
            }
        }
        TaskOutput::value(json!({ "tiles": n }))
    }
}

type TileKey = (u32, u32, u32);

/// Render the block's tiles (blocking): base zoom from the warped source, then each lower
/// zoom inside the block from the one above.
fn render_block(
    path: &std::path::Path,
    p: &TiledRasterParams,
    pyramid: &Pyramid,
    block: &TileRange,
    prov: &[(String, String)],
) -> Result<Vec<(TileKey, Vec<u8>)>, HandlerError> {
    let file = raster::file_name(path);
    let (warped, _) = open_warped(path, pyramid.stretch.as_deref())?;
    let gt = warped.geo_transform();
    let size = warped.size();
    let qs = p.resampling.query_size(p.tile_size);
    let window = match render::block_window(&warped, block, p.resampling, p.tile_size) {
        Some(w) => Some(Window::read(&warped, w).map_err(|e| gdal_failure(&file, e))?),
        None => None,
    };
    let mut level: HashMap<(u32, u32), Vec<u8>> = HashMap::new();
    let ts = (p.tile_size * p.tile_size * 4) as usize;
    for (x, y) in block.tiles() {
        let q = geo_query(&gt, size, tile_bounds(block.z, x, y, p.tile_size), qs);
        let rgba = match &window {
            Some(w) => render::render_tile(w, &q, p.resampling, p.tile_size),
            None => vec![0; ts],
        };
        level.insert((x, y), rgba);
    }
    let mut out = Vec::new();
    let mut z = block.z;
    loop {
        for ((x, y), rgba) in &level {
            out.push(((z, *x, *y), encode(rgba, p.tile_size, prov)?));
        }
        if z == pyramid.block_low_zoom {
            break;
        }
        let Some(parents) = pyramid
            .range(z - 1)?
            .intersect(&block.parent_range(block.z - z + 1))
        else {
            break;
        };
        let mut next = HashMap::new();
        for (x, y) in parents.tiles() {
            let child = |dx: u32, dy: u32| level.get(&(2 * x + dx, 2 * y + dy)).map(Vec::as_slice);
            next.insert(
                (x, y),
                render::downsample(
                    [[child(0, 0), child(1, 0)], [child(0, 1), child(1, 1)]],
                    p.tile_size,
                ),
            );
        }
        level = next;
        z -= 1;
    }
    Ok(out)
}

/// Builds the zooms below the blocks' reach from the tiles of the zoom above.
pub struct BuildOverviews(pub Services);

#[async_trait]
impl TaskHandler for BuildOverviews {
    fn name(&self) -> &'static str {
        "build_overviews"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let p = TiledRasterParams::from_job(ctx)?;
        let pyramid = pyramid_of(ctx).await?;
        let prov = provenance(ctx);
        let mut written = 0u64;
        // Level by level, keeping only the zoom above in memory: the number of tiles at the
        // blocks' lowest zoom is about the number of blocks.
        let mut above: HashMap<(u32, u32), Vec<u8>> = HashMap::new();
        if pyramid.block_low_zoom > p.min_zoom {
            let top = pyramid.range(pyramid.block_low_zoom)?;
            for (x, y) in top.tiles() {
                let blob = p.tile_blob(top.z, x, y);
                let bytes = self
                    .0
                    .blobs
                    .get(&p.output_container, &blob)
                    .await
                    .map_err(crate::failure::blob_failure)?;
                let rgba = render::decode_png(&bytes, p.tile_size)
                    .map_err(|e| HandlerError::permanent("BAD_TILE", format!("{blob}: {e}")))?;
                above.insert((x, y), rgba);
            }
        }
        for z in (p.min_zoom..pyramid.block_low_zoom).rev() {
            let range = pyramid.range(z)?;
            let ts = p.tile_size;
            let (level, encoded) = {
                let above = std::mem::take(&mut above);
                let prov = prov.clone();
                self.0
                    .gdal(move || -> Result<_, HandlerError> {
                        let mut level = HashMap::new();
                        let mut encoded = Vec::new();
                        for (x, y) in range.tiles() {
                            let child = |dx: u32, dy: u32| {
                                above.get(&(2 * x + dx, 2 * y + dy)).map(Vec::as_slice)
                            };
                            let rgba = render::downsample(
                                [[child(0, 0), child(1, 0)], [child(0, 1), child(1, 1)]],
                                ts,
                            );
                            encoded.push(((x, y), encode(&rgba, ts, &prov)?));
                            level.insert((x, y), rgba);
                        }
                        Ok((level, encoded))
                    })
                    .await??
            };
            for ((x, y), png) in encoded {
                self.0
                    .blobs
                    .put(&p.output_container, &p.tile_blob(z, x, y), Bytes::from(png))
                    .await
                    .map_err(crate::failure::blob_failure)?;
                written += 1;
            }
            above = level;
        }
        TaskOutput::value(json!({ "tiles": written }))
    }
}

/// Converts the source to a COG (validated before upload) next to the tiles.
pub struct SourceCog(pub Services);

#[async_trait]
impl TaskHandler for SourceCog {
    fn name(&self) -> &'static str {
        "source_cog"
    }
    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(3600)
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        use crate::cog::{self, CogJob, Lineage};
        let p = TiledRasterParams::from_job(ctx)?;
        let src = source_path(&self.0, &p).await?;
        let scratch = self
            .0
            .scratch_dir()
            .map_err(|e| HandlerError::transient("SCRATCH", format!("scratch directory: {e}")))?;
        let dst = scratch.path().join("out.cog.tif");
        let job = CogJob {
            container: p.container.clone(),
            blobs: vec![p.blob.clone()],
            output_container: p.output_container.clone(),
            target_crs: None,
            compression: cog::DEFAULT_COMPRESSION.to_owned(),
            blocksize: cog::DEFAULT_BLOCKSIZE as u32,
        };
        let lineage = Lineage {
            job_id: ctx.job_id.to_string(),
            task_id: ctx.task_id.to_string(),
            source: format!("{}/{}", p.container, p.blob),
        };
        let (name, out) = (p.blob.clone(), dst.clone());
        let converted = self
            .0
            .gdal(move || -> Result<_, HandlerError> {
                cog::convert(&src, &name, &out, &job, &lineage)
                    .map_err(|e| HandlerError::permanent(e.code(), e.to_string()))
            })
            .await??;
        self.0
            .blobs
            .put_file(&p.output_container, &p.cog_blob(), &dst)
            .await
            .map_err(crate::failure::blob_failure)?;
        TaskOutput::value(json!({ "blob": p.cog_blob(), "cog": converted }))
    }
}

/// Checks the tile set, then writes the TileJSON, the STAC item and the map page.
pub struct PublishTiles(pub Services);

#[async_trait]
impl TaskHandler for PublishTiles {
    fn name(&self) -> &'static str {
        "publish_tiles"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let p = TiledRasterParams::from_job(ctx)?;
        let pyramid = pyramid_of(ctx).await?;
        let listed = self
            .0
            .blobs
            .list(&p.output_container, &format!("{}/", p.output_prefix))
            .await
            .map_err(crate::failure::blob_failure)?;
        let mut found: BTreeSet<TileKey> = BTreeSet::new();
        let mut empty_files = Vec::new();
        for blob in &listed {
            let rest = &blob.name[p.output_prefix.len() + 1..];
            let parts: Vec<&str> = rest.split('/').collect();
            if let [z, x, y] = parts[..] {
                if let (Ok(z), Ok(x), Some(Ok(y))) =
                    (z.parse(), x.parse(), y.strip_suffix(".png").map(str::parse))
                {
                    if blob.size == 0 {
                        empty_files.push(blob.name.clone());
                    }
                    found.insert((z, x, y));
                }
            }
        }
        let expected: BTreeSet<TileKey> = pyramid
            .ranges
            .iter()
            .flat_map(|r| r.tiles().map(move |(x, y)| (r.z, x, y)))
            .collect();
        let missing: Vec<_> = expected.difference(&found).take(5).collect();
        let extra: Vec<_> = found.difference(&expected).copied().collect();
        if !missing.is_empty() || !empty_files.is_empty() {
            return Err(HandlerError::permanent(
                "TILES_INCOMPLETE",
                format!(
                    "{}/{}: {} of {} tiles missing (first: {missing:?}), {} empty files",
                    p.output_container,
                    p.output_prefix,
                    expected.difference(&found).count(),
                    expected.len(),
                    empty_files.len()
                ),
            ));
        }
        // Tiles of an earlier run with other zooms would be served with this one's: remove.
        for (z, x, y) in &extra {
            self.0
                .blobs
                .delete_prefix(&p.output_container, &p.tile_blob(*z, *x, *y))
                .await
                .map_err(crate::failure::blob_failure)?;
        }
        // Coverage: the union of the tiles of every zoom covers the raster's bounds.
        for r in &pyramid.ranges {
            let nw = tile_bounds(r.z, r.min_x, r.min_y, p.tile_size);
            let se = tile_bounds(r.z, r.max_x, r.max_y, p.tile_size);
            let b = pyramid.bounds_3857;
            let eps = 1e-6 * (se[2] - nw[0]).abs().max(1.0);
            let world = super::mercator::ORIGIN_SHIFT;
            let covers = nw[0] <= b[0].max(-world) + eps
                && se[2] >= b[2].min(world) - eps
                && se[1] <= b[1].max(-world) + eps
                && nw[3] >= b[3].min(world) - eps;
            if !covers {
                return Err(HandlerError::permanent(
                    "TILES_INCOMPLETE",
                    format!(
                        "zoom {} tiles {r:?} do not cover the raster bounds {b:?}",
                        r.z
                    ),
                ));
            }
        }
        let [w, s, e, n] = pyramid.bbox_wgs84;
        let (cx, cy) = (
            (pyramid.bounds_3857[0] + pyramid.bounds_3857[2]) / 2.0,
            (pyramid.bounds_3857[1] + pyramid.bounds_3857[3]) / 2.0,
        );
        let (clon, clat) = meters_to_lon_lat(cx, cy);
        let tilejson = json!({
            "tilejson": "3.0.0",
            "name": p.stem(),
            "scheme": "xyz",
            "tiles": ["{z}/{x}/{y}.png"],
            "minzoom": p.min_zoom,
            "maxzoom": p.max_zoom,
            "bounds": [w, s, e, n],
            "center": [clon, clat, p.min_zoom],
            "tessera": {
                "job_id": ctx.job_id.to_string(),
                "task_id": ctx.task_id.to_string(),
                "tiles": expected.len(),
                "source": format!("{}/{}", p.container, p.blob),
                "cog": format!("{}.cog.tif", p.stem()),
            },
        });
        let item = super::publish::stac_item(&self.0, ctx, &p).await?;
        let html = super::publish::map_page(
            &p,
            [w, s, e, n],
            ctx.job_id.as_str(),
            ctx.task_id.as_str(),
            &self.0.map_assets,
        )?;
        let put = |name: String, bytes: Vec<u8>| {
            let blobs = self.0.blobs.clone();
            let container = p.output_container.clone();
            async move {
                blobs
                    .put(&container, &name, Bytes::from(bytes))
                    .await
                    .map_err(crate::failure::blob_failure)
            }
        };
        put(
            p.out("tilejson.json"),
            serde_json::to_vec_pretty(&tilejson).unwrap_or_default(),
        )
        .await?;
        put(
            p.out(&format!("{}.stac.json", p.stem())),
            serde_json::to_vec_pretty(&item).unwrap_or_default(),
        )
        .await?;
        put(p.out("index.html"), html.into_bytes()).await?;
        TaskOutput::value(json!({
            "tiles": expected.len(),
            "zooms": [p.min_zoom, p.max_zoom],
            "removed_stale_tiles": extra.len(),
            "output": format!("{}/{}", p.output_container, p.output_prefix),
            "tilejson": p.out("tilejson.json"),
            "stac_item": p.out(&format!("{}.stac.json", p.stem())),
            "cog": p.cog_blob(),
            "map": p.out("index.html"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_and_cover_the_base() {
        let base = TileRange {
            z: 13,
            min_x: 2290,
            min_y: 3550,
            max_x: 2346,
            max_y: 3601,
        };
        let size = block_size(&base);
        assert_eq!(size, 8);
        let blocks: Vec<_> = blocks_of(&base, size).collect();
        assert_eq!(
            blocks.iter().map(TileRange::count).sum::<u64>(),
            base.count()
        );
        assert!(
            blocks
                .iter()
                .all(|b| b.min_x / 8 == b.max_x / 8 && b.min_y / 8 == b.max_y / 8)
        );
        // A small base gets smaller blocks, so that there is still work for several workers.
        let small = TileRange {
            z: 5,
            min_x: 8,
            min_y: 12,
            max_x: 9,
            max_y: 13,
        };
        assert_eq!(block_size(&small), 1);
    }
}
