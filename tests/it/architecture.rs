//! The architecture's invariants (docs/ARCHITECTURE.md), checked on the workspace as it is:
//! which crate may depend on which, and which names may appear in whose source. A change
//! that breaks one fails here, with the rule it broke.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The crates that ship in the `tessera` binary.
const PRODUCTION: &[&str] = &[
    "engine",
    "cog-validate",
    "engine-sqlite",
    "engine-azure",
    "controllers",
    "services",
    "web",
    "function-host",
];

/// Each production crate's allowed workspace dependencies (normal and build), one way down.
const LAYERS: &[(&str, &[&str])] = &[
    ("engine", &[]),
    ("cog-validate", &[]),
    ("engine-sqlite", &["engine"]),
    ("engine-azure", &["engine"]),
    ("services", &["engine", "cog-validate"]),
    ("controllers", &["engine", "services"]),
    ("web", &[]),
    (
        "function-host",
        &[
            "engine",
            "engine-sqlite",
            "engine-azure",
            "services",
            "cog-validate",
            "controllers",
            "web",
        ],
    ),
];

/// External crates only one production crate may use (the others name them nowhere).
const OWNED: &[(&str, &str)] = &[
    ("rusqlite", "engine-sqlite"),
    ("azure_core", "engine-azure"),
    ("azure_data_tables", "engine-azure"),
    ("azure_identity", "engine-azure"),
    ("azure_storage", "engine-azure"),
    ("azure_storage_blobs", "engine-azure"),
    ("azure_storage_queues", "engine-azure"),
    ("axum", "function-host"),
    ("hyper", "function-host"),
    ("hyper-util", "function-host"),
    ("tower", "function-host"),
    ("tower-http", "function-host"),
    ("clap", "function-host"),
    ("anyhow", "function-host"),
];

struct Package {
    name: String,
    dir: PathBuf,
    /// (dependency, kind: "normal" | "dev" | "build").
    deps: BTreeSet<(String, String)>,
}

fn packages() -> BTreeMap<String, Package> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_owned();
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["name"].as_str().unwrap().to_owned(),
                        d["kind"].as_str().unwrap_or("normal").to_owned(),
                    )
                })
                .collect();
            let dir = manifest.parent().unwrap().to_path_buf();
            (name.clone(), Package { name, dir, deps })
        })
        .collect()
}

fn shipped_deps(p: &Package) -> impl Iterator<Item = &str> {
    p.deps
        .iter()
        .filter(|(_, kind)| kind != "dev")
        .map(|(name, _)| name.as_str())
}

#[test]
fn crates_depend_one_way_down() {
    let packages = packages();
    let workspace: BTreeSet<&str> = packages.keys().map(String::as_str).collect();
    for name in PRODUCTION {
        assert!(
            packages.contains_key(*name),
            "no crate {name} in the workspace"
        );
    }
    let mut broken = Vec::new();
    for (name, allowed) in LAYERS {
        let p = &packages[*name];
        for dep in shipped_deps(p).filter(|d| workspace.contains(d)) {
            if !allowed.contains(&dep) {
                broken.push(format!("{name} depends on {dep}"));
            }
        }
    }
    // Nothing that ships depends on the tests or the automation.
    for p in packages.values() {
        for dep in shipped_deps(p) {
            if PRODUCTION.contains(&p.name.as_str()) && ["tessera-tests", "xtask"].contains(&dep) {
                broken.push(format!("{} depends on {dep}", p.name));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken: {broken:#?}");
}

#[test]
fn storage_cloud_and_http_crates_stay_with_their_owner() {
    let packages = packages();
    let mut broken = Vec::new();
    for name in PRODUCTION {
        let p = &packages[*name];
        for dep in shipped_deps(p) {
            if let Some((_, owner)) = OWNED.iter().find(|(d, owner)| *d == dep && owner != name) {
                broken.push(format!("{name} depends on {dep} (only {owner} may)"));
            }
        }
    }
    // The COG validator reads files itself: no GDAL under it.
    for dep in shipped_deps(&packages["cog-validate"]) {
        if dep.starts_with("gdal") {
            broken.push(format!("cog-validate depends on {dep}"));
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// Source lines of `dir/src` that are not comments.
fn code_lines(dir: &Path) -> Vec<(PathBuf, usize, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("src")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    if !code.starts_with("//") {
                        out.push((path.clone(), n + 1, code.to_owned()));
                    }
                }
            }
        }
    }
    out
}

/// Whether `code` names a path of crate `word` (`word::`, `use word`); a `word` ending in `_`
/// is a prefix (`azure_` matches `azure_core::`).
fn names(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        // Part of a longer name, or a module inside a path (`crate::gdal::`).
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            return false;
        }
        let rest = &code[at + word.len()..];
        let ident_end = if word.ends_with('_') {
            rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
        } else {
            0
        };
        rest[ident_end..].starts_with("::") || code[..at].trim_end().ends_with("use")
    })
}

#[test]
fn names_finds_crate_paths_only() {
    assert!(names("use rusqlite::Connection;", "rusqlite"));
    assert!(names("let x = azure_core::Url::parse(s);", "azure_"));
    assert!(names("use azure_data_tables::prelude::*;", "azure_"));
    assert!(!names("let azure_prefix = 1;", "azure_"));
    assert!(!names("fn my_hyper() {}", "hyper"));
    assert!(!names("let s = \"hyperlink\";", "hyper"));
    assert!(!names("use crate::gdal::internal_mask_flags;", "gdal"));
}

#[test]
fn the_engine_names_no_storage_cloud_or_http_and_only_backends_name_their_sdk() {
    let packages = packages();
    // (crate, names its code must not use).
    let rules: &[(&str, &[&str])] = &[
        (
            "engine",
            &[
                "rusqlite",
                "azure_",
                "axum",
                "hyper",
                "reqwest",
                "tower_http",
            ],
        ),
        ("engine-sqlite", &["azure_", "axum", "hyper"]),
        ("engine-azure", &["rusqlite", "axum"]),
        ("controllers", &["rusqlite", "azure_", "axum", "hyper"]),
        ("services", &["rusqlite", "azure_", "axum", "hyper"]),
        (
            "cog-validate",
            &["gdal", "rusqlite", "azure_", "axum", "hyper"],
        ),
    ];
    let mut broken = Vec::new();
    for (name, forbidden) in rules {
        for (path, n, code) in code_lines(&packages[*name].dir) {
            for word in *forbidden {
                if names(&code, word) {
                    broken.push(format!(
                        "{}:{n}: {name} names {word}: {code}",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}
