//! `cargo xtask`: the project's automation.
//!
//! - `cargo xtask demo`  build and run the showcase job on the embedded backend
//! - `cargo xtask test`  run every test (unit, conformance, property, integration)
//! - `cargo xtask bench engine`  the engine benchmarks (docs/performance.md)

mod bench;

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
        _ => {
            eprintln!(
                "usage: cargo xtask <demo | test [cargo test args] | bench engine [--quick]>"
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

/// Build the release binary and return its path.
pub fn build_tessera(root: &Path) -> anyhow::Result<PathBuf> {
    run(cargo().current_dir(root).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "function-host",
        "--bin",
        "tessera",
    ]))?;
    Ok(root.join("target/release/tessera"))
}

fn demo(root: &Path) -> anyhow::Result<()> {
    let tessera = build_tessera(root)?;
    let dir = root.join("target/demo");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("tessera.db");
    println!(
        "Running the showcase job (hello_world, 20 000 greetings) on the embedded backend ({})",
        db.display()
    );
    let params = r#"{"n": 20000, "message": "hello from tessera"}"#;
    // Ignore the exit code of a previous run: the same request returns the stored job.
    let status = Command::new(&tessera)
        .args(["run", "hello_world", "--params", params, "--db"])
        .arg(&db)
        .status()
        .context("running tessera")?;
    println!();
    println!("Try next:");
    println!("  {} jobs --db {}", tessera.display(), db.display());
    println!(
        "  {} run hello_world --params '{{\"n\": 10, \"fail_every\": 3}}' --db {}",
        tessera.display(),
        db.display()
    );
    println!("  {} --help", tessera.display());
    if !status.success() {
        bail!("the showcase job did not succeed ({status})");
    }
    Ok(())
}

fn test(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    // Integration tests start the binary: build it first (they find it under target/debug).
    run(cargo()
        .current_dir(root)
        .args(["build", "-p", "function-host", "--bin", "tessera"]))?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["test", "--workspace", "--all-features"])
        .args(extra);
    run(&mut cmd)
}
