//! The validator against what GDAL's script says: the fixtures (`fixtures_dir`, here), crafted
//! files (`crafted`), and the script itself run on all of them (`script`).

use std::path::{Path, PathBuf};

use crate::*;

mod crafted;
mod script;

/// The GeoTIFF fixtures: `shared/fixtures/geotiff` next to the workspace
/// (`$TESSERA_SHARED_DIR/fixtures/geotiff` when that is set), else the repository's copy in
/// `tests/fixtures/geotiff`. Fails, never skips, when neither exists.
fn fixtures_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = match std::env::var_os("TESSERA_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace.join("../shared"),
    };
    let candidates = [
        shared.join("fixtures/geotiff"),
        workspace.join("tests/fixtures/geotiff"),
    ];
    candidates
        .iter()
        .find(|dir| dir.join("invalid-cog").is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "GeoTIFF fixtures not found: looked for {} and {} (set TESSERA_SHARED_DIR \
                 to the `shared` directory that holds fixtures/geotiff)",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// The fixtures and what `validate_cloud_optimized_geotiff.py --full-check=yes` (GDAL
/// 3.6.2) says of them: valid, number of errors, number of warnings.
const FIXTURES: &[(&str, bool, usize, usize)] = &[
    ("RGB.byte.tif", false, 2, 1),
    ("RGBA.uint16.tif", true, 0, 1),
    ("byte.tif", false, 2, 0),
    ("cogeo.tif", true, 0, 0),
    ("dem-hills.tiff", false, 2, 0),
    ("float_nan.tif", false, 2, 0),
    ("image_nodata.tif", true, 0, 0),
    ("labels.tif", true, 0, 0),
    ("slc_no_georef.tif", false, 1, 1),
    ("world.byte.tif", true, 0, 1),
    ("invalid-cog/image_external.tif", false, 3, 0),
    (
        "invalid-cog/image_known_incompatible_ghost_headers.tif",
        false,
        1,
        0,
    ),
    ("invalid-cog/image_sorted.tif", false, 5, 0),
];

#[test]
fn fixture_verdicts_match_the_script() {
    let dir = fixtures_dir();
    for &(name, valid, n_errors, n_warnings) in FIXTURES {
        let report = validate_cog(&dir.join(name), true).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report.is_valid(), valid, "{name}: {report:#?}");
        assert_eq!(report.errors.len(), n_errors, "{name}: {report:#?}");
        assert_eq!(report.warnings.len(), n_warnings, "{name}: {report:#?}");
    }
}

#[test]
fn fixture_messages_and_details() {
    let dir = fixtures_dir();
    let cogeo = validate_cog(&dir.join("cogeo.tif"), true).unwrap();
    assert_eq!(
        cogeo.details,
        CogDetails {
            ifd_offsets: LevelOffsets {
                main: 8,
                overviews: vec![1104, 1504, 1904, 2304, 2704, 3104],
            },
            data_offsets: LevelOffsets {
                main: 131731,
                overviews: vec![78783, 45387, 26312, 15344, 8738, 4548],
            },
        }
    );
    assert_eq!(cogeo.headers_size(), Some(4548));

    let external = validate_cog(&dir.join("invalid-cog/image_external.tif"), true).unwrap();
    assert_eq!(
        external.errors[0],
        "Overviews found in external .ovr file. They should be internal"
    );
    // The overviews are those of the .ovr file.
    assert_eq!(external.details.ifd_offsets.overviews, vec![8, 326, 548]);

    let ghost = dir.join("invalid-cog/image_known_incompatible_ghost_headers.tif");
    let ghost = validate_cog(&ghost, true).unwrap();
    assert_eq!(
        ghost.errors,
        vec!["KNOWN_INCOMPATIBLE_EDITION=YES is declared in the file"]
    );

    let sorted = validate_cog(&dir.join("invalid-cog/image_sorted.tif"), false).unwrap();
    assert_eq!(
        sorted.errors[..2],
        [
            "The offset of the main IFD should be 8. It is 642088 instead",
            "Overview of index 1 has larger dimension than overview of index 0",
        ]
    );

    let slc = validate_cog(&dir.join("slc_no_georef.tif"), true).unwrap();
    assert_eq!(
        slc.errors,
        vec!["The file is greater than 512xH or Wx512, but is not tiled"]
    );
    assert_eq!(
        slc.warnings,
        vec![
            "The file is greater than 512xH or Wx512, it is recommended to include internal \
             overviews"
        ]
    );
}
