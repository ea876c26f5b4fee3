//! Start and stop Azurite (the storage emulator from npm) for tests and benchmarks: free
//! loopback ports, in-memory or `--location` persistence, stopped when dropped.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azure_core::auth::Secret;
use azure_storage::ConnectionString;
use azure_storage::shared_access_signature::SasToken;
use azure_storage::shared_access_signature::account_sas::{
    AccountSasPermissions, AccountSasResource, AccountSasResourceType, AccountSharedAccessSignature,
};
use engine_azure::azurite_connection_string;

/// The connection string of an account SAS on the Azurite at `connection` that may only read
/// and list tables: creating a table (what connecting does first) is refused with 403, like
/// a role or SAS without write permission on a real account.
pub fn read_only_sas_connection_string(connection: &str) -> String {
    let cs = ConnectionString::new(connection).expect("an Azurite connection string");
    let part = |value: Option<&str>, name: &str| {
        value
            .unwrap_or_else(|| panic!("the Azurite connection string has no {name}"))
            .to_owned()
    };
    let sas = AccountSharedAccessSignature::new(
        part(cs.account_name, "AccountName"),
        Secret::new(part(cs.account_key, "AccountKey")),
        AccountSasResource::Table,
        AccountSasResourceType::Container,
        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        AccountSasPermissions {
            read: true,
            list: true,
            ..AccountSasPermissions::default()
        },
    )
    .token()
    .expect("signing a SAS with the well-known key");
    format!(
        "BlobEndpoint={};QueueEndpoint={};TableEndpoint={};SharedAccessSignature={sas}",
        part(cs.blob_endpoint, "BlobEndpoint"),
        part(cs.queue_endpoint, "QueueEndpoint"),
        part(cs.table_endpoint, "TableEndpoint")
    )
}

/// A running Azurite; killed on drop.
pub struct Azurite {
    bin: PathBuf,
    location: Option<PathBuf>,
    ports: [u16; 3],
    child: Option<Child>,
}

/// Azurite could not be started.
#[derive(Debug, thiserror::Error)]
pub enum AzuriteError {
    #[error("starting {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error("Azurite did not listen on port {port} within {secs} s")]
    NotListening { port: u16, secs: u64 },
    #[error("no free port: {0}")]
    Port(std::io::Error),
}

fn free_port() -> Result<u16, AzuriteError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(AzuriteError::Port)?;
    Ok(listener.local_addr().map_err(AzuriteError::Port)?.port())
}

impl Azurite {
    /// Start `bin` (the `azurite` launcher) on three free ports; with `location`, data
    /// persists in that directory (for restart tests), else it lives in memory.
    pub fn start(bin: &Path, location: Option<&Path>) -> Result<Self, AzuriteError> {
        let ports = [free_port()?, free_port()?, free_port()?];
        let mut azurite = Azurite {
            bin: bin.to_owned(),
            location: location.map(Path::to_owned),
            ports,
            child: None,
        };
        azurite.spawn()?;
        Ok(azurite)
    }

    fn spawn(&mut self) -> Result<(), AzuriteError> {
        let [blob, queue, table] = self.ports;
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
        ])
        .args([
            "--blobHost",
            "127.0.0.1",
            "--queueHost",
            "127.0.0.1",
            "--tableHost",
            "127.0.0.1",
        ])
        .args(["--blobPort", &blob.to_string()])
        .args(["--queuePort", &queue.to_string()])
        .args(["--tablePort", &table.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        match &self.location {
            Some(dir) => {
                cmd.arg("--location").arg(dir);
            }
            None => {
                cmd.arg("--inMemoryPersistence");
            }
        }
        let child = cmd.spawn().map_err(|source| AzuriteError::Spawn {
            bin: self.bin.display().to_string(),
            source,
        })?;
        self.child = Some(child);
        let limit = Duration::from_secs(60);
        let deadline = Instant::now() + limit;
        for port in self.ports {
            while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
                if Instant::now() > deadline {
                    return Err(AzuriteError::NotListening {
                        port,
                        secs: limit.as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The connection string of this Azurite.
    pub fn connection_string(&self) -> String {
        let [blob, queue, table] = self.ports;
        azurite_connection_string("127.0.0.1", blob, queue, table)
    }

    /// Kill the process (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the process gracefully (SIGTERM, then SIGKILL after 10 s): with `--location`
    /// Azurite saves its state first, as a storage service keeps what it acknowledged.
    pub fn stop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill();
    }

    /// Start again on the same ports (and location).
    pub fn restart(&mut self) -> Result<(), AzuriteError> {
        self.stop();
        self.spawn()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.kill();
    }
}
