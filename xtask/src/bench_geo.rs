//! Geospatial benchmarks against GDAL's own tools, in the same run:
//! - `cargo xtask bench tiles`: `tiled_raster` of RGB.byte.tif, zooms 7-13 (3 731 tiles), vs
//!   `gdal2tiles.py --xyz --processes=2 -z 7-13` on the same file;
//! - `cargo xtask bench cog`: `cog_conversion` of an 8192 x 8192 3-band input (made from
//!   RGB.byte.tif with `gdal_translate -outsize`) vs `gdal_translate -of COG -co
//!   COMPRESS=DEFLATE -co NUM_THREADS=ALL_CPUS`.
//!
//! Each case alternates Tessera and the peer, on fresh outputs, and reports medians; peak RSS
//! is Tessera's process (VmHWM).

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::bench::{Measured, measure, median, tessera};
use crate::{build_tessera, ensure_gdal, run};

/// Median wall seconds and the largest peak RSS (MiB) of several runs.
fn summarize(runs: &[Measured]) -> (f64, f64) {
    let wall = median(runs.iter().map(|m| m.wall.as_secs_f64()).collect());
    let rss = runs.iter().map(|m| m.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    (wall, rss)
}

fn fresh(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

pub fn tiles(root: &Path, quick: bool) -> anyhow::Result<()> {
    ensure_gdal()?;
    let bin = build_tessera(root)?;
    let dir = root.join("target/bench/tiles");
    let runs = if quick { 1 } else { 3 };
    let source = root.join("tests/fixtures/geotiff/RGB.byte.tif");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let data = dir.join(format!("run{i}"));
        fresh(&data)?;
        std::fs::create_dir_all(data.join("samples"))?;
        std::fs::copy(&source, data.join("samples/RGB.byte.tif"))?;
        let params = r#"{"container": "samples", "blob": "RGB.byte.tif", "output_container": "tiles", "min_zoom": 7, "max_zoom": 13}"#;
        let m = measure(
            tessera(
                &bin,
                &data.join("tessera.db"),
                &["run", "tiled_raster", "--json", "--params", params],
            )
            .arg("--data-dir")
            .arg(&data),
        )?;
        let job: serde_json::Value = serde_json::from_str(m.stdout.trim())?;
        anyhow::ensure!(
            job["status"] == "SUCCEEDED" && job["result"]["tiles"] == 3731,
            "tiled_raster: {job}"
        );
        println!(
            "tessera tiled_raster run {i}: {:.2} s, peak RSS {} MiB",
            m.wall.as_secs_f64(),
            m.peak_rss_kib / 1024
        );
        ours.push(m);

        let out = dir.join(format!("gdal2tiles{i}"));
        fresh(&out)?;
        let m = measure(
            Command::new("gdal2tiles.py")
                .args(["--xyz", "--processes=2", "-z", "7-13", "-q"])
                .arg(&source)
                .arg(&out),
        )?;
        println!("gdal2tiles.py run {i}: {:.2} s", m.wall.as_secs_f64());
        theirs.push(m);
    }
    let (t_wall, t_rss) = summarize(&ours);
    let (g_wall, _) = summarize(&theirs);
    println!();
    println!("tiles of RGB.byte.tif, zooms 7-13 (3 731 tiles), median of {runs}:");
    println!(
        "  tessera run tiled_raster (tiles + COG + STAC + TileJSON): {t_wall:.2} s, peak RSS {t_rss:.0} MiB"
    );
    println!("  gdal2tiles.py --xyz --processes=2 -z 7-13:                {g_wall:.2} s");
    println!("  Tessera faster by {:.1}x (target >= 3x)", g_wall / t_wall);
    Ok(())
}

pub fn cog(root: &Path, quick: bool) -> anyhow::Result<()> {
    ensure_gdal()?;
    let bin = build_tessera(root)?;
    let dir = root.join("target/bench/cog");
    std::fs::create_dir_all(dir.join("data/big"))?;
    let input = dir.join("data/big/big8192.tif");
    if !input.exists() {
        println!("making the 8192 x 8192 3-band input with gdal_translate -outsize...");
        run(Command::new("gdal_translate")
            .args([
                "-q",
                "-outsize",
                "8192",
                "8192",
                "-co",
                "TILED=YES",
                "-co",
                "COMPRESS=DEFLATE",
            ])
            .arg(root.join("tests/fixtures/geotiff/RGB.byte.tif"))
            .arg(&input))?;
    }
    let runs = if quick { 1 } else { 3 };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let db = dir.join(format!("run{i}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let params = r#"{"container": "big", "blob": "big8192.tif", "output_container": "cogs"}"#;
        let m = measure(
            tessera(
                &bin,
                &db,
                &["run", "cog_conversion", "--json", "--params", params],
            )
            .arg("--data-dir")
            .arg(dir.join("data")),
        )?;
        let job: serde_json::Value = serde_json::from_str(m.stdout.trim())?;
        anyhow::ensure!(job["status"] == "SUCCEEDED", "cog_conversion: {job}");
        println!(
            "tessera cog_conversion run {i}: {:.2} s, peak RSS {} MiB",
            m.wall.as_secs_f64(),
            m.peak_rss_kib / 1024
        );
        ours.push(m);

        let out = dir.join(format!("gdal_translate{i}.tif"));
        let _ = std::fs::remove_file(&out);
        let m = measure(
            Command::new("gdal_translate")
                .args([
                    "-q",
                    "-of",
                    "COG",
                    "-co",
                    "COMPRESS=DEFLATE",
                    "-co",
                    "NUM_THREADS=ALL_CPUS",
                ])
                .arg(&input)
                .arg(&out),
        )?;
        println!(
            "gdal_translate -of COG run {i}: {:.2} s, peak RSS {} MiB",
            m.wall.as_secs_f64(),
            m.peak_rss_kib / 1024
        );
        theirs.push(m);
    }
    let (t_wall, t_rss) = summarize(&ours);
    let (g_wall, g_rss) = summarize(&theirs);
    println!();
    println!("COG of an 8192 x 8192 3-band input (DEFLATE), median of {runs}:");
    println!(
        "  tessera run cog_conversion (convert + validate + store): {t_wall:.2} s, peak RSS {t_rss:.0} MiB"
    );
    println!(
        "  gdal_translate -of COG -co NUM_THREADS=ALL_CPUS:          {g_wall:.2} s, peak RSS {g_rss:.0} MiB"
    );
    println!(
        "  ratio {:.2}x of gdal_translate's time (target <= 1.2x)",
        t_wall / g_wall
    );
    Ok(())
}
