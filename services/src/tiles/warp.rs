//! The one place that calls GDAL's C API directly: a warped VRT of a source in Web Mercator,
//! created as `gdal2tiles.py` creates it (`GDALAutoCreateWarpedVRT`, nearest neighbour, exact
//! transformer), with an alpha band that is 0 outside the source and at its nodata.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_int};

use gdal::Dataset;
use gdal::raster::ColorInterpretation;
use gdal::spatial_ref::SpatialRef;
use gdal_sys::{
    CPLGetLastErrorMsg, CPLMalloc, CSLSetNameValue, GDALAutoCreateWarpedVRT, GDALCreateWarpOptions,
    GDALDestroyWarpOptions, GDALResampleAlg,
};

/// A source and its Web Mercator warped VRT (which borrows the source: the VRT is dropped
/// first, by field order).
pub struct Warped {
    pub vrt: Dataset,
    _source: Dataset,
    /// Bands of the VRT holding data (1 = gray, 3 = RGB); the alpha band follows them.
    pub data_bands: usize,
}

impl Warped {
    pub fn alpha_band(&self) -> usize {
        self.data_bands + 1
    }
    pub fn geo_transform(&self) -> [f64; 6] {
        self.vrt
            .geo_transform()
            .unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
    }
    pub fn size(&self) -> (usize, usize) {
        self.vrt.raster_size()
    }
    /// EPSG:3857 bounds of the warped raster, as gdal2tiles computes them (square pixels).
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

/// Which source bands are drawn: the first three of an RGB(A) raster, else the first one;
/// and the source's alpha band, if its last band is one.
pub fn band_selection(source: &Dataset) -> (Vec<c_int>, Option<c_int>) {
    let count = source.raster_count();
    let has_alpha = count > 1
        && source
            .rasterband(count)
            .map(|b| b.color_interpretation() == ColorInterpretation::AlphaBand)
            .unwrap_or(false);
    let data = if has_alpha { count - 1 } else { count };
    let bands = if data >= 3 { vec![1, 2, 3] } else { vec![1] };
    (bands, has_alpha.then_some(count as c_int))
}

fn last_error(what: &str) -> String {
    // SAFETY: CPLGetLastErrorMsg returns a valid, NUL-terminated thread-local string.
    let msg = unsafe { CStr::from_ptr(CPLGetLastErrorMsg()) };
    format!("{what}: {}", msg.to_string_lossy())
}

/// Warp `source` to EPSG:3857 as a VRT (nothing is computed until pixels are read).
pub fn to_web_mercator(source: Dataset) -> Result<Warped, String> {
    let (bands, src_alpha) = band_selection(&source);
    let has_nodata = source
        .rasterband(1)
        .map(|b| b.no_data_value().is_some())
        .unwrap_or(false);
    let src_wkt = source
        .spatial_ref()
        .and_then(|s| s.to_wkt())
        .map_err(|e| format!("source CRS: {e}"))?;
    let dst_wkt = SpatialRef::from_epsg(3857)
        .and_then(|s| s.to_wkt())
        .map_err(|e| format!("EPSG:3857: {e}"))?;
    let (src_wkt, dst_wkt) = (
        CString::new(src_wkt).map_err(|e| e.to_string())?,
        CString::new(dst_wkt).map_err(|e| e.to_string())?,
    );
    let n = bands.len();
    // SAFETY: the warp options are allocated by GDAL and filled as GDALWarpOptions documents
    // (band lists from CPLMalloc, which GDALDestroyWarpOptions frees); the source dataset
    // outlives the VRT (see `Warped`); GDALAutoCreateWarpedVRT clones the options.
    let vrt = unsafe {
        let wo = GDALCreateWarpOptions();
        (*wo).nBandCount = n as c_int;
        (*wo).panSrcBands = CPLMalloc(std::mem::size_of::<c_int>() * n).cast::<c_int>();
        (*wo).panDstBands = CPLMalloc(std::mem::size_of::<c_int>() * n).cast::<c_int>();
        for (i, band) in bands.iter().enumerate() {
            *(*wo).panSrcBands.add(i) = *band;
            *(*wo).panDstBands.add(i) = i as c_int + 1;
        }
        (*wo).nDstAlphaBand = n as c_int + 1;
        if let Some(alpha) = src_alpha {
            (*wo).nSrcAlphaBand = alpha;
        }
        if has_nodata {
            // A pixel is nodata only when all its bands are (what gdal2tiles asks for).
            (*wo).papszWarpOptions = CSLSetNameValue(
                (*wo).papszWarpOptions,
                c"UNIFIED_SRC_NODATA".as_ptr(),
                c"YES".as_ptr(),
            );
        }
        (*wo).papszWarpOptions =
            CSLSetNameValue((*wo).papszWarpOptions, c"INIT_DEST".as_ptr(), c"0".as_ptr());
        let handle = GDALAutoCreateWarpedVRT(
            source.c_dataset(),
            src_wkt.as_ptr(),
            dst_wkt.as_ptr(),
            GDALResampleAlg::GRA_NearestNeighbour,
            0.0,
            wo,
        );
        GDALDestroyWarpOptions(wo);
        if handle.is_null() {
            return Err(last_error("cannot warp to EPSG:3857"));
        }
        Dataset::from_c_dataset(handle)
    };
    if vrt.raster_count() != n + 1 {
        return Err(format!(
            "warped VRT has {} bands, expected {} data bands and an alpha band",
            vrt.raster_count(),
            n
        ));
    }
    Ok(Warped {
        vrt,
        _source: source,
        data_bands: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn rgb_byte_warps_like_gdal2tiles() {
        let source = Dataset::open(fixture("RGB.byte.tif")).unwrap();
        let warped = to_web_mercator(source).unwrap();
        assert_eq!(warped.data_bands, 3);
        assert_eq!(warped.vrt.raster_count(), 4);
        let b = warped.bounds();
        // gdalwarp -t_srs EPSG:3857 puts RGB.byte.tif at about x -8.79e6..-8.53e6, y 2.70e6..2.94e6.
        assert!(
            b[0] < -8.7e6 && b[2] > -8.6e6 && b[1] > 2.6e6 && b[3] < 3.0e6,
            "{b:?}"
        );
    }
}
