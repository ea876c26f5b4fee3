//! The golden corpus of issue 13: for each raster, `tiled_raster` (through the `tessera`
//! binary) against `gdal2tiles.py --xyz` over three zooms (tile sets equal; per tile, the
//! share of differing pixels and the mean absolute difference under the thresholds of
//! docs/geospatial.md), and the STAC item of its COG against `gdalinfo -json` (`size`,
//! `geoTransform`, the EPSG code, `cornerCoordinates`, `wgs84Extent`). Where gdal2tiles
//! refuses the raster (palette, not 8-bit), the reference is gdal2tiles on the VRT its error
//! message suggests. Each test prints its measured differences (`--nocapture` shows them).

mod compare;
mod corpus;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use services::testing::gdalinfo;

use crate::support::run_json;
use compare::{MAX_DIFFERING_SHARE, MAX_MEAN_ABS_DIFF, Wgs84, check_stac, compare_tiles};
use corpus::{Make, Raster, Reference};

/// Tile `raster` with Tessera and gdal2tiles, compare the tiles and the STAC item.
fn check(raster: &Raster) {
    let data = tempfile::tempdir().unwrap();
    let container = data.path().join("golden");
    std::fs::create_dir_all(&container).unwrap();
    let source = raster.make_in(&container);
    let (min_zoom, max_zoom) = raster.zooms;
    let params = json!({
        "container": "golden", "blob": raster.name, "output_container": "tiles",
        "min_zoom": min_zoom, "max_zoom": max_zoom,
    });
    let (code, job) = run_json(
        &data.path().join("tessera.db"),
        &[
            "run",
            "tiled_raster",
            "--params",
            &params.to_string(),
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{}: {job}", raster.name);
    assert_eq!(job["status"], "SUCCEEDED", "{}: {job}", raster.name);

    let scratch = tempfile::tempdir().unwrap();
    let input = raster.reference_input(&source, scratch.path());
    let reference = scratch.path().join("gdal2tiles");
    let out = Command::new("gdal2tiles.py")
        .args(["--xyz", "-q", "-w", "none", "--processes=1", "-z"])
        .arg(format!("{min_zoom}-{max_zoom}"))
        .arg(&input)
        .arg(&reference)
        .output()
        .expect("gdal2tiles.py (apt-get install gdal-bin python3-gdal) must be installed");
    assert!(
        out.status.success(),
        "gdal2tiles.py on {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    let stem = Path::new(raster.name)
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap();
    let ours = data.path().join("tiles").join(stem);
    let (per_tile, per_zoom) = compare_tiles(&ours, &reference);
    for (z, d) in &per_zoom {
        let worst = per_tile
            .iter()
            .filter(|(k, _)| k.0 == *z)
            .map(|(_, d)| d.share())
            .fold(0.0, f64::max);
        println!(
            "golden {}: z{z}: {} tiles, {:.4} % of pixels differ (worst tile {:.4} %), mean abs diff {:.5}, max abs diff {}",
            raster.name,
            per_tile.keys().filter(|k| k.0 == *z).count(),
            100.0 * d.share(),
            100.0 * worst,
            d.mean_abs(),
            d.max_abs
        );
    }
    for (key, d) in &per_tile {
        assert!(
            d.share() <= MAX_DIFFERING_SHARE && d.mean_abs() <= MAX_MEAN_ABS_DIFF,
            "{}: tile {key:?}: {} of {} pixels differ from gdal2tiles' ({:.3} %, limit {} %), mean abs diff {:.4} (limit {MAX_MEAN_ABS_DIFF})",
            raster.name,
            d.differing,
            d.pixels,
            100.0 * d.share(),
            100.0 * MAX_DIFFERING_SHARE,
            d.mean_abs()
        );
    }

    let item = read_json(&ours.join(format!("{stem}.stac.json")));
    let info = gdalinfo(&source);
    let wgs84 = Wgs84::from_gdalinfo(&info).unwrap_or_else(|| {
        // Corners off the globe (gdalinfo's wgs84Extent is empty): gdalwarp's footprint
        // at 0.1 degree.
        Wgs84::Bounds(
            services::testing::gdalwarp_footprint_bounds(&source, 0.1),
            0.2,
        )
    });
    let d = check_stac(&item, &info, &wgs84);
    println!(
        "golden {}: STAC bbox {} within {d:.6} degrees of GDAL's",
        raster.name, item["bbox"]
    );
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const fn shared(name: &'static str, zooms: (u32, u32)) -> Raster {
    Raster {
        name,
        make: Make::Shared(name),
        reference: Reference::Source,
        zooms,
    }
}

#[test]
fn shared_rgb_byte_utm_nodata_0() {
    check(&shared("RGB.byte.tif", (7, 9)));
}

#[test]
fn shared_byte_small_utm() {
    check(&shared("byte.tif", (12, 14)));
}

#[test]
fn shared_labels_nodata_255() {
    check(&shared("labels.tif", (10, 12)));
}

#[test]
fn shared_world_byte_4326_within_85_degrees() {
    check(&shared("world.byte.tif", (0, 3)));
}

/// A COG already in EPSG:3857 (JPEG, per-dataset mask), read unwarped. Its pixels are
/// square, so the automatic warp gave the same tiles: the regression test of issue 13's
/// defect 5 is `derived_rgb_3857_non_square_pixels_is_read_unwarped`.
#[test]
fn shared_cogeo_3857_is_read_unwarped() {
    check(&shared("cogeo.tif", (16, 18)));
}

#[test]
fn shared_rgba_uint16_scaled_as_gdal_translate_scale() {
    check(&Raster {
        reference: Reference::ScaleToByte,
        ..shared("RGBA.uint16.tif", (14, 16))
    });
}

#[test]
fn shared_dem_float32_scaled_as_gdal_translate_scale() {
    check(&Raster {
        reference: Reference::ScaleToByte,
        ..shared("dem-hills.tiff", (11, 13))
    });
}

#[test]
fn shared_image_nodata_int16_albers_scaled() {
    check(&Raster {
        reference: Reference::ScaleToByte,
        ..shared("image_nodata.tif", (6, 8))
    });
}

/// Issue 13, defect 3: a palette raster is expanded through its colour table (entry 255,
/// its nodata, transparent), not drawn as gray indices.
#[test]
fn derived_palette_is_expanded_to_rgba() {
    check(&Raster {
        name: "palette.tif",
        make: Make::Gdal(corpus::palette),
        reference: Reference::ExpandRgba,
        zooms: (10, 12),
    });
}

/// Issue 13, defect 6: the colour stored under nodata 255 is averaged as gdal2tiles does.
#[test]
fn derived_hillshade_nodata_255_averages_stored_values() {
    check(&Raster {
        name: "hillshade_nodata255.tif",
        make: Make::Gdal(corpus::hillshade_nodata_255),
        reference: Reference::Source,
        zooms: (11, 13),
    });
}

/// Issue 13, defect 6: soft alpha edges.
#[test]
fn derived_rgba_soft_alpha_edges() {
    check(&Raster {
        name: "rgba_soft_alpha.tif",
        make: Make::Gdal(corpus::rgba_soft_alpha),
        reference: Reference::Source,
        zooms: (5, 7),
    });
}

/// Issue 13, defect 4: a global EPSG:4326 raster reaching the poles is warped to explicit
/// bounds clipped at ±85.0511°, not to the coarse grid of the automatic warp.
#[test]
fn derived_global_4326_to_the_poles_is_clipped_at_85_degrees() {
    check(&Raster {
        name: "global_4326.tif",
        make: Make::Gdal(corpus::global_4326),
        reference: Reference::Source,
        zooms: (0, 3),
    });
}

/// Issue 13, defect 5: EPSG:3857 with non-square pixels (200.32 x 199.94 m) is read
/// unwarped.
#[test]
fn derived_rgb_3857_non_square_pixels_is_read_unwarped() {
    check(&Raster {
        name: "rgb_3857.tif",
        make: Make::Gdal(corpus::rgb_3857),
        reference: Reference::Source,
        zooms: (7, 9),
    });
}

/// Issue 13, defect 2: a geostationary full disk is tiled (its STAC bbox against gdalwarp's
/// footprint: gdalinfo has no wgs84Extent for it), and `list_container` / `sync_container`
/// call it georeferenced.
#[test]
fn derived_geostationary_full_disk_is_tiled_listed_and_catalogued() {
    let raster = Raster {
        name: "geostationary.tif",
        make: Make::Gdal(corpus::geostationary),
        reference: Reference::Source,
        zooms: (0, 2),
    };
    check(&raster);

    let data = tempfile::tempdir().unwrap();
    let container = data.path().join("disk");
    std::fs::create_dir_all(&container).unwrap();
    raster.make_in(&container);
    let db = data.path().join("tessera.db");
    let dir = data.path().to_str().unwrap();
    let run = |job_type: &str, params: Value| {
        let (code, job) = run_json(
            &db,
            &[
                "run",
                job_type,
                "--params",
                &params.to_string(),
                "--data-dir",
                dir,
            ],
        );
        assert_eq!(code, 0, "{job_type}: {job}");
        assert_eq!(job["status"], "SUCCEEDED", "{job_type}: {job}");
        job["result"].clone()
    };
    let inventory = run("list_container", json!({"container": "disk"}));
    assert_eq!(
        inventory["rasters"][0]["georeferenced"], true,
        "{inventory}"
    );
    let synced = run(
        "sync_container",
        json!({"container": "disk", "collection_id": "disk"}),
    );
    assert_eq!(synced["items"], 1, "{synced}");
    assert_eq!(synced["skipped"], json!([]), "{synced}");
    let item = read_json(&container.join("stac/disk/geostationary.json"));
    let reference = services::testing::gdalwarp_footprint_bounds(&container.join(raster.name), 0.1);
    let bbox: Vec<f64> = serde_json::from_value(item["bbox"].clone()).unwrap();
    assert!(
        compare::bbox_distance(&bbox, &reference) <= 0.2,
        "{bbox:?} vs gdalwarp's footprint {reference:?}"
    );
}
