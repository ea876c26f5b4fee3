//! Where the storage account is and how to authenticate: a connection string (shared key, SAS,
//! `UseDevelopmentStorage=true`) or account URLs with Entra ID (managed identity).

use std::time::Duration;

use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};

use crate::identity::EntraCredential;

/// Azurite's well-known account.
pub(crate) const DEV_ACCOUNT: &str = "devstoreaccount1";
pub(crate) const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How to reach the storage account.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// `DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...` or `SharedAccessSignature=...`,
    /// or `UseDevelopmentStorage=true`.
    ConnectionString(String),
    /// Entra ID for `account`, on the public cloud's endpoints: the identity the platform
    /// provides ([`EntraCredential`]: environment, App Service or VM managed identity, Azure
    /// CLI). `client_id` selects a user-assigned managed identity (else `AZURE_CLIENT_ID`,
    /// else the system-assigned one).
    EntraId {
        account: String,
        client_id: Option<String>,
    },
}

/// The backend's settings.
#[derive(Clone, Debug)]
pub struct AzureConfig {
    pub credentials: Credentials,
    /// Prefix of every table, queue and container name: lowercase letters and digits,
    /// starting with a letter (Table Storage allows nothing else).
    pub prefix: String,
    /// Each HTTP request gives up after this long.
    pub request_timeout: Duration,
    /// Connecting gives up after this long.
    pub connect_timeout: Duration,
    /// Transient failures (timeouts, 5xx, 429) are retried at most this many times.
    pub max_retries: u32,
    /// ... and for at most this long in total.
    pub max_retry_time: Duration,
    /// The dead-letter queue (poison messages); `None`: `<prefix>-tasks-poison`. Under the
    /// Azure Functions host that name is the host's own poison queue, so the Functions
    /// handler sets another one (`<prefix>-tasks-dead`).
    pub dead_letter_queue: Option<String>,
}

impl AzureConfig {
    pub fn new(credentials: Credentials) -> Self {
        AzureConfig {
            credentials,
            prefix: "tessera".into(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            max_retry_time: Duration::from_secs(10),
            dead_letter_queue: None,
        }
    }

    /// The name of the dead-letter queue.
    pub fn dead_letter_queue(&self) -> String {
        self.dead_letter_queue
            .clone()
            .unwrap_or_else(|| format!("{}-tasks-poison", self.prefix))
    }

    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("connection string: {0}")]
    ConnectionString(String),
    #[error(
        "prefix {0:?}: use 1 to 40 lowercase letters and digits, starting with a letter \
         (table and queue names allow nothing else)"
    )]
    Prefix(String),
    #[error("Entra ID credential: {0}")]
    Identity(String),
}

/// The account's Blob endpoint and credentials as plain strings, for the geospatial data store
/// (`object_store`) to use the same account as the backend.
#[derive(Clone, Debug)]
pub struct DataAccount {
    pub account: String,
    pub blob_endpoint: String,
    pub auth: DataAuth,
}

#[derive(Clone)]
pub enum DataAuth {
    AccessKey(String),
    Sas(String),
    /// Entra ID: the same credential chain as the backend's.
    EntraId(EntraCredential),
}

impl std::fmt::Debug for DataAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataAuth::AccessKey(_) => "AccessKey(..)",
            DataAuth::Sas(_) => "Sas(..)",
            DataAuth::EntraId(_) => "EntraId(..)",
        })
    }
}

/// Where the data account is and how to authenticate to it.
pub fn data_account(credentials: &Credentials) -> Result<DataAccount, ConfigError> {
    let endpoints = endpoints_of(credentials)?;
    let auth = match credentials {
        Credentials::EntraId { client_id, .. } => {
            DataAuth::EntraId(EntraCredential::from_env(client_id.as_deref())?)
        }
        Credentials::ConnectionString(s) => {
            let cs = ConnectionString::new(s)
                .map_err(|e| ConfigError::ConnectionString(e.to_string()))?;
            match (cs.use_development_storage, cs.account_key, cs.sas) {
                (Some(true), _, _) => DataAuth::AccessKey(DEV_KEY.to_owned()),
                (_, Some(key), _) => DataAuth::AccessKey(key.to_owned()),
                (_, None, Some(sas)) => DataAuth::Sas(sas.to_owned()),
                _ => {
                    return Err(ConfigError::ConnectionString(
                        "neither AccountKey nor SharedAccessSignature is set".into(),
                    ));
                }
            }
        }
    };
    Ok(DataAccount {
        account: endpoints.0,
        blob_endpoint: endpoints.1,
        auth,
    })
}

/// Account name and Blob endpoint, without building credentials.
fn endpoints_of(credentials: &Credentials) -> Result<(String, String), ConfigError> {
    match credentials {
        Credentials::EntraId { account, .. } => Ok((
            account.clone(),
            format!("https://{account}.blob.core.windows.net"),
        )),
        Credentials::ConnectionString(s) => {
            let e = from_connection_string(s)?;
            Ok((e.account, e.blob))
        }
    }
}

/// The three service endpoints and the credentials to use on them.
pub(crate) struct Endpoints {
    pub account: String,
    pub blob: String,
    pub queue: String,
    pub table: String,
    pub credentials: StorageCredentials,
}

impl Endpoints {
    pub fn location(&self, uri: &str) -> CloudLocation {
        CloudLocation::Custom {
            account: self.account.clone(),
            uri: uri.trim_end_matches('/').to_owned(),
        }
    }
}

pub(crate) fn check_prefix(prefix: &str) -> Result<(), ConfigError> {
    let ok = (1..=40).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Prefix(prefix.to_owned()))
    }
}

pub(crate) fn endpoints(credentials: &Credentials) -> Result<Endpoints, ConfigError> {
    match credentials {
        Credentials::ConnectionString(s) => from_connection_string(s),
        Credentials::EntraId { account, client_id } => {
            let credential = EntraCredential::from_env(client_id.as_deref())?;
            tracing::debug!(%account, sources = credential.describe(), "Entra ID");
            let url = |service: &str| format!("https://{account}.{service}.core.windows.net");
            Ok(Endpoints {
                account: account.clone(),
                blob: url("blob"),
                queue: url("queue"),
                table: url("table"),
                credentials: StorageCredentials::token_credential(credential.token_credential()),
            })
        }
    }
}

pub(crate) fn from_connection_string(s: &str) -> Result<Endpoints, ConfigError> {
    let bad = |m: &str| ConfigError::ConnectionString(m.to_owned());
    let cs = ConnectionString::new(s).map_err(|e| ConfigError::ConnectionString(e.to_string()))?;
    if cs.use_development_storage == Some(true) {
        let host = cs
            .development_storage_proxy_uri
            .unwrap_or("http://127.0.0.1")
            .trim_end_matches('/');
        let url = |port: u16| format!("{host}:{port}/{DEV_ACCOUNT}");
        return Ok(Endpoints {
            account: DEV_ACCOUNT.into(),
            blob: url(10000),
            queue: url(10001),
            table: url(10002),
            credentials: StorageCredentials::access_key(DEV_ACCOUNT, DEV_KEY.to_owned()),
        });
    }
    let credentials = cs
        .storage_credentials()
        .map_err(|e| ConfigError::ConnectionString(e.to_string()))?;
    let account = match (cs.account_name, cs.blob_endpoint.or(cs.queue_endpoint)) {
        (Some(a), _) => a.to_owned(),
        (None, Some(endpoint)) => account_from_url(endpoint)
            .ok_or_else(|| bad("AccountName is missing and no endpoint names the account"))?,
        (None, None) => return Err(bad("AccountName (or explicit endpoints) is missing")),
    };
    let protocol = match cs.default_endpoints_protocol {
        Some(azure_storage::EndpointProtocol::Http) => "http",
        _ => "https",
    };
    let suffix = cs.endpoint_suffix.unwrap_or("core.windows.net");
    let default = |service: &str| format!("{protocol}://{account}.{service}.{suffix}");
    Ok(Endpoints {
        blob: cs
            .blob_endpoint
            .map_or_else(|| default("blob"), str::to_owned),
        queue: cs
            .queue_endpoint
            .map_or_else(|| default("queue"), str::to_owned),
        table: cs
            .table_endpoint
            .map_or_else(|| default("table"), str::to_owned),
        account,
        credentials,
    })
}

/// `https://acct.blob.core.windows.net` -> `acct`; `http://127.0.0.1:10000/acct` -> `acct`.
fn account_from_url(url: &str) -> Option<String> {
    let rest = url.split("://").nth(1)?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/');
    if !path.is_empty() {
        return Some(path.split('/').next()?.to_owned());
    }
    host.split('.').next().map(str::to_owned)
}

/// The connection string of an Azurite started on these ports.
pub fn azurite_connection_string(host: &str, blob: u16, queue: u16, table: u16) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};\
         BlobEndpoint=http://{host}:{blob}/{DEV_ACCOUNT};\
         QueueEndpoint=http://{host}:{queue}/{DEV_ACCOUNT};\
         TableEndpoint=http://{host}:{table}/{DEV_ACCOUNT};"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings() {
        let e = from_connection_string(&azurite_connection_string("127.0.0.1", 1, 2, 3)).unwrap();
        assert_eq!(
            (e.account.as_str(), e.queue.as_str(), e.table.as_str()),
            (
                "devstoreaccount1",
                "http://127.0.0.1:2/devstoreaccount1",
                "http://127.0.0.1:3/devstoreaccount1"
            )
        );
        let e = from_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(e.table, "http://127.0.0.1:10002/devstoreaccount1");
        let e = from_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        )
        .unwrap();
        assert_eq!(e.queue, "https://acct.queue.core.windows.net");
        assert!(from_connection_string("nonsense").is_err());
    }

    #[test]
    fn data_accounts() {
        let azurite = Credentials::ConnectionString(azurite_connection_string("h", 1, 2, 3));
        let d = data_account(&azurite).unwrap();
        assert_eq!(
            (d.account.as_str(), d.blob_endpoint.as_str()),
            ("devstoreaccount1", "http://h:1/devstoreaccount1")
        );
        assert!(matches!(d.auth, DataAuth::AccessKey(k) if k == DEV_KEY));
        let sas = Credentials::ConnectionString(
            "BlobEndpoint=https://acct.blob.core.windows.net;SharedAccessSignature=sv=1&sig=x"
                .into(),
        );
        let d = data_account(&sas).unwrap();
        assert_eq!(d.account, "acct");
        assert!(matches!(d.auth, DataAuth::Sas(s) if s == "sv=1&sig=x"));
        let entra = Credentials::EntraId {
            account: "acct".into(),
            client_id: None,
        };
        let d = data_account(&entra).unwrap();
        assert_eq!(d.blob_endpoint, "https://acct.blob.core.windows.net");
        assert!(matches!(d.auth, DataAuth::EntraId(_)));
        let bad = Credentials::EntraId {
            account: "acct".into(),
            client_id: Some("nope".into()),
        };
        let e = data_account(&bad).unwrap_err().to_string();
        assert!(e.contains("\"nope\" is not a GUID"), "{e}");
    }

    #[test]
    fn prefixes() {
        assert!(check_prefix("tessera").is_ok());
        assert!(check_prefix("t1").is_ok());
        for bad in ["", "1abc", "Tessera", "tess-era", "tess_era"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }
}
