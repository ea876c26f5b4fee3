//! Test helpers shared by the modules' unit tests and the integration tests (feature
//! `testing`): fixtures and GDAL's own tools as the reference.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A GeoTIFF fixture shipped with the repository (`tests/fixtures/geotiff/`).
pub fn fixture(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/geotiff")
        .join(name);
    assert!(path.exists(), "fixture {} is missing", path.display());
    path
}

/// GDAL's `validate_cloud_optimized_geotiff.py --full-check=yes`: (valid, what it printed).
pub fn gdal_validate(path: &Path) -> (bool, String) {
    let out = Command::new("/usr/bin/python3")
        .arg("/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py")
        .arg("--full-check=yes")
        .arg(path)
        .output()
        .expect("GDAL's validator (apt-get install python3-gdal) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && text.contains("is a valid cloud optimized GeoTIFF"),
        text,
    )
}

/// `gdalinfo -json -checksum` of a file.
pub fn gdalinfo(path: &Path) -> serde_json::Value {
    let out = Command::new("gdalinfo")
        .args(["-json", "-checksum"])
        .arg(path)
        .output()
        .expect("gdalinfo (apt-get install gdal-bin) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("gdalinfo -json prints JSON")
}

/// Run one of GDAL's command-line tools (`gdal_translate`, `gdalwarp`) to make a test raster;
/// panics with what it printed when it fails.
pub fn gdal_tool<I, S>(program: &str, args: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (apt-get install gdal-bin) must be installed: {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The geostationary full disk of the golden corpus: `world.byte.tif` warped by `gdalwarp`
/// to a Meteosat-like view (`+proj=geos +h=35785831 +lon_0=0 +sweep=y`), 400 x 400 pixels
/// over x, y in ±5 500 km, so the disk's limb lies inside the raster and its corners in space.
pub fn make_geostationary(dst: &Path) {
    gdal_tool(
        "gdalwarp",
        [
            "-q",
            "-overwrite",
            "-t_srs",
            "+proj=geos +h=35785831 +lon_0=0 +sweep=y +datum=WGS84 +units=m",
            "-te",
            "-5500000",
            "-5500000",
            "5500000",
            "5500000",
            "-ts",
            "400",
            "400",
            fixture("world.byte.tif").to_str().unwrap_or_default(),
            dst.to_str().unwrap_or_default(),
        ],
    );
}

/// GDAL's answer to "where on the globe is this raster's grid": `gdalwarp -t_srs EPSG:4326
/// -te -180 -90 180 90 -tr RES RES -dstalpha`, and the bounds [west, south, east, north] of the
/// output pixels whose alpha is not 0 (pixel edges, so within `res` of the truth). For rasters
/// whose corners do not project, where `gdalinfo`'s `wgs84Extent` is empty.
pub fn gdalwarp_footprint_bounds(path: &Path, res: f64) -> [f64; 4] {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("footprint.tif");
    let res_text = res.to_string();
    gdal_tool(
        "gdalwarp",
        [
            "-q",
            "-t_srs",
            "EPSG:4326",
            "-te",
            "-180",
            "-90",
            "180",
            "90",
            "-tr",
            &res_text,
            &res_text,
            "-dstalpha",
            path.to_str().unwrap_or_default(),
            out.to_str().unwrap_or_default(),
        ],
    );
    let ds = gdal::Dataset::open(&out).expect("gdalwarp's output opens");
    let (w, h) = ds.raster_size();
    let alpha = ds
        .rasterband(ds.raster_count())
        .and_then(|b| b.read_as::<u8>((0, 0), (w, h), (w, h), None))
        .expect("reading the alpha band")
        .into_shape_and_vec()
        .1;
    let (mut c0, mut r0, mut c1, mut r1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, a) in alpha.iter().enumerate() {
        if *a > 0 {
            let (c, r) = (i % w, i / w);
            (c0, r0, c1, r1) = (c0.min(c), r0.min(r), c1.max(c + 1), r1.max(r + 1));
        }
    }
    assert!(
        c0 < c1,
        "{}: no pixel of the grid lands on the globe",
        path.display()
    );
    [
        -180.0 + c0 as f64 * res,
        90.0 - r1 as f64 * res,
        -180.0 + c1 as f64 * res,
        90.0 - r0 as f64 * res,
    ]
}
