//! The `tessera` CLI on a real SQLite file.

use serde_json::Value;

use crate::support::{run, run_json};

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
