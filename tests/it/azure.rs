//! The Azure backend end to end on Azurite: the CLI, and a job that resumes after the storage
//! went away (Azurite killed mid-job, restarted on the same ports with `--location`).

use std::time::Duration;

use engine::{JobId, TaskStatus};
use test_support::azurite::Azurite;

use crate::crash::{assert_closed_once, wait_succeeded, worker};
use serde_json::json;

use crate::support::{self, Store, azurite_bin, azurite_connection, wait_for};

#[test]
fn azure_run_is_idempotent_and_reports_like_sqlite() {
    let store = Store::azure(azurite_connection());
    let (code, job) = store.run_json(&["run", "hello_world", "--params", r#"{"n": 30}"#]);
    assert_eq!(code, 0, "{job}");
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["result"]["greetings"], 30);
    assert_eq!(job["tasks"]["SUCCEEDED"], 31);
    let (code, again) = store.run_json(&["run", "hello_world", "--params", r#"{"n": 30}"#]);
    assert_eq!((code, &again["id"]), (0, &job["id"]), "the same job");
    let (code, failed) = store.run_json(&[
        "run",
        "hello_world",
        "--params",
        r#"{"n": 10, "fail_every": 5}"#,
    ]);
    assert_eq!((code, failed["status"].as_str()), (1, Some("FAILED")));
}

#[test]
fn azure_bad_configuration_fails_fast_and_names_the_endpoint() {
    // A closed port: refused at once, bounded retries, the endpoint in the message.
    let closed = engine_azure::azurite_connection_string("127.0.0.1", 9, 9, 9);
    let store = Store::azure(closed);
    let started = std::time::Instant::now();
    let out = store.tessera(&["jobs"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("http://127.0.0.1:9/devstoreaccount1"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // A wrong key: 403, no retry loop, a hint.
    let good = azurite_connection();
    let key_start = good.find("AccountKey=").unwrap() + "AccountKey=".len();
    let key_end = key_start + good[key_start..].find(';').unwrap();
    let bad = format!("{}a2V5a2V5{}", &good[..key_start], &good[key_end..]);
    let out = Store::azure(bad).tessera(&["jobs"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("HTTP 403"), "{stderr}");
    assert!(stderr.contains("account key"), "{stderr}");

    // A SAS that may only read: connecting (it creates the tables) is refused, at once, with
    // the permission named.
    let read_only = test_support::azurite::read_only_sas_connection_string(&good);
    let started = std::time::Instant::now();
    let out = Store::azure(read_only).tessera(&["jobs"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("HTTP 403"), "{stderr}");
    assert!(stderr.contains("Permission"), "{stderr}");
    assert!(stderr.contains("role"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // Neither a connection string nor an account: invalid input, the flags named.
    let out = store
        .tessera(&["jobs"])
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .env_remove("AZURE_STORAGE_ACCOUNT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--connection-string"), "{stderr}");
}

#[test]
fn azure_job_resumes_after_the_storage_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut azurite = Azurite::start(&azurite_bin(), Some(dir.path())).expect("starting Azurite");
    let store = Store::azure(azurite.connection_string());
    let (code, job) = store.run_json(&[
        "submit",
        "synthetic",
        "--params",
        r#"{"n": 16, "sleep_ms": 400, "label": "restart"}"#,
    ]);
    assert_eq!(code, 0, "{job}");
    let id: JobId = job["id"].as_str().unwrap().parse().unwrap();
    let mut w = worker(&store, "steady");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(store.backend());
    wait_for("some tasks to finish", Duration::from_secs(60), || {
        let counts = rt.block_on(backend.tasks.count_tasks(&id, None)).ok()?;
        (counts.get(TaskStatus::Succeeded) >= 2).then_some(())
    });
    azurite.stop();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        w.0.try_wait().unwrap().is_none(),
        "the worker survives the outage"
    );
    azurite.restart().expect("restarting Azurite");

    wait_succeeded(&rt, &backend, &id, 17, Duration::from_secs(120));
    assert_closed_once(&rt, &backend, &id);
    let _ = w.0.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_geo_jobs_read_and_write_blob_containers() {
    // The data in Blob containers of the same account: rasters uploaded there, COGs written
    // there (the container created on first write), GDAL fed from a local download.
    let store = Store::azure(azurite_connection());
    let Store::Azure { prefix, .. } = &store else {
        unreachable!()
    };
    let (input, output) = (format!("{prefix}-in"), format!("{prefix}-cogs"));
    let ours = tempfile::tempdir().unwrap();
    let blobs = store.azure_blobs(ours.path()).await;
    for (blob, fixture) in [
        ("RGB.byte.tif", "RGB.byte.tif"),
        ("dem/hills.tiff", "dem-hills.tiff"),
    ] {
        blobs
            .put_file(&input, blob, &support::fixture(fixture))
            .await
            .unwrap();
    }
    // The processes' cache is not ours: what we read back comes from Azurite.
    let theirs = tempfile::tempdir().unwrap();
    let data_dir = theirs.path().to_str().unwrap();
    let run = |job_type: &str, params: serde_json::Value| {
        let params = params.to_string();
        store.run_json(&["run", job_type, "--params", &params, "--data-dir", data_dir])
    };
    let (code, job) = run("list_container", json!({ "container": input }));
    assert_eq!(code, 0, "{job}");
    assert_eq!(job["result"]["count"], 2, "{job}");
    assert_eq!(job["result"]["rasters"].as_array().map(Vec::len), Some(2));

    let params = json!({ "container": input, "blobs": ["RGB.byte.tif", "dem/hills.tiff"],
                         "output_container": output });
    let (code, job) = run("cog_conversion", params);
    assert_eq!(code, 0, "{job}");
    assert_eq!(job["result"]["converted"], 2, "{job}");
    let listed: Vec<String> = blobs
        .list(&output, "")
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(listed, ["RGB.byte.cog.tif", "dem/hills.cog.tif"]);
    for name in &listed {
        let path = blobs.local_path(&output, name).await.unwrap();
        assert!(path.starts_with(ours.path()));
        let (valid, text) = services::testing::gdal_validate(&path);
        assert!(valid, "{name}: {text}");
    }
    assert!(
        !theirs.path().join(&output).exists(),
        "outputs go to Blob storage, not to the local data directory"
    );

    // A missing input container: refused at submission, the container named.
    let missing = json!({ "container": format!("{prefix}-nope") }).to_string();
    let out = store
        .tessera(&[
            "run",
            "list_container",
            "--params",
            &missing,
            "--data-dir",
            data_dir,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("container \"{prefix}-nope\" does not exist")),
        "{stderr}"
    );
}

#[test]
fn a_blob_store_outage_at_submission_is_exit_3_not_invalid_input() {
    // The jobs live in SQLite; the rasters on an Azure Blob account that does not answer.
    let dir = tempfile::tempdir().unwrap();
    let closed = engine_azure::azurite_connection_string("127.0.0.1", 9, 9, 9);
    for (job_type, params) in [
        ("list_container", r#"{"container": "rasters"}"#),
        (
            "tiled_raster",
            r#"{"container": "rasters", "blob": "a.tif", "output_container": "tiles", "min_zoom": 1, "max_zoom": 2}"#,
        ),
        (
            "cog_conversion",
            r#"{"container": "rasters", "blob": "a.tif", "output_container": "cogs"}"#,
        ),
    ] {
        let out = support::tessera(
            &dir.path().join("tessera.db"),
            &[
                "submit",
                job_type,
                "--params",
                params,
                "--data-store",
                "azure",
            ],
        )
        .env("AZURE_STORAGE_CONNECTION_STRING", &closed)
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{job_type}: {stderr}");
        assert!(stderr.contains("cannot check"), "{job_type}: {stderr}");
        assert!(!stderr.contains("invalid params"), "{job_type}: {stderr}");
    }
}

/// `tessera poison` reads the dead-letter queue it is told (`--dead-letter-queue`): a
/// Functions deployment parks its dead letters in `<prefix>-tasks-dead`.
#[test]
fn the_cli_lists_and_discards_the_dead_letters_of_the_queue_it_is_told() {
    let connection = azurite_connection();
    let store = Store::azure(connection.clone());
    let Store::Azure { prefix, .. } = &store else {
        unreachable!()
    };
    let dead = format!("{prefix}-tasks-dead");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let queues = test_support::host_queues::HostQueues::connect(&connection).unwrap();
    rt.block_on(async {
        queues.create(&dead).await.unwrap();
        queues
            .put(&dead, "not a message", Duration::ZERO)
            .await
            .unwrap();
    });
    let (code, listed) = store.run_json(&["poison", "list", "--dead-letter-queue", &dead]);
    assert_eq!(code, 0, "{listed}");
    let items = listed.as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["kind"], "unreadable", "{listed}");
    let (code, default) = store.run_json(&["poison", "list"]);
    assert_eq!(
        (code, default),
        (0, json!([])),
        "the default queue is another one"
    );
    let id = items[0]["id"].as_str().unwrap();
    let (code, _) = store.run_json(&["poison", "discard", id, "--dead-letter-queue", &dead]);
    assert_eq!(code, 0);
    let (_, after) = store.run_json(&["poison", "list", "--dead-letter-queue", &dead]);
    assert_eq!(after, json!([]));
}
