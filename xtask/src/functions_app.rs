//! `cargo xtask functions-app --out DIR`: a deployable Azure Functions app folder: the files
//! of `infra/functions/` (host.json, one folder per function, local.settings.json.example)
//! and the Linux release `tessera` binary that host.json runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let out = match args {
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => bail!("usage: cargo xtask functions-app --out DIR"),
    };
    let bin = crate::build_tessera(root)?;
    assemble(&root.join("infra/functions"), &bin, &out)?;
    println!(
        "function app assembled in {} (binary {})",
        out.display(),
        bin.display()
    );
    Ok(())
}

/// Copy the function app's files from `source` and the `binary` (as `tessera`) into `out`.
pub fn assemble(source: &Path, binary: &Path, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for entry in
        std::fs::read_dir(source).with_context(|| format!("reading {}", source.display()))?
    {
        let path = entry?.path();
        let target = out.join(path.file_name().context("a file name")?);
        if path.is_dir() {
            let function = path.join("function.json");
            if !function.exists() {
                continue;
            }
            std::fs::create_dir_all(&target)?;
            std::fs::copy(&function, target.join("function.json"))
                .with_context(|| format!("copying {}", function.display()))?;
        } else {
            std::fs::copy(&path, &target).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    let executable = out.join("tessera");
    std::fs::copy(binary, &executable).with_context(|| format!("copying {}", binary.display()))?;
    Ok(())
}
