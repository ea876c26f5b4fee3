//! `list_container`, `cog_conversion` and `sync_container` end to end through the `tessera`
//! binary on a temporary `--data-dir`; COG outputs are checked with GDAL's own validator.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use services::cog_validate::validate_cog;
use services::stac::{COG, Collection, GEOTIFF, Item};
use services::testing::{gdal_validate, gdalinfo};

use crate::support::{fixture, run, run_json};

/// A data directory whose container `container` holds `(blob name, fixture)` copies, and the
/// database path beside the containers.
fn data(container: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (blob, source) in files {
        let path = dir.path().join(container).join(blob);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match source.strip_prefix("text:") {
            Some(text) => std::fs::write(&path, text).unwrap(),
            None => {
                std::fs::copy(fixture(source), &path).unwrap();
            }
        }
    }
    let db = dir.path().join("tessera.db");
    (dir, db)
}

/// `tessera run JOB_TYPE --params PARAMS --data-dir DIR --json`.
fn run_job(dir: &Path, db: &Path, job_type: &str, params: Value) -> (i32, Value) {
    run_json(
        db,
        &[
            "run",
            job_type,
            "--params",
            &params.to_string(),
            "--data-dir",
            dir.to_str().unwrap(),
        ],
    )
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn list_container_inventories_blobs_and_rasters() {
    let (dir, db) = data(
        "rasters",
        &[
            ("RGB.byte.tif", "RGB.byte.tif"),
            ("dem/hills.tiff", "dem-hills.tiff"),
            ("docs/notes.txt", "text:not a raster"),
        ],
    );
    let (code, job) = run_job(
        dir.path(),
        &db,
        "list_container",
        json!({"container": "rasters"}),
    );
    assert_eq!(code, 0, "{job}");
    assert_eq!(job["status"], "SUCCEEDED");
    let inv = &job["result"];
    assert_eq!(inv["count"], 3);
    let bytes = std::fs::metadata(fixture("RGB.byte.tif")).unwrap().len()
        + std::fs::metadata(fixture("dem-hills.tiff")).unwrap().len()
        + "not a raster".len() as u64;
    assert_eq!(inv["total_bytes"], bytes);
    assert_eq!(inv["extensions"]["tif"]["count"], 1);
    assert_eq!(inv["extensions"]["tiff"]["count"], 1);
    assert_eq!(inv["extensions"]["txt"], json!({"count": 1, "bytes": 12}));
    let rasters = inv["rasters"].as_array().unwrap();
    assert_eq!(rasters.len(), 2, "{inv}");
    assert_eq!(
        rasters[0],
        json!({"name": "RGB.byte.tif", "size": std::fs::metadata(fixture("RGB.byte.tif")).unwrap().len(),
               "driver": "GTiff", "width": 791, "height": 718, "bands": 3, "epsg": 32618,
               "georeferenced": true})
    );
    assert_eq!(rasters[1]["name"], "dem/hills.tiff");
    assert_eq!(
        (rasters[1]["width"].as_u64(), rasters[1]["bands"].as_u64()),
        (Some(333), Some(1))
    );

    let (code, job) = run_job(
        dir.path(),
        &db,
        "list_container",
        json!({"container": "rasters", "prefix": "docs/"}),
    );
    assert_eq!(code, 0, "{job}");
    assert_eq!(
        (
            job["result"]["count"].as_u64(),
            job["result"]["rasters"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0))
    );

    let (code, _, stderr) = run(
        &db,
        &[
            "run",
            "list_container",
            "--params",
            r#"{"container": "nope"}"#,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("container \"nope\" does not exist"),
        "{stderr}"
    );
}

#[test]
fn cog_conversion_writes_cogs_that_gdal_validates() {
    let (dir, db) = data(
        "in",
        &[
            ("RGB.byte.tif", "RGB.byte.tif"),
            ("scenes/labels.tif", "labels.tif"),
            ("slc_no_georef.tif", "slc_no_georef.tif"),
        ],
    );
    let params = json!({
        "container": "in",
        "blobs": ["RGB.byte.tif", "scenes/labels.tif", "slc_no_georef.tif"],
        "output_container": "cogs",
    });
    let (code, job) = run_job(dir.path(), &db, "cog_conversion", params);
    assert_eq!(code, 0, "{job}");
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["result"]["converted"], 3, "{job}");
    assert_eq!(job["result"]["failed"], 0);
    assert_eq!(job["tasks"]["SUCCEEDED"], 4, "3 cog tasks and the barrier");
    let job_id = job["id"].as_str().unwrap();

    for (input, output) in [
        ("RGB.byte.tif", "RGB.byte.cog.tif"),
        ("scenes/labels.tif", "scenes/labels.cog.tif"),
        ("slc_no_georef.tif", "slc_no_georef.cog.tif"),
    ] {
        let path = dir.path().join("cogs").join(output);
        let (valid, text) = gdal_validate(&path);
        assert!(valid, "{output}: {text}");
        let report = validate_cog(&path, true).unwrap();
        assert!(report.is_valid(), "{output}: {report:?}");

        let (src, out) = (
            gdalinfo(&dir.path().join("in").join(input)),
            gdalinfo(&path),
        );
        assert_eq!(out["size"], src["size"], "{output}");
        assert_eq!(out["metadata"][""]["TESSERA_JOB_ID"], job_id, "{output}");
        assert_eq!(out["metadata"][""]["TESSERA_SOURCE"], format!("in/{input}"));
        assert_eq!(out["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"], "COG");
        assert_eq!(out["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"], "DEFLATE");
        let (sb, ob) = (
            src["bands"].as_array().unwrap(),
            out["bands"].as_array().unwrap(),
        );
        assert_eq!(sb.len(), ob.len(), "{output}: band count");
        for (s, o) in sb.iter().zip(ob) {
            assert_eq!(o["type"], s["type"], "{output}");
            assert_eq!(o["noDataValue"], s["noDataValue"], "{output}");
            assert_eq!(
                o["colorInterpretation"], s["colorInterpretation"],
                "{output}"
            );
            assert_eq!(o["block"], json!([512, 512]), "{output}");
        }
    }

    // The same request again: the stored job, not run again.
    let params = json!({
        "container": "in",
        "blobs": ["slc_no_georef.tif", "scenes/labels.tif", "RGB.byte.tif", "RGB.byte.tif"],
        "output_container": "cogs", "compression": "deflate", "blocksize": 512,
    });
    let (code, again) = run_job(dir.path(), &db, "cog_conversion", params);
    assert_eq!(code, 0);
    assert_eq!(again["id"], job_id);
    assert_eq!(again["finished_at"], job["finished_at"]);

    // A single `blob`, reprojected, JPEG.
    let params = json!({"container": "in", "blob": "RGB.byte.tif", "output_container": "wgs84",
                        "target_crs": "EPSG:4326", "compression": "jpeg", "blocksize": 256});
    let (code, job) = run_job(dir.path(), &db, "cog_conversion", params);
    assert_eq!(code, 0, "{job}");
    assert_eq!(job["params"]["blobs"], json!(["RGB.byte.tif"]));
    let path = dir.path().join("wgs84/RGB.byte.cog.tif");
    let (valid, text) = gdal_validate(&path);
    assert!(valid, "{text}");
    let info = gdalinfo(&path);
    assert_eq!(info["stac"]["proj:epsg"], 4326);
    assert_eq!(
        info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"],
        "YCbCr JPEG"
    );
    assert_eq!(info["bands"][0]["block"], json!([256, 256]));
}

#[test]
fn cog_conversion_refuses_bad_input_at_submission() {
    let (dir, db) = data(
        "in",
        &[
            ("RGB.byte.tif", "RGB.byte.tif"),
            ("notes.txt", "text:hello, not a raster"),
        ],
    );
    let data_dir = dir.path().to_str().unwrap();
    let submit = |params: Value| {
        run(
            &db,
            &[
                "run",
                "cog_conversion",
                "--params",
                &params.to_string(),
                "--data-dir",
                data_dir,
            ],
        )
    };

    let (code, _, stderr) = submit(
        json!({"container": "in", "blobs": ["RGB.byte.tif", "missing.tif"],
                                          "output_container": "out"}),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("blobs[1]: blob in/missing.tif does not exist"),
        "{stderr}"
    );

    let (code, _, stderr) =
        submit(json!({"container": "in", "blob": "notes.txt", "output_container": "out"}));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("blobs[0]: notes.txt: not a raster"),
        "{stderr}"
    );

    let (code, _, stderr) = submit(
        json!({"container": "in", "blob": "RGB.byte.tif", "output_container": "out",
                                          "target_crs": "EPSG:999999"}),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("target_crs: unknown CRS \"EPSG:999999\""),
        "{stderr}"
    );

    let (code, _, stderr) = submit(
        json!({"container": "in", "blob": "RGB.byte.tif", "output_container": "out",
                                          "blocksize": 1000}),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("blocksize: must be a power of two between 64 and 4096, got 1000"),
        "{stderr}"
    );

    // Nothing was created or written.
    let (code, jobs) = run_json(&db, &["jobs"]);
    assert_eq!((code, jobs), (0, json!([])));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn sync_container_writes_a_collection_whose_links_resolve() {
    let (dir, db) = data(
        "archive",
        &[
            ("RGB.byte.tif", "RGB.byte.tif"),
            ("web/cogeo.tif", "cogeo.tif"),
            ("albers.tif", "image_nodata.tif"),
            ("slc.tif", "slc_no_georef.tif"),
            ("readme.txt", "text:an archive"),
        ],
    );
    let params = json!({"container": "archive", "collection_id": "archive-v1"});
    let (code, job) = run_job(dir.path(), &db, "sync_container", params);
    assert_eq!(code, 0, "{job}");
    assert_eq!(job["status"], "SUCCEEDED");
    let result = &job["result"];
    assert_eq!(result["items"], 3, "{result}");
    assert_eq!(result["skipped"][0]["blob"], "slc.tif");
    assert_eq!(result["collection"], "stac/archive-v1/collection.json");
    let job_id = job["id"].as_str().unwrap();

    let folder = dir.path().join("archive/stac/archive-v1");
    let collection_path = folder.join("collection.json");
    let collection: Collection = serde_json::from_value(read_json(&collection_path)).unwrap();
    assert_eq!(
        (collection.kind.as_str(), collection.id.as_str()),
        ("Collection", "archive-v1")
    );
    assert_eq!(collection.stac_version, "1.0.0");
    assert_eq!(collection.job_id, job_id);
    let items: Vec<&str> = collection
        .links
        .iter()
        .filter(|l| l.rel == "item")
        .map(|l| l.href.as_str())
        .collect();
    assert_eq!(
        items,
        ["./RGB.byte.json", "./albers.json", "./web__cogeo.json"]
    );

    let union = collection.extent.spatial.bbox[0];
    let mut seen_bbox = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for href in items {
        let item_path = folder.join(href);
        let raw = read_json(&item_path);
        let item: Item = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(raw["type"], "Feature");
        assert_eq!(raw["stac_version"], "1.0.0");
        assert!(raw["properties"]["datetime"].is_string());
        assert_eq!(raw["properties"]["tessera:job_id"], job_id);
        assert_eq!(item.collection.as_deref(), Some("archive-v1"));
        for rel in ["collection", "parent", "root"] {
            let link = item.links.iter().find(|l| l.rel == rel).unwrap();
            assert_eq!(
                std::fs::canonicalize(folder.join(&link.href)).unwrap(),
                std::fs::canonicalize(&collection_path).unwrap()
            );
        }
        let asset = &item.assets["data"];
        let raster = folder.join(&asset.href);
        assert!(
            raster.is_file(),
            "{href}: asset {} does not resolve",
            asset.href
        );
        let info = gdalinfo(&raster);
        assert_eq!(
            item.properties.proj_shape,
            [
                info["size"][1].as_u64().unwrap() as usize,
                info["size"][0].as_u64().unwrap() as usize
            ]
        );
        assert_eq!(
            asset.raster_bands.len(),
            info["bands"].as_array().unwrap().len()
        );
        // The COG profile exactly when GDAL's validator says so (RGB.byte.tif is striped and
        // larger than 512 px: not a COG; cogeo.tif is one, and so is albers.tif, with a warning).
        let expected_type = if gdal_validate(&raster).0 {
            COG
        } else {
            GEOTIFF
        };
        assert_eq!(asset.media_type, expected_type, "{href}");
        if href == "./RGB.byte.json" {
            assert_eq!(asset.media_type, GEOTIFF);
        }
        if href == "./web__cogeo.json" {
            assert_eq!(asset.media_type, COG);
        }
        for i in 0..2 {
            seen_bbox[i] = seen_bbox[i].min(item.bbox[i]);
            seen_bbox[i + 2] = seen_bbox[i + 2].max(item.bbox[i + 2]);
        }
    }
    assert_eq!(union, seen_bbox);

    // A missing container is refused at submission.
    let (code, _, stderr) = run(
        &db,
        &[
            "run",
            "sync_container",
            "--params",
            r#"{"container": "nope", "collection_id": "x"}"#,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("container \"nope\" does not exist"),
        "{stderr}"
    );
}
