//! Entra ID tokens from the identity the platform provides, the one credential chain behind
//! every keyless client (tables, queues, results, and through the binary the geospatial
//! blobs).
//!
//! The order is the Azure SDKs' default chain:
//!
//! 1. **environment**: a service principal or workload identity (`AZURE_TENANT_ID`,
//!    `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` or `AZURE_FEDERATED_TOKEN_FILE`), through
//!    `azure_identity`;
//! 2. **managed identity**: App Service and Azure Functions when `IDENTITY_ENDPOINT` and
//!    `IDENTITY_HEADER` are set (`GET $IDENTITY_ENDPOINT?resource=..&api-version=2019-08-01`
//!    with `X-IDENTITY-HEADER`), else the VM metadata endpoint (IMDS,
//!    `http://169.254.169.254/metadata/identity/oauth2/token`, `Metadata: true`,
//!    `api-version=2018-02-01`). A user-assigned identity is chosen by its client ID
//!    (`client_id=`): the configured one, else `AZURE_CLIENT_ID`; without one the platform
//!    answers for the system-assigned identity;
//! 3. **Azure CLI**: the developer's `az login`, through `azure_identity`.
//!
//! Each token request tries them in this order and keeps the first that answers; a failure
//! lists every source's error. Tokens are cached per scope until five minutes before they
//! expire. Which sources apply is a pure function of the environment ([`sources`]),
//! table-tested; the managed-identity protocol is tested against a local fake endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::{Error as AzureError, ErrorKind as AzureErrorKind};
use time::OffsetDateTime;

use crate::config::ConfigError;

/// The scope of Azure Storage (tables, queues, blobs).
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";
/// A cached token is renewed this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Where a token may come from, in the order tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A service principal or workload identity from `AZURE_*` variables.
    Environment,
    /// App Service / Azure Functions: the platform's token endpoint and its secret header.
    AppService {
        endpoint: String,
        header: String,
        client_id: Option<String>,
    },
    /// The VM instance metadata service.
    Imds {
        endpoint: String,
        client_id: Option<String>,
    },
    /// `az account get-access-token`.
    AzureCli,
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::Environment => "environment (AZURE_TENANT_ID, AZURE_CLIENT_ID, ...)",
            Source::AppService { .. } => "App Service managed identity (IDENTITY_ENDPOINT)",
            Source::Imds { .. } => "VM managed identity (IMDS)",
            Source::AzureCli => "Azure CLI (az login)",
        }
    }
}

/// Is `s` a client ID (a GUID: 8-4-4-4-12 hexadecimal digits)?
pub fn is_client_id(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The sources to try, in order, given the configured user-assigned client ID and the
/// environment. Pure: `env` is the process environment in production, a table in tests.
pub(crate) fn sources(
    client_id: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Source>, ConfigError> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let client_id = match (client_id, var("AZURE_CLIENT_ID")) {
        (Some(id), _) if is_client_id(id) => Some(id.to_owned()),
        (Some(id), _) => {
            return Err(ConfigError::Identity(format!(
                "client ID {id:?} is not a GUID (the user-assigned identity's clientId)"
            )));
        }
        (None, Some(id)) if is_client_id(&id) => Some(id),
        (None, Some(id)) => {
            return Err(ConfigError::Identity(format!(
                "AZURE_CLIENT_ID {id:?} is not a GUID (the user-assigned identity's clientId)"
            )));
        }
        (None, None) => None,
    };
    let mut out = Vec::new();
    if var("AZURE_TENANT_ID").is_some()
        && var("AZURE_CLIENT_ID").is_some()
        && (var("AZURE_CLIENT_SECRET").is_some() || var("AZURE_FEDERATED_TOKEN_FILE").is_some())
    {
        out.push(Source::Environment);
    }
    match (var("IDENTITY_ENDPOINT"), var("IDENTITY_HEADER")) {
        (Some(endpoint), Some(header)) => {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(ConfigError::Identity(format!(
                    "IDENTITY_ENDPOINT {endpoint:?} is not an http:// or https:// URL"
                )));
            }
            out.push(Source::AppService {
                endpoint,
                header,
                client_id,
            });
        }
        _ => out.push(Source::Imds {
            endpoint: IMDS_ENDPOINT.to_owned(),
            client_id,
        }),
    }
    out.push(Source::AzureCli);
    Ok(out)
}

/// A bearer token and when it expires.
#[derive(Clone)]
pub struct BearerToken {
    pub token: String,
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// No source of the chain gave a token: the message lists each one's error.
#[derive(Debug, thiserror::Error)]
#[error("no Entra ID credential gave a token: {0}")]
pub struct IdentityError(String);

/// Entra ID credentials from the identity the platform provides (see the module doc).
/// Cheap to clone; clones share the token cache.
#[derive(Clone, Debug)]
pub struct EntraCredential {
    pub(crate) chain: Arc<Chain>,
}

impl EntraCredential {
    /// From the process environment; `client_id` selects a user-assigned managed identity
    /// (else `AZURE_CLIENT_ID`, else the system-assigned one).
    pub fn from_env(client_id: Option<&str>) -> Result<Self, ConfigError> {
        Self::with_env(client_id, |name| std::env::var(name).ok())
    }

    /// From the variables `env` gives (tests: a fake managed-identity endpoint). The
    /// environment credential, if chosen, still reads the process environment.
    pub fn with_env(
        client_id: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let sources = sources(client_id, &env)?;
        Ok(EntraCredential {
            chain: Arc::new(Chain::new(sources)),
        })
    }

    /// The sources tried, in order, for logs and errors.
    pub fn describe(&self) -> String {
        self.chain
            .links
            .iter()
            .map(|l| l.source.name())
            .collect::<Vec<_>>()
            .join(", then ")
    }

    /// A token for Azure Storage, from the cache while it is valid.
    pub async fn storage_token(&self) -> Result<BearerToken, IdentityError> {
        let token = self
            .chain
            .token(STORAGE_SCOPE)
            .await
            .map_err(|e| IdentityError(e.to_string()))?;
        Ok(BearerToken {
            token: token.token.secret().to_owned(),
            expires_at: SystemTime::UNIX_EPOCH
                + Duration::from_secs(token.expires_on.unix_timestamp().max(0) as u64),
        })
    }

    /// The chain as the Azure SDK's credential, for the storage clients.
    pub(crate) fn token_credential(&self) -> Arc<dyn TokenCredential> {
        self.chain.clone()
    }
}

struct Link {
    source: Source,
    credential: Result<Box<dyn Fetch>, String>,
}

/// One source's token request.
#[async_trait::async_trait]
trait Fetch: Send + Sync {
    async fn fetch(&self, scope: &str) -> Result<AccessToken, String>;
}

/// A credential of `azure_identity`.
struct Sdk(Box<dyn TokenCredential>);

#[async_trait::async_trait]
impl Fetch for Sdk {
    async fn fetch(&self, scope: &str) -> Result<AccessToken, String> {
        self.0.get_token(&[scope]).await.map_err(|e| e.to_string())
    }
}

pub(crate) struct Chain {
    links: Vec<Link>,
    /// Tokens by scope; a fetch holds the lock, so concurrent callers share it.
    cache: tokio::sync::Mutex<HashMap<String, AccessToken>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field(
                "sources",
                &self.links.iter().map(|l| &l.source).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Chain {
    fn new(sources: Vec<Source>) -> Self {
        let links = sources
            .into_iter()
            .map(|source| {
                let credential: Result<Box<dyn Fetch>, String> = match &source {
                    Source::Environment => azure_identity::EnvironmentCredential::create(
                        azure_identity::TokenCredentialOptions::default(),
                    )
                    .map(|c| Box::new(Sdk(Box::new(c))) as Box<dyn Fetch>)
                    .map_err(|e| e.to_string()),
                    Source::AppService {
                        endpoint,
                        header,
                        client_id,
                    } => ManagedIdentity::new(
                        endpoint,
                        APP_SERVICE_API_VERSION,
                        Some(("x-identity-header", header.clone())),
                        client_id.clone(),
                        Duration::from_secs(5),
                    )
                    .map(|c| Box::new(c) as Box<dyn Fetch>),
                    // A machine outside Azure has no IMDS: connecting gives up after 1 s
                    // (the SDKs' probe) and the chain goes on to the Azure CLI.
                    Source::Imds {
                        endpoint,
                        client_id,
                    } => ManagedIdentity::new(
                        endpoint,
                        IMDS_API_VERSION,
                        Some(("metadata", "true".to_owned())),
                        client_id.clone(),
                        Duration::from_secs(1),
                    )
                    .map(|c| Box::new(c) as Box<dyn Fetch>),
                    Source::AzureCli => azure_identity::AzureCliCredential::create()
                        .map(|c| Box::new(Sdk(Box::new(c))) as Box<dyn Fetch>)
                        .map_err(|e| e.to_string()),
                };
                Link { source, credential }
            })
            .collect();
        Chain {
            links,
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn token(&self, scope: &str) -> Result<AccessToken, String> {
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.get(scope)
            && token.expires_on > OffsetDateTime::now_utc() + REFRESH_MARGIN
        {
            return Ok(token.clone());
        }
        let mut errors = Vec::new();
        for link in &self.links {
            let result = match &link.credential {
                Ok(credential) => credential.fetch(scope).await,
                Err(e) => Err(e.clone()),
            };
            match result {
                Ok(token) => {
                    tracing::debug!(source = link.source.name(), "Entra ID token");
                    cache.insert(scope.to_owned(), token.clone());
                    return Ok(token);
                }
                Err(e) => errors.push(format!("{}: {e}", link.source.name())),
            }
        }
        Err(errors.join("; "))
    }
}

#[async_trait::async_trait]
impl TokenCredential for Chain {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(AzureError::message(
                AzureErrorKind::Credential,
                "one scope per token request",
            ));
        };
        self.token(scope).await.map_err(|e| {
            AzureError::with_message(AzureErrorKind::Credential, || {
                format!("no Entra ID credential gave a token: {e}")
            })
        })
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.cache.lock().await.clear();
        Ok(())
    }
}

/// The managed-identity token protocol of App Service and IMDS: `GET endpoint?
/// api-version=..&resource=..[&client_id=..]` with the platform's header; the answer is JSON
/// with `access_token` and `expires_on` (seconds since the epoch, as a string or a number;
/// `expires_in` when it is missing).
struct ManagedIdentity {
    endpoint: String,
    api_version: &'static str,
    header: Option<(&'static str, String)>,
    client_id: Option<String>,
    http: reqwest::Client,
}

impl ManagedIdentity {
    fn new(
        endpoint: &str,
        api_version: &'static str,
        header: Option<(&'static str, String)>,
        client_id: Option<String>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ManagedIdentity {
            endpoint: endpoint.to_owned(),
            api_version,
            header,
            client_id,
            http,
        })
    }
}

#[async_trait::async_trait]
impl Fetch for ManagedIdentity {
    async fn fetch(&self, scope: &str) -> Result<AccessToken, String> {
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut query = vec![("api-version", self.api_version), ("resource", resource)];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id));
        }
        let mut request = self.http.get(&self.endpoint).query(&query);
        if let Some((name, value)) = &self.header {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.endpoint))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.endpoint))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(300).collect();
            let hint = match (status.as_u16(), &self.client_id) {
                (400 | 404, Some(id)) => {
                    format!(" (is the identity with client ID {id} assigned to this resource?)")
                }
                (400 | 404, None) => " (has this resource a system-assigned identity?)".into(),
                _ => String::new(),
            };
            return Err(format!("{}: HTTP {status}{hint}: {text}", self.endpoint));
        }
        parse_token(&body).map_err(|e| format!("{}: {e}", self.endpoint))
    }
}

/// The token endpoint's answer.
fn parse_token(body: &[u8]) -> Result<AccessToken, String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let token = json["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or("the answer has no access_token")?;
    let seconds = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        v => v.as_i64(),
    };
    let expires_on = match (seconds(&json["expires_on"]), seconds(&json["expires_in"])) {
        (Some(at), _) => OffsetDateTime::from_unix_timestamp(at).map_err(|e| e.to_string())?,
        (None, Some(within)) => OffsetDateTime::now_utc() + time::Duration::seconds(within),
        (None, None) => return Err("the answer has neither expires_on nor expires_in".into()),
    };
    Ok(AccessToken::new(Secret::new(token.to_owned()), expires_on))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CLIENT: &str = "0b9e5c2a-1d3f-4e5a-9b8c-7d6e5f4a3b2c";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    /// The sources (by short name, with their client ID) for a configured client ID and an
    /// environment.
    fn chosen(client_id: Option<&str>, pairs: &[(&str, &str)]) -> String {
        match sources(client_id, &env(pairs)) {
            Err(e) => format!("error: {e}"),
            Ok(sources) => sources
                .iter()
                .map(|s| match s {
                    Source::Environment => "env".to_owned(),
                    Source::AppService { client_id, .. } => {
                        format!("appservice({})", client_id.as_deref().unwrap_or("system"))
                    }
                    Source::Imds { client_id, .. } => {
                        format!("imds({})", client_id.as_deref().unwrap_or("system"))
                    }
                    Source::AzureCli => "cli".to_owned(),
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    #[test]
    fn the_chain_follows_the_platform() {
        let app = [
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41234/msi/token"),
            ("IDENTITY_HEADER", "s3cret"),
        ];
        let other = "11111111-2222-3333-4444-555555555555";
        let sp = [
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", other),
            ("AZURE_CLIENT_SECRET", "x"),
        ];
        // (configured client ID, environment, the sources chosen)
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], String);
        let cases: &[Case] = &[
            // A developer machine or a VM: IMDS (it fails fast where there is none), then az.
            (None, &[], "imds(system) cli".into()),
            // App Service / Functions: its endpoint, not IMDS.
            (None, &app, "appservice(system) cli".into()),
            // The configured user-assigned identity ...
            (Some(CLIENT), &app, format!("appservice({CLIENT}) cli")),
            (Some(CLIENT), &[], format!("imds({CLIENT}) cli")),
            // ... else AZURE_CLIENT_ID, the SDKs' convention ...
            (
                None,
                &[app[0], app[1], ("AZURE_CLIENT_ID", other)],
                format!("appservice({other}) cli"),
            ),
            // ... which the configured one overrides.
            (
                Some(CLIENT),
                &[("AZURE_CLIENT_ID", other)],
                format!("imds({CLIENT}) cli"),
            ),
            // Half of App Service's pair is not App Service.
            (
                None,
                &[("IDENTITY_ENDPOINT", "http://x")],
                "imds(system) cli".into(),
            ),
            (None, &[("IDENTITY_HEADER", "s")], "imds(system) cli".into()),
            // A service principal in the environment comes first.
            (None, &sp, format!("env imds({other}) cli")),
            (
                None,
                &[
                    ("AZURE_TENANT_ID", "t"),
                    ("AZURE_CLIENT_ID", other),
                    ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
                    app[0],
                    app[1],
                ],
                format!("env appservice({other}) cli"),
            ),
            // Bad values are refused, naming what is wrong.
            (
                Some("not-a-guid"),
                &[],
                "error: Entra ID credential: client ID \"not-a-guid\" is not a GUID (the user-assigned identity's clientId)".into(),
            ),
            (
                None,
                &[("AZURE_CLIENT_ID", "abc")],
                "error: Entra ID credential: AZURE_CLIENT_ID \"abc\" is not a GUID (the user-assigned identity's clientId)".into(),
            ),
            (
                None,
                &[("IDENTITY_ENDPOINT", "localhost:1"), ("IDENTITY_HEADER", "s")],
                "error: Entra ID credential: IDENTITY_ENDPOINT \"localhost:1\" is not an http:// or https:// URL".into(),
            ),
        ];
        for (client_id, pairs, expected) in cases {
            assert_eq!(
                &chosen(*client_id, pairs),
                expected,
                "{client_id:?} {pairs:?}"
            );
        }
    }

    #[test]
    fn client_ids_are_guids() {
        assert!(is_client_id(CLIENT));
        assert!(is_client_id("0B9E5C2A-1D3F-4E5A-9B8C-7D6E5F4A3B2C"));
        for bad in [
            "",
            "x",
            "0b9e5c2a1d3f4e5a9b8c7d6e5f4a3b2c",
            "0b9e5c2a-1d3f-4e5a-9b8c-7d6e5f4a3b2",
        ] {
            assert!(!is_client_id(bad), "{bad}");
        }
    }

    #[test]
    fn token_answers() {
        let t = parse_token(br#"{"access_token":"a","expires_on":"1700000000","resource":"r","token_type":"Bearer"}"#).unwrap();
        assert_eq!(
            (t.token.secret(), t.expires_on.unix_timestamp()),
            ("a", 1_700_000_000)
        );
        let t = parse_token(br#"{"access_token":"b","expires_on":1700000001}"#).unwrap();
        assert_eq!(t.expires_on.unix_timestamp(), 1_700_000_001);
        let t = parse_token(br#"{"access_token":"c","expires_in":"3600"}"#).unwrap();
        assert!(t.expires_on > OffsetDateTime::now_utc() + time::Duration::minutes(59));
        for (bad, why) in [
            (&b"<html>"[..], "not JSON"),
            (br#"{"expires_on":"1"}"#, "access_token"),
            (br#"{"access_token":"a"}"#, "expires_on"),
        ] {
            let e = parse_token(bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    /// A fake token endpoint: answers every request with `status` and `body`, and records
    /// each request's head (request line and headers, lowercased names).
    async fn fake_endpoint(status: u16, body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/msi/token", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (url, seen)
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    const TOKEN: &str = r#"{"access_token":"fake-token-1","expires_on":"4102444800","resource":"https://storage.azure.com","token_type":"Bearer"}"#;

    #[tokio::test]
    async fn app_service_identity_against_a_fake_endpoint() {
        let (url, seen) = fake_endpoint(200, TOKEN).await;
        for client_id in [None, Some(CLIENT)] {
            seen.lock().unwrap().clear();
            let vars = env(&[("IDENTITY_ENDPOINT", &url), ("IDENTITY_HEADER", "s3cret")]);
            let credential = EntraCredential::with_env(client_id, vars).unwrap();
            let token = credential.storage_token().await.unwrap();
            assert_eq!(token.token, "fake-token-1");
            assert_eq!(
                token.expires_at,
                SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800)
            );
            // Cached: a second request does not go to the endpoint.
            credential.storage_token().await.unwrap();
            let seen = seen.lock().unwrap().clone();
            assert_eq!(seen.len(), 1, "{seen:?}");
            let head = &seen[0];
            let line = head.lines().next().unwrap();
            assert!(line.starts_with("GET /msi/token?"), "{line}");
            assert!(line.contains("api-version=2019-08-01"), "{line}");
            assert!(
                line.contains("resource=https%3A%2F%2Fstorage.azure.com&")
                    || line.contains("resource=https%3A%2F%2Fstorage.azure.com "),
                "{line}"
            );
            assert_eq!(header(head, "x-identity-header"), Some("s3cret"), "{head}");
            match client_id {
                Some(id) => assert!(line.contains(&format!("client_id={id}")), "{line}"),
                None => assert!(!line.contains("client_id"), "{line}"),
            }
        }
    }

    #[tokio::test]
    async fn imds_protocol_against_a_fake_endpoint() {
        let (url, seen) = fake_endpoint(200, TOKEN).await;
        let credential = EntraCredential {
            chain: Arc::new(Chain::new(vec![Source::Imds {
                endpoint: url,
                client_id: Some(CLIENT.into()),
            }])),
        };
        assert_eq!(
            credential.storage_token().await.unwrap().token,
            "fake-token-1"
        );
        let head = seen.lock().unwrap()[0].clone();
        let line = head.lines().next().unwrap();
        assert!(line.contains("api-version=2018-02-01"), "{line}");
        assert!(line.contains(&format!("client_id={CLIENT}")), "{line}");
        assert_eq!(header(&head, "metadata"), Some("true"), "{head}");
    }

    #[tokio::test]
    async fn a_refusal_names_every_source_and_the_identity() {
        let (url, _) = fake_endpoint(400, r#"{"error":"invalid_request"}"#).await;
        let credential = EntraCredential {
            chain: Arc::new(Chain::new(vec![
                Source::AppService {
                    endpoint: url.clone(),
                    header: "s".into(),
                    client_id: Some(CLIENT.into()),
                },
                Source::Imds {
                    endpoint: url,
                    client_id: None,
                },
            ])),
        };
        let e = credential.storage_token().await.unwrap_err().to_string();
        assert!(e.contains("App Service managed identity"), "{e}");
        assert!(e.contains(&format!("client ID {CLIENT}")), "{e}");
        assert!(e.contains("VM managed identity (IMDS)"), "{e}");
        assert!(e.contains("invalid_request"), "{e}");
    }

    #[tokio::test]
    async fn the_chain_goes_on_to_the_next_source() {
        let (bad, _) = fake_endpoint(500, "{}").await;
        let (good, seen) = fake_endpoint(200, TOKEN).await;
        let credential = EntraCredential {
            chain: Arc::new(Chain::new(vec![
                Source::AppService {
                    endpoint: bad,
                    header: "s".into(),
                    client_id: None,
                },
                Source::Imds {
                    endpoint: good,
                    client_id: None,
                },
            ])),
        };
        assert_eq!(
            credential.storage_token().await.unwrap().token,
            "fake-token-1"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
