//! The one place that calls GDAL's C API directly: the source in Web Mercator as
//! `gdal2tiles.py` (GDAL 3.6) reads it, step by step (`open_input` and `reproject_dataset`):
//!
//! 1. a palette raster is expanded to RGBA (`gdal_translate -of VRT -expand rgba`, what
//!    gdal2tiles' error message asks for); a source that is not 8-bit is scaled to Byte
//!    (`gdal_translate -of VRT -ot Byte -scale`, likewise, with each band's approximate
//!    min/max computed once at planning and passed as `-scale_N min max`);
//! 2. a source already in EPSG:3857 (same PROJ string, no GCPs) is read as it is, unwarped;
//!    a geographic north-up source reaching beyond ±85.0511° is warped to explicit EPSG:3857
//!    bounds clipped there (`gdalwarp -of VRT -te`); any other one gets
//!    `GDALAutoCreateWarpedVRT` (nearest neighbour, exact transformer);
//! 3. a warped source with nodata gets `INIT_DEST=NO_DATA`, `UNIFIED_SRC_NODATA=YES` and the
//!    `NODATA_VALUES` of its bands; one of 1 or 3 bands without nodata gets an alpha band
//!    (`INIT_DEST=0`); one with an alpha band keeps it.
//!
//! Tiles then read the data bands (gdal2tiles' `nb_data_bands`) and, as alpha, the mask band
//! of band 1, whatever it is (alpha band, nodata values, a per-dataset mask, all valid).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int};
use std::ptr;

use gdal::Dataset;
use gdal::Metadata;
use gdal::raster::GdalDataType;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal_sys::{
    CPLGetLastErrorMsg, CPLMalloc, CSLSetNameValue, GDALAutoCreateWarpedVRT, GDALCreateWarpOptions,
    GDALDatasetH, GDALDestroyWarpOptions, GDALResampleAlg, GDALTranslate, GDALTranslateOptionsFree,
    GDALTranslateOptionsNew, GDALWarp, GDALWarpAppOptionsFree, GDALWarpAppOptionsNew,
};
use serde::{Deserialize, Serialize};

/// gdal2tiles' `MAX_LAT`: the latitude where Web Mercator's square world ends.
pub const MAX_LAT: f64 = 85.0511287798066;

/// Linear scaling of a band to 8 bits (for sources that are not 8-bit): gdal_translate's
/// `-scale_N min max` without output range, which maps `min..max` to `0..256` (ratio
/// 256 / (max - min)) and clips at 255.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stretch {
    pub min: f64,
    pub max: f64,
}

/// The dataset tiles are read from, with what it borrows (dropped after it, by field order:
/// `inputs[0]` is the dataset `vrt` reads, and so on down to the source).
pub struct Warped {
    pub vrt: Dataset,
    _inputs: Vec<Dataset>,
    /// Bands 1..=data_bands are drawn (1 = gray, 3 = RGB).
    pub data_bands: usize,
    /// How the source was brought to EPSG:3857.
    pub reprojection: Reprojection,
}

impl Warped {
    pub fn geo_transform(&self) -> [f64; 6] {
        self.vrt
            .geo_transform()
            .unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
    }
    pub fn size(&self) -> (usize, usize) {
        self.vrt.raster_size()
    }
    /// EPSG:3857 bounds of the warped raster, as gdal2tiles computes them (the height from
    /// the pixel *width*: it assumes square pixels, also for an unwarped EPSG:3857 source).
    pub fn bounds(&self) -> [f64; 4] {
        let gt = self.geo_transform();
        let (w, h) = self.size();
        [
            gt[0],
            gt[3] - h as f64 * gt[1],
            gt[0] + w as f64 * gt[1],
            gt[3],
        ]
    }
}

/// How gdal2tiles' `reproject_dataset` brings a source to EPSG:3857.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Reprojection {
    /// Already EPSG:3857: read unwarped.
    None,
    /// Geographic and north-up, reaching beyond ±[`MAX_LAT`]: warped to the EPSG:3857 bounds
    /// of its longitudes and of its latitudes clipped to this range.
    ClipLatitudes { south: f64, north: f64 },
    /// `GDALAutoCreateWarpedVRT`.
    Auto,
}

/// What the CRS and grid say about the reprojection (a pure decision, tested by a table).
pub fn reprojection(
    same_proj4_as_mercator: bool,
    has_gcps: bool,
    geographic: bool,
    gt: &[f64; 6],
    height: usize,
) -> Reprojection {
    if same_proj4_as_mercator && !has_gcps {
        return Reprojection::None;
    }
    if geographic && gt[2] == 0.0 && gt[4] == 0.0 && gt[5] < 0.0 {
        let north = gt[3];
        let south = gt[3] + height as f64 * gt[5];
        if north > MAX_LAT || south < -MAX_LAT {
            return Reprojection::ClipLatitudes {
                south: south.max(-MAX_LAT),
                north: north.min(MAX_LAT),
            };
        }
    }
    Reprojection::Auto
}

/// gdal2tiles' `setup_no_data_values`: the nodata values of the bands that have one; none at
/// all when a Byte band's nodata is not a byte value. `bands`: (is Byte, nodata) per band.
pub fn nodata_values(bands: &[(bool, Option<f64>)]) -> Vec<f64> {
    let mut out = Vec::new();
    for (is_byte, nodata) in bands {
        if let Some(v) = nodata {
            if *is_byte && (v.fract() != 0.0 || *v < 0.0 || *v > 255.0) {
                return Vec::new();
            }
            out.push(*v);
        }
    }
    out
}

/// What a warped VRT gets for transparency (gdal2tiles' `update_no_data_values` /
/// `update_alpha_value_for_non_alpha_inputs`).
#[derive(Debug, Clone, PartialEq)]
pub enum Transparency {
    /// `INIT_DEST=NO_DATA`, `UNIFIED_SRC_NODATA=YES`, and these `NODATA_VALUES`.
    Nodata(Vec<f64>),
    /// A destination alpha band after the `n` bands, `INIT_DEST=0`.
    AddAlpha,
    /// As GDAL makes it (an alpha band of the source is carried over).
    AsIs,
}

pub fn transparency(nodata: &[f64], band_count: usize) -> Transparency {
    if !nodata.is_empty() {
        Transparency::Nodata(nodata.to_vec())
    } else if band_count == 1 || band_count == 3 {
        Transparency::AddAlpha
    } else {
        Transparency::AsIs
    }
}

/// gdal2tiles' `nb_data_bands`: the bands before the alpha band. Counts gdal2tiles cannot
/// tile (5 bands and more without alpha) draw their first three bands.
pub fn data_band_count(band_count: usize, mask_is_alpha: bool) -> usize {
    let n = if mask_is_alpha || band_count == 4 || band_count == 2 {
        band_count - 1
    } else {
        band_count
    };
    match n {
        0..=2 => 1,
        _ => 3,
    }
}

fn last_error(what: &str) -> String {
    // SAFETY: CPLGetLastErrorMsg returns a valid, NUL-terminated thread-local string.
    let msg = unsafe { CStr::from_ptr(CPLGetLastErrorMsg()) };
    format!("{what}: {}", msg.to_string_lossy())
}

/// A NULL-terminated argv of C strings (kept alive by the returned owner).
fn argv(args: &[String]) -> Result<(Vec<CString>, Vec<*mut c_char>), String> {
    let owned = args
        .iter()
        .map(|a| CString::new(a.as_str()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ptrs: Vec<*mut c_char> = owned.iter().map(|c| c.as_ptr().cast_mut()).collect();
    ptrs.push(ptr::null_mut());
    Ok((owned, ptrs))
}

/// `gdal_translate ARGS source ""` (an in-memory VRT with `-of VRT`).
fn translate(source: &Dataset, args: &[String]) -> Result<Dataset, String> {
    let (_owned, mut ptrs) = argv(args)?;
    // SAFETY: argv is NULL-terminated and outlives the options, which GDAL copies; the options
    // are freed once; the source outlives the returned VRT (see `Warped`).
    unsafe {
        let options = GDALTranslateOptionsNew(ptrs.as_mut_ptr(), ptr::null_mut());
        if options.is_null() {
            return Err(last_error("gdal_translate options"));
        }
        let mut usage_error: c_int = 0;
        let handle = GDALTranslate(c"".as_ptr(), source.c_dataset(), options, &mut usage_error);
        GDALTranslateOptionsFree(options);
        if handle.is_null() {
            return Err(last_error("gdal_translate"));
        }
        Ok(Dataset::from_c_dataset(handle))
    }
}

/// `gdalwarp ARGS source ""` (an in-memory VRT with `-of VRT`).
fn warp(source: &Dataset, args: &[String]) -> Result<Dataset, String> {
    let (_owned, mut ptrs) = argv(args)?;
    // SAFETY: as in `translate`; GDALWarp reads the one source handle of the array.
    unsafe {
        let options = GDALWarpAppOptionsNew(ptrs.as_mut_ptr(), ptr::null_mut());
        if options.is_null() {
            return Err(last_error("gdalwarp options"));
        }
        let mut usage_error: c_int = 0;
        let mut sources: [GDALDatasetH; 1] = [source.c_dataset()];
        let handle = GDALWarp(
            c"".as_ptr(),
            ptr::null_mut(),
            1,
            sources.as_mut_ptr(),
            options,
            &mut usage_error,
        );
        GDALWarpAppOptionsFree(options);
        if handle.is_null() {
            return Err(last_error("gdalwarp"));
        }
        Ok(Dataset::from_c_dataset(handle))
    }
}

/// `GDALAutoCreateWarpedVRT` to EPSG:3857, nearest neighbour, exact transformer, with the
/// warp options `transparency` asks for (none for [`Transparency::AsIs`]).
fn auto_warped(source: &Dataset, transparency: &Transparency) -> Result<Dataset, String> {
    let src_wkt = source
        .spatial_ref()
        .or_else(|_| {
            source
                .gcp_spatial_ref()
                .ok_or_else(|| gdal::errors::GdalError::BadArgument("no CRS".into()))
        })
        .and_then(|s| s.to_wkt())
        .map_err(|e| format!("source CRS: {e}"))?;
    let dst_wkt = SpatialRef::from_epsg(3857)
        .and_then(|s| s.to_wkt())
        .map_err(|e| format!("EPSG:3857: {e}"))?;
    let (src_wkt, dst_wkt) = (
        CString::new(src_wkt).map_err(|e| e.to_string())?,
        CString::new(dst_wkt).map_err(|e| e.to_string())?,
    );
    let n = source.raster_count();
    // SAFETY: the warp options are allocated by GDAL and filled as GDALWarpOptions documents
    // (band lists from CPLMalloc, which GDALDestroyWarpOptions frees); the source dataset
    // outlives the VRT (see `Warped`); GDALAutoCreateWarpedVRT clones the options, and fills
    // in the source's nodata values itself.
    let handle = unsafe {
        let wo = if *transparency == Transparency::AsIs {
            ptr::null_mut()
        } else {
            let wo = GDALCreateWarpOptions();
            (*wo).nBandCount = n as c_int;
            (*wo).panSrcBands = CPLMalloc(std::mem::size_of::<c_int>() * n).cast::<c_int>();
            (*wo).panDstBands = CPLMalloc(std::mem::size_of::<c_int>() * n).cast::<c_int>();
            for i in 0..n {
                *(*wo).panSrcBands.add(i) = i as c_int + 1;
                *(*wo).panDstBands.add(i) = i as c_int + 1;
            }
            let set = |list, key: &CStr, value: &CStr| {
                CSLSetNameValue(list, key.as_ptr(), value.as_ptr())
            };
            match transparency {
                Transparency::Nodata(_) => {
                    (*wo).papszWarpOptions = set((*wo).papszWarpOptions, c"INIT_DEST", c"NO_DATA");
                    (*wo).papszWarpOptions =
                        set((*wo).papszWarpOptions, c"UNIFIED_SRC_NODATA", c"YES");
                }
                _ => {
                    (*wo).nDstAlphaBand = n as c_int + 1;
                    (*wo).papszWarpOptions = set((*wo).papszWarpOptions, c"INIT_DEST", c"0");
                }
            }
            wo
        };
        let handle = GDALAutoCreateWarpedVRT(
            source.c_dataset(),
            src_wkt.as_ptr(),
            dst_wkt.as_ptr(),
            GDALResampleAlg::GRA_NearestNeighbour,
            0.0,
            wo,
        );
        if !wo.is_null() {
            GDALDestroyWarpOptions(wo);
        }
        handle
    };
    if handle.is_null() {
        return Err(last_error("cannot warp to EPSG:3857"));
    }
    // SAFETY: a new dataset handle that nothing else owns.
    Ok(unsafe { Dataset::from_c_dataset(handle) })
}

/// Per-band approximate min/max of a source that is not 8-bit (what `gdal_translate -scale`
/// computes), or `None` for a Byte source.
pub fn stretch_of(source: &Dataset) -> Result<Option<Vec<Stretch>>, String> {
    if !needs_scaling(source) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(source.raster_count());
    for i in 1..=source.raster_count() {
        let band = source.rasterband(i).map_err(|e| e.to_string())?;
        let mm = band
            .compute_raster_min_max(true)
            .map_err(|e| format!("min/max of band {i}: {e}"))?;
        out.push(Stretch {
            min: mm.min,
            max: mm.max,
        });
    }
    Ok(Some(out))
}

fn needs_scaling(source: &Dataset) -> bool {
    (1..=source.raster_count()).any(|i| {
        source
            .rasterband(i)
            .map(|b| b.band_type() != GdalDataType::UInt8)
            .unwrap_or(false)
    })
}

fn has_palette(source: &Dataset) -> bool {
    source
        .rasterband(1)
        .map(|b| b.color_table().is_some() && b.band_type() == GdalDataType::UInt8)
        .unwrap_or(false)
}

/// The source in Web Mercator as gdal2tiles reads it (nothing is computed until pixels are
/// read). `stretch` is the planned scaling of a source that is not 8-bit (computed when
/// `None`).
pub fn to_web_mercator(source: Dataset, stretch: Option<&[Stretch]>) -> Result<Warped, String> {
    let mut inputs: Vec<Dataset> = Vec::new();
    let mut current = source;
    if has_palette(&current) {
        let expanded = translate(&current, &args(&["-of", "VRT", "-expand", "rgba"]))
            .map_err(|e| format!("expanding the palette: {e}"))?;
        inputs.insert(0, std::mem::replace(&mut current, expanded));
    } else if needs_scaling(&current) {
        let computed;
        let stretch = match stretch {
            Some(s) => s,
            None => {
                computed = stretch_of(&current)?.unwrap_or_default();
                &computed
            }
        };
        if stretch.len() != current.raster_count() {
            return Err(format!(
                "the planned scaling has {} bands, the raster {}",
                stretch.len(),
                current.raster_count()
            ));
        }
        let mut a = args(&["-of", "VRT", "-ot", "Byte"]);
        for (i, s) in stretch.iter().enumerate() {
            a.extend([
                format!("-scale_{}", i + 1),
                s.min.to_string(),
                s.max.to_string(),
            ]);
        }
        let scaled = translate(&current, &a).map_err(|e| format!("scaling to 8 bits: {e}"))?;
        inputs.insert(0, std::mem::replace(&mut current, scaled));
    }

    let mut src_srs = current
        .spatial_ref()
        .ok()
        .or_else(|| current.gcp_spatial_ref())
        .ok_or("the raster has no coordinate reference system")?;
    src_srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut mercator = SpatialRef::from_epsg(3857).map_err(|e| format!("EPSG:3857: {e}"))?;
    mercator.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let same = match (src_srs.to_proj4(), mercator.to_proj4()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let has_gcps = !current.gcps().is_empty();
    let gt = current
        .geo_transform()
        .unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    let (width, height) = current.raster_size();
    let how = reprojection(same, has_gcps, src_srs.is_geographic(), &gt, height);

    let bands: Vec<(bool, Option<f64>)> = (1..=current.raster_count())
        .map(|i| {
            current
                .rasterband(i)
                .map(|b| (b.band_type() == GdalDataType::UInt8, b.no_data_value()))
                .unwrap_or((true, None))
        })
        .collect();
    let nodata = nodata_values(&bands);
    let how_transparent = transparency(&nodata, current.raster_count());

    let mut warped = match how {
        Reprojection::None => None,
        Reprojection::ClipLatitudes { south, north } => {
            let ct = CoordTransform::new(&src_srs, &mercator)
                .map_err(|e| format!("to EPSG:3857: {e}"))?;
            let (mut xs, mut ys) = (
                vec![gt[0], gt[0] + width as f64 * gt[1]],
                vec![south, north],
            );
            ct.transform_coords(&mut xs, &mut ys, &mut [])
                .map_err(|e| format!("bounds in EPSG:3857: {e}"))?;
            let mut a = args(&["-of", "VRT", "-t_srs", "EPSG:3857", "-te"]);
            a.extend([xs[0], ys[0], xs[1], ys[1]].iter().map(|v| v.to_string()));
            match &how_transparent {
                Transparency::Nodata(_) => a.extend(args(&[
                    "-wo",
                    "INIT_DEST=NO_DATA",
                    "-wo",
                    "UNIFIED_SRC_NODATA=YES",
                ])),
                Transparency::AddAlpha => a.extend(args(&["-dstalpha", "-wo", "INIT_DEST=0"])),
                Transparency::AsIs => {}
            }
            Some(warp(&current, &a)?)
        }
        Reprojection::Auto => Some(auto_warped(&current, &how_transparent)?),
    };
    if let (Some(vrt), Transparency::Nodata(values)) = (warped.as_mut(), &how_transparent) {
        let text: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
        vrt.set_metadata_item("NODATA_VALUES", &text.join(" "), "")
            .map_err(|e| format!("NODATA_VALUES: {e}"))?;
    }
    if let Some(vrt) = warped {
        inputs.insert(0, std::mem::replace(&mut current, vrt));
    }

    let count = current.raster_count();
    let mask_is_alpha = current
        .rasterband(1)
        .and_then(|b| b.mask_flags())
        .map(|f| f.is_alpha())
        .unwrap_or(false);
    Ok(Warped {
        vrt: current,
        _inputs: inputs,
        data_bands: data_band_count(count, mask_is_alpha),
        reprojection: how,
    })
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn rgb_byte_warps_like_gdal2tiles() {
        let source = Dataset::open(fixture("RGB.byte.tif")).unwrap();
        let warped = to_web_mercator(source, None).unwrap();
        assert_eq!(warped.data_bands, 3);
        assert_eq!(warped.reprojection, Reprojection::Auto);
        let b = warped.bounds();
        // gdalwarp -t_srs EPSG:3857 puts RGB.byte.tif at about x -8.79e6..-8.53e6, y 2.70e6..2.94e6.
        assert!(
            b[0] < -8.7e6 && b[2] > -8.6e6 && b[1] > 2.6e6 && b[3] < 3.0e6,
            "{b:?}"
        );
    }

    #[test]
    fn reprojection_follows_gdal2tiles() {
        let global = [-180.0, 0.125, 0.0, 90.0, 0.0, -0.125];
        let world75 = [-180.0, 0.125, 0.0, 75.0, 0.0, -0.125];
        let utm = [100_000.0, 30.0, 0.0, 4_000_000.0, 0.0, -30.0];
        // (same PROJ string as EPSG:3857, GCPs, geographic, geotransform, height) -> expected
        let cases = [
            ((true, false, false, utm, 100), Reprojection::None),
            ((true, true, false, utm, 100), Reprojection::Auto),
            ((false, false, false, utm, 100), Reprojection::Auto),
            (
                (false, false, true, global, 1440),
                Reprojection::ClipLatitudes {
                    south: -MAX_LAT,
                    north: MAX_LAT,
                },
            ),
            (
                (false, false, true, global, 100),
                Reprojection::ClipLatitudes {
                    south: 77.5,
                    north: MAX_LAT,
                },
            ),
            // Inside ±85.0511: the automatic warp, as gdal2tiles does.
            ((false, false, true, world75, 1200), Reprojection::Auto),
            // South-up or rotated: never clipped.
            (
                (
                    false,
                    false,
                    true,
                    [-180.0, 0.125, 0.0, -90.0, 0.0, 0.125],
                    1440,
                ),
                Reprojection::Auto,
            ),
        ];
        for ((same, gcps, geographic, gt, height), expected) in cases {
            assert_eq!(
                reprojection(same, gcps, geographic, &gt, height),
                expected,
                "{gt:?} height {height}"
            );
        }
    }

    #[test]
    fn nodata_transparency_and_data_bands_follow_gdal2tiles() {
        type Case<'a> = (&'a [(bool, Option<f64>)], &'a [f64]);
        let nodata_cases: [Case; 5] = [
            (&[(true, Some(0.0)); 3], &[0.0, 0.0, 0.0]),
            (&[(true, None)], &[]),
            (&[(false, Some(-999_999.0))], &[-999_999.0]),
            // A Byte band whose nodata is not a byte: no nodata at all.
            (&[(true, Some(0.0)), (true, Some(300.0))], &[]),
            (&[(true, Some(1.5))], &[]),
        ];
        for (bands, expected) in nodata_cases {
            assert_eq!(nodata_values(bands), expected, "{bands:?}");
        }
        assert_eq!(transparency(&[255.0], 1), Transparency::Nodata(vec![255.0]));
        assert_eq!(transparency(&[], 1), Transparency::AddAlpha);
        assert_eq!(transparency(&[], 3), Transparency::AddAlpha);
        assert_eq!(transparency(&[], 4), Transparency::AsIs);
        // (bands, mask is alpha) -> data bands
        for ((count, alpha), expected) in [
            ((1, false), 1),
            ((2, false), 1),
            ((3, false), 3),
            ((4, false), 3),
            ((4, true), 3),
            ((5, false), 3),
            ((2, true), 1),
        ] {
            assert_eq!(data_band_count(count, alpha), expected, "{count} {alpha}");
        }
    }
}
