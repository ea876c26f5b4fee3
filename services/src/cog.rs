//! `cog_conversion` handlers: `cog` converts one raster to a Cloud Optimized GeoTIFF, the
//! `collect_cogs` barrier gathers the outcomes.
//!
//! A `cog` task reads its input through [`Blobs::local_path`](crate::Blobs::local_path),
//! copies it to an in-memory VRT (which keeps nodata, band descriptions, color interpretation
//! and metadata) where it sets the lineage metadata items `TESSERA_JOB_ID`, `TESSERA_TASK_ID` and `TESSERA_SOURCE`, then
//! writes the COG with GDAL's `COG` driver to a scratch directory. The file is uploaded only
//! after [`validate_cog`] (full check) finds no error, so a failure never leaves a partial
//! output. Output name: [`output_name`].

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use engine::{
    CheckError, HandlerError, TaskContext, TaskHandler, TaskOutput, TaskStatus, ValidationError,
};
use gdal::raster::GdalDataType;
use gdal::{Dataset, DriverManager, Metadata};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{Instrument, info, info_span};

use crate::Services;
use crate::cog_validate::validate_cog;
use crate::failure::{blob_failure, job_params};
use crate::raster::{self, RasterError, RasterInfo, parse_crs, short_gdal_message};
use crate::stac::each_member;

/// Accepted `compression` values (GDAL's `COMPRESS`, in lower case).
pub const COMPRESSIONS: &[&str] = &["deflate", "lzw", "zstd", "jpeg", "none"];
pub const DEFAULT_COMPRESSION: &str = "deflate";
pub const DEFAULT_BLOCKSIZE: i64 = 512;
/// `blocksize` bounds; it must also be a power of two.
pub const BLOCKSIZES: std::ops::RangeInclusive<i64> = 64..=4096;
/// Metadata items recording the writer in every COG.
pub const JOB_ID_ITEM: &str = "TESSERA_JOB_ID";
pub const TASK_ID_ITEM: &str = "TESSERA_TASK_ID";
pub const SOURCE_ITEM: &str = "TESSERA_SOURCE";

/// The normalized params of a `cog_conversion` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CogJob {
    pub container: String,
    pub blobs: Vec<String>,
    pub output_container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_crs: Option<String>,
    pub compression: String,
    pub blocksize: u32,
}

/// Why a raster was not converted.
#[derive(Debug, thiserror::Error)]
pub enum CogError {
    #[error(transparent)]
    Raster(#[from] RasterError),
    #[error("{file}: conversion to COG failed: {reason}")]
    Conversion { file: String, reason: String },
    #[error("{file}: the converted file is not a valid COG: {}", .errors.join("; "))]
    InvalidCog { file: String, errors: Vec<String> },
    #[error("{file}: scratch file: {source}")]
    Scratch {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl CogError {
    /// Stable code for task errors and the docs.
    pub fn code(&self) -> &'static str {
        match self {
            CogError::Raster(e) => e.code(),
            CogError::Conversion { .. } => "CONVERSION_FAILED",
            CogError::InvalidCog { .. } => "INVALID_COG",
            CogError::Scratch { .. } => "SCRATCH_IO",
        }
    }
}

impl From<CogError> for HandlerError {
    fn from(e: CogError) -> Self {
        match e {
            CogError::Scratch { .. } => {
                HandlerError::transient(e.code(), crate::failure::error_chain(&e))
            }
            e => HandlerError::permanent(e.code(), e.to_string()),
        }
    }
}

/// `<blob stem>.cog.tif` in the same sub-folder: `scenes/a.tif` -> `scenes/a.cog.tif`,
/// `b.TIFF` -> `b.cog.tif`, `c` -> `c.cog.tif` (only the last extension is replaced).
pub fn output_name(blob: &str) -> String {
    let (dir, file) = match blob.rsplit_once('/') {
        Some((d, f)) => (format!("{d}/"), f),
        None => (String::new(), blob),
    };
    let stem = match file.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s,
        _ => file,
    };
    format!("{dir}{stem}.cog.tif")
}

/// A sample type for messages. The `gdal` binding names no complex type: they are `Unknown`.
fn type_name(t: GdalDataType) -> String {
    match t {
        GdalDataType::Unknown => "complex samples".to_owned(),
        t => t.name(),
    }
}

/// The same error naming `name` (the blob) rather than the local file.
fn relabel(e: RasterError, name: &str) -> RasterError {
    let file = name.to_owned();
    match e {
        RasterError::NotARaster { reason, .. } => RasterError::NotARaster { file, reason },
        RasterError::NoGeoreference { .. } => RasterError::NoGeoreference { file },
        RasterError::UnknownCrs { reason, .. } => RasterError::UnknownCrs { file, reason },
        RasterError::Unsupported { reason, .. } => RasterError::Unsupported { file, reason },
        RasterError::Gdal { reason, .. } => RasterError::Gdal { file, reason },
    }
}

/// Open `path` (blob `name`) and check that these options can convert it (blocking: GDAL).
/// Reprojection needs georeferencing and a known target CRS; JPEG needs 8-bit bands. Errors
/// name the blob.
pub fn open_source(path: &Path, name: &str, job: &CogJob) -> Result<Dataset, RasterError> {
    let ds = raster::open(path).map_err(|e| relabel(e, name))?;
    let file = name.to_owned();
    if let Some(crs) = &job.target_crs {
        parse_crs(crs).map_err(|reason| RasterError::UnknownCrs {
            file: file.clone(),
            reason: format!("target_crs {crs:?}: {reason}"),
        })?;
        RasterInfo::of(&ds, path).map_err(|e| relabel(e, name))?;
    }
    if job.compression == "jpeg" {
        for band in ds.rasterbands() {
            let band = band.map_err(|e| RasterError::Gdal {
                file: file.clone(),
                reason: short_gdal_message(&e),
            })?;
            let t = band.band_type();
            if t != GdalDataType::UInt8 {
                return Err(RasterError::Unsupported {
                    file,
                    reason: format!(
                        "JPEG compression needs 8-bit (Byte) bands, not {}",
                        type_name(t)
                    ),
                });
            }
        }
    }
    Ok(ds)
}

/// What the submission can know: every blob exists and is a raster that these options can
/// convert; the target CRS is known. Errors name the field (`blobs[i]`, `target_crs`) and the
/// blob.
pub async fn check_job(services: &Services, job: &CogJob) -> Result<(), CheckError> {
    if let Some(crs) = job.target_crs.clone() {
        services
            .gdal_check("target_crs", move || parse_crs(&crs).map(drop))
            .await?
            .map_err(|reason| {
                ValidationError::new(
                    "target_crs",
                    format!(
                        "unknown CRS {:?}: {reason}",
                        job.target_crs.as_deref().unwrap_or("")
                    ),
                )
            })?;
    }
    let blobs = &services.blobs;
    for (i, blob) in job.blobs.iter().enumerate() {
        let field = format!("blobs[{i}]");
        let path = blobs
            .local_path(&job.container, blob)
            .await
            .map_err(|e| crate::failure::check_failure(&field, e))?;
        let (job, name) = (job.clone(), blob.clone());
        let checked = services
            .gdal_check(&field, move || open_source(&path, &name, &job).map(drop))
            .await?;
        checked.map_err(|e| ValidationError::new(&field, e.to_string()))?;
    }
    Ok(())
}

/// Who writes a COG (recorded in its metadata).
#[derive(Debug, Clone)]
pub struct Lineage {
    pub job_id: String,
    pub task_id: String,
    /// `container/blob` of the input.
    pub source: String,
}

/// A converted, validated COG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Converted {
    pub width: usize,
    pub height: usize,
    pub bands: usize,
    pub overviews: usize,
    pub size: u64,
    /// The validator's warnings (e.g. no overviews for a small image).
    pub warnings: Vec<String>,
    /// The COG's bounds in WGS 84 longitude/latitude, [west, south, east, north] (absent
    /// when it is not georeferenced): its footprint on a map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
}

/// GDAL `COG` creation options for a job (`complex`: the samples are complex numbers).
pub fn creation_options(job: &CogJob, complex: bool) -> Vec<(&'static str, String)> {
    let mut options = vec![
        ("COMPRESS", job.compression.to_ascii_uppercase()),
        ("BLOCKSIZE", job.blocksize.to_string()),
        ("NUM_THREADS", "ALL_CPUS".to_owned()),
        ("OVERVIEWS", "AUTO".to_owned()),
    ];
    if let Some(crs) = &job.target_crs {
        options.push(("TARGET_SRS", crs.clone()));
    }
    if complex {
        // The default (cubic) is not defined for complex samples.
        options.push(("OVERVIEW_RESAMPLING", "NEAREST".to_owned()));
    }
    options
}

/// Convert `src` (blob `name`) to a COG at `dst` and validate it (blocking: GDAL). `dst` is
/// only to be published when this returns `Ok`. Errors name the blob.
pub fn convert(
    src: &Path,
    name: &str,
    dst: &Path,
    job: &CogJob,
    lineage: &Lineage,
) -> Result<Converted, CogError> {
    let file = name.to_owned();
    let gdal_err = |what: &str, e: gdal::errors::GdalError| CogError::Conversion {
        file: file.clone(),
        reason: format!("{what}: {}", short_gdal_message(&e)),
    };
    let ds = open_source(src, name, job)?;
    let complex = ds
        .rasterbands()
        .filter_map(Result::ok)
        .any(|b| b.band_type() == GdalDataType::Unknown);

    let vrt_driver =
        DriverManager::get_driver_by_name("VRT").map_err(|e| gdal_err("VRT driver", e))?;
    let mut vrt = ds
        .create_copy(&vrt_driver, "", &Default::default())
        .map_err(|e| gdal_err("VRT copy", e))?;
    for (key, value) in [
        (JOB_ID_ITEM, &lineage.job_id),
        (TASK_ID_ITEM, &lineage.task_id),
        (SOURCE_ITEM, &lineage.source),
    ] {
        vrt.set_metadata_item(key, value, "")
            .map_err(|e| gdal_err("metadata", e))?;
    }

    let mut options = gdal::raster::RasterCreationOptions::new();
    for (key, value) in creation_options(job, complex) {
        options
            .set_name_value(key, &value)
            .map_err(|e| gdal_err("creation options", e))?;
    }
    let cog_driver =
        DriverManager::get_driver_by_name("COG").map_err(|e| gdal_err("COG driver", e))?;
    let out = vrt
        .create_copy(&cog_driver, dst, &options)
        .map_err(|e| gdal_err("COG driver", e))?;
    let (width, height) = out.raster_size();
    let bands = out.raster_count();
    let overviews = out
        .rasterband(1)
        .and_then(|b| b.overview_count())
        .map_err(|e| gdal_err("overviews", e))?;
    let bbox = crate::raster::RasterInfo::of(&out, dst)
        .ok()
        .map(|info| info.bbox_wgs84);
    drop(out);

    let report = validate_cog(dst, true).map_err(|e| CogError::InvalidCog {
        file: file.clone(),
        errors: vec![e.to_string()],
    })?;
    if !report.is_valid() {
        return Err(CogError::InvalidCog {
            file,
            errors: report.errors,
        });
    }
    let size = std::fs::metadata(dst)
        .map_err(|source| CogError::Scratch {
            file: file.clone(),
            source,
        })?
        .len();
    Ok(Converted {
        width,
        height,
        bands,
        overviews: usize::try_from(overviews).unwrap_or(0),
        size,
        warnings: report.warnings,
        bbox,
    })
}

/// Where a blob is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub container: String,
    pub blob: String,
}

/// The result of a `cog` task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CogOutput {
    /// The input blob.
    pub blob: String,
    pub output: BlobRef,
    pub compression: String,
    pub blocksize: u32,
    pub target_crs: Option<String>,
    pub cog: Converted,
}

/// Converts one raster (task params `{"blob": name}`; the rest comes from the job params).
pub struct Cog {
    pub services: Services,
}

#[async_trait]
impl TaskHandler for Cog {
    fn name(&self) -> &'static str {
        "cog"
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(3600)
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let job: CogJob = job_params(ctx)?;
        let blob = ctx
            .params
            .get("blob")
            .and_then(|b| b.as_str())
            .ok_or_else(|| HandlerError::permanent("INVALID_INPUT", "task params lack `blob`"))?
            .to_owned();
        let span = info_span!("cog", blob = %blob);
        async {
            let blobs = &self.services.blobs;
            let src = blobs
                .local_path(&job.container, &blob)
                .await
                .map_err(blob_failure)?;
            let scratch = self
                .services
                .scratch_dir()
                .map_err(|source| CogError::Scratch {
                    file: blob.clone(),
                    source,
                })?;
            let dst = scratch.path().join("out.cog.tif");
            let lineage = Lineage {
                job_id: ctx.job_id.as_str().to_owned(),
                task_id: ctx.task_id.as_str().to_owned(),
                source: format!("{}/{blob}", job.container),
            };
            ctx.progress(0.0, format!("converting {blob}")).await;
            let converted = {
                let (job, dst) = (job.clone(), dst.clone());
                let name = blob.clone();
                self.services
                    .gdal(move || convert(&src, &name, &dst, &job, &lineage))
                    .await??
            };
            let output = output_name(&blob);
            blobs
                .put_file(&job.output_container, &output, &dst)
                .await
                .map_err(blob_failure)?;
            info!(output = %output, size = converted.size, "COG written");
            TaskOutput::value(CogOutput {
                blob,
                output: BlobRef {
                    container: job.output_container,
                    blob: output,
                },
                compression: job.compression,
                blocksize: job.blocksize,
                target_crs: job.target_crs,
                cog: converted,
            })
        }
        .instrument(span)
        .await
    }
}

/// Barrier of `cog_conversion`: the outputs written and the inputs that failed.
pub struct CollectCogs;

#[async_trait]
impl TaskHandler for CollectCogs {
    fn name(&self) -> &'static str {
        "collect_cogs"
    }
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutput, HandlerError> {
        let (mut outputs, mut failed) = (Vec::new(), Vec::new());
        each_member(ctx, |m| {
            match (m.status, m.result) {
                (TaskStatus::Succeeded, Some(r)) => {
                    let r: CogOutput = serde_json::from_value(r).map_err(|e| {
                        HandlerError::permanent("INVALID_INPUT", format!("cog result: {e}"))
                    })?;
                    outputs.push(json!({
                        "blob": r.blob,
                        "output": r.output.blob,
                        "size": r.cog.size,
                    }));
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
        TaskOutput::value(json!({
            "converted": outputs.len(),
            "failed": failed.len(),
            "outputs": outputs,
            "errors": failed,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::testing::{fixture, gdal_validate, gdalinfo};

    fn job(compression: &str, target_crs: Option<&str>) -> CogJob {
        CogJob {
            container: "in".into(),
            blobs: vec!["x.tif".into()],
            output_container: "out".into(),
            target_crs: target_crs.map(str::to_owned),
            compression: compression.into(),
            blocksize: 512,
        }
    }

    fn lineage() -> Lineage {
        Lineage {
            job_id: "j".repeat(64),
            task_id: "t".repeat(64),
            source: "in/x.tif".into(),
        }
    }

    fn convert_fixture(
        name: &str,
        job: &CogJob,
    ) -> (tempfile::TempDir, PathBuf, Result<Converted, CogError>) {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("out.cog.tif");
        let got = convert(&fixture(name), name, &dst, job, &lineage());
        (dir, dst, got)
    }

    #[test]
    fn output_names_keep_the_folder() {
        assert_eq!(output_name("a.tif"), "a.cog.tif");
        assert_eq!(output_name("scenes/2024/b.TIFF"), "scenes/2024/b.cog.tif");
        assert_eq!(output_name("dir.v2/noext"), "dir.v2/noext.cog.tif");
        assert_eq!(output_name("x.cog.tif"), "x.cog.cog.tif");
        assert_eq!(output_name(".hidden"), ".hidden.cog.tif");
    }

    #[test]
    fn creation_options_follow_the_job() {
        let mut j = job("zstd", Some("EPSG:4326"));
        j.blocksize = 256;
        let got = creation_options(&j, true);
        assert_eq!(
            got,
            [
                ("COMPRESS", "ZSTD".to_owned()),
                ("BLOCKSIZE", "256".to_owned()),
                ("NUM_THREADS", "ALL_CPUS".to_owned()),
                ("OVERVIEWS", "AUTO".to_owned()),
                ("TARGET_SRS", "EPSG:4326".to_owned()),
                ("OVERVIEW_RESAMPLING", "NEAREST".to_owned()),
            ]
        );
    }

    #[test]
    fn rgb_byte_becomes_a_valid_cog_that_keeps_its_bands() {
        let (_dir, dst, got) = convert_fixture("RGB.byte.tif", &job("deflate", None));
        let converted = got.unwrap();
        assert_eq!(
            (converted.width, converted.height, converted.bands),
            (791, 718, 3)
        );
        assert_eq!(
            converted.overviews, 1,
            "791 px > 512 px blocks: one overview level"
        );
        assert!(converted.warnings.is_empty(), "{:?}", converted.warnings);
        assert_eq!(converted.size, std::fs::metadata(&dst).unwrap().len());

        let report = validate_cog(&dst, true).unwrap();
        assert!(
            report.is_valid() && report.warnings.is_empty(),
            "{report:?}"
        );
        let (valid, text) = gdal_validate(&dst);
        assert!(valid, "{text}");

        let src = raster::open(&fixture("RGB.byte.tif")).unwrap();
        let out = raster::open(&dst).unwrap();
        assert_eq!(out.raster_count(), src.raster_count());
        for i in 1..=3 {
            let (a, b) = (src.rasterband(i).unwrap(), out.rasterband(i).unwrap());
            assert_eq!(b.no_data_value(), a.no_data_value());
            assert_eq!(b.no_data_value(), Some(0.0));
            assert_eq!(b.color_interpretation(), a.color_interpretation());
            assert_eq!(b.description().unwrap(), a.description().unwrap());
            assert_eq!(b.band_type(), a.band_type());
            assert_eq!(b.block_size(), (512, 512));
        }
        assert_eq!(out.geo_transform().unwrap(), src.geo_transform().unwrap());
        assert_eq!(raster::epsg_of(&out.spatial_ref().unwrap()), Some(32618));
        // Lossless: the pixels are the same.
        let (a, b) = (src.rasterband(2).unwrap(), out.rasterband(2).unwrap());
        assert_eq!(
            a.read_band_as::<u8>().unwrap().data(),
            b.read_band_as::<u8>().unwrap().data()
        );
        // Lineage.
        assert_eq!(
            out.metadata_item(JOB_ID_ITEM, "").as_deref(),
            Some(&*"j".repeat(64))
        );
        assert_eq!(
            out.metadata_item(TASK_ID_ITEM, "").as_deref(),
            Some(&*"t".repeat(64))
        );
        assert_eq!(
            out.metadata_item(SOURCE_ITEM, "").as_deref(),
            Some("in/x.tif")
        );
        assert_eq!(
            out.metadata_item("COMPRESSION", "IMAGE_STRUCTURE")
                .as_deref(),
            Some("DEFLATE")
        );
    }

    #[test]
    fn band_descriptions_survive() {
        // RGB.byte.tif has none: give a copy some and convert that.
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("described.tif");
        {
            let src = raster::open(&fixture("labels.tif")).unwrap();
            let gtiff = DriverManager::get_driver_by_name("GTiff").unwrap();
            let copy = src
                .create_copy(&gtiff, &src_path, &Default::default())
                .unwrap();
            copy.rasterband(1)
                .unwrap()
                .set_description("land cover class")
                .unwrap();
        }
        let dst = dir.path().join("out.tif");
        convert(
            &src_path,
            "described.tif",
            &dst,
            &job("lzw", None),
            &lineage(),
        )
        .unwrap();
        let out = raster::open(&dst).unwrap();
        let band = out.rasterband(1).unwrap();
        assert_eq!(band.description().unwrap(), "land cover class");
        assert_eq!(band.no_data_value(), Some(255.0));
        assert!(gdal_validate(&dst).0);
    }

    #[test]
    fn every_compression_and_a_reprojection_give_valid_cogs() {
        for c in COMPRESSIONS {
            let (_dir, dst, got) = convert_fixture("RGB.byte.tif", &job(c, None));
            got.unwrap_or_else(|e| panic!("{c}: {e}"));
            let (valid, text) = gdal_validate(&dst);
            assert!(valid, "{c}: {text}");
        }
        let (_dir, dst, got) = convert_fixture("RGB.byte.tif", &job("deflate", Some("EPSG:4326")));
        got.unwrap();
        assert!(gdal_validate(&dst).0);
        let out = raster::open(&dst).unwrap();
        assert_eq!(raster::epsg_of(&out.spatial_ref().unwrap()), Some(4326));
        assert_eq!(out.rasterband(1).unwrap().no_data_value(), Some(0.0));
        assert_eq!(
            out.metadata_item(JOB_ID_ITEM, "").as_deref(),
            Some(&*"j".repeat(64))
        );
    }

    #[test]
    fn a_raster_without_georeferencing_is_converted_unless_reprojected() {
        // Documented choice: a COG needs no georeferencing (only tiled_raster does).
        let (_dir, dst, got) = convert_fixture("slc_no_georef.tif", &job("deflate", None));
        let converted = got.unwrap();
        assert_eq!(
            (converted.width, converted.height, converted.bands),
            (1094, 674, 1)
        );
        assert!(gdal_validate(&dst).0);
        // Same type and same pixels (the binding reads no complex samples: ask gdalinfo).
        let (src, out) = (gdalinfo(&fixture("slc_no_georef.tif")), gdalinfo(&dst));
        assert_eq!(out["bands"][0]["type"], "CInt16");
        assert_eq!(out["bands"][0]["checksum"], src["bands"][0]["checksum"]);
        assert_eq!(
            out["gcps"]["gcpList"].as_array().map(Vec::len),
            src["gcps"]["gcpList"].as_array().map(Vec::len)
        );

        let (_dir, _dst, got) =
            convert_fixture("slc_no_georef.tif", &job("deflate", Some("EPSG:4326")));
        let e = got.unwrap_err();
        assert_eq!(e.code(), "NO_GEOREFERENCE");
        assert!(e.to_string().starts_with("slc_no_georef.tif: "), "{e}");
    }

    #[test]
    fn bad_inputs_give_coded_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a raster").unwrap();
        let dst = dir.path().join("out.tif");
        let e = convert(
            &text,
            "docs/notes.txt",
            &dst,
            &job("deflate", None),
            &lineage(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "NOT_A_RASTER");
        assert!(
            e.to_string().starts_with("docs/notes.txt: not a raster"),
            "{e}"
        );
        assert!(!dst.exists());

        let (_d, dst, got) = convert_fixture("RGB.byte.tif", &job("deflate", Some("EPSG:999999")));
        let e = got.unwrap_err();
        assert_eq!(e.code(), "UNKNOWN_CRS");
        assert!(
            e.to_string().contains("RGB.byte.tif") && e.to_string().contains("EPSG:999999"),
            "{e}"
        );
        assert!(!dst.exists());

        let (_d, _dst, got) = convert_fixture("RGBA.uint16.tif", &job("jpeg", None));
        let e = got.unwrap_err();
        assert_eq!(e.code(), "UNSUPPORTED_RASTER");
        assert!(
            e.to_string().contains("RGBA.uint16.tif") && e.to_string().contains("UInt16"),
            "{e}"
        );

        let h: HandlerError = e.into();
        assert_eq!(h.class, engine::model::ErrorClass::Permanent);
    }

    #[tokio::test]
    async fn submission_checks_name_the_field_and_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let services = Services::local(dir.path());
        std::fs::create_dir_all(dir.path().join("in")).unwrap();
        std::fs::copy(fixture("RGB.byte.tif"), dir.path().join("in/a.tif")).unwrap();
        std::fs::copy(fixture("slc_no_georef.tif"), dir.path().join("in/slc.tif")).unwrap();
        std::fs::write(dir.path().join("in/notes.txt"), "text").unwrap();
        let with = |blobs: &[&str], crs: Option<&str>, compression: &str| CogJob {
            blobs: blobs.iter().map(|b| b.to_string()).collect(),
            ..job(compression, crs)
        };
        assert_eq!(
            check_job(&services, &with(&["a.tif", "slc.tif"], None, "deflate")).await,
            Ok(())
        );
        let e = check_job(&services, &with(&["a.tif", "missing.tif"], None, "deflate"))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid params: blobs[1]: blob in/missing.tif does not exist"
        );
        let e = check_job(&services, &with(&["notes.txt"], None, "deflate"))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid params: blobs[0]: notes.txt: not a raster GDAL can read"),
            "{e}"
        );
        let e = check_job(&services, &with(&["a.tif"], Some("EPSG:999999"), "deflate"))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid params: target_crs: unknown CRS \"EPSG:999999\""),
            "{e}"
        );
        let e = check_job(&services, &with(&["slc.tif"], Some("EPSG:4326"), "deflate"))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid params: blobs[0]: slc.tif: has no georeferencing (no geotransform or no coordinate reference system)"
        );
        assert_eq!(
            check_job(&services, &with(&["a.tif"], None, "jpeg")).await,
            Ok(())
        );
        let e = check_job(&services, &with(&["slc.tif"], None, "jpeg"))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains(
                "blobs[0]: slc.tif: JPEG compression needs 8-bit (Byte) bands, not complex samples"
            ),
            "{e}"
        );
        let other = CogJob {
            container: "nope".into(),
            ..with(&["a.tif"], None, "deflate")
        };
        let e = check_job(&services, &other).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid params: blobs[0]: blob nope/a.tif does not exist"
        );
    }
}
