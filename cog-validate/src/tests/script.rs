//! Dev check: agreement with the reference script, run by GDAL's own Python bindings.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::crafted::write_crafted;
use super::fixtures_dir;
use crate::*;

const PYTHON: &str = "/usr/bin/python3";

/// Prints one JSON line per file: warnings, errors, details, or the exception raised.
const ORACLE: &str = r#"
import json, sys
from osgeo import gdal
from osgeo_utils.samples import validate_cloud_optimized_geotiff as v
for fn in sys.argv[1:]:
    try:
        w, e, d = v.validate(fn, full_check=True)
        out = {"file": fn, "warnings": w, "errors": e, "details": d}
    except Exception as ex:
        out = {"file": fn, "exception": "%s: %s" % (type(ex).__name__, ex)}
    print(json.dumps(out), flush=True)
"#;

/// Extra cases written with GDAL itself: COGs with and without overviews, BigTIFF,
/// masks, alpha, JPEG, striped and tiled GeoTIFFs, overviews added afterwards, side-car
/// .ovr and .msk files.
const GENERATOR: &str = r#"
import os, shutil, sys
from osgeo import gdal
gdal.UseExceptions()
src, out = sys.argv[1], sys.argv[2]
F = lambda n: os.path.join(src, n)
O = lambda n: os.path.join(out, n)
def tr(dst, source, **kw):
    gdal.Translate(O(dst), source, **kw)
def addo(name, levels, ro=False):
    ds = gdal.Open(O(name), gdal.GA_ReadOnly if ro else gdal.GA_Update)
    ds.BuildOverviews("NEAREST", levels)
    ds = None
rgb, rgba = F("RGB.byte.tif"), F("RGBA.uint16.tif")
tr("cog_ovr.tif", rgb, format="COG")
tr("cog_noovr.tif", rgb, format="COG", creationOptions=["OVERVIEWS=NONE"])
tr("cog_small.tif", F("byte.tif"), format="COG")
tr("cog_bigtiff.tif", rgb, format="COG", creationOptions=["BIGTIFF=YES"])
tr("cog_bigtiff_deflate.tif", rgb, format="COG", creationOptions=["BIGTIFF=YES", "COMPRESS=DEFLATE"])
tr("cog_jpeg.tif", rgb, format="COG", creationOptions=["COMPRESS=JPEG"])
tr("cog_alpha.tif", rgba, format="COG")
tr("cog_alpha_byte.tif", rgba, format="COG", outputType=gdal.GDT_Byte, scaleParams=[[]], width=1400, height=900)
tr("cog_sparse.tif", F("byte.tif"), format="COG", creationOptions=["SPARSE_OK=TRUE"], width=1200, height=1200, scaleParams=[[0, 255, 0, 0]])
tr("striped.tif", rgb, format="GTiff")
tr("striped_wide.tif", rgb, format="GTiff", width=1600, height=700)
tr("tiled_addo.tif", rgb, format="GTiff", creationOptions=["TILED=YES"])
addo("tiled_addo.tif", [2, 4, 8])
tr("tiled_fullwidth.tif", F("byte.tif"), format="GTiff", creationOptions=["TILED=YES", "BLOCKXSIZE=1536", "BLOCKYSIZE=16"], width=1536, height=600)
tr("split_deflate.tif", F("byte.tif"), format="GTiff", creationOptions=["BLOCKYSIZE=2500", "COMPRESS=DEFLATE"], width=300, height=2500)
tr("onestrip_raw.tif", F("byte.tif"), format="GTiff", creationOptions=["BLOCKYSIZE=2500"], width=300, height=2500)
tr("onestrip_small.tif", F("byte.tif"), format="GTiff", creationOptions=["BLOCKYSIZE=100"], width=300, height=100)
for name, opts in [("gtiff_cog_bigendian.tif", ["ENDIANNESS=BIG"]),
                   ("gtiff_cog_bigendian_bigtiff.tif", ["ENDIANNESS=BIG", "BIGTIFF=YES"]),
                   ("gtiff_cog_separate.tif", ["PHOTOMETRIC=MINISBLACK", "INTERLEAVE=BAND"])]:
    tr(name, O("tiled_addo.tif"), format="GTiff", creationOptions=["TILED=YES", "COPY_SRC_OVERVIEWS=YES"] + opts)
tr("extmask_src.tif", rgba, format="GTiff", bandList=[1, 2, 3], maskBand=4)
gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES")
tr("intmask_src.tif", rgba, format="GTiff", bandList=[1, 2, 3], maskBand=4)
tr("intmask_addo.tif", rgba, format="GTiff", bandList=[1, 2, 3], maskBand=4, creationOptions=["TILED=YES"], width=1400, height=900)
addo("intmask_addo.tif", [2, 4])
tr("cog_mask.tif", O("intmask_src.tif"), format="COG")
tr("cog_mask_big.tif", O("intmask_src.tif"), format="COG", width=1400, height=900)
tr("cog_mask_nodata.tif", O("intmask_src.tif"), format="COG", noData=0, width=1400, height=900)
gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", None)
tr("cog_with_stray_ovr.tif", rgb, format="COG")
shutil.copy(F("invalid-cog/image_external.tif.ovr"), O("cog_with_stray_ovr.tif.ovr"))
tr("cog_noovr_with_OVR.tif", rgb, format="COG", creationOptions=["OVERVIEWS=NONE"])
shutil.copy(F("invalid-cog/image_external.tif.ovr"), O("cog_noovr_with_OVR.tif.OVR"))
tr("cog_noovr_with_Ovr.tif", rgb, format="COG", creationOptions=["OVERVIEWS=NONE"])
shutil.copy(F("invalid-cog/image_external.tif.ovr"), O("cog_noovr_with_Ovr.tif.Ovr"))
tr("cog_ovr_with_Ovr.tif", rgb, format="COG")
shutil.copy(F("invalid-cog/image_external.tif.ovr"), O("cog_ovr_with_Ovr.tif.Ovr"))
tr("cog_with_bad_ovr.tif", rgb, format="COG", creationOptions=["OVERVIEWS=NONE"])
open(O("cog_with_bad_ovr.tif.ovr"), "w").write("not an overview")
tr("striped_ext.tif", rgb, format="GTiff")
addo("striped_ext.tif", [2, 4], ro=True)
tr("cog_with_msk.tif", rgb, format="COG")
tr("cog_with_MSK.tif", rgb, format="COG")
shutil.copy(O("extmask_src.tif.msk"), O("cog_with_MSK.tif.MSK"))
tr("cog_upper_mask.tif", F("RGBA.uint16.tif"), format="COG", bandList=[1, 2, 3])
shutil.copy(O("extmask_src.tif.msk"), O("cog_upper_mask.tif.MSK"))
tr("cog_with_plain_Msk.tif", rgb, format="COG")
tr("cog_with_plain_Msk.tif.Msk", O("cog_ovr.tif"), format="GTiff", bandList=[1])
tr("cog_with_msk.tif.msk", O("cog_ovr.tif"), format="GTiff", bandList=[1])
ds = gdal.Open(O("cog_ovr.tif"))
gdal.GetDriverByName("GTiff").CreateCopy(O("cog_edited.tif"), ds)
ds = None
tr("cog_to_edit.tif", rgb, format="COG", creationOptions=["COMPRESS=DEFLATE"])
ds = gdal.Open(O("cog_to_edit.tif"), gdal.GA_Update)
ds.GetRasterBand(1).Fill(7)
ds = None
"#;

fn python_has_osgeo() -> Result<(), String> {
    let out = Command::new(PYTHON)
        .args([
            "-c",
            "from osgeo import gdal; from osgeo_utils.samples import validate_cloud_optimized_geotiff",
        ])
        .output()
        .map_err(|e| format!("cannot run {PYTHON}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Files to compare: fixtures, GDAL-generated cases, crafted cases, and every TIFF of
/// `$COG_VALIDATE_EXTRA_DIR` when set.
fn comparison_files(tmp: &Path) -> Vec<PathBuf> {
    let fixtures = fixtures_dir();
    let tiffs = |dir: &Path| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_ascii_lowercase();
                p.is_file() && (name.ends_with(".tif") || name.ends_with(".tiff"))
            })
            .collect();
        v.sort();
        v
    };
    let mut files = tiffs(&fixtures);
    files.extend(tiffs(&fixtures.join("invalid-cog")));

    let generated = tmp.join("generated");
    std::fs::create_dir(&generated).unwrap();
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(GENERATOR)
        .arg(&fixtures)
        .arg(&generated)
        .output()
        .expect("run the generator");
    assert!(
        out.status.success(),
        "generating the extra cases with GDAL failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    files.extend(tiffs(&generated));

    let crafted = tmp.join("crafted");
    std::fs::create_dir(&crafted).unwrap();
    files.extend(write_crafted(&crafted));

    if let Some(extra) = std::env::var_os("COG_VALIDATE_EXTRA_DIR") {
        files.extend(tiffs(Path::new(&extra)));
    }
    files
}

/// Where two reports differ, briefly.
fn describe_difference(script: &CogReport, ours: &CogReport) -> String {
    let mut out = Vec::new();
    if script.errors != ours.errors {
        let at = script
            .errors
            .iter()
            .zip(&ours.errors)
            .position(|(a, b)| a != b)
            .unwrap_or(script.errors.len().min(ours.errors.len()));
        out.push(format!(
            "errors differ at #{at} ({} vs {} errors):\n   script: {:?}\n   ours:   {:?}",
            script.errors.len(),
            ours.errors.len(),
            script.errors.get(at),
            ours.errors.get(at)
        ));
    }
    if script.warnings != ours.warnings {
        out.push(format!(
            "warnings: script {:?}, ours {:?}",
            script.warnings, ours.warnings
        ));
    }
    if script.details != ours.details {
        out.push(format!(
            "details: script {:?}, ours {:?}",
            script.details, ours.details
        ));
    }
    out.join("\n  ")
}

#[test]
fn agrees_with_gdal_validate_script() {
    if let Err(e) = python_has_osgeo() {
        panic!(
            "{PYTHON} cannot import GDAL's Python bindings and the COG validation script; \
             install python3-gdal (apt-get install python3-gdal) to run this check:\n{e}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let files = comparison_files(tmp.path());
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(ORACLE)
        .args(&files)
        .output()
        .expect("run the validation script");
    assert!(
        out.status.success(),
        "the validation script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(answers.len(), files.len(), "one answer per file:\n{stdout}");

    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let levels = |v: &serde_json::Value| -> LevelOffsets {
        let map = v.as_object().unwrap();
        let overviews = (0..map.len() - 1)
            .map(|i| map[&format!("overview_{i}")].as_u64().unwrap())
            .collect();
        LevelOffsets {
            main: map["main"].as_u64().unwrap(),
            overviews,
        }
    };
    let mut mismatches = Vec::new();
    let mut table = Vec::new();
    for (file, answer) in files.iter().zip(&answers) {
        let ours = validate_cog(file, true);
        let name = file.display();
        if let Some(exception) = answer.get("exception") {
            table.push(format!(
                "{name}: script raised, ours: {:?}",
                ours.as_ref().err().map(ToString::to_string)
            ));
            if ours.is_ok() {
                mismatches.push(format!(
                    "{name}: the script raised {exception}, we reported {ours:?}"
                ));
            }
            continue;
        }
        let expected = CogReport {
            errors: strings(&answer["errors"]),
            warnings: strings(&answer["warnings"]),
            details: CogDetails {
                ifd_offsets: levels(&answer["details"]["ifd_offsets"]),
                data_offsets: levels(&answer["details"]["data_offsets"]),
            },
        };
        table.push(format!(
            "{name}: script {}, ours {}",
            if expected.is_valid() {
                "valid"
            } else {
                "invalid"
            },
            match &ours {
                Ok(r) if r.is_valid() => "valid".to_string(),
                Ok(_) => "invalid".to_string(),
                Err(e) => format!("error ({e})"),
            }
        ));
        match ours {
            Ok(ours) if ours == expected => {}
            Ok(ours) => {
                mismatches.push(format!("{name}: {}", describe_difference(&expected, &ours)))
            }
            Err(e) => mismatches.push(format!("{name}: script {expected:#?}, we failed: {e}")),
        }
    }
    println!("{}", table.join("\n"));
    assert!(
        mismatches.is_empty(),
        "{} of {} files disagree with the script:\n{}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n")
    );
}
