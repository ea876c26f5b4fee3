//! STAC items and collections for rasters, and the `sync_container` handlers.
//!
//! Items are STAC 1.0.0 `Feature`s with three extensions:
//! - projection v2.0.0: `proj:code` (`EPSG:32618`; `proj:wkt2` instead when the CRS has no
//!   EPSG code), `proj:shape` `[rows, cols]`, `proj:transform` (the GDAL geotransform in STAC
//!   order `[gt1, gt2, gt0, gt4, gt5, gt3]`), `proj:bbox` (bounds in the raster's CRS);
//! - raster v1.1.0: `raster:bands` on the data asset, with `data_type` and `nodata` per band;
//! - processing v1.2.0: `processing:lineage` and `processing:software` record what wrote the
//!   item; the machine-readable `tessera:job_id` / `tessera:task_id` properties name the job
//!   and task (lineage: every output records who wrote it).
//!
//! `geometry` is the raster's footprint in EPSG:4326 (longitude, latitude): the outline of
//! the pixel grid densified to [`FOOTPRINT_SEGMENTS`] segments per edge, transformed point by
//! point, counter-clockwise (RFC 7946). `bbox` is the bounds of those points. Footprints that
//! cross the antimeridian are not split.
//!
//! Why typed serde structs rather than the `stac` crate (0.17): it has no typed projection
//! or raster extension (they would be untyped maps anyway), it pulls `cql2` (with `geo`,
//! `jsonschema`, `sqlparser`), and it turns on serde_json's `preserve_order` for the whole
//! workspace, which would change the key order of every JSON the engine prints.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use engine::ports::PageRequest;
use engine::{
    HandlerError, MemberResult, TaskContext, TaskHandler, TaskOutput, TaskSpec, TaskStatus,
};
use gdal::spatial_ref::{CoordTransform, SpatialRef};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{Instrument, info, info_span};

use crate::Services;
use crate::cog_validate::validate_cog;
use crate::failure::{blob_failure, job_params};
use crate::listing::inventory;
use crate::raster::{RasterInfo, short_gdal_message, srs_from_wkt, wgs84};

pub const STAC_VERSION: &str = "1.0.0";
pub const PROJECTION_EXTENSION: &str =
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json";
pub const RASTER_EXTENSION: &str = "https://stac-extensions.github.io/raster/v1.1.0/schema.json";
pub const PROCESSING_EXTENSION: &str =
    "https://stac-extensions.github.io/processing/v1.2.0/schema.json";
/// Media type of a GeoTIFF asset.
pub const GEOTIFF: &str = "image/tiff; application=geotiff";
/// Media type of a Cloud Optimized GeoTIFF asset.
pub const COG: &str = "image/tiff; application=geotiff; profile=cloud-optimized";
/// Segments per edge of the pixel grid's outline in the footprint.
pub const FOOTPRINT_SEGMENTS: usize = 20;
/// Where `sync_container` writes its catalogs, in the synced container.
pub const CATALOG_ROOT: &str = "stac/";
/// Name of a collection's document in its folder.
pub const COLLECTION_FILE: &str = "collection.json";

/// Why an item or a collection cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StacError {
    #[error("{id}: cannot compute the footprint in EPSG:4326: {reason}")]
    Footprint { id: String, reason: String },
    #[error("rasters {first:?} and {second:?} would both get the STAC item id {id:?}")]
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },
}

impl StacError {
    pub fn code(&self) -> &'static str {
        match self {
            StacError::Footprint { .. } => "UNKNOWN_CRS",
            StacError::DuplicateId { .. } => "DUPLICATE_ITEM_ID",
        }
    }
}

impl From<StacError> for HandlerError {
    fn from(e: StacError) -> Self {
        HandlerError::permanent(e.code(), e.to_string())
    }
}

/// A GeoJSON polygon (one exterior ring of [longitude, latitude] positions, closed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Polygon {
    /// Always `Polygon`.
    #[serde(rename = "type")]
    pub kind: String,
    pub coordinates: Vec<Vec<[f64; 2]>>,
}

/// A link of an item or a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub rel: String,
    pub href: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Link {
    pub fn json(rel: &str, href: impl Into<String>) -> Self {
        Link {
            rel: rel.to_owned(),
            href: href.into(),
            media_type: Some("application/json".to_owned()),
        }
    }
}

/// A band's nodata value: a number, or `"nan"`, `"inf"`, `"-inf"` (raster extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Nodata {
    Number(f64),
    Special(String),
}

impl From<f64> for Nodata {
    fn from(v: f64) -> Self {
        if v.is_nan() {
            Nodata::Special("nan".into())
        } else if v.is_infinite() {
            Nodata::Special(if v > 0.0 { "inf" } else { "-inf" }.into())
        } else {
            Nodata::Number(v)
        }
    }
}

/// One entry of `raster:bands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RasterBand {
    /// `uint8`, `int16`, `float32`, `cint16`, ...
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodata: Option<Nodata>,
}

/// An item's asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    pub href: String,
    #[serde(rename = "type")]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub roles: Vec<String>,
    #[serde(
        rename = "raster:bands",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub raster_bands: Vec<RasterBand>,
}

/// An item's properties: datetime, projection, processing and lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemProperties {
    pub datetime: DateTime<Utc>,
    #[serde(rename = "proj:code", default, skip_serializing_if = "Option::is_none")]
    pub proj_code: Option<String>,
    #[serde(rename = "proj:wkt2", default, skip_serializing_if = "Option::is_none")]
    pub proj_wkt2: Option<String>,
    /// [rows, cols]
    #[serde(rename = "proj:shape")]
    pub proj_shape: [usize; 2],
    #[serde(rename = "proj:transform")]
    pub proj_transform: [f64; 6],
    #[serde(rename = "proj:bbox")]
    pub proj_bbox: [f64; 4],
    #[serde(rename = "processing:lineage")]
    pub processing_lineage: String,
    #[serde(rename = "processing:software")]
    pub processing_software: BTreeMap<String, String>,
    #[serde(rename = "tessera:job_id")]
    pub job_id: String,
    #[serde(rename = "tessera:task_id")]
    pub task_id: String,
}

/// A STAC item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Always `Feature`.
    #[serde(rename = "type")]
    pub kind: String,
    pub stac_version: String,
    pub stac_extensions: Vec<String>,
    pub id: String,
    pub geometry: Polygon,
    pub bbox: [f64; 4],
    pub properties: ItemProperties,
    pub links: Vec<Link>,
    pub assets: BTreeMap<String, Asset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
}

impl Item {
    /// Make the item part of a collection: `collection` field, and `collection`, `parent`
    /// and `root` links to `href` (the collection document, relative to the item).
    pub fn in_collection(mut self, collection_id: &str, href: &str) -> Self {
        self.collection = Some(collection_id.to_owned());
        for rel in ["collection", "parent", "root"] {
            self.links.push(Link::json(rel, href));
        }
        self
    }
}

/// A STAC collection's extent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extent {
    pub spatial: SpatialExtent,
    pub temporal: TemporalExtent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpatialExtent {
    pub bbox: Vec<[f64; 4]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemporalExtent {
    pub interval: Vec<[Option<DateTime<Utc>>; 2]>,
}

/// A STAC collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    /// Always `Collection`.
    #[serde(rename = "type")]
    pub kind: String,
    pub stac_version: String,
    pub stac_extensions: Vec<String>,
    pub id: String,
    pub description: String,
    pub license: String,
    pub extent: Extent,
    pub links: Vec<Link>,
    #[serde(rename = "tessera:job_id")]
    pub job_id: String,
    #[serde(rename = "tessera:task_id")]
    pub task_id: String,
}

/// The outline of the raster's pixel grid in EPSG:4326, `segments` per edge, closed and
/// counter-clockwise; when part of the outline does not project (a geostationary full disk),
/// the rectangle of [`RasterInfo::bbox_wgs84`], which holds the part of the grid that does.
pub fn footprint(info: &RasterInfo, id: &str, segments: usize) -> Result<Vec<[f64; 2]>, StacError> {
    let fail = |reason: String| StacError::Footprint {
        id: id.to_owned(),
        reason,
    };
    let segments = segments.max(1);
    let (w, h) = (info.width as f64, info.height as f64);
    let mut pixels = Vec::with_capacity(4 * segments + 1);
    for i in 0..segments {
        let t = i as f64 / segments as f64;
        pixels.push((t * w, 0.0));
    }
    for i in 0..segments {
        let t = i as f64 / segments as f64;
        pixels.push((w, t * h));
    }
    for i in 0..segments {
        let t = i as f64 / segments as f64;
        pixels.push((w - t * w, h));
    }
    for i in 0..segments {
        let t = i as f64 / segments as f64;
        pixels.push((0.0, h - t * h));
    }
    let gt = &info.geo_transform;
    let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = pixels
        .iter()
        .map(|&(px, py)| {
            (
                gt[0] + px * gt[1] + py * gt[2],
                gt[3] + px * gt[4] + py * gt[5],
            )
        })
        .unzip();
    // The WKT carries no axis mapping: without traditional GIS order, GDAL 3 would read the
    // (x, y) of an EPSG:4326 raster as (latitude, longitude).
    let src = srs_from_wkt(&info.wkt).map_err(|e| fail(short_gdal_message(&e)))?;
    let transform = wgs84()
        .and_then(|dst| CoordTransform::new(&src, &dst))
        .map_err(|e| fail(short_gdal_message(&e)))?;
    // Points that do not project come back infinite (and the call fails as a whole).
    let transformed = transform.transform_coords(&mut xs, &mut ys, &mut []);
    let mut ring: Vec<[f64; 2]> = xs.into_iter().zip(ys).map(|(x, y)| [x, y]).collect();
    if transformed.is_err() || ring.iter().flatten().any(|v| !v.is_finite()) {
        // Part of the outline lies off the globe (a geostationary full disk): the footprint
        // is the rectangle of the bounds of what projects.
        let [w, s, e, n] = info.bbox_wgs84;
        if ![w, s, e, n].iter().all(|v| v.is_finite()) {
            return Err(fail("the raster's bounds do not transform".into()));
        }
        return Ok(vec![[w, s], [e, s], [e, n], [w, n], [w, s]]);
    }
    // Shoelace: a negative area is a clockwise ring.
    let area: f64 = (0..ring.len())
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum();
    if area < 0.0 {
        ring.reverse();
    }
    ring.push(ring[0]);
    Ok(ring)
}

/// [west, south, east, north] of a ring.
pub fn ring_bbox(ring: &[[f64; 2]]) -> [f64; 4] {
    ring.iter().fold(
        [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ],
        |b, p| {
            [
                b[0].min(p[0]),
                b[1].min(p[1]),
                b[2].max(p[0]),
                b[3].max(p[1]),
            ]
        },
    )
}

/// The CRS as WKT2 (2019), for `proj:wkt2` when it has no EPSG code.
fn wkt2(wkt: &str) -> Option<String> {
    let srs = SpatialRef::from_wkt(wkt).ok()?;
    gdal::config::set_thread_local_config_option("OSR_WKT_FORMAT", "WKT2_2019").ok()?;
    let out = srs.to_wkt().ok();
    let _ = gdal::config::clear_thread_local_config_option("OSR_WKT_FORMAT");
    out
}

/// The STAC item of a georeferenced raster (blocking: PROJ transforms the footprint).
///
/// `href` is the raster, as the item's `data` asset will link it (relative to the item's own
/// location, or absolute); `is_cog` selects the media type; `job_id` / `task_id` are the
/// writer's (lineage); `datetime` is the item's `properties.datetime`. No links are added:
/// see [`Item::in_collection`].
pub fn stac_item(
    info: &RasterInfo,
    id: &str,
    href: &str,
    is_cog: bool,
    job_id: &str,
    task_id: &str,
    datetime: DateTime<Utc>,
) -> Result<Item, StacError> {
    let ring = footprint(info, id, FOOTPRINT_SEGMENTS)?;
    let gt = info.geo_transform;
    let proj_code = info.proj_code();
    let proj_wkt2 = match proj_code {
        Some(_) => None,
        None => Some(wkt2(&info.wkt).unwrap_or_else(|| info.wkt.clone())),
    };
    let title = href.rsplit('/').next().map(str::to_owned);
    let asset = Asset {
        href: href.to_owned(),
        media_type: if is_cog { COG } else { GEOTIFF }.to_owned(),
        title,
        roles: vec!["data".to_owned()],
        raster_bands: info
            .bands
            .iter()
            .map(|b| RasterBand {
                data_type: b.data_type.to_owned(),
                nodata: b.nodata.map(Nodata::from),
            })
            .collect(),
    };
    Ok(Item {
        kind: "Feature".to_owned(),
        stac_version: STAC_VERSION.to_owned(),
        stac_extensions: vec![
            PROJECTION_EXTENSION.to_owned(),
            RASTER_EXTENSION.to_owned(),
            PROCESSING_EXTENSION.to_owned(),
        ],
        id: id.to_owned(),
        bbox: ring_bbox(&ring),
        geometry: Polygon {
            kind: "Polygon".to_owned(),
            coordinates: vec![ring],
        },
        properties: ItemProperties {
            datetime,
            proj_code,
            proj_wkt2,
            proj_shape: [info.height, info.width],
            proj_transform: [gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]],
            proj_bbox: info.native_bbox,
            processing_lineage: format!("written by tessera job {job_id}, task {task_id}"),
            processing_software: BTreeMap::from([(
                "tessera".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )]),
            job_id: job_id.to_owned(),
            task_id: task_id.to_owned(),
        },
        links: Vec::new(),
        assets: BTreeMap::from([("data".to_owned(), asset)]),
        collection: None,
    })
}

/// What a collection needs to know of one of its items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemSummary {
    pub id: String,
    /// The raster it describes.
    pub raster: String,
    /// Where the item document is, in the same container.
    pub item: String,
    pub bbox: [f64; 4],
    pub datetime: DateTime<Utc>,
    pub is_cog: bool,
}

/// A collection over `items` (links to each, relative to the collection document, which sits
/// in the items' folder). Extent: the union of the item bboxes and the span of their
/// datetimes; without items, the whole world and an open interval.
pub fn collection(
    id: &str,
    description: &str,
    items: &[ItemSummary],
    job_id: &str,
    task_id: &str,
) -> Collection {
    let bbox = if items.is_empty() {
        [-180.0, -90.0, 180.0, 90.0]
    } else {
        items.iter().fold(
            [
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
            |b, i| {
                [
                    b[0].min(i.bbox[0]),
                    b[1].min(i.bbox[1]),
                    b[2].max(i.bbox[2]),
                    b[3].max(i.bbox[3]),
                ]
            },
        )
    };
    let start = items.iter().map(|i| i.datetime).min();
    let end = items.iter().map(|i| i.datetime).max();
    let mut links = vec![Link::json("root", format!("./{COLLECTION_FILE}"))];
    links.extend(
        items
            .iter()
            .map(|i| Link::json("item", format!("./{}.json", i.id))),
    );
    Collection {
        kind: "Collection".to_owned(),
        stac_version: STAC_VERSION.to_owned(),
        stac_extensions: Vec::new(),
        id: id.to_owned(),
        description: description.to_owned(),
        license: "proprietary".to_owned(),
        extent: Extent {
            spatial: SpatialExtent { bbox: vec![bbox] },
            temporal: TemporalExtent {
                interval: vec![[start, end]],
            },
        },
        links,
        job_id: job_id.to_owned(),
        task_id: task_id.to_owned(),
    }
}

/// A collection id: 1 to 128 letters, digits, `-`, `_` or `.` (not first). It names a
/// folder of the catalog.
pub fn check_collection_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > 128 {
        return Err("must be 1 to 128 characters long".into());
    }
    if id.starts_with('.')
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("only letters, digits, '-', '_' and '.' (not first) are allowed".into());
    }
    Ok(())
}

/// The item id of a raster blob: its name without the last extension, `/` replaced by `__`
/// (`scenes/2024/a.tif` -> `scenes__2024__a`).
pub fn item_id(blob: &str) -> String {
    let (dir, file) = match blob.rsplit_once('/') {
        Some((d, f)) => (Some(d), f),
        None => (None, blob),
    };
    let stem = match file.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s,
        _ => file,
    };
    match dir {
        Some(d) => format!("{}__{stem}", d.replace('/', "__")),
        None => stem.to_owned(),
    }
}

/// Folder of a collection's documents in the synced container.
pub fn collection_folder(collection_id: &str) -> String {
    format!("{CATALOG_ROOT}{collection_id}/")
}

/// `href` of blob `to` as seen from blob `from` of the same container.
pub fn relative_href(from: &str, to: &str) -> String {
    let depth = from.matches('/').count();
    format!("{}{to}", "../".repeat(depth))
}

/// Job params of `sync_container`.
#[derive(Debug, Deserialize)]
struct SyncParams {
    container: String,
    #[serde(default)]
    prefix: String,
    collection_id: String,
}

/// Orchestrator of `sync_container`: lists the rasters and creates one `catalog_file` task
/// per georeferenced raster (key: the blob name). Non-georeferenced rasters are reported in
/// its result (`skipped`), not catalogued; blobs under `stac/` are not looked at.
pub struct CatalogContainer {
    pub services: Services,
}

#[async_trait]
impl TaskHandler for CatalogContainer {
    fn name(&self) -> &'static str {
        "catalog_container"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let p: SyncParams = job_params(ctx)?;
        let span = info_span!("catalog_container", container = %p.container, prefix = %p.prefix);
        let inv = inventory(&self.services, &p.container, &p.prefix, Some(ctx))
            .instrument(span)
            .await?;
        let mut ids: BTreeMap<String, String> = BTreeMap::new();
        let mut children = Vec::new();
        let mut skipped = Vec::new();
        for r in inv.rasters {
            if r.name.starts_with(CATALOG_ROOT) {
                continue;
            }
            if !r.georeferenced {
                skipped.push(json!({
                    "blob": r.name,
                    "reason": "no georeferencing (no geotransform or no CRS): no footprint",
                }));
                continue;
            }
            let id = item_id(&r.name);
            if let Some(first) = ids.insert(id.clone(), r.name.clone()) {
                return Err(StacError::DuplicateId {
                    id,
                    first,
                    second: r.name,
                }
                .into());
            }
            children.push(
                TaskSpec::parallel("catalog_file", r.name.as_str())
                    .params(json!({ "blob": r.name, "id": id })),
            );
        }
        info!(
            items = children.len(),
            skipped = skipped.len(),
            "rasters to catalog"
        );
        TaskOutput::with_children(
            json!({ "rasters": children.len(), "skipped": skipped }),
            children,
        )
    }
}

/// Params of one `catalog_file` task.
#[derive(Debug, Deserialize)]
struct CatalogFileParams {
    blob: String,
    id: String,
}

/// Writes the STAC item of one raster to `stac/<collection_id>/<item id>.json`.
pub struct CatalogFile {
    pub services: Services,
}

/// Modification time of a local file (`None` when the platform does not say).
fn modified(path: &Path) -> Option<DateTime<Utc>> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(DateTime::<Utc>::from(t))
}

#[async_trait]
impl TaskHandler for CatalogFile {
    fn name(&self) -> &'static str {
        "catalog_file"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let p: SyncParams = job_params(ctx)?;
        let f: CatalogFileParams = serde_json::from_value(ctx.params.clone())
            .map_err(|e| HandlerError::permanent("INVALID_INPUT", format!("task params: {e}")))?;
        let span = info_span!("catalog_file", blob = %f.blob);
        async {
            let blobs = &self.services.blobs;
            let path = blobs
                .local_path(&p.container, &f.blob)
                .await
                .map_err(blob_failure)?;
            let item_blob = format!("{}{}.json", collection_folder(&p.collection_id), f.id);
            let href = relative_href(&item_blob, &f.blob);
            let collection_href = format!("./{COLLECTION_FILE}");
            let (job_id, task_id) = (
                ctx.job_id.as_str().to_owned(),
                ctx.task_id.as_str().to_owned(),
            );
            let (id, cid) = (f.id.clone(), p.collection_id.clone());
            let item = self
                .services
                .gdal(move || -> Result<Item, HandlerError> {
                    let info = RasterInfo::read(&path)?;
                    let is_cog = validate_cog(&path, true).is_ok_and(|r| r.is_valid());
                    let datetime = modified(&path).unwrap_or_else(Utc::now);
                    Ok(
                        stac_item(&info, &id, &href, is_cog, &job_id, &task_id, datetime)?
                            .in_collection(&cid, &collection_href),
                    )
                })
                .await??;
            let bytes = serde_json::to_vec_pretty(&item)
                .map_err(|e| HandlerError::permanent("INTERNAL", e.to_string()))?;
            blobs
                .put(&p.container, &item_blob, bytes.into())
                .await
                .map_err(blob_failure)?;
            TaskOutput::value(ItemSummary {
                id: item.id,
                raster: f.blob,
                item: item_blob,
                bbox: item.bbox,
                datetime: item.properties.datetime,
                is_cog: item.assets["data"].media_type == COG,
            })
        }
        .instrument(span)
        .await
    }
}

/// Call `f` on every member of a barrier's group, page by page, reporting progress.
pub(crate) async fn each_member(
    ctx: &TaskContext,
    mut f: impl FnMut(MemberResult) -> Result<(), HandlerError>,
) -> Result<(), HandlerError> {
    const PAGE: usize = 1_000;
    let total = ctx.member_counts().await?.total();
    let mut page = PageRequest::first(PAGE);
    let mut seen = 0u64;
    loop {
        let members = ctx.members(page.clone()).await?;
        for m in members.items {
            seen += 1;
            f(m)?;
        }
        ctx.progress(
            seen as f64 / total.max(1) as f64,
            format!("{seen}/{total} results read"),
        )
        .await;
        match members.next {
            Some(next) => page.after = Some(next),
            None => return Ok(()),
        }
    }
}

/// Barrier of `sync_container`: writes `stac/<collection_id>/collection.json` linking every
/// item, then (when every item was written) removes the item documents of that folder that
/// this sync did not write: rasters deleted since the previous sync.
pub struct WriteCollection {
    pub services: Services,
}

#[async_trait]
impl TaskHandler for WriteCollection {
    fn name(&self) -> &'static str {
        "write_collection"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let p: SyncParams = job_params(ctx)?;
        let span = info_span!("write_collection", collection = %p.collection_id);
        async {
            // Runs even when members failed (trigger all_done), but never on a failed listing:
            // an empty collection would drop every item.
            let listing = ctx.result_of("catalog_container", 0).await?;
            if listing.as_ref().map(|m| m.status) != Some(TaskStatus::Succeeded) {
                return Err(HandlerError::permanent(
                    "UPSTREAM_FAILED",
                    format!(
                        "listing container {} failed: collection {} not written",
                        p.container, p.collection_id
                    ),
                ));
            }
            let mut items = Vec::new();
            let mut failed = Vec::new();
            each_member(ctx, |m| {
                match (m.status, m.result) {
                    (TaskStatus::Succeeded, Some(r)) => {
                        items.push(serde_json::from_value::<ItemSummary>(r).map_err(|e| {
                            HandlerError::permanent("INVALID_INPUT", format!("item result: {e}"))
                        })?)
                    }
                    (status, _) => failed.push(json!({
                        "blob": m.key.to_string(),
                        "status": status,
                        "error": m.error,
                    })),
                }
                Ok(())
            })
            .await?;
            items.sort_by(|a, b| a.id.cmp(&b.id));
            let folder = collection_folder(&p.collection_id);
            let description = if p.prefix.is_empty() {
                format!("Rasters of container {}", p.container)
            } else {
                format!("Rasters of container {} under {}", p.container, p.prefix)
            };
            let doc = collection(
                &p.collection_id,
                &description,
                &items,
                ctx.job_id.as_str(),
                ctx.task_id.as_str(),
            );
            let bytes = serde_json::to_vec_pretty(&doc)
                .map_err(|e| HandlerError::permanent("INTERNAL", e.to_string()))?;
            let blobs = &self.services.blobs;
            let collection_blob = format!("{folder}{COLLECTION_FILE}");
            blobs
                .put(&p.container, &collection_blob, bytes.into())
                .await
                .map_err(blob_failure)?;
            // Items of rasters gone since the last sync are removed; not after a partial sync
            // (a failed raster keeps its previous item).
            let current: HashSet<&str> = items.iter().map(|i| i.item.as_str()).collect();
            let mut removed = Vec::new();
            let existing = match failed.is_empty() {
                true => blobs
                    .list(&p.container, &folder)
                    .await
                    .map_err(blob_failure)?,
                false => Vec::new(),
            };
            for old in existing {
                let stale = old.name.ends_with(".json")
                    && old.name != collection_blob
                    && !old.name[folder.len()..].contains('/')
                    && !current.contains(old.name.as_str());
                if stale {
                    blobs
                        .delete_prefix(&p.container, &old.name)
                        .await
                        .map_err(blob_failure)?;
                    removed.push(old.name);
                }
            }
            let bbox = doc.extent.spatial.bbox[0];
            TaskOutput::value(json!({
                "collection": collection_blob,
                "items": items.len(),
                "failed": failed,
                "removed_stale_items": removed,
                "bbox": bbox,
                "interval": doc.extent.temporal.interval[0],
            }))
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::testing::{fixture, gdal_tool, gdalinfo};

    fn when() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-06T07:08:09Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn item_of_rgb_byte_matches_gdalinfo() {
        let path = fixture("RGB.byte.tif");
        let info = RasterInfo::read(&path).unwrap();
        let gi = gdalinfo(&path);
        let item = stac_item(&info, "rgb", "../../RGB.byte.tif", false, "j", "t", when()).unwrap();

        // Core fields.
        assert_eq!(item.kind, "Feature");
        assert_eq!(item.stac_version, "1.0.0");
        assert_eq!(item.id, "rgb");
        assert_eq!(
            item.stac_extensions,
            [PROJECTION_EXTENSION, RASTER_EXTENSION, PROCESSING_EXTENSION]
        );
        assert_eq!(item.properties.datetime, when());

        // Projection extension: exact.
        let gt: Vec<f64> = serde_json::from_value(gi["geoTransform"].clone()).unwrap();
        assert_eq!(item.properties.proj_code.as_deref(), Some("EPSG:32618"));
        assert_eq!(item.properties.proj_wkt2, None);
        assert_eq!(item.properties.proj_shape, [718, 791]);
        assert_eq!(gi["size"], json!([791, 718]));
        assert_eq!(
            item.properties.proj_transform,
            [gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]]
        );
        let cc = &gi["cornerCoordinates"];
        assert_eq!(
            item.properties.proj_bbox,
            [
                cc["lowerLeft"][0].as_f64().unwrap(),
                cc["lowerLeft"][1].as_f64().unwrap(),
                cc["upperRight"][0].as_f64().unwrap(),
                cc["upperRight"][1].as_f64().unwrap(),
            ]
        );

        // Footprint: gdalinfo's wgs84Extent is the 4 corners transformed (7 decimals). With
        // the same densification (1 segment per edge) the corners agree to 1e-6.
        let corners: Vec<[f64; 2]> =
            serde_json::from_value(gi["wgs84Extent"]["coordinates"][0].clone()).unwrap();
        let ours = footprint(&info, "rgb", 1).unwrap();
        assert_eq!(ours.len(), 5);
        for c in &corners[..4] {
            assert!(
                ours.iter()
                    .any(|p| (p[0] - c[0]).abs() < 1e-6 && (p[1] - c[1]).abs() < 1e-6),
                "corner {c:?} not in {ours:?}"
            );
        }
        let gdal_bbox = ring_bbox(&corners);
        for (a, b) in item.bbox.iter().zip(gdal_bbox) {
            assert!((a - b).abs() < 1e-3, "{:?} vs {gdal_bbox:?}", item.bbox);
        }
        // The densified ring: closed, counter-clockwise, every point inside the bbox.
        let ring = &item.geometry.coordinates[0];
        assert_eq!(item.geometry.kind, "Polygon");
        assert_eq!(ring.len(), 4 * FOOTPRINT_SEGMENTS + 1);
        assert_eq!(ring.first(), ring.last());
        let area: f64 = ring
            .windows(2)
            .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
            .sum();
        assert!(area > 0.0, "counter-clockwise");
        assert!(ring.iter().all(|p| p[0] >= item.bbox[0]
            && p[0] <= item.bbox[2]
            && p[1] >= item.bbox[1]
            && p[1] <= item.bbox[3]));

        // Asset and raster extension.
        let data = &item.assets["data"];
        assert_eq!(data.media_type, GEOTIFF);
        assert_eq!(data.roles, ["data"]);
        assert_eq!(data.href, "../../RGB.byte.tif");
        assert_eq!(
            data.raster_bands.len(),
            gi["bands"].as_array().unwrap().len()
        );
        for (ours, theirs) in data
            .raster_bands
            .iter()
            .zip(gi["bands"].as_array().unwrap())
        {
            assert_eq!(ours.data_type, "uint8");
            assert_eq!(theirs["type"], "Byte");
            assert_eq!(
                ours.nodata,
                Some(Nodata::Number(theirs["noDataValue"].as_f64().unwrap()))
            );
        }

        // Lineage.
        assert_eq!(item.properties.job_id, "j");
        assert_eq!(item.properties.task_id, "t");
        assert!(item.properties.processing_lineage.contains("job j, task t"));

        // JSON spelling of the extension fields.
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["properties"]["proj:code"], "EPSG:32618");
        assert_eq!(v["properties"]["proj:shape"], json!([718, 791]));
        assert_eq!(v["properties"]["datetime"], "2024-05-06T07:08:09Z");
        assert_eq!(v["properties"]["tessera:job_id"], "j");
        assert_eq!(
            v["assets"]["data"]["raster:bands"][0],
            json!({"data_type": "uint8", "nodata": 0.0})
        );
        assert_eq!(v["assets"]["data"]["type"], GEOTIFF);
        assert!(v.get("collection").is_none());
        assert_eq!(v["links"], json!([]));
        let back: Item = serde_json::from_value(v).unwrap();
        assert_eq!(back, item);
    }

    /// EPSG:4326 rasters (whose authority axis order is latitude first): the bbox and the
    /// footprint are in longitude, latitude order, as gdalinfo's `wgs84Extent`, and a
    /// collection over them has a valid WGS 84 bbox. Issue 13: they came out swapped.
    #[test]
    fn epsg4326_footprints_are_lon_lat_as_gdalinfo() {
        let dir = tempfile::tempdir().unwrap();
        // The whole world, made from a small fixture by gdal_translate.
        let global = dir.path().join("global.tif");
        gdal_tool(
            "gdal_translate",
            [
                "-q",
                "-a_srs",
                "EPSG:4326",
                "-a_ullr",
                "-180",
                "90",
                "180",
                "-90",
                fixture("byte.tif").to_str().unwrap(),
                global.to_str().unwrap(),
            ],
        );
        // A small scene away from the origin (lat 23-26, lon -79..-76), warped by gdalwarp.
        let scene = dir.path().join("rgb_4326.tif");
        gdal_tool(
            "gdalwarp",
            [
                "-q",
                "-t_srs",
                "EPSG:4326",
                fixture("RGB.byte.tif").to_str().unwrap(),
                scene.to_str().unwrap(),
            ],
        );
        let rasters = [global, scene, fixture("world.byte.tif")];
        let close = |a: &[f64], b: &[f64], tol: f64| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
        };
        let mut summaries = Vec::new();
        for path in &rasters {
            let info = RasterInfo::read(path).unwrap();
            assert_eq!(info.epsg, Some(4326), "{}", path.display());
            let gi = gdalinfo(path);
            let corners: Vec<[f64; 2]> =
                serde_json::from_value(gi["wgs84Extent"]["coordinates"][0].clone()).unwrap();
            let expected = ring_bbox(&corners);
            let item = stac_item(&info, "x", "x.tif", false, "j", "t", when()).unwrap();
            assert!(
                close(&item.bbox, &expected, 1e-6),
                "{}: bbox {:?}, gdalinfo wgs84Extent {expected:?}",
                path.display(),
                item.bbox
            );
            assert!(
                close(&info.bbox_wgs84, &expected, 1e-6),
                "{}: {:?} vs {expected:?}",
                path.display(),
                info.bbox_wgs84
            );
            // Geometry: gdalinfo's corners (lon, lat) are the vertices of the undensified
            // footprint, and every point of the item's ring lies in gdalinfo's extent.
            let ours = footprint(&info, "x", 1).unwrap();
            for c in &corners[..4] {
                assert!(
                    ours.iter().any(|p| close(p, c, 1e-6)),
                    "{}: corner {c:?} not in {ours:?}",
                    path.display()
                );
            }
            let ring = &item.geometry.coordinates[0];
            assert!(
                ring.iter().all(|p| p[0] >= expected[0] - 1e-6
                    && p[0] <= expected[2] + 1e-6
                    && p[1] >= expected[1] - 1e-6
                    && p[1] <= expected[3] + 1e-6),
                "{}: {ring:?} outside {expected:?}",
                path.display()
            );
            summaries.push(ItemSummary {
                id: item.id.clone(),
                raster: path.display().to_string(),
                item: "stac/c/x.json".into(),
                bbox: item.bbox,
                datetime: when(),
                is_cog: false,
            });
        }
        let c = collection("c", "d", &summaries, "j", "t");
        let [w, s, e, n] = c.extent.spatial.bbox[0];
        assert!(
            (-180.0..=180.0).contains(&w)
                && (-180.0..=180.0).contains(&e)
                && (-90.0..=90.0).contains(&s)
                && (-90.0..=90.0).contains(&n)
                && w <= e
                && s <= n,
            "not a WGS 84 bbox: {:?}",
            c.extent.spatial.bbox
        );
        // The union is the global raster's extent, as gdalinfo has it.
        let gi = gdalinfo(&rasters[0]);
        let corners: Vec<[f64; 2]> =
            serde_json::from_value(gi["wgs84Extent"]["coordinates"][0].clone()).unwrap();
        assert!(close(&[w, s, e, n], &ring_bbox(&corners), 1e-6));
    }

    /// Issue 13: the outline of a geostationary full disk lies partly in space; its item has
    /// the disk's bounds and their rectangle as geometry instead of failing.
    #[test]
    fn geostationary_full_disk_has_an_item() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geos.tif");
        crate::testing::make_geostationary(&path);
        let info = RasterInfo::read(&path).unwrap();
        let item = stac_item(&info, "geos", "geos.tif", false, "j", "t", when()).unwrap();
        assert_eq!(item.bbox, info.bbox_wgs84);
        let [w, s, e, n] = info.bbox_wgs84;
        assert_eq!(
            item.geometry.coordinates[0],
            vec![[w, s], [e, s], [e, n], [w, n], [w, s]]
        );
        assert!(item.properties.proj_code.is_none() && item.properties.proj_wkt2.is_some());
    }

    #[test]
    fn cog_media_type_wkt2_without_epsg_and_nan_nodata() {
        let cog = RasterInfo::read(&fixture("cogeo.tif")).unwrap();
        let item = stac_item(&cog, "c", "c.tif", true, "j", "t", when()).unwrap();
        assert_eq!(item.assets["data"].media_type, COG);
        assert_eq!(item.properties.proj_code.as_deref(), Some("EPSG:3857"));

        // Albers equal area without an EPSG code: proj:wkt2 instead of proj:code.
        let albers = RasterInfo::read(&fixture("image_nodata.tif")).unwrap();
        assert_eq!(albers.epsg, None);
        let item = stac_item(&albers, "albers", "a.tif", false, "j", "t", when()).unwrap();
        assert_eq!(item.properties.proj_code, None);
        let wkt = item.properties.proj_wkt2.as_deref().unwrap();
        assert!(
            wkt.starts_with("PROJCRS[\"Albers\""),
            "WKT2, not WKT1: {wkt}"
        );
        let v = serde_json::to_value(&item).unwrap();
        assert!(v["properties"].get("proj:code").is_none());
        assert_eq!(
            v["assets"]["data"]["raster:bands"][0],
            json!({"data_type": "int16", "nodata": -9999.0})
        );
        assert_eq!(
            serde_json::to_value(Nodata::from(f64::NAN)).unwrap(),
            json!("nan")
        );
        assert_eq!(
            serde_json::to_value(Nodata::from(f64::NEG_INFINITY)).unwrap(),
            json!("-inf")
        );
        assert_eq!(
            serde_json::to_value(Nodata::from(-9999.0)).unwrap(),
            json!(-9999.0)
        );
    }

    #[test]
    fn ids_paths_and_hrefs() {
        assert_eq!(item_id("a.tif"), "a");
        assert_eq!(item_id("scenes/2024/a.cog.tif"), "scenes__2024__a.cog");
        assert_eq!(item_id("dir/noext"), "dir__noext");
        assert_eq!(item_id(".hidden"), ".hidden");
        assert_eq!(collection_folder("c1"), "stac/c1/");
        assert_eq!(relative_href("stac/c1/a.json", "a.tif"), "../../a.tif");
        assert_eq!(relative_href("stac/c1/a.json", "x/y.tif"), "../../x/y.tif");
        assert_eq!(relative_href("a.json", "a.tif"), "a.tif");
        assert!(check_collection_id("landsat-8_c2.l2").is_ok());
        assert!(check_collection_id("").is_err());
        assert!(check_collection_id("a/b").is_err());
        assert!(check_collection_id(".x").is_err());
        assert!(check_collection_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn collection_extent_is_the_union() {
        let later = when() + chrono::Duration::days(2);
        let items = [
            ItemSummary {
                id: "a".into(),
                raster: "a.tif".into(),
                item: "stac/c/a.json".into(),
                bbox: [-10.0, 40.0, -5.0, 45.0],
                datetime: later,
                is_cog: false,
            },
            ItemSummary {
                id: "b".into(),
                raster: "b.tif".into(),
                item: "stac/c/b.json".into(),
                bbox: [-7.0, 38.0, 2.0, 42.0],
                datetime: when(),
                is_cog: true,
            },
        ];
        let c = collection("c", "d", &items, "j", "t");
        assert_eq!(c.extent.spatial.bbox, vec![[-10.0, 38.0, 2.0, 45.0]]);
        assert_eq!(
            c.extent.temporal.interval,
            vec![[Some(when()), Some(later)]]
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], "Collection");
        assert_eq!(v["stac_version"], "1.0.0");
        assert_eq!(v["license"], "proprietary");
        assert_eq!(v["tessera:job_id"], "j");
        let hrefs: Vec<&str> = c
            .links
            .iter()
            .filter(|l| l.rel == "item")
            .map(|l| l.href.as_str())
            .collect();
        assert_eq!(hrefs, ["./a.json", "./b.json"]);
        assert_eq!(
            v["extent"]["temporal"]["interval"][0][0],
            "2024-05-06T07:08:09Z"
        );

        let empty = collection("c", "d", &[], "j", "t");
        assert_eq!(
            empty.extent.spatial.bbox,
            vec![[-180.0, -90.0, 180.0, 90.0]]
        );
        assert_eq!(
            serde_json::to_value(&empty).unwrap()["extent"]["temporal"]["interval"],
            json!([[null, null]])
        );
    }

    #[test]
    fn rasters_without_georeferencing_have_no_item() {
        let e = RasterInfo::read(&fixture("slc_no_georef.tif")).unwrap_err();
        assert_eq!(e.code(), "NO_GEOREFERENCE");
    }
}
