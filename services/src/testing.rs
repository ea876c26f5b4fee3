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
