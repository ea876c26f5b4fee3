//! The `tessera` CLI on a real SQLite file.

use serde_json::Value;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::{run, run_json, tessera, wait_for};

fn db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.db");
    (dir, path)
}

#[test]
fn run_hello_world_then_the_same_request_returns_the_stored_job() {
    let (_dir, db) = db();
    let (code, job) = run_json(
        &db,
        &[
            "run",
            "hello_world",
            "--params",
            r#"{"n": 1000}"#,
            "--workers",
            "16",
        ],
    );
    assert_eq!(code, 0, "{job}");
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["job_type"], "hello_world");
    assert_eq!(
        job["params"],
        serde_json::json!({"fail_every": 0, "message": "hello", "n": 1000})
    );
    assert_eq!(job["result"]["greetings"], 1000);
    assert_eq!(job["tasks"]["SUCCEEDED"], 1001);
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64);

    // Same request (defaults spelled out, keys reordered): same job, not re-executed.
    let (code, again) = run_json(
        &db,
        &[
            "run",
            "hello_world",
            "--params",
            r#"{"message": "hello", "n": 1000.0}"#,
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["finished_at"], job["finished_at"], "not run again");

    let (code, status) = run_json(&db, &["status", &id]);
    assert_eq!((code, status["status"].as_str()), (0, Some("SUCCEEDED")));
    let (code, jobs) = run_json(&db, &["jobs"]);
    assert_eq!(code, 0);
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));

    let (code, stdout, _) = run(&db, &["events", &id]);
    assert_eq!(code, 0);
    let kinds: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "job_completed").count(), 1);
    assert_eq!(
        kinds.iter().filter(|k| *k == "task_completed").count(),
        1001
    );
    assert!(
        kinds.contains(&"job_started".to_owned()) && kinds.contains(&"task_started".to_owned())
    );
}

#[test]
fn failures_follow_the_outcome_policy_and_force_reruns() {
    let (_dir, db) = db();
    let params = r#"{"n": 10, "fail_every": 3}"#;
    let (code, job) = run_json(&db, &["run", "hello_world", "--params", params]);
    assert_eq!((code, job["status"].as_str()), (1, Some("FAILED")), "{job}");
    assert_eq!(job["error"]["code"], "TASK_FAILED");
    assert!(job["tasks"]["FAILED"].as_u64().unwrap() >= 1);
    assert_eq!(job["attempt"], 1);
    // Nothing left unfinished.
    let unfinished: u64 = ["PENDING", "QUEUED", "RUNNING", "RETRY_WAIT"]
        .iter()
        .map(|s| job["tasks"][s].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(unfinished, 0);

    // Without --force: the stored FAILED job at once.
    let (code, again) = run_json(&db, &["run", "hello_world", "--params", params]);
    assert_eq!((code, again["attempt"].as_u64()), (1, Some(1)));

    // --force with the continue policy: same ID, attempt 2, every greeting tried.
    let (code, rerun) = run_json(
        &db,
        &[
            "run",
            "hello_world",
            "--params",
            params,
            "--force",
            "--outcome",
            "continue",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(rerun["id"], job["id"]);
    assert_eq!(rerun["attempt"], 2);
    assert_eq!(rerun["status"], "COMPLETED_WITH_ERRORS");
    assert_eq!(rerun["tasks"]["FAILED"], 3);
    assert_eq!(rerun["result"]["greetings"], 7);
    assert_eq!(rerun["result"]["failed"], 3);
}

#[test]
fn bad_input_exits_2_naming_the_field() {
    let (dir, db) = db();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "hello_world", "--params", r#"{"n": 0}"#],
            "n: must be an integer between 1 and 100000, got 0",
        ),
        (
            &["run", "hello_world", "--params", r#"{"message": ""}"#],
            "message: must be 1 to 200 characters long",
        ),
        (
            &["run", "hello_world", "--params", r#"{"n": 3, "bogus": 1}"#],
            "bogus: unknown field",
        ),
        (
            &["run", "hello_world", "--params", "{n: 3"],
            "--params is not valid JSON",
        ),
        (&["run", "no_such_job"], "unknown job type \"no_such_job\""),
        (
            &["submit", "hello_world", "--params", "[]"],
            "params: must be a JSON object",
        ),
        (&["status", "1234"], "invalid job id \"1234\""),
        (
            &["run", "hello_world", "--params", r#"{"n": 1, "n": 2}"#],
            "--params: duplicate key params.n at line 1 column 12",
        ),
        (
            &[
                "submit",
                "hello_world",
                "--params",
                r#"{"n": 2, "message": "a", "message": "a"}"#,
            ],
            "duplicate key params.message",
        ),
        (&["status", &"a".repeat(64)], "no job with id"),
        (
            &["run", "hello_world", "--params", r#"{"n": 2}"#, "--force"],
            "re-runs only FAILED or CANCELLED jobs",
        ),
    ];
    // The --force case needs the job to exist and have succeeded first.
    assert_eq!(
        run(&db, &["run", "hello_world", "--params", r#"{"n": 2}"#]).0,
        0
    );
    for (args, message) in cases {
        let (code, stdout, stderr) = run(&db, args);
        assert_eq!(code, 2, "{args:?}: stdout {stdout} stderr {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: stderr {stderr:?} lacks {message:?}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let missing = dir.path().join("nope.json");
    let (code, _, stderr) = run(
        &db,
        &[
            "run",
            "hello_world",
            "--params-file",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read params file") && stderr.contains("nope.json"),
        "{stderr}"
    );
    // Nothing was stored for the invalid requests.
    let (_, jobs) = run_json(&db, &["jobs"]);
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
}

#[test]
fn submit_then_cancel_cancels_every_unstarted_task() {
    let (_dir, db) = db();
    let (code, job) = run_json(
        &db,
        &[
            "submit",
            "synthetic",
            "--params",
            r#"{"n": 50, "label": "cancel"}"#,
        ],
    );
    assert_eq!((code, job["status"].as_str()), (0, Some("RUNNING")));
    let id = job["id"].as_str().unwrap();
    let (code, cancelled) = run_json(&db, &["cancel", id]);
    assert_eq!(code, 0);
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["tasks"]["CANCELLED"], 51);
    let (code, status) = run_json(&db, &["status", id]);
    assert_eq!((code, status["status"].as_str()), (1, Some("CANCELLED")));
}

#[test]
fn many_processes_creating_one_database_at_once_all_succeed() {
    let (_dir, db) = db();
    let children: Vec<_> = (0..40)
        .map(|_| {
            tessera(
                &db,
                &["run", "hello_world", "--params", r#"{"n": 2}"#, "--json"],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tessera")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (code, jobs) = run_json(&db, &["jobs"]);
    assert_eq!((code, jobs.as_array().map(Vec::len)), (0, Some(1)));
}

fn wal_of(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

#[test]
fn a_clean_exit_leaves_every_commit_in_the_database_file() {
    let (_dir, db) = db();
    let (code, job) = run_json(&db, &["run", "hello_world", "--params", r#"{"n": 50}"#]);
    assert_eq!(code, 0, "{job}");
    let wal_len = std::fs::metadata(wal_of(&db)).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "the -wal still holds commits");
    // The .db file alone, without its -wal and -shm, is the whole database.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let (code, jobs) = run_json(&copy, &["jobs"]);
    assert_eq!(code, 0, "{jobs}");
    assert_eq!(jobs[0]["id"], job["id"]);
    assert_eq!(jobs[0]["status"], "SUCCEEDED");
    assert_eq!(jobs[0]["tasks"]["SUCCEEDED"], 51);
}

#[test]
fn backup_copies_a_database_while_a_worker_uses_it() {
    let (dir, db) = db();
    let (code, job) = run_json(
        &db,
        &[
            "submit",
            "synthetic",
            "--params",
            r#"{"n": 200, "sleep_ms": 20, "label": "backup"}"#,
        ],
    );
    assert_eq!(code, 0, "{job}");
    let mut worker = tessera(&db, &["worker", "--concurrency", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    wait_for(
        "a task to finish",
        std::time::Duration::from_secs(60),
        || {
            let (_, status) = run_json(&db, &["status", &id]);
            (status["tasks"]["SUCCEEDED"].as_u64().unwrap_or(0) > 0).then_some(())
        },
    );
    let backup = dir.path().join("backup.db");
    let (code, stdout, stderr) = run(&db, &["backup", "--to", backup.to_str().unwrap()]);
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_eq!(code, 0, "stdout {stdout} stderr {stderr}");
    let (code, jobs) = run_json(&backup, &["jobs"]);
    assert_eq!(code, 0, "{jobs}");
    assert_eq!(jobs[0]["id"], id.as_str());
    assert_eq!(
        jobs[0]["tasks"]
            .as_object()
            .map(|t| t.values().filter_map(Value::as_u64).sum::<u64>()),
        Some(201)
    );

    // An existing target is refused, naming it; so is a missing directory.
    let (code, _, stderr) = run(&db, &["backup", "--to", backup.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "backup target {} already exists",
            backup.display()
        )),
        "{stderr}"
    );
    let nowhere = dir.path().join("no/such/dir/b.db");
    let (code, _, stderr) = run(&db, &["backup", "--to", nowhere.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn a_db_path_that_cannot_be_a_database_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("missing");
    let in_missing_dir = missing_dir.join("tessera.db");
    let cases = [
        (
            dir.path().to_path_buf(),
            format!("database path {} is a directory", dir.path().display()),
        ),
        (
            in_missing_dir.clone(),
            format!(
                "database path {}: directory {} does not exist",
                in_missing_dir.display(),
                missing_dir.display()
            ),
        ),
    ];
    for (db, message) in &cases {
        for args in [
            &["run", "hello_world", "--params", r#"{"n": 1}"#][..],
            &["jobs"],
            &["status", &"a".repeat(64)],
        ] {
            let (code, stdout, stderr) = run(db, args);
            assert_eq!(
                code, 2,
                "{args:?} on {db:?}: stdout {stdout} stderr {stderr}"
            );
            assert!(
                stderr.contains(message.as_str()),
                "{args:?}: {stderr:?} lacks {message:?}"
            );
        }
    }
    // The read-only commands do not create a database that is not there.
    let absent = dir.path().join("absent.db");
    let (code, _, stderr) = run(&absent, &["jobs"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("database {} does not exist", absent.display())),
        "{stderr}"
    );
    assert!(!absent.exists());
}

/// `status`, `jobs` and `events` on a database file and directory nobody may write. Tests
/// usually run as root, whom file modes do not stop: then these commands run as `nobody`
/// (uid 65534), for whom they do. `submit` failing there shows the setting is really
/// read-only.
#[test]
fn read_only_commands_work_on_a_read_only_database() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;

    let (dir, db) = db();
    let (code, job) = run_json(&db, &["run", "hello_world", "--params", r#"{"n": 5}"#]);
    assert_eq!(code, 0, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let as_root = std::fs::metadata(&db).unwrap().uid() == 0;
    let read_only = |args: &[&str]| {
        let mut cmd = tessera(&db, args);
        if as_root {
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stdout, stderr) = read_only(&["status", &id, "--json"]);
    assert_eq!(code, 0, "status: {stderr}");
    let status: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["status"], "SUCCEEDED");
    let (code, stdout, stderr) = read_only(&["jobs", "--json"]);
    assert_eq!(code, 0, "jobs: {stderr}");
    let jobs: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(jobs[0]["id"], id.as_str());
    let (code, stdout, stderr) = read_only(&["events", &id]);
    assert_eq!(code, 0, "events: {stderr}");
    assert!(stdout.contains("job_completed"), "{stdout}");

    let (code, _, stderr) = read_only(&["submit", "hello_world", "--params", r#"{"n": 6}"#]);
    assert_eq!(code, 3, "a write should fail here: {stderr}");

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn help_lists_every_registered_job_type_and_both_backends() {
    let (_dir, db) = db();
    let (code, stdout, _) = run(&db, &["--help"]);
    assert_eq!(code, 0);
    let registry = controllers::registry(&services::Services::local("."));
    let mut n = 0;
    for c in registry.job_types() {
        n += 1;
        let head: String = c.description().chars().take(30).collect();
        assert!(
            stdout.contains(&format!("{} v{}", c.job_type(), c.job_version()))
                && stdout.contains(&head),
            "{} missing from --help:\n{stdout}",
            c.job_type()
        );
    }
    assert_eq!(n, 6, "every job type is registered");
    assert!(
        stdout.contains("SQLite") && stdout.contains("--backend azure"),
        "{stdout}"
    );
}
