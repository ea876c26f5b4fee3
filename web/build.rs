//! Installs the browser dependencies (package-lock.json) from the npm registry into OUT_DIR
//! at build time, so the binary embeds them and serves them with no network at run time.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("npm");
    for file in ["package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=TESSERA_NPM");
    // One file of each package the `web` crate embeds (src/lib.rs).
    let markers = [
        "leaflet/dist/leaflet.js",
        "topojson-client/dist/topojson-client.min.js",
        "world-atlas/countries-110m.json",
    ]
    .map(|m| out.join("node_modules").join(m));
    let lock = std::fs::read(here.join("package-lock.json")).expect("web/package-lock.json");
    let installed_lock = std::fs::read(out.join("package-lock.json")).ok();
    if markers.iter().all(|m| m.exists()) && installed_lock.as_deref() == Some(lock.as_slice()) {
        return;
    }
    std::fs::create_dir_all(&out).expect("creating OUT_DIR/npm");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(here.join(file), out.join(file)).expect("copying the npm manifest");
    }
    let npm = std::env::var("TESSERA_NPM").unwrap_or_else(|_| "npm".into());
    install(&npm, &out);
    for marker in &markers {
        assert!(
            marker.exists(),
            "npm ci ran but {} is missing",
            marker.display()
        );
    }
}

fn install(npm: &str, dir: &Path) {
    let status = Command::new(npm)
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .current_dir(dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`{npm} ci` for the dashboard's browser dependencies failed ({s}); it needs the npm \
             registry once (then its cache)"
        ),
        Err(e) => panic!(
            "cannot run `{npm}` to install the dashboard's browser dependencies ({e}): install \
             Node.js and npm (Debian: apt-get install npm), or set TESSERA_NPM"
        ),
    }
}
