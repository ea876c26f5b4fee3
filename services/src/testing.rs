//! Test helpers shared by the modules' unit tests.

use std::path::PathBuf;

/// A GeoTIFF fixture shipped with the repository (`tests/fixtures/geotiff/`).
pub fn fixture(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/geotiff")
        .join(name);
    assert!(path.exists(), "fixture {} is missing", path.display());
    path
}
