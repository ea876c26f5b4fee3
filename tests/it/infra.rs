//! The deployment (`infra/`) agrees with the code, so that a rename cannot silently break it.
//!
//! `infra/tests/bicep_model.py` parses `infra/main.bicep` and its modules with `pycep-parser`
//! (PyPI) and prints what the deployment creates. The expected names come from the code and
//! the function app, never from the template: the queues of `function_host::functions::catalog`
//! and of `infra/functions/*/function.json` (each trigger's `<queue>-poison` too), the tables
//! and the results container that `backends/azure/src/lib.rs` opens, the settings that
//! `function_host::functions::settings` reads (the handler must accept the template's app
//! settings as the host would pass them), `local.settings.json.example` and `host.json`.
//! `checkov` (PyPI) runs over `infra/` too. Both tools come from `cargo xtask test`, which
//! installs them into target/py and passes `TESSERA_PY_BIN`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use function_host::app::{DataConfig, StoreConfig};
use function_host::functions::{catalog, settings};
use serde_json::Value;

// Built-in Azure role definition IDs.
const BLOB_DATA_OWNER: &str = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b";
const BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
const QUEUE_DATA_CONTRIBUTOR: &str = "974c5e8b-45b9-4653-ba55-5f855dd0fb88";
const TABLE_DATA_CONTRIBUTOR: &str = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3";
const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
const MONITORING_METRICS_PUBLISHER: &str = "3913510d-42f4-4e42-8a64-420c390055eb";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

fn py_bin() -> PathBuf {
    PathBuf::from(std::env::var_os("TESSERA_PY_BIN").expect(
        "TESSERA_PY_BIN is not set: run the tests with `cargo xtask test` (it installs checkov and pycep-parser into target/py)",
    ))
}

/// What the Bicep under `infra` deploys, as `bicep_model.py` prints it.
fn model(infra: &Path) -> Value {
    let out = Command::new(py_bin().join("python"))
        .arg(workspace().join("infra/tests/bicep_model.py"))
        .arg(infra)
        .output()
        .expect("running infra/tests/bicep_model.py");
    assert!(
        out.status.success(),
        "bicep_model.py failed on {}: {}",
        infra.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bicep_model.py prints JSON")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The function app's bindings: `(function, binding)` for every function.json.
fn bindings() -> Vec<(String, Value)> {
    let dir = workspace().join("infra/functions");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("infra/functions") {
        let path = entry.expect("a directory entry").path();
        let file = path.join("function.json");
        if !file.exists() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for binding in read_json(&file)["bindings"].as_array().expect("bindings") {
            out.push((name.clone(), binding.clone()));
        }
    }
    assert!(!out.is_empty(), "no function.json under {}", dir.display());
    out
}

/// `format!("{p}<suffix>")` names that `backends/azure/src/lib.rs` opens with `client_fn`.
fn engine_names(client_fn: &str) -> Vec<String> {
    let path = workspace().join("backends/azure/src/lib.rs");
    let source = std::fs::read_to_string(&path).expect("backends/azure/src/lib.rs");
    let needle = format!("{client_fn}(format!(\"{{p}}");
    let names: Vec<String> = source
        .match_indices(&needle)
        .map(|(at, _)| {
            let rest = &source[at + needle.len()..];
            rest[..rest.find('"').expect("a closing quote")].to_owned()
        })
        .collect();
    assert!(
        !names.is_empty(),
        "found no {client_fn}(format!(\"{{p}}...\")) in {}: the backend opens its names differently now; update this test's reader",
        path.display()
    );
    names
}

/// Setting names the code reads, from string literals `"TESSERA_..."` in the host's sources.
fn tessera_settings_read_by_the_code() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![workspace().join("function-host/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("function-host/src") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                for (at, _) in text.match_indices("\"TESSERA_") {
                    let rest = &text[at + 1..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()))
                        .unwrap_or(rest.len());
                    if rest[end..].starts_with('"') {
                        found.insert(rest[..end].to_owned());
                    }
                }
            }
        }
    }
    found
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A role definition ID with its name, for messages.
fn role(id: &str) -> String {
    let name = match id {
        BLOB_DATA_OWNER => "Storage Blob Data Owner",
        BLOB_DATA_CONTRIBUTOR => "Storage Blob Data Contributor",
        QUEUE_DATA_CONTRIBUTOR => "Storage Queue Data Contributor",
        TABLE_DATA_CONTRIBUTOR => "Storage Table Data Contributor",
        ACR_PULL => "AcrPull",
        MONITORING_METRICS_PUBLISHER => "Monitoring Metrics Publisher",
        _ => "a role this test does not expect",
    };
    format!("{name} ({id})")
}

fn role_id(definition: &str) -> String {
    // "subscriptionResourceId(Microsoft.Authorization/roleDefinitions, <guid>)"
    definition
        .trim_end_matches(')')
        .rsplit([',', ' '])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Everything in `model` that disagrees with the code, one line each.
fn mismatches(model: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let prefix = model["parameters"]["prefix"]
        .as_str()
        .expect("main.parameters.json sets prefix")
        .to_owned();

    // --- the storage account ----------------------------------------------------------
    let accounts = model["storage_accounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if accounts.len() != 1 {
        bad.push(format!(
            "expected one storage account, the template has {}",
            accounts.len()
        ));
        return bad;
    }
    let account = &accounts[0];
    let account_name = account["name"].as_str().unwrap_or_default().to_owned();
    for (property, expected) in [
        ("allowSharedKeyAccess", Value::Bool(false)),
        ("allowBlobPublicAccess", Value::Bool(false)),
        ("minimumTlsVersion", Value::from("TLS1_2")),
        ("supportsHttpsTrafficOnly", Value::Bool(true)),
    ] {
        if account["properties"][property] != expected {
            bad.push(format!(
                "storage account {}: {property} is {}, expected {expected}",
                account["at"], account["properties"][property]
            ));
        }
    }
    let soft_delete = model["blob_services"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| b["properties"]["deleteRetentionPolicy"]["enabled"] == Value::Bool(true));
    if !soft_delete {
        bad.push("blob soft delete (deleteRetentionPolicy.enabled) is not on".into());
    }

    // --- names: queues ----------------------------------------------------------------
    let app_settings: BTreeMap<String, Value> = model["sites"][0]["app_settings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["value"].clone(),
            )
        })
        .collect();
    let setting = |name: &str| {
        app_settings
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let resolve = |text: &str, bad: &mut Vec<String>, function: &str| -> String {
        // %NAME% in a binding is the app setting NAME.
        let mut out = String::new();
        let mut parts = text.split('%');
        out.push_str(parts.next().unwrap_or_default());
        let mut inside = true;
        for part in parts {
            if inside {
                match setting(part) {
                    Some(v) => out.push_str(&v),
                    None => bad.push(format!(
                        "infra/functions/{function}/function.json uses %{part}%, which is not an app setting of the Function App"
                    )),
                }
            } else {
                out.push_str(part);
            }
            inside = !inside;
        }
        out
    };
    let mut queues_needed: BTreeMap<String, String> = BTreeMap::new();
    for role in catalog::QueueRole::ALL {
        queues_needed.insert(
            role.queue(&prefix),
            format!("the {} function's queue (catalog)", role.function_name()),
        );
    }
    queues_needed.insert(
        catalog::dead_letter_queue(&prefix),
        "the engine's dead-letter queue in functions mode (catalog)".into(),
    );
    let mut connections = BTreeSet::new();
    for (function, binding) in bindings() {
        let Some(queue) = binding["queueName"].as_str() else {
            continue;
        };
        let queue = resolve(queue, &mut bad, &function);
        if binding["type"] == "queueTrigger" {
            queues_needed.insert(
                format!("{queue}-poison"),
                format!("the host's poison queue of {function}"),
            );
        }
        queues_needed
            .entry(queue)
            .or_insert_with(|| format!("a binding of {function}"));
        if let Some(c) = binding["connection"].as_str() {
            connections.insert(c.to_owned());
        }
    }
    let queues_declared: BTreeSet<String> = strings(&model["queues"]).into_iter().collect();
    for (queue, why) in &queues_needed {
        if !queues_declared.contains(queue) {
            bad.push(format!("queue {queue} ({why}) is not in the template"));
        }
    }
    for queue in &queues_declared {
        if !queues_needed.contains_key(queue) {
            bad.push(format!(
                "queue {queue} is in the template but no code or function uses it"
            ));
        }
    }

    // --- names: tables and containers -----------------------------------------------------
    let tables_needed: BTreeSet<String> = engine_names("table_client")
        .iter()
        .map(|s| format!("{prefix}{s}"))
        .collect();
    let tables_declared: BTreeSet<String> = strings(&model["tables"]).into_iter().collect();
    for t in tables_needed.difference(&tables_declared) {
        bad.push(format!(
            "table {t} (backends/azure/src/lib.rs) is not in the template"
        ));
    }
    for t in tables_declared.difference(&tables_needed) {
        bad.push(format!(
            "table {t} is in the template but the backend does not use it"
        ));
    }
    let mut containers_needed: BTreeSet<String> = engine_names("container_client")
        .iter()
        .map(|s| format!("{prefix}{s}"))
        .collect();
    let data: BTreeSet<String> = strings(&model["parameters"]["dataContainers"])
        .into_iter()
        .collect();
    let containers_declared: BTreeSet<String> = strings(&model["containers"]).into_iter().collect();
    for c in containers_needed.difference(&containers_declared) {
        bad.push(format!(
            "container {c} (backends/azure/src/lib.rs) is not in the template"
        ));
    }
    containers_needed.extend(data);
    for c in containers_declared.difference(&containers_needed) {
        bad.push(format!(
            "container {c} is in the template but neither the backend nor dataContainers names it"
        ));
    }

    // --- app settings -------------------------------------------------------------------
    let sites = model["sites"].as_array().cloned().unwrap_or_default();
    if sites.len() != 1 {
        bad.push(format!(
            "expected one Function App, the template has {}",
            sites.len()
        ));
        return bad;
    }
    let site = &sites[0];
    // No secret: nothing that carries a key, a SAS or a password.
    for (name, value) in &app_settings {
        let text = value.to_string();
        let lower = text.to_ascii_lowercase();
        for marker in [
            "accountkey=",
            "sharedaccesssignature=",
            "sig=",
            "list_keys",
            "listkeys",
            "password",
            "instrumentationkey=",
        ] {
            if lower.contains(marker) {
                bad.push(format!(
                    "app setting {name} carries a secret ({marker:?} in {text})"
                ));
            }
        }
        if name.ends_with("__accountKey") || name == "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING" {
            bad.push(format!("app setting {name} is a shared-key setting"));
        }
    }
    for connection in &connections {
        if app_settings.contains_key(connection) {
            bad.push(format!(
                "app setting {connection} is set: the bindings' connection must be identity-based ({connection}__accountName), not a connection string"
            ));
        }
        let account_setting = format!("{connection}__accountName");
        if setting(&account_setting).as_deref() != Some(account_name.as_str()) {
            bad.push(format!(
                "app setting {account_setting} is {:?}, expected the storage account {account_name:?}",
                setting(&account_setting)
            ));
        }
        let credential = format!("{connection}__credential");
        if setting(&credential).as_deref() != Some("managedidentity") {
            bad.push(format!(
                "app setting {credential} is {:?}, expected \"managedidentity\"",
                setting(&credential)
            ));
        }
        if setting(&format!("{connection}__clientId")).is_none() {
            bad.push(format!(
                "app setting {connection}__clientId is missing (the user-assigned identity)"
            ));
        }
    }
    // The function app's local settings name what the handler needs; each is deployed.
    let local = read_json(&workspace().join("infra/functions/local.settings.json.example"));
    for (name, value) in local["Values"].as_object().expect("Values") {
        if name == "AzureWebJobsStorage" {
            continue; // identity-based in Azure (checked above)
        }
        match setting(name) {
            None => bad.push(format!(
                "app setting {name} (local.settings.json.example) is not in the template"
            )),
            Some(v)
                if name == "FUNCTIONS_WORKER_RUNTIME"
                    && !v.eq_ignore_ascii_case(value.as_str().unwrap_or_default()) =>
            {
                bad.push(format!(
                    "app setting FUNCTIONS_WORKER_RUNTIME is {v:?}, the function app says {value}"
                ))
            }
            Some(_) => {}
        }
    }
    let known = tessera_settings_read_by_the_code();
    for name in app_settings.keys().filter(|n| n.starts_with("TESSERA_")) {
        if !known.contains(name) {
            bad.push(format!("app setting {name} is not read by the code (function-host/src names no such setting)"));
        }
    }
    if setting("TESSERA_AZURE_PREFIX").as_deref() != Some(prefix.as_str()) {
        bad.push(format!(
            "app setting TESSERA_AZURE_PREFIX is {:?}, but the tables, queues and containers are made with prefix {prefix:?}",
            setting("TESSERA_AZURE_PREFIX")
        ));
    }
    // The handler accepts these settings as the host passes them, and gets what was deployed.
    let mut env: BTreeMap<String, String> = app_settings
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect();
    env.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into(), "7071".into());
    // The identity's client ID is known at deployment only: a GUID stands for it.
    const SAMPLE_CLIENT_ID: &str = "0b9e5c2a-1d3f-4e5a-9b8c-7d6e5f4a3b2c";
    for (name, value) in env.iter_mut() {
        if name.ends_with("__clientId") && value.ends_with(".properties.clientId>") {
            *value = SAMPLE_CLIENT_ID.into();
        }
    }
    match settings::from_settings(|k| env.get(k).cloned()) {
        Err(e) => bad.push(format!(
            "the handler refuses the template's app settings: {}",
            e.message
        )),
        Ok(s) => {
            match &s.app.store {
                StoreConfig::Azure {
                    credentials: engine_azure::Credentials::EntraId { account, client_id },
                    prefix: p,
                    ..
                } => {
                    if account != &account_name || p != &prefix {
                        bad.push(format!(
                            "the handler would use account {account:?} prefix {p:?}, the template made {account_name:?} {prefix:?}"
                        ));
                    }
                    if client_id.as_deref() != Some(SAMPLE_CLIENT_ID) {
                        bad.push(format!(
                            "the handler would not use the user-assigned identity of AzureWebJobsStorage__clientId (client ID {client_id:?})"
                        ));
                    }
                }
                other => bad.push(format!(
                    "the handler would not use Entra ID on the storage account: {other:?}"
                )),
            }
            if !matches!(s.app.data, DataConfig::Azure { .. }) {
                bad.push("the handler's geospatial containers would not be the account's Blob containers".into());
            }
            // host.json's visibilityTimeout stays above the lease (docs/azure-functions.md).
            let host = read_json(&workspace().join("infra/functions/host.json"));
            // host.json's functionTimeout needs a plan without Consumption's 10-minute cap.
            let timeout = host["functionTimeout"].as_str().unwrap_or("00:00:00");
            let timeout_secs: u64 = timeout
                .split(':')
                .fold(0, |acc, part| acc * 60 + part.parse::<u64>().unwrap_or(0));
            for plan in model["plans"].as_array().into_iter().flatten() {
                let tier = plan["sku"]["tier"].as_str().unwrap_or_default();
                if timeout_secs > 600 && matches!(tier, "Dynamic" | "") {
                    bad.push(format!(
                        "plan {}: tier {tier:?} caps functions at 10 minutes, host.json's functionTimeout is {timeout}",
                        plan["at"]
                    ));
                }
            }
            if model["plans"].as_array().is_none_or(|p| p.is_empty()) {
                bad.push("the template has no App Service plan".into());
            }
            let visibility = host["extensions"]["queues"]["visibilityTimeout"]
                .as_str()
                .unwrap_or("00:00:00");
            let secs: u64 = visibility
                .split(':')
                .fold(0, |acc, part| acc * 60 + part.parse::<u64>().unwrap_or(0));
            if s.app.lease.as_secs() >= secs {
                bad.push(format!(
                    "TESSERA_LEASE_SECS {} is not below host.json's visibilityTimeout {visibility}",
                    s.app.lease.as_secs()
                ));
            }
        }
    }

    // --- identities and role assignments -------------------------------------------------
    let identity_type = site["identity"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // The host and the tessera handler share the user-assigned identity of
    // AzureWebJobsStorage__clientId: a system-assigned one would be unused.
    if identity_type != "UserAssigned" {
        bad.push(format!("the Function App's identity is {identity_type:?}: the host and the handler use the user-assigned identity only (\"UserAssigned\")"));
    }
    let client_id = setting("AzureWebJobsStorage__clientId").unwrap_or_default();
    let host_principal = client_id.replace(".properties.clientId>", ".properties.principalId>");
    if host_principal == client_id {
        bad.push(format!(
            "AzureWebJobsStorage__clientId {client_id:?} is not a user-assigned identity's clientId"
        ));
    }
    let uami_id = client_id.replace(".properties.clientId>", ".id>");
    if site["identity"]["userAssignedIdentities"]
        .get(&uami_id)
        .is_none()
    {
        bad.push(format!("the Function App does not carry the identity of AzureWebJobsStorage__clientId ({uami_id})"));
    }
    let storage_scope = format!("<resource:Microsoft.Storage/storageAccounts:{account_name}>");
    let needed: Vec<(String, &str, String, &str)> = vec![
        (
            host_principal.clone(),
            BLOB_DATA_OWNER,
            storage_scope.clone(),
            "the host's own containers (keys, leases, timers); the handler's results and data containers",
        ),
        (
            host_principal.clone(),
            TABLE_DATA_CONTRIBUTOR,
            storage_scope.clone(),
            "the backend's tables",
        ),
        (
            host_principal.clone(),
            QUEUE_DATA_CONTRIBUTOR,
            storage_scope.clone(),
            "the backend's queues",
        ),
    ];
    let mut allowed = needed.clone();
    let image = site["site_config"]["linuxFxVersion"]
        .as_str()
        .unwrap_or_default();
    let registry = format!(
        "<resource:Microsoft.ContainerRegistry/registries:{}>",
        model["parameters"]["registryName"]
            .as_str()
            .unwrap_or_default()
    );
    if image.starts_with("DOCKER|") {
        allowed.push((
            host_principal.clone(),
            ACR_PULL,
            registry,
            "pulling the image",
        ));
    }
    let assignments: Vec<(String, String, String, String)> = model["role_assignments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["principal"].as_str().unwrap_or_default().to_owned(),
                role_id(a["role_definition"].as_str().unwrap_or_default()),
                a["scope"]
                    .as_str()
                    .unwrap_or("<the resource group>")
                    .to_owned(),
                a["at"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (principal, role_id, scope, why) in &needed {
        if !assignments
            .iter()
            .any(|(p, r, s, _)| p == principal && r == role_id && s == scope)
        {
            bad.push(format!(
                "missing role assignment: {} for {principal} on {scope} ({why})",
                role(role_id)
            ));
        }
    }
    for (principal, role_id, scope, at) in &assignments {
        let fits = allowed
            .iter()
            .any(|(p, r, s, _)| p == principal && r == role_id && s == scope)
            || (role_id == MONITORING_METRICS_PUBLISHER
                && principal == &host_principal
                && scope.starts_with("<resource:Microsoft.Insights/components:"));
        if !fits {
            bad.push(format!(
                "role assignment {at}: {} for {principal} on {scope} is not one the code needs (least privilege)",
                role(role_id)
            ));
        }
    }
    bad
}

#[test]
fn the_deployment_matches_the_code_and_the_function_app() {
    let model = model(&workspace().join("infra"));
    let bad = mismatches(&model);
    assert!(
        bad.is_empty(),
        "infra/ disagrees with the code:\n  {}",
        bad.join("\n  ")
    );
    // The check saw the deployment (not an empty model).
    assert!(model["queues"].as_array().is_some_and(|q| !q.is_empty()));
    assert!(
        model["role_assignments"]
            .as_array()
            .is_some_and(|r| r.len() >= 5)
    );
}

/// A copy of infra/ with `edit` applied to one module.
fn broken_copy(file: &str, from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let infra = workspace().join("infra");
    std::fs::create_dir_all(dir.path().join("modules")).unwrap();
    for name in ["main.bicep", "main.parameters.json"] {
        std::fs::copy(infra.join(name), dir.path().join(name)).unwrap();
    }
    for entry in std::fs::read_dir(infra.join("modules")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            dir.path().join("modules").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    let target = dir.path().join(file);
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(
        text.contains(from),
        "{file} no longer contains {from:?}: update this test"
    );
    std::fs::write(&target, text.replacen(from, to, 1)).unwrap();
    dir
}

#[test]
fn broken_copies_fail_the_check() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // A shared key in an app setting: the host's storage as a connection string.
        (
            "modules/functionapp.bicep",
            "        { name: 'AzureWebJobsStorage__accountName', value: storageAccountName }\n",
            "        { name: 'AzureWebJobsStorage__accountName', value: storageAccountName }\n        { name: 'AzureWebJobsStorage', value: 'DefaultEndpointsProtocol=https;AccountName=${storageAccountName};AccountKey=${storageAccountKey}' }\n",
            "app setting AzureWebJobsStorage",
        ),
        // A renamed queue.
        (
            "modules/storage.bicep",
            "'${prefix}-tasks-dead'",
            "'${prefix}-dead-letters'",
            "queue tessera-tasks-dead",
        ),
        // A table the backend does not open.
        (
            "modules/storage.bicep",
            "'${prefix}jobindex'",
            "'${prefix}jobsindex'",
            "table tesserajobindex",
        ),
        // A renamed setting.
        (
            "modules/functionapp.bicep",
            "name: 'TESSERA_AZURE_PREFIX'",
            "name: 'TESSERA_PREFIX'",
            "TESSERA_AZURE_PREFIX",
        ),
        // A Consumption plan for functions of 2 hours.
        (
            "modules/functionapp.bicep",
            "tier: 'ElasticPremium'",
            "tier: 'Dynamic'",
            "functionTimeout",
        ),
        // Shared keys allowed.
        (
            "modules/storage.bicep",
            "allowSharedKeyAccess: false",
            "allowSharedKeyAccess: true",
            "allowSharedKeyAccess",
        ),
        // An identity nothing uses.
        (
            "modules/functionapp.bicep",
            "type: 'UserAssigned'",
            "type: 'SystemAssigned, UserAssigned'",
            "identity is \"SystemAssigned, UserAssigned\"",
        ),
        // A broader role than the code needs.
        (
            "modules/roles.bicep",
            "storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'",
            "storageTableDataContributor: '17d1049b-9a84-46fb-8f53-869128522b3b'",
            "17d1049b-9a84-46fb-8f53-869128522b3b",
        ),
    ];
    for (file, from, to, named) in cases {
        let copy = broken_copy(file, from, to);
        let bad = mismatches(&model(copy.path()));
        eprintln!("{file} broken ({named}): {bad:#?}");
        assert!(
            bad.iter().any(|line| line.contains(named)),
            "{file}: {to:?} should fail the check naming {named:?}; it said: {bad:#?}"
        );
    }
}

#[test]
fn checkov_passes_on_infra_with_every_suppression_explained() {
    let out = Command::new(py_bin().join("checkov"))
        .current_dir(workspace())
        .args([
            "-d",
            "infra",
            "--framework",
            "bicep",
            "dockerfile",
            "--skip-download",
            "--output",
            "json",
        ])
        .output()
        .expect("running checkov");
    let text = String::from_utf8_lossy(&out.stdout);
    let reports: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let reports = match reports {
        Value::Array(a) => a,
        one => vec![one],
    };
    let mut seen = BTreeSet::new();
    for report in &reports {
        let kind = report["check_type"].as_str().unwrap_or_default().to_owned();
        let summary = &report["summary"];
        let failed: Vec<String> = report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} {} ({}:{})",
                    c["check_id"], c["check_name"], c["file_path"], c["file_line_range"]
                )
            })
            .collect();
        assert!(
            failed.is_empty(),
            "checkov {kind}: failed checks:\n  {}",
            failed.join("\n  ")
        );
        assert_eq!(
            summary["parsing_errors"], 0,
            "checkov {kind}: files it could not parse: {}",
            report["results"]["parsing_errors"]
        );
        assert!(
            summary["passed"].as_u64().unwrap_or(0) > 0,
            "checkov {kind}: nothing passed: {summary}"
        );
        for skipped in report["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let reason = skipped["check_result"]["suppress_comment"]
                .as_str()
                .unwrap_or_default();
            assert!(
                reason.trim().len() > 10,
                "checkov {kind}: {} is suppressed in {} without a reason",
                skipped["check_id"],
                skipped["file_path"]
            );
        }
        eprintln!("checkov {kind}: {summary}");
        seen.insert(kind);
    }
    assert!(
        seen.contains("bicep") && seen.contains("dockerfile"),
        "checkov scanned {seen:?}, expected bicep and dockerfile"
    );
    assert!(out.status.success(), "checkov exited with {}", out.status);
}
