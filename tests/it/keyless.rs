//! A keyless deployment, against local fakes of what Azure provides: the App Service
//! managed-identity token endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), a Blob endpoint
//! that records the bearer token it gets, and a Function App front door that wants a function
//! key (`x-functions-key`) from `tessera --server`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::tessera_bin;

/// A fake HTTP endpoint on a thread: every request gets `status` with the JSON or XML `body`;
/// the request heads (request line and headers) are recorded.
fn fake_endpoint(
    status: u16,
    content_type: &'static str,
    body: String,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes());
        }
    });
    (base, seen)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The backend's credential chain as the blob store's token source (what the binary's
/// composition root does).
struct ChainTokens(engine_azure::EntraCredential);

#[async_trait::async_trait]
impl services::blob::StorageToken for ChainTokens {
    async fn token(&self) -> Result<String, String> {
        self.0
            .storage_token()
            .await
            .map(|t| t.token)
            .map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn blobs_are_read_with_the_app_service_identity() {
    const CLIENT_ID: &str = "6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b";
    let token = r#"{"access_token":"eyJ.from-the-fake.sig","expires_on":"4102444800","resource":"https://storage.azure.com","token_type":"Bearer"}"#;
    let (identity, identity_seen) = fake_endpoint(200, "application/json", token.into());
    let listing = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs><Blob><Name>a.tif</Name><Properties><Last-Modified>Mon, 01 Jan 2024 00:00:00 GMT</Last-Modified><Content-Length>5</Content-Length><Content-Type>image/tiff</Content-Type><Etag>0x1</Etag></Properties></Blob></Blobs></EnumerationResults>"#;
    let (blob_base, blob_seen) = fake_endpoint(200, "application/xml", listing.into());

    // What App Service sets in the handler's environment, and the user-assigned identity's
    // client ID from the app settings.
    let endpoint = format!("{identity}/msi/token");
    let env = move |name: &str| match name {
        "IDENTITY_ENDPOINT" => Some(endpoint.clone()),
        "IDENTITY_HEADER" => Some("header-secret".to_owned()),
        _ => None,
    };
    let credential = engine_azure::EntraCredential::with_env(Some(CLIENT_ID), env).unwrap();
    assert!(
        credential
            .describe()
            .starts_with("App Service managed identity"),
        "{}",
        credential.describe()
    );
    let account = services::blob::AzureBlobAccount {
        account: "acct".into(),
        endpoint: format!("{blob_base}/acct"),
        auth: services::blob::AzureBlobAuth::EntraId(Arc::new(ChainTokens(credential))),
    };
    let cache = tempfile::tempdir().unwrap();
    let blobs = services::Blobs::azure(account, cache.path(), None);
    let listed = blobs.list("rasters", "").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].size), ("a.tif", 5));
    blobs.list("rasters", "").await.unwrap();

    // The token endpoint was asked once (the token is cached), as App Service documents it.
    let asked = identity_seen.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let line = asked[0].lines().next().unwrap();
    assert!(line.starts_with("GET /msi/token?"), "{line}");
    for part in [
        "api-version=2019-08-01",
        "resource=https%3A%2F%2Fstorage.azure.com",
        &format!("client_id={CLIENT_ID}"),
    ] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
    assert_eq!(
        header(&asked[0], "x-identity-header"),
        Some("header-secret")
    );

    // Every Blob request carried the token the endpoint gave.
    let requests = blob_seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in &requests {
        assert!(r.starts_with("GET /acct/rasters?"), "{r}");
        assert_eq!(
            header(r, "authorization"),
            Some("Bearer eyJ.from-the-fake.sig"),
            "{r}"
        );
    }
}

#[test]
fn the_cli_sends_a_function_key_to_a_function_app() {
    let problem = r#"{"type":"about:blank","title":"Not Found","status":404,"code":"NOT_FOUND","detail":"job 0000000000000000000000000000000000000000000000000000000000000000 not found"}"#;
    let (base, seen) = fake_endpoint(404, "application/problem+json", problem.into());
    let id = "0".repeat(64);
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(tessera_bin());
        cmd.args(["status", &id, "--server", &base])
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("TESSERA_API_KEY")
            .env_remove("TESSERA_FUNCTION_KEY")
            .env_remove("TESSERA_SERVER");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("running tessera");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // --function-key: the host's header, no bearer token.
    let (code, stderr) = cli(&["--function-key", "fk-1"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
    // TESSERA_FUNCTION_KEY, and with --api-key both (an app that sets TESSERA_API_KEYS too).
    let (code, stderr) = cli(&["--api-key", "api-1"], &[("TESSERA_FUNCTION_KEY", "fk-2")]);
    assert_eq!(code, 2, "{stderr}");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].starts_with(&format!("GET /api/jobs/{id} ")),
        "{}",
        seen[0]
    );
    assert_eq!(
        header(&seen[0], "x-functions-key"),
        Some("fk-1"),
        "{}",
        seen[0]
    );
    assert_eq!(header(&seen[0], "authorization"), None, "{}", seen[0]);
    assert_eq!(
        header(&seen[1], "x-functions-key"),
        Some("fk-2"),
        "{}",
        seen[1]
    );
    assert_eq!(
        header(&seen[1], "authorization"),
        Some("Bearer api-1"),
        "{}",
        seen[1]
    );
}

#[test]
fn a_client_id_that_is_not_a_guid_is_refused_naming_it() {
    let out = Command::new(tessera_bin())
        .args(["jobs", "--backend", "azure", "--storage-account", "acct"])
        .env("RUST_LOG", "warn")
        .env("AZURE_CLIENT_ID", "tessera-id")
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .env_remove("TESSERA_BACKEND")
        .env_remove("TESSERA_SERVER")
        .output()
        .expect("running tessera");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("AZURE_CLIENT_ID \"tessera-id\" is not a GUID"),
        "{stderr}"
    );
}
