//! `tiled_raster` end to end through the `tessera` binary, against GDAL itself: the tile set
//! of `gdal2tiles.py --xyz -z 7-13` on RGB.byte.tif, pixel by pixel.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use services::tiles::render::decode_png;

use crate::support::{data_dir_with, run, run_json};

/// Every `z/x/y.png` under `root`, by (z, x, y).
fn tiles_under(root: &Path) -> BTreeMap<(u32, u32, u32), std::path::PathBuf> {
    let mut out = BTreeMap::new();
    for z in std::fs::read_dir(root).unwrap().flatten() {
        let Ok(zn) = z.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        for x in std::fs::read_dir(z.path()).unwrap().flatten() {
            let xn: u32 = x.file_name().to_string_lossy().parse().unwrap();
            for y in std::fs::read_dir(x.path()).unwrap().flatten() {
                let name = y.file_name().to_string_lossy().into_owned();
                let yn: u32 = name.strip_suffix(".png").unwrap().parse().unwrap();
                out.insert((zn, xn, yn), y.path());
            }
        }
    }
    out
}

fn tiled_raster_params(blob: &str, min_zoom: u32, max_zoom: u32) -> String {
    format!(
        r#"{{"container": "samples", "blob": "{blob}", "output_container": "tiles", "min_zoom": {min_zoom}, "max_zoom": {max_zoom}}}"#
    )
}

#[test]
fn tiles_match_gdal2tiles_on_rgb_byte_zooms_7_to_13() {
    let data = data_dir_with("samples", &["RGB.byte.tif"]);
    let db = data.path().join("tessera.db");
    let data_dir = data.path().to_str().unwrap();
    let params = tiled_raster_params("RGB.byte.tif", 7, 13);
    let (code, job) = run_json(
        &db,
        &[
            "run",
            "tiled_raster",
            "--params",
            &params,
            "--data-dir",
            data_dir,
        ],
    );
    assert_eq!(code, 0, "{job}");
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["result"]["tiles"], 3731, "{job}");

    let reference = tempfile::tempdir().unwrap();
    let status = Command::new("gdal2tiles.py")
        .args(["--xyz", "-z", "7-13", "--processes=2", "-w", "none", "-q"])
        .arg(data.path().join("samples/RGB.byte.tif"))
        .arg(reference.path())
        .status()
        .expect("gdal2tiles.py (apt-get install gdal-bin python3-gdal) must be installed");
    assert!(status.success());

    let ours = tiles_under(&data.path().join("tiles/RGB.byte"));
    let theirs = tiles_under(reference.path());
    assert_eq!(theirs.len(), 3731);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "tile sets differ"
    );
    // Metric: mean absolute difference per channel over all tiles (threshold 0.5 of 255) and
    // the share of pixels that differ at all (threshold 0.1 %). Both implement gdal2tiles'
    // `average` resampling, so the expected value of both is 0.
    let (mut abs_sum, mut values, mut differing_px) = ([0u64; 4], 0u64, 0u64);
    for (key, path) in &theirs {
        let a = decode_png(&std::fs::read(&ours[key]).unwrap(), 256).unwrap();
        let b = decode_png(&std::fs::read(path).unwrap(), 256).unwrap();
        for (pa, pb) in a.chunks(4).zip(b.chunks(4)) {
            if pa != pb {
                differing_px += 1;
            }
            for c in 0..4 {
                abs_sum[c] += u64::from(pa[c].abs_diff(pb[c]));
            }
        }
        values += (a.len() / 4) as u64;
    }
    for (c, sum) in abs_sum.iter().enumerate() {
        let mad = *sum as f64 / values as f64;
        assert!(mad <= 0.5, "channel {c}: mean absolute difference {mad}");
    }
    let share = differing_px as f64 / values as f64;
    assert!(share <= 0.001, "{differing_px} of {values} pixels differ");

    // The completion markers are there, and name the job.
    let out = data.path().join("tiles/RGB.byte");
    let tilejson: Value =
        serde_json::from_slice(&std::fs::read(out.join("tilejson.json")).unwrap()).unwrap();
    assert_eq!(tilejson["minzoom"], 7);
    assert_eq!(tilejson["maxzoom"], 13);
    assert_eq!(tilejson["tessera"]["job_id"], job["id"]);
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("{z}/{x}/{y}.png") && html.contains("fitBounds"));
    assert!(
        html.contains(job["id"].as_str().unwrap()),
        "the map page names its job"
    );
    // So do the tiles (PNG text chunks) and the STAC item of the COG.
    let tile = std::fs::read(out.join("13/2320/3520.png")).unwrap();
    let id = job["id"].as_str().unwrap().as_bytes();
    assert!(
        tile.windows(id.len()).any(|w| w == id),
        "tile without its job id"
    );
    let item: Value =
        serde_json::from_slice(&std::fs::read(out.join("RGB.byte.stac.json")).unwrap()).unwrap();
    assert_eq!(item["properties"]["tessera:job_id"], job["id"]);
    assert_eq!(item["properties"]["proj:code"], "EPSG:32618");
    let (valid, report) = services::testing::gdal_validate(&out.join("RGB.byte.cog.tif"));
    assert!(valid, "{report}");
}

#[test]
fn bad_tiled_raster_input_is_refused_at_submission_naming_the_file() {
    let data = data_dir_with(
        "samples",
        &["slc_no_georef.tif", "byte.tif", "world.byte.tif"],
    );
    std::fs::write(data.path().join("samples/notes.txt"), "not a raster").unwrap();
    let db = data.path().join("tessera.db");
    let data_dir = data.path().to_str().unwrap();
    let cases = [
        (
            tiled_raster_params("slc_no_georef.tif", 1, 3),
            "slc_no_georef.tif: has no georeferencing",
        ),
        (
            tiled_raster_params("notes.txt", 1, 3),
            "notes.txt: not a raster",
        ),
        (
            tiled_raster_params("missing.tif", 1, 3),
            "blob samples/missing.tif does not exist",
        ),
        (
            tiled_raster_params("byte.tif", 9, 3),
            "min_zoom: must not be greater than max_zoom",
        ),
        (
            tiled_raster_params("byte.tif", 1, 23),
            "max_zoom: must be an integer between 0 and 22",
        ),
        (
            tiled_raster_params("world.byte.tif", 0, 12),
            "lower max_zoom",
        ),
    ];
    for (params, expected) in cases {
        let (code, stdout, stderr) = run(
            &db,
            &[
                "run",
                "tiled_raster",
                "--params",
                &params,
                "--data-dir",
                data_dir,
            ],
        );
        assert_eq!(code, 2, "{params}: {stdout} {stderr}");
        assert!(stderr.contains(expected), "{params}: {stderr}");
    }
    // Nothing was created for refused requests.
    let (code, jobs) = run_json(&db, &["jobs"]);
    assert_eq!(code, 0);
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs}");
}

#[test]
fn sources_that_are_not_8_bit_are_stretched_with_transparent_nodata() {
    let data = data_dir_with("samples", &["dem-hills.tiff", "image_nodata.tif"]);
    let db = data.path().join("tessera.db");
    let data_dir = data.path().to_str().unwrap();
    for (blob, stem) in [
        ("dem-hills.tiff", "dem-hills"),
        ("image_nodata.tif", "image_nodata"),
    ] {
        let (code, job) = run_json(
            &db,
            &[
                "run",
                "tiled_raster",
                "--params",
                &tiled_raster_params(blob, 6, 10),
                "--data-dir",
                data_dir,
            ],
        );
        assert_eq!(code, 0, "{job}");
        let tiles = tiles_under(&data.path().join("tiles").join(stem));
        assert_eq!(Some(tiles.len() as u64), job["result"]["tiles"].as_u64());
        let (mut opaque, mut transparent, mut levels) =
            (0u64, 0u64, std::collections::BTreeSet::new());
        for path in tiles.values() {
            let px = decode_png(&std::fs::read(path).unwrap(), 256).unwrap();
            for p in px.chunks(4) {
                match p[3] {
                    0 => {
                        transparent += 1;
                        assert_eq!(&p[..3], &[0, 0, 0], "{blob}: colour under alpha 0");
                    }
                    255 => {
                        opaque += 1;
                        levels.insert(p[0]);
                    }
                    _ => {}
                }
            }
        }
        assert!(
            opaque > 0 && transparent > 0,
            "{blob}: {opaque} opaque, {transparent} transparent"
        );
        // Stretched over 0..=255, not crushed into a few values.
        assert!(
            levels.len() > 100,
            "{blob}: only {} grey levels",
            levels.len()
        );
    }
}
