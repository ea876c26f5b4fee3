//! `cargo xtask`: the project's automation.
//!
//! - `cargo xtask demo`  build and run the showcase job on the embedded backend
//! - `cargo xtask test`  run every test (unit, conformance, property, integration)
//! - `cargo xtask functions-app --out DIR`  assemble the Azure Functions app (infra/functions + release binary)
//! - `cargo xtask bench engine|tiles|cog|azure|http|functions`  benchmarks against their peers (docs/performance.md)

mod bench;
mod bench_azure;
mod bench_dashboard;
mod bench_functions;
mod bench_geo;
mod bench_http;
mod functions_app;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&root),
        Some("test") => test(&root, &args[1..]),
        Some("bench") => bench::run(&root, &args[1..]),
        Some("functions-app") => functions_app::run(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <demo | test [cargo test args] | functions-app --out DIR | bench <engine [--quick] [--with-celery] | tiles [--quick] | cog [--quick] | azure [--quick] | http [--quick] | functions [--quick]>>"
            );
            bail!("unknown or missing command")
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Run a command, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Build the release binary and return its path; `TESSERA_BENCH_BIN` names another binary
/// to use instead (an A/B against an earlier build in the same run).
pub fn build_tessera(root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("TESSERA_BENCH_BIN") {
        return Ok(PathBuf::from(bin));
    }
    ensure_npm()?;
    run(cargo().current_dir(root).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "function-host",
        "--bin",
        "tessera",
    ]))?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release/tessera"))
}

/// Debian packages the geospatial services and their tests need: GDAL's library and
/// headers (the `gdal` crate links it), its command-line tools and Python bindings
/// (`gdal2tiles.py` and the COG validator the golden tests compare against).
const GDAL_PACKAGES: &[&str] = &["libgdal-dev", "gdal-bin", "python3-gdal", "pkg-config"];

/// Install GDAL with apt-get when it is missing (the machine's one-time set-up).
pub fn ensure_gdal() -> anyhow::Result<()> {
    let present = |cmd: &mut Command| {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let have = present(Command::new("pkg-config").args(["--exists", "gdal"]))
        && present(Command::new("gdal2tiles.py").arg("--version"))
        && present(Command::new("/usr/bin/python3").args(["-c", "import osgeo.gdal"]));
    if have {
        return Ok(());
    }
    println!(
        "Installing GDAL ({}) with apt-get...",
        GDAL_PACKAGES.join(" ")
    );
    apt_install(GDAL_PACKAGES).context("installing GDAL (needs root or sudo)")
}

/// `apt-get update` then install `packages` (with sudo unless root).
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let sudo = !nix_is_root();
    let apt = |args: &[&str]| {
        let mut cmd = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt(&install)
}

/// The Python tools the tests run (tools no one here wrote), pinned, in a virtual environment
/// under target/py when missing: `openapi-spec-validator` and `schemathesis` against the
/// served `/openapi.json`; `checkov` over infra/ and `pycep-parser` (checkov's own Bicep
/// parser, pinned to the version checkov requires) for the deployment's parity test
/// (tests/it/infra.rs). Returns its `bin` directory.
pub fn ensure_python_tools(root: &Path) -> anyhow::Result<PathBuf> {
    const TOOLS: &[&str] = &[
        "openapi-spec-validator==0.9.0",
        "schemathesis==4.32.5",
        "checkov==3.3.30",
        "pycep-parser==0.5.1",
    ];
    let venv = root.join("target/py");
    let bin = venv.join("bin");
    let have = ["schemathesis", "openapi-spec-validator", "checkov"]
        .iter()
        .all(|tool| bin.join(tool).exists());
    if !have {
        println!(
            "Installing {} from PyPI into {}...",
            TOOLS.join(" "),
            venv.display()
        );
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("creating a Python virtual environment (python3 -m venv)")?;
        run(Command::new(bin.join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(TOOLS))
        .context("installing the test tools from PyPI")?;
    }
    Ok(bin)
}

/// Azurite (the Azure Storage emulator) from npm, installed under target/azurite when
/// missing (Node.js and npm from apt-get when those are missing too).
pub fn ensure_azurite(root: &Path) -> anyhow::Result<PathBuf> {
    let prefix = root.join("target/azurite");
    let bin = prefix.join("node_modules/.bin/azurite");
    if bin.exists() {
        return Ok(bin);
    }
    ensure_npm()?;
    println!("Installing Azurite from npm into {}...", prefix.display());
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&prefix)
        .arg("azurite@3"))
    .context("installing Azurite with npm")?;
    Ok(bin)
}

/// Node.js and npm from apt-get when missing: the build installs the dashboard's browser
/// dependencies from npm (web/build.rs), and the tests run Azurite.
pub fn ensure_npm() -> anyhow::Result<()> {
    let have_npm = Command::new("npm")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_npm {
        println!("Installing Node.js and npm with apt-get...");
        apt_install(&["nodejs", "npm"]).context("installing npm (needs root or sudo)")?;
    }
    Ok(())
}

/// Headless Chromium and its WebDriver from apt-get when missing (the dashboard's browser
/// tests); returns the chromedriver to start.
pub fn ensure_chromium() -> anyhow::Result<PathBuf> {
    let driver = PathBuf::from("/usr/bin/chromedriver");
    if !(driver.exists() && Path::new("/usr/bin/chromium").exists()) {
        println!("Installing Chromium and chromedriver with apt-get (dashboard tests)...");
        apt_install(&["chromium", "chromium-driver"])
            .context("installing Chromium (needs root or sudo)")?;
    }
    Ok(driver)
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn demo(root: &Path) -> anyhow::Result<()> {
    ensure_gdal()?;
    let tessera = build_tessera(root)?;
    let dir = root.join("target/demo");
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("samples"))?;
    std::fs::copy(
        root.join("tests/fixtures/geotiff/RGB.byte.tif"),
        data.join("samples/RGB.byte.tif"),
    )
    .context("copying the sample raster")?;
    let db = dir.join("tessera.db");
    println!(
        "Running the showcase job: tiled_raster of samples/RGB.byte.tif (Landsat, UTM 18N), \
         zooms 7-13, on the embedded backend ({})",
        db.display()
    );
    let params = r#"{"container": "samples", "blob": "RGB.byte.tif", "output_container": "tiles", "min_zoom": 7, "max_zoom": 13}"#;
    // A second run returns the stored job at once: the same request is the same job.
    let status = Command::new(&tessera)
        .args(["run", "tiled_raster", "--params", params, "--db"])
        .arg(&db)
        .arg("--data-dir")
        .arg(&data)
        .status()
        .context("running tessera")?;
    if !status.success() {
        bail!("the showcase job did not succeed ({status})");
    }
    let out = data.join("tiles/RGB.byte");
    println!();
    println!("Outputs in {}:", out.display());
    println!(
        "  tiles       {}/{{z}}/{{x}}/{{y}}.png ({} tiles)",
        out.display(),
        count_files(&out, "png")?
    );
    println!("  TileJSON    {}", out.join("tilejson.json").display());
    println!("  COG         {}", out.join("RGB.byte.cog.tif").display());
    println!("  STAC item   {}", out.join("RGB.byte.stac.json").display());
    println!("  map page    file://{}", out.join("index.html").display());
    println!();
    println!("Try next:");
    println!("  {} jobs --db {}", tessera.display(), db.display());
    println!(
        "  {} events <job id> --db {}",
        tessera.display(),
        db.display()
    );
    println!(
        "  {} run hello_world --params '{{\"n\": 10, \"fail_every\": 3}}' --db {}",
        tessera.display(),
        db.display()
    );
    println!("  {} --help", tessera.display());
    Ok(())
}

/// Files under `dir` (recursively) whose extension is `ext`.
fn count_files(dir: &Path, ext: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            n += count_files(&path, ext)?;
        } else if path.extension().is_some_and(|e| e == ext) {
            n += 1;
        }
    }
    Ok(n)
}

fn test(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    ensure_gdal()?;
    ensure_npm()?;
    let chromedriver = ensure_chromium()?;
    // Screenshots of failed browser tests land here (kept with the CI log).
    let artifacts = root.join("target/test-artifacts");
    // Integration tests start the binary: build it first (they find it under target/debug).
    run(cargo()
        .current_dir(root)
        .args(["build", "-p", "function-host", "--bin", "tessera"]))?;
    // The Azure backend's tests run against Azurite: one for the run (each test uses its own
    // table and queue prefix), and the launcher for tests that start their own.
    let azurite_bin = ensure_azurite(root)?;
    let python_tools = ensure_python_tools(root)?;
    let azurite =
        test_support::azurite::Azurite::start(&azurite_bin, None).context("starting Azurite")?;
    let test = |args: &[&str]| {
        let mut cmd = cargo();
        cmd.current_dir(root)
            .arg("test")
            .args(args)
            .env("TESSERA_AZURITE", azurite.connection_string())
            .env("TESSERA_AZURITE_BIN", &azurite_bin)
            .env("TESSERA_PY_BIN", &python_tools)
            .env("TESSERA_CHROMEDRIVER", &chromedriver)
            .env("TESSERA_ARTIFACTS", &artifacts);
        cmd
    };
    let result = if extra.is_empty() {
        // The chaos tests (many worker processes killed again and again) load both cores for
        // a minute each: they run after the rest, one at a time, so that the tests with a
        // time bound (a bad configuration fails within 30 s) do not share the machine with them.
        run(&mut test(&[
            "--workspace",
            "--all-features",
            "--",
            "--skip",
            "chaos::",
        ]))
        .and_then(|()| {
            run(&mut test(&[
                "-p",
                "tessera-tests",
                "--test",
                "it",
                "--",
                "chaos::",
                "--test-threads",
                "1",
            ]))
        })
    } else {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        run(&mut test(
            &[&["--workspace", "--all-features"][..], &extra].concat(),
        ))
    };
    drop(azurite);
    if result.is_err() && artifacts.exists() {
        println!(
            "Screenshots of the failed browser tests: {}",
            artifacts.display()
        );
    }
    result
}
