//! Tessera's Azure backend: the engine's ports on Azure Storage.
//!
//! - Jobs, tasks and events in **Table Storage**, every transition a compare-and-set on the
//!   entity's ETag (412 is the engine's expected [`Conflict`](engine::ports::Conflict)).
//! - Task messages (IDs only) on a **Storage Queue**: lease = visibility timeout, poison
//!   messages moved to the dead-letter queue (`<queue>-poison` unless configured).
//! - Results above the table property limit in **Blob** storage, a pointer in the entity.
//!
//! Key design (see docs/azure.md): a job's tasks are spread over 16 partitions by the first
//! hex digit of the task ID, so a job of 100 000+ tasks never funnels its traffic through one
//! partition; tasks are inserted in entity-group transactions of up to 100 per partition.
//!
//! No `azure_*` type appears in this crate's public API: a later SDK migration touches this
//! crate only.

mod blob;
mod codec;
mod config;
mod events;
mod identity;
mod ops;
mod queue;
mod store;
mod tables;

use std::sync::Arc;

use azure_core::{ClientOptions, ExponentialRetryOptions, RetryOptions, TransportOptions};
use azure_data_tables::clients::TableServiceClientBuilder;
use azure_data_tables::prelude::TableClient;
use azure_storage_blobs::prelude::{BlobServiceClient, ClientBuilder as BlobClientBuilder};
use azure_storage_queues::QueueServiceClientBuilder;
use azure_storage_queues::prelude::QueueClient;
use engine::ports::Backend;
use tracing::info;

pub use config::{
    AzureConfig, ConfigError, Credentials, DataAccount, DataAuth, azurite_connection_string,
    data_account,
};
pub use identity::{BearerToken, EntraCredential, IdentityError, STORAGE_SCOPE, is_client_id};
pub use ops::{OpCounts, Ops};

/// Connecting failed: the error names the endpoint and why.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{endpoint}: {message}")]
    Service { endpoint: String, message: String },
}

/// The Azure backend: clients for the tables, queues and results container.
pub struct AzureBackend {
    pub(crate) jobs: TableClient,
    pub(crate) job_index: TableClient,
    /// Tasks, with their progress, dependents and events in their partitions.
    pub(crate) tasks: TableClient,
    pub(crate) queue: QueueClient,
    pub(crate) poison: QueueClient,
    pub(crate) blobs: blob::Results,
    pub(crate) blob_service: BlobServiceClient,
    pub(crate) ops: Arc<Ops>,
    pub(crate) sequencer: events::Sequencer,
}

impl AzureBackend {
    /// Connect and create the tables, queues and container that are missing. Fails within
    /// about `connect_timeout + max_retry_time` when the account cannot be reached.
    pub async fn connect(config: &AzureConfig) -> Result<Arc<Self>, ConnectError> {
        config::check_prefix(&config.prefix)?;
        let endpoints = config::endpoints(&config.credentials)?;
        let options = client_options(config);
        let tables = TableServiceClientBuilder::with_location(
            endpoints.location(&endpoints.table),
            endpoints.credentials.clone(),
        )
        .client_options(options.clone())
        .build();
        let queues = QueueServiceClientBuilder::with_location(
            endpoints.location(&endpoints.queue),
            endpoints.credentials.clone(),
        )
        .client_options(options.clone())
        .build();
        let blobs: BlobServiceClient = BlobClientBuilder::with_location(
            endpoints.location(&endpoints.blob),
            endpoints.credentials.clone(),
        )
        .client_options(options)
        .blob_service_client();

        let p = &config.prefix;
        let ops = Arc::new(Ops::default());
        let backend = AzureBackend {
            jobs: tables.table_client(format!("{p}jobs")),
            job_index: tables.table_client(format!("{p}jobindex")),
            tasks: tables.table_client(format!("{p}tasks")),
            sequencer: events::Sequencer::default(),
            queue: queues.queue_client(format!("{p}-tasks")),
            poison: queues.queue_client(config.dead_letter_queue()),
            blobs: blob::Results::new(blobs.container_client(format!("{p}-results"))),
            blob_service: blobs,
            ops,
        };
        let service = |endpoint: &str| {
            let endpoint = endpoint.to_owned();
            move |e: azure_core::Error| ConnectError::Service {
                endpoint: endpoint.clone(),
                message: describe(&e),
            }
        };
        for table in [&backend.jobs, &backend.job_index, &backend.tasks] {
            tables::create_if_missing(table)
                .await
                .map_err(service(&endpoints.table))?;
        }
        for queue in [&backend.queue, &backend.poison] {
            queue::create_if_missing(queue)
                .await
                .map_err(service(&endpoints.queue))?;
        }
        backend
            .blobs
            .create_if_missing()
            .await
            .map_err(service(&endpoints.blob))?;
        info!(account = %endpoints.account, prefix = %p, "azure backend ready");
        Ok(Arc::new(backend))
    }

    /// The engine's view of this backend.
    pub fn backend(self: &Arc<Self>) -> Backend {
        Backend::from_all(self.clone())
    }

    /// Create a Blob container if it does not exist (for the geospatial data store, whose
    /// client reads and writes blobs but does not manage containers).
    pub async fn create_container(&self, name: &str) -> Result<(), String> {
        self.ops.count(ops::Op::Blob);
        blob::create_if_missing(&self.blob_service.container_client(name))
            .await
            .map_err(|e| describe(&e))
    }

    /// Storage operations made so far (requests to the services).
    pub fn ops(&self) -> OpCounts {
        self.ops.snapshot()
    }
}

fn client_options(config: &AzureConfig) -> ClientOptions {
    let http = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_default();
    ClientOptions::new(TransportOptions::new(Arc::new(http))).retry(RetryOptions::exponential(
        ExponentialRetryOptions::default()
            .max_retries(config.max_retries)
            .max_total_elapsed(config.max_retry_time)
            .initial_delay(std::time::Duration::from_millis(200))
            .max_delay(std::time::Duration::from_secs(2)),
    ))
}

/// An Azure SDK error as one line, as this crate words its own (for the tools beside it that
/// call the SDK themselves: `test-support`); any other error as its chain of causes. The
/// signature names no SDK type.
pub fn describe_error(e: &(dyn std::error::Error + 'static)) -> String {
    match e.downcast_ref::<azure_core::Error>() {
        Some(e) => describe(e),
        None => with_causes(e),
    }
}

/// An error and its causes, `: `-separated.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// An Azure error as one line: HTTP status and the service's error code, or the transport
/// failure with its causes.
pub(crate) fn describe(e: &azure_core::Error) -> String {
    use azure_core::error::ErrorKind;
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            let code = error_code.as_deref().unwrap_or("no error code");
            let hint = match u16::from(*status) {
                401 | 403 => " (check the account key, SAS token or role assignment)",
                _ => "",
            };
            format!("HTTP {} {code}{hint}", u16::from(*status))
        }
        _ => with_causes(e),
    }
}

/// The HTTP status of a failed request, if the service answered.
pub(crate) fn status_of(e: &azure_core::Error) -> Option<u16> {
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    }
}
