//! The handler's settings, read the way the Functions host passes them: the app settings as
//! environment variables. Storage: `AzureWebJobsStorage` (a connection string), or the
//! identity-based `AzureWebJobsStorage__accountName` / `__queueServiceUri` /
//! `__tableServiceUri` / `__blobServiceUri` (managed identity), with `__clientId` naming the
//! user-assigned identity (the host's convention; without it, `AZURE_CLIENT_ID` or the
//! system-assigned identity). The project's own settings:
//! `TESSERA_AZURE_PREFIX`, `TESSERA_LEASE_SECS`, `TESSERA_DATA_STORE`, `TESSERA_DATA_DIR`.

use std::path::PathBuf;
use std::time::Duration;

use engine_azure::Credentials;

use super::catalog;
use crate::app::error::codes;
use crate::app::{AppConfig, AppError, DataConfig, StoreConfig};

/// What `tessera functions` runs with.
#[derive(Debug, Clone)]
pub struct FunctionsSettings {
    pub app: AppConfig,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`: where the host sends invocations.
    pub port: u16,
    pub prefix: String,
}

const STORAGE: &str = "AzureWebJobsStorage";

fn bad(setting: &str, why: impl std::fmt::Display) -> AppError {
    AppError::invalid(codes::BAD_CONFIG, format!("app setting {setting}: {why}"))
}

/// The storage account's credentials from the host's settings.
pub fn storage_credentials(get: &impl Fn(&str) -> Option<String>) -> Result<Credentials, AppError> {
    if let Some(s) = get(STORAGE).filter(|s| !s.trim().is_empty()) {
        return Ok(Credentials::ConnectionString(s));
    }
    let client_id_setting = format!("{STORAGE}__clientId");
    let client_id = match get(&client_id_setting).filter(|s| !s.trim().is_empty()) {
        Some(id) if engine_azure::is_client_id(id.trim()) => Some(id.trim().to_owned()),
        Some(id) => {
            return Err(bad(
                &client_id_setting,
                format!("{id:?} is not a client ID (the user-assigned identity's GUID)"),
            ));
        }
        None => None,
    };
    if let Some(account) = get(&format!("{STORAGE}__accountName")).filter(|s| !s.is_empty()) {
        return Ok(Credentials::EntraId { account, client_id });
    }
    for service in ["queue", "table", "blob"] {
        let setting = format!("{STORAGE}__{service}ServiceUri");
        if let Some(uri) = get(&setting).filter(|s| !s.is_empty()) {
            let account = account_of(&uri, service).ok_or_else(|| {
                bad(
                    &setting,
                    format!(
                        "{uri:?} is not https://<account>.{service}.core.windows.net (other clouds and custom endpoints: use a connection string in {STORAGE})"
                    ),
                )
            })?;
            return Ok(Credentials::EntraId { account, client_id });
        }
    }
    Err(bad(
        STORAGE,
        format!(
            "not set: set {STORAGE} (a connection string, or UseDevelopmentStorage=true) or {STORAGE}__accountName (managed identity)"
        ),
    ))
}

fn account_of(uri: &str, service: &str) -> Option<String> {
    let host = uri
        .strip_prefix("https://")?
        .trim_end_matches('/')
        .split('/')
        .next()?;
    let account = host.strip_suffix(&format!(".{service}.core.windows.net"))?;
    (!account.is_empty() && account.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| account.to_owned())
}

/// Every setting, from `get` (the environment in the binary; a table in tests).
pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<FunctionsSettings, AppError> {
    let port_setting = "FUNCTIONS_CUSTOMHANDLER_PORT";
    let port = match get(port_setting) {
        Some(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| bad(port_setting, format!("{p:?} is not a port number")))?,
        None => return Err(bad(port_setting, "not set (the Functions host sets it)")),
    };
    let credentials = storage_credentials(&get)?;
    let prefix = get("TESSERA_AZURE_PREFIX").unwrap_or_else(|| "tessera".into());
    let lease_secs = match get("TESSERA_LEASE_SECS") {
        Some(s) => s
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=3600).contains(n))
            .ok_or_else(|| {
                bad(
                    "TESSERA_LEASE_SECS",
                    format!("{s:?} is not 1..=3600 seconds"),
                )
            })?,
        None => 30,
    };
    let data_dir = PathBuf::from(get("TESSERA_DATA_DIR").unwrap_or_else(|| "data".into()));
    let data = match get("TESSERA_DATA_STORE").as_deref() {
        None | Some("azure") => DataConfig::Azure {
            credentials: credentials.clone(),
            cache_dir: data_dir,
        },
        Some("local") => DataConfig::Local { dir: data_dir },
        Some(other) => {
            return Err(bad(
                "TESSERA_DATA_STORE",
                format!("{other:?} is not azure or local"),
            ));
        }
    };
    Ok(FunctionsSettings {
        app: AppConfig {
            store: StoreConfig::Azure {
                credentials,
                prefix: prefix.clone(),
                dead_letter_queue: Some(catalog::dead_letter_queue(&prefix)),
            },
            data,
            lease: Duration::from_secs(lease_secs),
        },
        port,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<FunctionsSettings, AppError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        from_settings(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    fn account(s: &FunctionsSettings) -> String {
        match &s.app.store {
            StoreConfig::Azure {
                credentials: Credentials::EntraId { account, client_id },
                ..
            } => match client_id {
                Some(id) => format!("{account} as {id}"),
                None => account.clone(),
            },
            StoreConfig::Azure {
                credentials: Credentials::ConnectionString(c),
                ..
            } => format!("connection {c}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn storage_settings_as_the_host_passes_them() {
        let port = ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[port, ("AzureWebJobsStorage", "UseDevelopmentStorage=true")],
                "connection UseDevelopmentStorage=true",
            ),
            (
                &[port, ("AzureWebJobsStorage__accountName", "acct1")],
                "acct1",
            ),
            (
                &[
                    port,
                    (
                        "AzureWebJobsStorage__queueServiceUri",
                        "https://acct2.queue.core.windows.net/",
                    ),
                ],
                "acct2",
            ),
            (
                &[
                    port,
                    (
                        "AzureWebJobsStorage__blobServiceUri",
                        "https://acct3.blob.core.windows.net",
                    ),
                ],
                "acct3",
            ),
            // The user-assigned identity the host uses, for the handler too.
            (
                &[
                    port,
                    ("AzureWebJobsStorage__accountName", "acct4"),
                    ("AzureWebJobsStorage__credential", "managedidentity"),
                    (
                        "AzureWebJobsStorage__clientId",
                        "0b9e5c2a-1d3f-4e5a-9b8c-7d6e5f4a3b2c",
                    ),
                ],
                "acct4 as 0b9e5c2a-1d3f-4e5a-9b8c-7d6e5f4a3b2c",
            ),
            // The connection string wins over identity settings.
            (
                &[
                    port,
                    ("AzureWebJobsStorage", "X=1"),
                    ("AzureWebJobsStorage__accountName", "a"),
                ],
                "connection X=1",
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(account(&settings(pairs).unwrap()), *expected, "{pairs:?}");
        }
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let port = ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071");
        let storage = ("AzureWebJobsStorage", "UseDevelopmentStorage=true");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[storage], "FUNCTIONS_CUSTOMHANDLER_PORT"),
            (
                &[("FUNCTIONS_CUSTOMHANDLER_PORT", "x"), storage],
                "FUNCTIONS_CUSTOMHANDLER_PORT",
            ),
            (&[port], "AzureWebJobsStorage"),
            (
                &[
                    port,
                    (
                        "AzureWebJobsStorage__queueServiceUri",
                        "http://127.0.0.1:10001/x",
                    ),
                ],
                "AzureWebJobsStorage__queueServiceUri",
            ),
            (
                &[
                    port,
                    ("AzureWebJobsStorage__accountName", "acct"),
                    ("AzureWebJobsStorage__clientId", "tessera-id"),
                ],
                "AzureWebJobsStorage__clientId",
            ),
            (
                &[port, storage, ("TESSERA_LEASE_SECS", "0")],
                "TESSERA_LEASE_SECS",
            ),
            (
                &[port, storage, ("TESSERA_DATA_STORE", "s3")],
                "TESSERA_DATA_STORE",
            ),
        ];
        for (pairs, setting) in cases {
            let e = settings(pairs).unwrap_err();
            assert_eq!(e.code, codes::BAD_CONFIG);
            assert!(e.message.contains(setting), "{pairs:?}: {}", e.message);
        }
    }

    #[test]
    fn the_dead_letter_queue_is_not_the_hosts_poison_queue() {
        let s = settings(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071"),
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            ("TESSERA_AZURE_PREFIX", "p1"),
            ("TESSERA_LEASE_SECS", "4"),
        ])
        .unwrap();
        assert_eq!((s.port, s.prefix.as_str()), (7071, "p1"));
        assert_eq!(s.app.lease, Duration::from_secs(4));
        match &s.app.store {
            StoreConfig::Azure {
                dead_letter_queue, ..
            } => {
                assert_eq!(dead_letter_queue.as_deref(), Some("p1-tasks-dead"))
            }
            other => panic!("{other:?}"),
        }
    }
}
