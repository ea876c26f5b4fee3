//! Opening rasters with GDAL and describing them: size, bands, georeferencing, footprint.
//! Every error names the file and says why, with a stable code for task failures.

use std::path::Path;

use engine::HandlerError;
use gdal::Dataset;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use serde::Serialize;

/// Why a raster cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RasterError {
    #[error("{file}: not a raster GDAL can read ({reason})")]
    NotARaster { file: String, reason: String },
    #[error("{file}: has no georeferencing (no geotransform or no coordinate reference system)")]
    NoGeoreference { file: String },
    #[error("{file}: coordinate reference system cannot be used: {reason}")]
    UnknownCrs { file: String, reason: String },
    #[error("{file}: {reason}")]
    Unsupported { file: String, reason: String },
    #[error("{file}: GDAL failed: {reason}")]
    Gdal { file: String, reason: String },
}

impl RasterError {
    /// Stable code for task errors and the docs.
    pub fn code(&self) -> &'static str {
        match self {
            RasterError::NotARaster { .. } => "NOT_A_RASTER",
            RasterError::NoGeoreference { .. } => "NO_GEOREFERENCE",
            RasterError::UnknownCrs { .. } => "UNKNOWN_CRS",
            RasterError::Unsupported { .. } => "UNSUPPORTED_RASTER",
            RasterError::Gdal { .. } => "GDAL_ERROR",
        }
    }
}

impl From<RasterError> for HandlerError {
    fn from(e: RasterError) -> Self {
        HandlerError::permanent(e.code(), e.to_string())
    }
}

/// One band as STAC's raster extension describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandInfo {
    /// GDAL's type name, e.g. `Byte`, `UInt16`, `Float32`.
    pub gdal_type: String,
    /// STAC `data_type`: `uint8`, `uint16`, `float32`, ...
    pub data_type: &'static str,
    pub nodata: Option<f64>,
    /// GDAL color interpretation, e.g. `Red`, `Gray`, `Alpha`.
    pub color: String,
}

/// What the services need to know about a georeferenced raster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RasterInfo {
    pub width: usize,
    pub height: usize,
    pub bands: Vec<BandInfo>,
    /// GDAL geotransform (origin x, pixel width, row rotation, origin y, column rotation,
    /// pixel height).
    pub geo_transform: [f64; 6],
    /// `EPSG:nnnn` when the CRS has an EPSG code.
    pub epsg: Option<u32>,
    /// The CRS as WKT.
    pub wkt: String,
    /// Bounds in the raster's CRS: [min x, min y, max x, max y].
    pub native_bbox: [f64; 4],
    /// Bounds in EPSG:4326 longitude/latitude: [west, south, east, north].
    pub bbox_wgs84: [f64; 4],
}

/// The file name of `path` for messages.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Open a raster (not a vector file, not a random blob).
pub fn open(path: &Path) -> Result<Dataset, RasterError> {
    let file = file_name(path);
    let options = gdal::DatasetOptions {
        open_flags: gdal::GdalOpenFlags::GDAL_OF_RASTER
            | gdal::GdalOpenFlags::GDAL_OF_READONLY
            | gdal::GdalOpenFlags::GDAL_OF_VERBOSE_ERROR,
        ..Default::default()
    };
    let ds = Dataset::open_ex(path, options).map_err(|e| RasterError::NotARaster {
        file: file.clone(),
        reason: short_gdal_message(&e),
    })?;
    if ds.raster_count() == 0 {
        return Err(RasterError::NotARaster {
            file,
            reason: "it has no raster bands".into(),
        });
    }
    Ok(ds)
}

/// GDAL's message without the binding's decoration.
pub fn short_gdal_message(e: &gdal::errors::GdalError) -> String {
    match e {
        gdal::errors::GdalError::CplError { msg, .. } => msg.clone(),
        gdal::errors::GdalError::NullPointer { msg, .. } if !msg.is_empty() => msg.clone(),
        other => other.to_string(),
    }
}

/// STAC raster extension data type of a GDAL type name.
pub fn stac_data_type(gdal_type: &str) -> &'static str {
    match gdal_type {
        "Byte" => "uint8",
        "Int8" => "int8",
        "UInt16" => "uint16",
        "Int16" => "int16",
        "UInt32" => "uint32",
        "Int32" => "int32",
        "UInt64" => "uint64",
        "Int64" => "int64",
        "Float32" => "float32",
        "Float64" => "float64",
        "CInt16" => "cint16",
        "CInt32" => "cint32",
        "CFloat32" => "cfloat32",
        "CFloat64" => "cfloat64",
        _ => "other",
    }
}

/// The CRS of EPSG:4326 with longitude first.
pub fn wgs84() -> Result<SpatialRef, gdal::errors::GdalError> {
    let mut srs = SpatialRef::from_epsg(4326)?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(srs)
}

/// A CRS from WKT (e.g. [`RasterInfo::wkt`]), longitude first (x, y as GIS software and
/// geotransforms use them, whatever axis order the CRS's authority defines).
pub fn srs_from_wkt(wkt: &str) -> Result<SpatialRef, gdal::errors::GdalError> {
    let mut srs = SpatialRef::from_wkt(wkt)?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(srs)
}

/// A CRS as given by a user (`EPSG:3857`, WKT, PROJ string), longitude first.
pub fn parse_crs(text: &str) -> Result<SpatialRef, String> {
    let mut srs = SpatialRef::from_definition(text).map_err(|e| short_gdal_message(&e))?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(srs)
}

impl RasterInfo {
    /// Describe an open dataset; fails without georeferencing.
    pub fn of(ds: &Dataset, path: &Path) -> Result<Self, RasterError> {
        let file = file_name(path);
        let gdal_err = |e: gdal::errors::GdalError| RasterError::Gdal {
            file: file.clone(),
            reason: short_gdal_message(&e),
        };
        let (width, height) = ds.raster_size();
        let mut bands = Vec::with_capacity(ds.raster_count());
        for i in 1..=ds.raster_count() {
            let band = ds.rasterband(i).map_err(gdal_err)?;
            let gdal_type = band.band_type().name();
            bands.push(BandInfo {
                data_type: stac_data_type(&gdal_type),
                gdal_type,
                nodata: band.no_data_value(),
                color: format!("{:?}", band.color_interpretation())
                    .trim_end_matches("Band")
                    .to_owned(),
            });
        }
        let no_georef = || RasterError::NoGeoreference { file: file.clone() };
        let gt = ds.geo_transform().map_err(|_| no_georef())?;
        if gt == [0.0, 1.0, 0.0, 0.0, 0.0, 1.0] {
            return Err(no_georef());
        }
        let mut srs = ds.spatial_ref().map_err(|_| no_georef())?;
        srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let wkt = srs.to_wkt().map_err(gdal_err)?;
        if wkt.is_empty() {
            return Err(no_georef());
        }
        let epsg = epsg_of(&srs);
        let native_bbox = bounds(&gt, width, height);
        let to_wgs84 = wgs84()
            .and_then(|dst| CoordTransform::new(&srs, &dst))
            .map_err(|e| RasterError::UnknownCrs {
                file: file.clone(),
                reason: short_gdal_message(&e),
            })?;
        let bbox_wgs84 = wgs84_bounds(&to_wgs84, &gt, width, height).map_err(|reason| {
            RasterError::UnknownCrs {
                file: file.clone(),
                reason: format!("cannot transform its bounds to EPSG:4326: {reason}"),
            }
        })?;
        Ok(RasterInfo {
            width,
            height,
            bands,
            geo_transform: gt,
            epsg,
            wkt,
            native_bbox,
            bbox_wgs84,
        })
    }

    /// Open `path` and describe it.
    pub fn read(path: &Path) -> Result<Self, RasterError> {
        let ds = open(path)?;
        RasterInfo::of(&ds, path)
    }

    /// `EPSG:nnnn`, or `None` for a CRS without an EPSG code.
    pub fn proj_code(&self) -> Option<String> {
        self.epsg.map(|c| format!("EPSG:{c}"))
    }
}

/// Samples per side of the grid [`wgs84_bounds`] falls back to.
const BOUNDS_GRID: usize = 20;
/// Bisection steps towards the edge of the part of the grid that transforms (2^-40 of a grid
/// cell: far below a metre).
const BOUNDS_BISECTIONS: usize = 40;

/// [west, south, east, north] in EPSG:4326 of a `width` x `height` grid with geotransform
/// `gt`. GDAL's `OCTTransformBounds` (21 points per edge) when it can; when points of the
/// edges do not project (a geostationary full disk, whose corners lie in space), the bounds
/// of the points of a 21 x 21 grid over the raster that do, each run of points that do
/// extended by bisection to the last point that still projects (so the disk's limb is found,
/// not the last grid point before it). Fails only when no point projects.
pub fn wgs84_bounds(
    to_wgs84: &CoordTransform,
    gt: &[f64; 6],
    width: usize,
    height: usize,
) -> Result<[f64; 4], String> {
    let native = bounds(gt, width, height);
    match to_wgs84.transform_bounds(&native, 21) {
        Ok(b) if b.iter().all(|v| v.is_finite()) => return Ok(b),
        _ => {}
    }
    let project = |px: f64, py: f64| {
        let mut x = [gt[0] + px * gt[1] + py * gt[2]];
        let mut y = [gt[3] + px * gt[4] + py * gt[5]];
        to_wgs84.transform_coords(&mut x, &mut y, &mut []).ok()?;
        (x[0].is_finite() && y[0].is_finite()).then_some((x[0], y[0]))
    };
    grid_bounds(project, width as f64, height as f64)
        .ok_or_else(|| "no point of the raster's grid transforms".to_owned())
}

/// Bounds of the points of a grid over [0, width] x [0, height] where `project` succeeds,
/// refined by bisection between neighbours of which one projects and one does not.
pub fn grid_bounds(
    project: impl Fn(f64, f64) -> Option<(f64, f64)>,
    width: f64,
    height: f64,
) -> Option<[f64; 4]> {
    let n = BOUNDS_GRID;
    let at = |i: usize, j: usize| (i as f64 * width / n as f64, j as f64 * height / n as f64);
    let grid: Vec<Vec<Option<(f64, f64)>>> = (0..=n)
        .map(|j| {
            (0..=n)
                .map(|i| {
                    let (px, py) = at(i, j);
                    project(px, py)
                })
                .collect()
        })
        .collect();
    let mut points: Vec<(f64, f64)> = grid.iter().flatten().flatten().copied().collect();
    let mut refine = |inside: (f64, f64), outside: (f64, f64)| {
        let (mut a, mut b) = (inside, outside);
        let mut last = None;
        for _ in 0..BOUNDS_BISECTIONS {
            let mid = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
            match project(mid.0, mid.1) {
                Some(p) => {
                    last = Some(p);
                    a = mid;
                }
                None => b = mid,
            }
        }
        points.extend(last);
    };
    for j in 0..=n {
        for i in 0..=n {
            for (di, dj) in [(1, 0), (0, 1)] {
                let (i2, j2) = (i + di, j + dj);
                if i2 > n || j2 > n {
                    continue;
                }
                match (grid[j][i], grid[j2][i2]) {
                    (Some(_), None) => refine(at(i, j), at(i2, j2)),
                    (None, Some(_)) => refine(at(i2, j2), at(i, j)),
                    _ => {}
                }
            }
        }
    }
    if points.is_empty() {
        return None;
    }
    Some(points.iter().fold(
        [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ],
        |b, (x, y)| [b[0].min(*x), b[1].min(*y), b[2].max(*x), b[3].max(*y)],
    ))
}

/// EPSG code of a CRS, identifying it when the file only has WKT.
pub fn epsg_of(srs: &SpatialRef) -> Option<u32> {
    let code = |s: &SpatialRef| {
        (s.auth_name().as_deref() == Some("EPSG"))
            .then(|| s.auth_code().ok())
            .flatten()
            .and_then(|c| u32::try_from(c).ok())
    };
    code(srs).or_else(|| {
        let mut copy = srs.clone();
        copy.auto_identify_epsg().ok()?;
        code(&copy)
    })
}

/// [min x, min y, max x, max y] of a north-up raster's corners.
pub fn bounds(gt: &[f64; 6], width: usize, height: usize) -> [f64; 4] {
    let corners = [
        (0.0, 0.0),
        (width as f64, 0.0),
        (0.0, height as f64),
        (width as f64, height as f64),
    ];
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for (px, py) in corners {
        let x = gt[0] + px * gt[1] + py * gt[2];
        let y = gt[3] + px * gt[4] + py * gt[5];
        b[0] = b[0].min(x);
        b[1] = b[1].min(y);
        b[2] = b[2].max(x);
        b[3] = b[3].max(y);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn rgb_byte_is_described() {
        let info = RasterInfo::read(&fixture("RGB.byte.tif")).unwrap();
        assert_eq!((info.width, info.height), (791, 718));
        assert_eq!(info.bands.len(), 3);
        assert_eq!(info.bands[0].data_type, "uint8");
        assert_eq!(info.bands[0].nodata, Some(0.0));
        assert_eq!(info.epsg, Some(32618));
        // gdalinfo: wgs84Extent lon -78.96 .. -76.57, lat 23.56 .. 25.55
        assert!(
            (info.bbox_wgs84[0] + 78.96).abs() < 0.01,
            "{:?}",
            info.bbox_wgs84
        );
        assert!(
            (info.bbox_wgs84[3] - 25.55).abs() < 0.01,
            "{:?}",
            info.bbox_wgs84
        );
    }

    #[test]
    fn bad_inputs_name_the_file() {
        let e = RasterInfo::read(&fixture("slc_no_georef.tif")).unwrap_err();
        assert_eq!(e.code(), "NO_GEOREFERENCE");
        assert!(e.to_string().starts_with("slc_no_georef.tif: "), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a raster").unwrap();
        let e = RasterInfo::read(&text).unwrap_err();
        assert_eq!(e.code(), "NOT_A_RASTER");
        assert!(e.to_string().starts_with("notes.txt: "), "{e}");
    }

    /// A unit disk seen through a fake projection: points outside it do not project.
    fn disk(px: f64, py: f64) -> Option<(f64, f64)> {
        let (x, y) = (px / 50.0 - 1.0, 1.0 - py / 50.0);
        (x * x + y * y <= 1.0).then_some((x * 90.0, y * 90.0))
    }

    #[test]
    fn grid_bounds_find_the_edge_of_what_projects() {
        // (projection, grid width, height) -> bounds
        type Projection = fn(f64, f64) -> Option<(f64, f64)>;
        let everywhere: Projection = |px, py| Some((px, -py));
        let nowhere: Projection = |_, _| None;
        // The disk fills a 100 x 100 grid: corners off, the limb at ±90 found by bisection
        // (the grid's last inside points are at ±81).
        let cases: [(Projection, f64, f64, Option<[f64; 4]>); 3] = [
            (disk, 100.0, 100.0, Some([-90.0, -90.0, 90.0, 90.0])),
            (everywhere, 30.0, 20.0, Some([0.0, -20.0, 30.0, 0.0])),
            (nowhere, 10.0, 10.0, None),
        ];
        for (project, w, h, expected) in cases {
            let got = grid_bounds(project, w, h);
            match (got, expected) {
                (Some(g), Some(e)) => assert!(
                    g.iter().zip(e).all(|(a, b)| (a - b).abs() < 1e-6),
                    "{g:?} vs {e:?}"
                ),
                (g, e) => assert_eq!(g, e),
            }
        }
    }

    /// Issue 13: a geostationary full disk has a geotransform and a CRS, but its corners lie
    /// in space: it was "no georeferencing" (`UNKNOWN_CRS` in checks). Its bounds are those
    /// of the disk, as `gdalwarp -t_srs EPSG:4326` finds them.
    #[test]
    fn geostationary_full_disk_is_georeferenced_with_the_disk_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geos.tif");
        crate::testing::make_geostationary(&path);
        let info = RasterInfo::read(&path).unwrap();
        let expected = crate::testing::gdalwarp_footprint_bounds(&path, 0.1);
        for (ours, gdal) in info.bbox_wgs84.iter().zip(expected) {
            assert!(
                (ours - gdal).abs() <= 0.2,
                "bbox {:?}, gdalwarp's footprint {expected:?}",
                info.bbox_wgs84
            );
        }
        assert!(info.bbox_wgs84[2] > 80.0, "{:?}", info.bbox_wgs84);
    }
}
