//! Shared helpers: the `tessera` binary, temp databases, polling.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The debug `tessera` binary, built once if needed (`cargo xtask test` builds it first);
/// `TESSERA_BIN` names another one (a copy, when the target directory is shared).
pub fn tessera_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("TESSERA_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "--quiet",
                "-p",
                "function-host",
                "--bin",
                "tessera",
            ])
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building tessera failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace().join("target"));
        target.join("debug/tessera")
    })
}

pub fn tessera(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(tessera_bin());
    cmd.args(args)
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .env_remove("TESSERA_DB");
    cmd
}

/// Run and return (exit code, stdout, stderr).
pub fn run(db: &Path, args: &[&str]) -> (i32, String, String) {
    output(tessera(db, args))
}

fn output(mut cmd: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("running tessera");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Run with `--json` and parse stdout.
pub fn run_json(db: &Path, args: &[&str]) -> (i32, Value) {
    json_output(tessera(db, &[args, &["--json"]].concat()))
}

fn json_output(cmd: Command) -> (i32, Value) {
    let (code, stdout, stderr) = output(cmd);
    let value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}; stderr: {stderr}"));
    (code, value)
}

/// Poll `f` until it returns `Some`, failing after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A GeoTIFF fixture of the repository (`tests/fixtures/geotiff/`).
pub fn fixture(name: &str) -> PathBuf {
    let path = workspace().join("tests/fixtures/geotiff").join(name);
    assert!(path.exists(), "fixture {} is missing", path.display());
    path
}

/// A data directory (for `--data-dir`) whose container `container` holds copies of
/// `fixtures`.
pub fn data_dir_with(container: &str, fixtures: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(container);
    std::fs::create_dir_all(&target).unwrap();
    for name in fixtures {
        std::fs::copy(fixture(name), target.join(name)).unwrap();
    }
    dir
}

/// Where a test's jobs live: a SQLite file, or a fresh prefix on an Azurite.
pub enum Store {
    Sqlite(PathBuf),
    Azure { connection: String, prefix: String },
}

/// The connection string of the Azurite that `cargo xtask test` started.
pub fn azurite_connection() -> String {
    std::env::var("TESSERA_AZURITE").expect(
        "TESSERA_AZURITE is not set: run the tests with `cargo xtask test` (it starts Azurite)",
    )
}

/// The `azurite` launcher, for tests that start their own (restart tests).
pub fn azurite_bin() -> PathBuf {
    std::env::var_os("TESSERA_AZURITE_BIN")
        .map(PathBuf::from)
        .expect("TESSERA_AZURITE_BIN is not set: run the tests with `cargo xtask test`")
}

impl Store {
    /// A fresh set of tables and queues on the Azurite at `connection`.
    pub fn azure(connection: String) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Store::Azure {
            connection,
            prefix: format!("it{}x{nanos:x}x{n}", std::process::id()),
        }
    }

    /// `tessera ARGS` on this store.
    pub fn tessera(&self, args: &[&str]) -> Command {
        match self {
            Store::Sqlite(db) => tessera(db, args),
            Store::Azure { connection, prefix } => {
                let mut cmd = Command::new(tessera_bin());
                cmd.args(args)
                    .env("RUST_LOG", "warn")
                    .env("TESSERA_BACKEND", "azure")
                    .env("AZURE_STORAGE_CONNECTION_STRING", connection)
                    .env("TESSERA_AZURE_PREFIX", prefix);
                cmd
            }
        }
    }

    pub fn run_json(&self, args: &[&str]) -> (i32, Value) {
        json_output(self.tessera(&[args, &["--json"]].concat()))
    }

    /// The Azure store's data containers (blobs GDAL reads are cached under `cache`),
    /// created on first write like the `tessera` processes do.
    pub async fn azure_blobs(&self, cache: &Path) -> services::Blobs {
        let Store::Azure { connection, prefix } = self else {
            panic!("azure_blobs on a SQLite store");
        };
        let credentials = engine_azure::Credentials::ConnectionString(connection.clone());
        let account = engine_azure::data_account(&credentials).expect("data account");
        let engine_azure::DataAuth::AccessKey(key) = account.auth else {
            panic!("Azurite uses an account key");
        };
        let config = engine_azure::AzureConfig::new(credentials).with_prefix(prefix.clone());
        let backend = engine_azure::AzureBackend::connect(&config)
            .await
            .expect("connecting to Azurite");
        struct Creator(std::sync::Arc<engine_azure::AzureBackend>);
        #[async_trait::async_trait]
        impl services::blob::CreateContainer for Creator {
            async fn create_container(&self, name: &str) -> Result<(), String> {
                self.0.create_container(name).await
            }
        }
        services::Blobs::azure(
            services::blob::AzureBlobAccount {
                account: account.account,
                endpoint: account.blob_endpoint,
                auth: services::blob::AzureBlobAuth::AccessKey(key),
            },
            cache,
            Some(std::sync::Arc::new(Creator(backend))),
        )
    }

    /// The engine's ports on this store, to inspect what the processes did.
    pub async fn backend(&self) -> engine::ports::Backend {
        match self {
            Store::Sqlite(db) => engine::ports::Backend::from_all(
                engine_sqlite::SqliteBackend::open(db, &engine_sqlite::SqliteConfig::default())
                    .expect("opening the database"),
            ),
            Store::Azure { connection, prefix } => {
                let config = engine_azure::AzureConfig::new(
                    engine_azure::Credentials::ConnectionString(connection.clone()),
                )
                .with_prefix(prefix.clone());
                engine_azure::AzureBackend::connect(&config)
                    .await
                    .expect("connecting to Azurite")
                    .backend()
            }
        }
    }
}

/// The address a `tessera serve` child prints first (`listening on http://...`); its stdout
/// must be piped.
pub fn listening_on(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned()
}
