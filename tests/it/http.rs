//! The HTTP API against a real `tessera serve` process on a free loopback port (SQLite), with
//! a real HTTP client (reqwest) and an SSE client reading the raw stream.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{listening_on, tessera};

const KEY: &str = "test-full-access-key-0001";
const RO_KEY: &str = "test-read-only-key-00001";

/// A `tessera serve` process; killed on drop.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
    key: Option<&'static str>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: tempfile::TempDir, extra: &[&str], key: Option<&'static str>) -> Server {
    let cmd = tessera(
        &dir.path().join("tessera.db"),
        &[&["serve", "--bind", "127.0.0.1:0"], extra].concat(),
    );
    start_command(cmd, dir, key)
}

/// Start `cmd` (a `tessera serve --bind 127.0.0.1:0 ...`) and read the address it listens on.
fn start_command(
    mut cmd: std::process::Command,
    dir: tempfile::TempDir,
    key: Option<&'static str>,
) -> Server {
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("starting tessera serve");
    let base = listening_on(&mut child);
    Server {
        child,
        base,
        _dir: dir,
        key,
    }
}

fn serve(extra: &[&str]) -> Server {
    start(tempfile::tempdir().unwrap(), extra, None)
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = reqwest::Client::new().request(method, self.url(path));
        match self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn send(rt: &tokio::runtime::Runtime, r: reqwest::RequestBuilder) -> Reply {
    rt.block_on(async {
        let resp = r.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    })
}

/// Submit `body`, expecting 202; the job's ID.
fn submit_id(rt: &tokio::runtime::Runtime, s: &Server, body: Value) -> String {
    let sub = send(rt, post_json(s, "/api/jobs", body));
    assert_eq!(sub.status, 202, "{}", sub.body);
    sub.body["id"].as_str().unwrap().to_owned()
}

fn post_json(s: &Server, path: &str, body: Value) -> reqwest::RequestBuilder {
    s.request(reqwest::Method::POST, path).json(&body)
}

fn get(s: &Server, path: &str) -> reqwest::RequestBuilder {
    s.request(reqwest::Method::GET, path)
}

/// Wait until the job is terminal; its record.
fn wait_done(rt: &tokio::runtime::Runtime, s: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = send(rt, get(s, &format!("/api/jobs/{id}")));
        assert_eq!(r.status, 200, "{}", r.body);
        let status = r.body["status"].as_str().unwrap_or_default().to_owned();
        if !["PENDING", "RUNNING"].contains(&status.as_str()) {
            return r.body;
        }
        assert!(Instant::now() < deadline, "job {id} still {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A problem document with this status and code.
fn assert_problem(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(
        r.headers["content-type"], "application/problem+json",
        "{}",
        r.body
    );
    assert_eq!(r.body["status"], status);
    assert_eq!(r.body["code"], code, "{}", r.body);
    for member in ["type", "title", "detail"] {
        assert!(r.body[member].is_string(), "{member} in {}", r.body);
    }
}

/// The job ID as any client computes it: SHA-256 of the RFC 8785 form of
/// `{job_type, job_version, params}` (params with defaults filled in).
fn recipe_id(job_type: &str, params: &Value) -> String {
    let doc = json!({"job_type": job_type, "job_version": 1, "params": params});
    let jcs = serde_json_canonicalizer::to_string(&doc).unwrap();
    hex(&Sha256::digest(jcs.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn submit_is_idempotent_and_the_id_is_the_rfc_8785_recipe() {
    let s = serve(&[]);
    let rt = rt();
    let body = json!({"job_type": "hello_world", "params": {"n": 4}});
    let first = send(&rt, post_json(&s, "/api/jobs", body.clone()));
    assert_eq!(first.status, 202, "{}", first.body);
    let id = first.body["id"].as_str().unwrap().to_owned();
    assert_eq!(first.headers["location"], format!("/api/jobs/{id}"));
    assert_eq!(
        id,
        recipe_id(
            "hello_world",
            &json!({"n": 4, "message": "hello", "fail_every": 0})
        )
    );
    let again = send(&rt, post_json(&s, "/api/jobs", body));
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], id.as_str());
    let done = wait_done(&rt, &s, &id);
    assert_eq!(done["status"], "SUCCEEDED");
    let result = send(&rt, get(&s, &format!("/api/jobs/{id}/result")));
    assert_eq!(result.status, 200);
    assert_eq!(result.body["result"]["greetings"], 4);
    // Every response carries a request ID: the caller's, or a generated one.
    let mine = send(
        &rt,
        get(&s, &format!("/api/jobs/{id}")).header("x-request-id", "trace-me-42"),
    );
    assert_eq!(mine.headers["x-request-id"], "trace-me-42");
    assert!(!result.headers["x-request-id"].is_empty());
}

#[test]
fn client_mistakes_are_problems_with_their_status_and_code() {
    let s = start(
        tempfile::tempdir().unwrap(),
        &["--max-body", "2048", "--no-workers"],
        None,
    );
    let rt = rt();
    let raw = |body: &str, content_type: &str| {
        s.request(reqwest::Method::POST, "/api/jobs")
            .header("content-type", content_type)
            .body(body.to_owned())
    };
    assert_problem(
        &send(&rt, raw("{not json", "application/json")),
        400,
        "INVALID_JSON",
    );
    assert_problem(
        &send(&rt, raw(r#"{"job_type":"hello_world"}"#, "text/plain")),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    assert_problem(
        &send(
            &rt,
            raw(
                r#"{"job_type":"x","params":{"n":1,"n":2}}"#,
                "application/json",
            ),
        ),
        400,
        "INVALID_JSON",
    );
    let missing = send(&rt, raw(r#"{"params":{}}"#, "application/json"));
    assert_problem(&missing, 400, "INVALID_REQUEST");
    let unknown = send(&rt, post_json(&s, "/api/jobs", json!({"job_type": "nope"})));
    assert_problem(&unknown, 400, "UNKNOWN_JOB_TYPE");
    let invalid = send(
        &rt,
        post_json(
            &s,
            "/api/jobs",
            json!({"job_type": "hello_world", "params": {"n": 0}}),
        ),
    );
    assert_problem(&invalid, 400, "INVALID_PARAMS");
    assert_eq!(invalid.body["errors"][0]["field"], "params.n");
    let big = format!(
        r#"{{"job_type":"hello_world","params":{{"message":"{}"}}}}"#,
        "x".repeat(4096)
    );
    assert_problem(
        &send(&rt, raw(&big, "application/json")),
        413,
        "BODY_TOO_LARGE",
    );
    assert_problem(&send(&rt, get(&s, "/api/jobs/abc")), 400, "INVALID_ID");
    let nobody = "0".repeat(64);
    assert_problem(
        &send(&rt, get(&s, &format!("/api/jobs/{nobody}"))),
        404,
        "JOB_NOT_FOUND",
    );
    assert_problem(
        &send(&rt, get(&s, &format!("/api/jobs/{nobody}/tasks/{nobody}"))),
        404,
        "JOB_NOT_FOUND",
    );
    assert_problem(
        &send(&rt, get(&s, "/api/jobs?limit=0")),
        400,
        "INVALID_QUERY",
    );
    assert_problem(
        &send(&rt, get(&s, "/api/jobs?status=bogus")),
        400,
        "INVALID_QUERY",
    );
    assert_problem(
        &send(&rt, get(&s, "/api/jobs?colour=red")),
        400,
        "INVALID_QUERY",
    );
    assert_problem(&send(&rt, get(&s, "/nowhere")), 404, "NOT_FOUND");

    // Conflicts: no workers here, so the job stays accepted (PENDING).
    let id = submit_id(
        &rt,
        &s,
        json!({"job_type": "hello_world", "params": {"n": 2}}),
    );
    assert_problem(
        &send(&rt, get(&s, &format!("/api/jobs/{id}/result"))),
        409,
        "JOB_NOT_FINISHED",
    );
    assert_problem(
        &send(
            &rt,
            s.request(reqwest::Method::DELETE, &format!("/api/jobs/{id}")),
        ),
        409,
        "JOB_NOT_FINISHED",
    );
    assert_problem(
        &send(
            &rt,
            post_json(
                &s,
                "/api/jobs?force=true",
                json!({"job_type": "hello_world", "params": {"n": 2}}),
            ),
        ),
        409,
        "NOT_RERUNNABLE",
    );
    let cancel = send(
        &rt,
        s.request(reqwest::Method::POST, &format!("/api/jobs/{id}/cancel")),
    );
    assert_eq!(cancel.status, 202, "{}", cancel.body);
    assert_eq!(cancel.body["status"], "CANCELLED");
    assert_problem(
        &send(
            &rt,
            s.request(reqwest::Method::POST, &format!("/api/jobs/{id}/cancel")),
        ),
        409,
        "JOB_FINISHED",
    );
}

#[test]
fn listings_page_with_cursors_and_filters_and_delete_removes_the_job() {
    let s = serve(&[]);
    let rt = rt();
    let mut ids = Vec::new();
    for n in 1..=5 {
        let r = send(
            &rt,
            post_json(
                &s,
                "/api/jobs",
                json!({"job_type": "hello_world", "params": {"n": n}}),
            ),
        );
        ids.push(r.body["id"].as_str().unwrap().to_owned());
        std::thread::sleep(Duration::from_millis(5));
    }
    let failing = send(
        &rt,
        post_json(
            &s,
            "/api/jobs",
            json!({"job_type": "hello_world", "params": {"n": 3, "fail_every": 2}}),
        ),
    );
    let failing_id = failing.body["id"].as_str().unwrap().to_owned();
    for id in ids.iter().chain([&failing_id]) {
        wait_done(&rt, &s, id);
    }
    // Newest first, two at a time, until the cursor runs out.
    let mut seen = Vec::new();
    let mut path = "/api/jobs?limit=2&job_type=hello_world".to_owned();
    loop {
        let page = send(&rt, get(&s, &path));
        assert_eq!(page.status, 200, "{}", page.body);
        for job in page.body["items"].as_array().unwrap() {
            seen.push(job["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/jobs?limit=2&job_type=hello_world&cursor={c}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = ids.iter().rev().cloned().collect();
    expected.insert(0, failing_id.clone());
    assert_eq!(seen, expected);
    let failed = send(&rt, get(&s, "/api/jobs?status=failed"));
    let failed: Vec<&str> = failed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, vec![failing_id.as_str()]);

    // Tasks: paged, with dependencies and groups to draw the DAG; one task in detail.
    let id = &ids[4];
    let tasks = send(&rt, get(&s, &format!("/api/jobs/{id}/tasks?limit=3")));
    assert_eq!(tasks.body["items"].as_array().unwrap().len(), 3);
    assert!(tasks.body["next_cursor"].is_string());
    let barrier = send(
        &rt,
        get(&s, &format!("/api/jobs/{id}/tasks?name=summarize")),
    );
    let barrier = &barrier.body["items"][0];
    assert_eq!(barrier["waits_for"], "greetings");
    let greets = send(
        &rt,
        get(&s, &format!("/api/jobs/{id}/tasks?name=greet&limit=1000")),
    );
    assert_eq!(greets.body["items"].as_array().unwrap().len(), 5);
    assert!(
        greets.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["group"] == "greetings")
    );
    let task_id = barrier["id"].as_str().unwrap();
    let detail = send(&rt, get(&s, &format!("/api/jobs/{id}/tasks/{task_id}")));
    assert_eq!(detail.status, 200);
    assert_eq!(detail.body["status"], "SUCCEEDED");
    assert_eq!(detail.body["starts"], 1);

    // Force re-run of the failed job: attempt 2.
    let rerun = send(
        &rt,
        post_json(
            &s,
            "/api/jobs?force=true",
            json!({"job_type": "hello_world", "params": {"n": 3, "fail_every": 2}}),
        ),
    );
    assert_eq!(rerun.status, 202, "{}", rerun.body);
    assert_eq!(rerun.body["attempt"], 2);
    wait_done(&rt, &s, &failing_id);

    // Delete: 204, then it is gone with its tasks and events.
    let deleted = send(
        &rt,
        s.request(reqwest::Method::DELETE, &format!("/api/jobs/{id}")),
    );
    assert_eq!(deleted.status, 204);
    assert_problem(
        &send(&rt, get(&s, &format!("/api/jobs/{id}"))),
        404,
        "JOB_NOT_FOUND",
    );
    assert_problem(
        &send(&rt, get(&s, &format!("/api/jobs/{id}/events?after=0"))),
        404,
        "JOB_NOT_FOUND",
    );
}

#[test]
fn api_keys_are_required_and_read_only_keys_only_read() {
    let (dir, keys) = key_file(&format!("# the API's keys\n{KEY}\nro:{RO_KEY}\n"));
    let mut s = start(dir, &["--api-key-file", &keys], None);
    let rt = rt();
    let body = json!({"job_type": "hello_world", "params": {"n": 1}});
    let missing = send(&rt, post_json(&s, "/api/jobs", body.clone()));
    assert_problem(&missing, 401, "UNAUTHORIZED");
    assert!(
        missing.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    s.key = Some("not-a-key-of-this-server");
    assert_problem(&send(&rt, get(&s, "/api/jobs")), 401, "UNAUTHORIZED");
    s.key = Some(RO_KEY);
    assert_eq!(send(&rt, get(&s, "/api/jobs")).status, 200);
    assert_problem(
        &send(&rt, post_json(&s, "/api/jobs", body.clone())),
        403,
        "FORBIDDEN",
    );
    s.key = Some(KEY);
    assert_eq!(send(&rt, post_json(&s, "/api/jobs", body)).status, 202);
    // Probes need no key.
    s.key = None;
    assert_eq!(send(&rt, get(&s, "/healthz")).status, 200);
    // Without keys, only loopback.
    let out = tessera(
        &tempfile::tempdir().unwrap().path().join("t.db"),
        &["serve", "--bind", "0.0.0.0:0"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

/// A temp dir holding `keys.txt` with `text`, and the file's path.
fn key_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.txt");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_str().unwrap().to_owned())
}

#[test]
fn a_key_source_without_keys_is_refused_not_auth_off() {
    // An empty file, or one of comments only, is a mistake: exit 2 naming the file.
    for text in ["", "# keys go here\n\n"] {
        let (dir, keys) = key_file(text);
        let out = tessera(
            &dir.path().join("t.db"),
            &["serve", "--bind", "127.0.0.1:0", "--api-key-file", &keys],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&keys) && stderr.contains("no API key"),
            "{stderr}"
        );
    }
    // The same for the environment variable, set but empty.
    let dir = tempfile::tempdir().unwrap();
    let out = tessera(
        &dir.path().join("t.db"),
        &["serve", "--bind", "127.0.0.1:0"],
    )
    .env("TESSERA_API_KEYS", " ")
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("TESSERA_API_KEYS: no API key"), "{stderr}");
    // Keys are not taken on the command line (`ps` would show them).
    let out = tessera(
        &dir.path().join("t.db"),
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--api-keys",
            "0123456789abcdef",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-keys"));
}

/// Read an SSE stream until it closes: (id, event, data) of each event.
fn read_sse(rt: &tokio::runtime::Runtime, r: reqwest::RequestBuilder) -> Vec<(u64, String, Value)> {
    rt.block_on(async {
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut stream = resp.bytes_stream();
        let mut text = String::new();
        let read = async {
            while let Some(chunk) = stream.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            }
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("the stream closes after job_completed");
        text.split("\n\n")
            .filter(|block| !block.trim().is_empty() && !block.starts_with(':'))
            .map(|block| {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                        .unwrap_or_default()
                        .to_owned()
                };
                (
                    field("id").parse().unwrap(),
                    field("event"),
                    serde_json::from_str(&field("data")).unwrap(),
                )
            })
            .collect()
    })
}

#[test]
fn filtered_pages_are_full_and_bad_queries_name_their_parameter() {
    let s = serve(&[]);
    let rt = rt();
    // 15 jobs: every fifth one fails (3 FAILED among 12 SUCCEEDED), interleaved in time.
    let mut failed = Vec::new();
    for i in 0..15 {
        let params = if i % 5 == 2 {
            json!({"n": 3, "fail_every": 1, "message": format!("m{i}")})
        } else {
            json!({"n": 1, "message": format!("m{i}")})
        };
        let id = submit_id(
            &rt,
            &s,
            json!({"job_type": "hello_world", "params": params}),
        );
        wait_done(&rt, &s, &id);
        if i % 5 == 2 {
            failed.push(id);
        }
    }
    failed.reverse(); // newest first
    // Pages of 2 FAILED jobs are full until the matches run out, and chain to every match.
    let mut seen = Vec::new();
    let mut path = "/api/jobs?status=FAILED&limit=2".to_owned();
    loop {
        let page = send(&rt, get(&s, &path));
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.body["items"].as_array().unwrap();
        seen.extend(items.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => {
                assert_eq!(items.len(), 2, "a page is full while matches remain");
                path = format!("/api/jobs?status=FAILED&limit=2&cursor={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(seen, failed);
    let one = send(
        &rt,
        get(&s, "/api/jobs?status=FAILED&job_type=hello_world&limit=20"),
    );
    assert_eq!(
        one.body["items"].as_array().unwrap().len(),
        3,
        "{}",
        one.body
    );
    // Mistakes name their parameter.
    for (query, field) in [
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=12:zz", "cursor"),
        ("job_type=a%00b", "job_type"),
        ("status=FAILED&status=SUCCEEDED", "status"),
        ("limit=5&limit=6", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("colour=red", "colour"),
    ] {
        let r = send(&rt, get(&s, &format!("/api/jobs?{query}")));
        assert_problem(&r, 400, "INVALID_QUERY");
        assert_eq!(r.body["errors"][0]["field"], field, "{query}: {}", r.body);
    }
    let id = &failed[0];
    for (query, field) in [
        ("cursor=nope", "cursor"),
        ("name=x&name=y", "name"),
        ("limit=0", "limit"),
    ] {
        let r = send(&rt, get(&s, &format!("/api/jobs/{id}/tasks?{query}")));
        assert_problem(&r, 400, "INVALID_QUERY");
        assert_eq!(r.body["errors"][0]["field"], field, "{query}: {}", r.body);
    }
    for path in [
        "/api/poison?limit=0",
        &format!("/api/jobs/{id}/events?after=0&limit=0"),
    ] {
        let r = send(&rt, get(&s, path));
        assert_problem(&r, 400, "INVALID_QUERY");
        assert_eq!(r.body["errors"][0]["field"], "limit", "{path}: {}", r.body);
    }
    // A task page filtered by name is full too.
    let tasks = send(
        &rt,
        get(&s, &format!("/api/jobs/{id}/tasks?name=greet&limit=2")),
    );
    assert_eq!(tasks.status, 200, "{}", tasks.body);
    assert_eq!(
        tasks.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        tasks.body
    );
    assert!(tasks.body["next_cursor"].is_string(), "{}", tasks.body);
}

#[test]
fn sse_of_a_cancelled_job_ends_after_its_last_event_not_at_job_completed() {
    let s = serve(&["--workers", "4"]);
    let rt = rt();
    let id = submit_id(
        &rt,
        &s,
        json!({"job_type": "synthetic", "params": {"n": 40, "sleep_ms": 400, "label": "sse-cancel"}}),
    );
    // A stream opened while the job runs, then the job is cancelled with tasks running.
    let stream = std::thread::scope(|scope| {
        let reader =
            scope.spawn(|| read_sse(&self::rt(), get(&s, &format!("/api/jobs/{id}/events"))));
        std::thread::sleep(Duration::from_millis(600));
        let r = send(
            &rt,
            post_json(&s, &format!("/api/jobs/{id}/cancel"), json!({})),
        );
        assert!(r.status.is_success(), "{} {}", r.status, r.body);
        reader.join().unwrap()
    });
    let names: Vec<&str> = stream.iter().map(|e| e.1.as_str()).collect();
    let completed = names
        .iter()
        .position(|n| *n == "job_completed")
        .expect("job_completed");
    assert!(
        names[completed..].contains(&"tasks_ended"),
        "the cancel's tasks_ended comes after job_completed and is streamed: {names:?}"
    );
    // Exactly the events the log holds once nothing runs: none lost, none twice.
    let (stored, page) = event_page(&rt, &s, &id);
    assert_eq!(stream.iter().map(|e| e.0).collect::<Vec<_>>(), stored);
    assert_eq!(
        page.body["items"].as_array().unwrap().last().unwrap()["event"]["type"],
        names.last().unwrap().to_string()
    );
}

/// The job's events as one JSON page: their cursors, and the page.
fn event_page(rt: &tokio::runtime::Runtime, s: &Server, id: &str) -> (Vec<u64>, Reply) {
    let page = send(
        rt,
        get(s, &format!("/api/jobs/{id}/events?after=0&limit=1000")),
    );
    let cursors = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cursor"].as_u64().unwrap())
        .collect();
    (cursors, page)
}

#[test]
fn sse_streams_a_job_to_its_end_and_resumes_with_last_event_id() {
    let s = serve(&[]);
    let rt = rt();
    let id = submit_id(
        &rt,
        &s,
        json!({"job_type": "synthetic", "params": {"n": 30, "sleep_ms": 20, "label": "sse"}}),
    );
    let all = read_sse(&rt, get(&s, &format!("/api/jobs/{id}/events")));
    let last = all.last().unwrap();
    assert_eq!(last.1, "job_completed", "closed after job_completed");
    assert_eq!(all.iter().filter(|e| e.1 == "job_completed").count(), 1);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    for (_, name, data) in &all {
        assert_eq!(data["type"], name.as_str());
    }
    // The same events as the JSON page.
    let (cursors, _) = event_page(&rt, &s, &id);
    assert_eq!(cursors, all.iter().map(|e| e.0).collect::<Vec<_>>());
    // A reconnect after the 10th event gets exactly the rest, no duplicates.
    let resume_at = all[9].0;
    let rest = read_sse(
        &rt,
        get(&s, &format!("/api/jobs/{id}/events")).header("last-event-id", resume_at.to_string()),
    );
    assert_eq!(
        rest.iter().map(|e| e.0).collect::<Vec<_>>(),
        all[10..].iter().map(|e| e.0).collect::<Vec<_>>()
    );
}

/// `kill -TERM` the server and wait for its exit code (within 30 s).
fn terminate(s: &mut Server) -> Option<i32> {
    let started = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start `tessera serve --bind 127.0.0.1:0 EXTRA` on `dir`'s database with its log (at INFO)
/// going to `log`, a file: not a terminal.
fn start_logged(dir: tempfile::TempDir, extra: &[&str], log: &std::path::Path) -> Server {
    let mut cmd = tessera(
        &dir.path().join("tessera.db"),
        &[&["serve", "--bind", "127.0.0.1:0"], extra].concat(),
    );
    cmd.env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    let mut child = cmd.spawn().expect("starting tessera serve");
    let base = listening_on(&mut child);
    Server {
        child,
        base,
        _dir: dir,
        key: None,
    }
}

/// SIGTERM, again and again, with and without jobs in flight: every time the server exits 0
/// having closed its store (the SQLite WAL checkpointed: no `-wal` file, or an empty one),
/// and logs as plain text (no colour codes in a file) with the start at INFO; then a new
/// server on the same database finishes every job.
#[test]
fn sigterm_drains_and_the_job_finishes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tessera.db");
    let wal = dir.path().join("tessera.db-wal");
    let logs = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut dir = Some(dir);
    let mut ids = Vec::new();
    for run in 0..20 {
        let log = logs.path().join(format!("serve-{run}.log"));
        let mut s = start_logged(dir.take().unwrap(), &["--workers", "4"], &log);
        let in_flight = run % 2 == 0;
        if in_flight {
            let id = submit_id(
                &rt,
                &s,
                json!({"job_type": "synthetic", "params": {"n": 8, "sleep_ms": 200, "label": format!("drain-{run}")}}),
            );
            // Let the worker start some of its tasks.
            std::thread::sleep(Duration::from_millis(300));
            ids.push(id);
        } else if run % 4 == 1 {
            // A request just before the signal.
            assert_eq!(send(&rt, get(&s, "/healthz")).status, 200);
        }
        let code = terminate(&mut s);
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            code,
            Some(0),
            "run {run} (job in flight: {in_flight}):\n{text}"
        );
        let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert_eq!(
            wal_len, 0,
            "run {run}: the WAL was not checkpointed at exit:\n{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "run {run}: colour codes in a log file:\n{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains(" INFO ") && l.contains("serving the API")),
            "run {run}: no INFO start line:\n{text}"
        );
        dir = Some(std::mem::replace(&mut s._dir, tempfile::tempdir().unwrap()));
    }
    // Nothing lost: a new server on the same database finishes the jobs.
    assert!(db.exists());
    let s = start(dir.take().unwrap(), &["--workers", "8"], None);
    for id in ids {
        let done = wait_done(&rt, &s, &id);
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
    }
}

/// Write `request` on a raw connection to the server, then read what comes back until the
/// server closes the connection (or `limit` passes): (the bytes read, closed by the server).
fn raw_exchange(s: &Server, request: &[u8], limit: Duration) -> (String, bool) {
    use std::io::{Read, Write};
    let addr = s.base.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() > deadline {
                    break false;
                }
            }
            Err(e) => panic!("reading: {e}"),
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// Slow clients: a request whose headers never end, and a keep-alive connection left idle,
/// are closed after `--read-timeout`; a body that stops coming is answered 408 BODY_TIMEOUT
/// (the client's doing: logged at INFO, not as a server error).
#[test]
fn slow_clients_are_disconnected_after_the_read_timeout() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let s = start_logged(
        tempfile::tempdir().unwrap(),
        &["--read-timeout", "1", "--no-workers"],
        &log,
    );
    // Slowloris: part of the headers, then nothing.
    let (answer, closed) = raw_exchange(
        &s,
        b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: 1",
        Duration::from_secs(15),
    );
    assert!(closed, "a request with unfinished headers was kept open");
    assert!(!answer.contains("200 OK"), "{answer}");
    // An idle keep-alive connection: answered, then closed.
    let (answer, closed) = raw_exchange(
        &s,
        b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n",
        Duration::from_secs(15),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection was kept open");
    // A body that stops half-way.
    let (answer, _) = raw_exchange(
        &s,
        b"POST /api/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"job_type\"",
        Duration::from_secs(15),
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("\"code\":\"BODY_TIMEOUT\""), "{answer}");
    // The server still serves.
    assert_eq!(send(&rt(), get(&s, "/healthz")).status, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("BODY_TIMEOUT"))
        .unwrap_or_else(|| panic!("the 408 is not logged:\n{text}"));
    assert!(line.contains(" INFO "), "{line}");
    assert!(!text.contains("ERROR"), "{text}");
}

/// A request still in flight when the 10 s drain ends (here a body that keeps not coming,
/// under a 25 s read timeout) is dropped: the server still closes its store (WAL
/// checkpointed) and exits 0.
#[test]
fn a_request_outliving_the_drain_is_dropped_and_the_store_still_closed() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("tessera.db-wal");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let mut s = start_logged(dir, &["--read-timeout", "25", "--no-workers"], &log);
    let rt = rt();
    submit_id(
        &rt,
        &s,
        json!({"job_type": "hello_world", "params": {"n": 2}}),
    );
    let addr = s.base.strip_prefix("http://").unwrap().to_owned();
    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    stalled
        .write_all(b"POST /api/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let code = terminate(&mut s);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("requests still in flight"), "{text}");
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "the store was not closed:\n{text}"
    );
    drop(stalled);
}

/// Problem details everywhere: a method a route does not take (405 with `Allow`), an ID
/// that is not 64 lowercase hex digits, an unusable `X-Request-Id` (replaced), a forced
/// re-run of a job that cannot be (worded for any client).
#[test]
fn methods_ids_and_request_ids_are_checked_and_answered_as_problems() {
    let s = serve(&["--no-workers"]);
    let rt = rt();
    for (method, path, allowed) in [
        (reqwest::Method::PUT, "/api/jobs", vec!["GET", "POST"]),
        (reqwest::Method::POST, "/healthz", vec!["GET"]),
        (reqwest::Method::PATCH, "/api/poison", vec!["GET"]),
    ] {
        let r = send(&rt, s.request(method.clone(), path));
        assert_problem(&r, 405, "METHOD_NOT_ALLOWED");
        let allow = r.headers["allow"].to_str().unwrap().to_owned();
        for m in allowed {
            assert!(allow.contains(m), "{method} {path}: Allow: {allow}");
        }
    }
    let id = submit_id(
        &rt,
        &s,
        json!({"job_type": "hello_world", "params": {"n": 3}}),
    );
    assert_eq!(send(&rt, get(&s, &format!("/api/jobs/{id}"))).status, 200);
    let upper = id.to_ascii_uppercase();
    let r = send(&rt, get(&s, &format!("/api/jobs/{upper}")));
    assert_problem(&r, 400, "INVALID_ID");
    assert!(
        r.body["detail"].as_str().unwrap().contains("lowercase"),
        "{}",
        r.body
    );
    // Request IDs: a safe one is echoed, anything else replaced by a generated one.
    let with_id = |value: &str| {
        send(&rt, get(&s, "/healthz").header("x-request-id", value)).headers["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(with_id("client-42_a.b"), "client-42_a.b");
    for bad in ["has space", "<script>", &"x".repeat(129), "a;b"] {
        let echoed = with_id(bad);
        assert_ne!(echoed, bad);
        assert!(
            echoed.len() == 16 && echoed.bytes().all(|b| b.is_ascii_hexdigit()),
            "{bad:?} -> {echoed:?}"
        );
    }
    let rerun = send(
        &rt,
        post_json(
            &s,
            "/api/jobs?force=true",
            json!({"job_type": "hello_world", "params": {"n": 3}}),
        ),
    );
    assert_problem(&rerun, 409, "NOT_RERUNNABLE");
    let detail = rerun.body["detail"].as_str().unwrap();
    assert!(!detail.contains("--force"), "{detail}");
}

/// `--bind` takes a host name: the server listens on what it resolves to (loopback here,
/// so no keys are needed).
#[test]
fn bind_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = tessera(
        &dir.path().join("tessera.db"),
        &["serve", "--bind", "localhost:0", "--no-workers"],
    );
    let s = start_command(cmd, dir, None);
    assert!(
        s.base.starts_with("http://127.0.0.1:") || s.base.starts_with("http://[::1]:"),
        "{}",
        s.base
    );
    assert_eq!(send(&rt(), get(&s, "/healthz")).status, 200);
    let out = tessera(
        &tempfile::tempdir().unwrap().path().join("t.db"),
        &["serve", "--bind", "localhost"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The data directory over `/data`: a symbolic link that leads out of it is refused (and left
/// out of a `list_container` inventory), one that stays inside is served; every file comes
/// with `nosniff` and a sandboxing CSP, so an HTML blob cannot act as the dashboard.
#[cfg(unix)]
#[test]
fn data_files_stay_inside_the_data_dir_and_cannot_script_the_dashboard() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let data = dir.path().join("data");
    let c = data.join("c");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::create_dir_all(data.join("other")).unwrap();
    std::fs::write(c.join("page.html"), "<script>alert(1)</script>").unwrap();
    std::fs::write(data.join("other/shared.txt"), "shared").unwrap();
    symlink(outside.path().join("secret.txt"), c.join("leak.txt")).unwrap();
    symlink(outside.path(), c.join("leakdir")).unwrap();
    symlink(data.join("other/shared.txt"), c.join("inside.txt")).unwrap();
    let data_arg = data.to_str().unwrap().to_owned();
    let s = start(dir, &["--data-dir", &data_arg, "--workers", "2"], None);
    let rt = rt();
    let page = send(&rt, get(&s, "/data/c/page.html"));
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("sandbox"), "{csp}");
    assert!(!csp.contains("allow-same-origin"), "{csp}");
    let inside = send(&rt, get(&s, "/data/c/inside.txt"));
    assert_eq!(
        (inside.status.as_u16(), inside.body.clone()),
        (200, json!("shared"))
    );
    for path in ["/data/c/leak.txt", "/data/c/leakdir/secret.txt"] {
        let r = send(&rt, get(&s, path));
        assert_problem(&r, 400, "INVALID_REQUEST");
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains("outside the data directory"),
            "{path}: {}",
            r.body
        );
    }
    let id = submit_id(
        &rt,
        &s,
        json!({"job_type": "list_container", "params": {"container": "c"}}),
    );
    let done = wait_done(&rt, &s, &id);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let result = send(&rt, get(&s, &format!("/api/jobs/{id}/result")));
    assert_eq!(result.body["result"]["count"], 2, "{}", result.body);
}

#[test]
fn a_million_task_job_is_accepted_without_being_planned() {
    // No workers: the job stays accepted (PENDING, its expansion queued).
    let s = serve(&["--no-workers"]);
    let rt = rt();
    let started = Instant::now();
    let r = send(
        &rt,
        post_json(
            &s,
            "/api/jobs",
            json!({"job_type": "synthetic", "params": {"n": 1_000_000, "label": "big"}}),
        ),
    );
    let elapsed = started.elapsed();
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["status"], "PENDING");
    assert_eq!(r.body["tasks"], json!({}), "no task stored at acceptance");
    eprintln!("1 000 000-task synthetic accepted in {elapsed:?}");
}

#[test]
fn metrics_expose_engine_counters_and_requests_by_route() {
    let s = serve(&[]);
    let rt = rt();
    let id = submit_id(
        &rt,
        &s,
        json!({"job_type": "hello_world", "params": {"n": 7}}),
    );
    wait_done(&rt, &s, &id);
    assert_eq!(send(&rt, get(&s, "/api/jobs/abc")).status, 400);
    let r = send(&rt, get(&s, "/metrics"));
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.body.as_str().unwrap().to_owned();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
    };
    assert_eq!(
        value("tessera_task_outcomes_total{outcome=\"succeeded\"}"),
        8.0
    );
    // Routes are labelled by their pattern, not by the raw path.
    assert!(
        value(
            "tessera_http_requests_total{route=\"/api/jobs/{id}\",method=\"GET\",status=\"200\"}"
        ) >= 1.0
    );
    assert_eq!(
        value(
            "tessera_http_requests_total{route=\"/api/jobs/{id}\",method=\"GET\",status=\"400\"}"
        ),
        1.0
    );
    assert_eq!(
        value("tessera_http_requests_total{route=\"/api/jobs\",method=\"POST\",status=\"202\"}"),
        1.0
    );
    assert!(text.contains("tessera_http_request_duration_seconds_bucket{route=\"/api/jobs\",method=\"POST\",status=\"202\",le=\"+Inf\"} 1"));
}

/// Gauges of the store: jobs by status, tasks of unfinished jobs by status, queue depth.
#[test]
fn metrics_gauge_jobs_tasks_and_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tessera.db");
    // One job planned and left to workers that are not there: RUNNING, its 4 tasks waiting.
    let (code, out, err) =
        crate::support::run(&db, &["submit", "hello_world", "--params", r#"{"n": 3}"#]);
    assert_eq!(code, 0, "{out}{err}");
    let s = start(dir, &["--no-workers"], None);
    let rt = rt();
    let r = send(&rt, get(&s, "/metrics"));
    assert_eq!(r.status, 200);
    let text = r.body.as_str().unwrap().to_owned();
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
    };
    assert_eq!(value("tessera_gauges_up"), 1);
    assert_eq!(value("tessera_jobs{status=\"RUNNING\"}"), 1, "{text}");
    assert_eq!(value("tessera_jobs{status=\"SUCCEEDED\"}"), 0, "{text}");
    let active: u64 = engine::TaskStatus::ALL
        .iter()
        .map(|st| value(&format!("tessera_active_tasks{{status=\"{st}\"}}")))
        .sum();
    assert_eq!(active, 4, "3 greetings and the summary: {text}");
    assert_eq!(value("tessera_active_tasks{status=\"SUCCEEDED\"}"), 0);
    assert_eq!(value("tessera_active_jobs_counted"), 1);
    assert!(
        value("tessera_queue_messages{queue=\"tasks\"}") >= 1,
        "{text}"
    );
    assert_eq!(value("tessera_queue_messages{queue=\"poison\"}"), 0);
}

#[test]
fn the_cli_as_a_client_prints_and_exits_like_the_local_commands() {
    let (dir, keys) = key_file(&format!("{KEY}\nro:{RO_KEY}\n"));
    let db = dir.path().join("tessera.db");
    let s = start(dir, &["--api-key-file", &keys], Some(KEY));
    let remote = |args: &[&str], key: &str| {
        let out = tessera(
            &db,
            &[args, &["--server", &s.base, "--api-key", key]].concat(),
        )
        .output()
        .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let local = |args: &[&str]| {
        let out = tessera(&db, args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out, err) = remote(
        &[
            "submit",
            "hello_world",
            "--params",
            r#"{"n": 3, "fail_every": 2}"#,
            "--outcome",
            "continue",
            "--json",
        ],
        KEY,
    );
    assert_eq!(code, 0, "{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (code, out, _) = remote(&["status", &id, "--json"], RO_KEY);
        let job: Value = serde_json::from_str(&out).unwrap();
        if job["status"] != "PENDING" && job["status"] != "RUNNING" {
            break (code, out);
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    };
    // COMPLETED_WITH_ERRORS: exit 1 either way, the same JSON.
    assert_eq!(status.0, 1);
    assert_eq!(local(&["status", &id, "--json"]), status);
    for args in [
        vec!["status", id.as_str()],
        vec!["tasks", id.as_str(), "--json"],
        vec!["tasks", id.as_str(), "--status", "failed"],
        vec!["events", id.as_str()],
        vec!["jobs"],
    ] {
        let (code, out, err) = remote(&args, RO_KEY);
        assert_eq!((code, out), local(&args), "{args:?}: {err}");
    }
    // Errors keep their exit codes: a bad ID and an unknown job are 2, a refused key 2, an
    // unreachable server 3.
    assert_eq!(remote(&["status", "abc"], RO_KEY).0, 2);
    let (code, _, err) = remote(&["status", &"0".repeat(64)], RO_KEY);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no job with id"), "{err}");
    let (code, _, err) = remote(&["cancel", &id], RO_KEY);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("read-only"), "{err}");
    // Cancelling a finished job is the conflict JOB_FINISHED: exit 2, as the docs map it,
    // from the server and locally alike.
    let (code, _, err) = remote(&["cancel", &id], KEY);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already COMPLETED_WITH_ERRORS"), "{err}");
    let local = tessera(&db, &["cancel", &id]).output().unwrap();
    assert_eq!(local.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&local.stderr).contains("already COMPLETED_WITH_ERRORS"));
    let out = tessera(&db, &["status", &id, "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn the_jobs_stream_tells_creation_start_and_end() {
    let s = serve(&[]);
    let rt = rt();
    let seen = rt.block_on(async {
        let resp = get(&s, "/api/events").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        // Submitted once the stream is watching (its first look happens on the first read).
        let submit = post_json(
            &s,
            "/api/jobs",
            json!({"job_type": "synthetic", "params": {"n": 24, "sleep_ms": 300, "label": "watch"}}),
        );
        let submitted = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let sub = submit.send().await.unwrap();
            sub.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
        });
        let id = {
            // Read (and drop) what the stream says before the job exists.
            let mut early = String::new();
            let _ = tokio::time::timeout(Duration::from_millis(300), async {
                while let Some(chunk) = stream.next().await {
                    early.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                }
            })
            .await;
            submitted.await.unwrap()
        };
        let mut text = String::new();
        let mut seen: Vec<(String, String)> = Vec::new();
        let read = async {
            while let Some(chunk) = stream.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let field = |name: &str| {
                        block
                            .lines()
                            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                            .map(str::to_owned)
                    };
                    if let (Some(event), Some(data)) = (field("event"), field("data")) {
                        let job: Value = serde_json::from_str(&data).unwrap();
                        if job["id"] == id.as_str() {
                            seen.push((event, job["status"].as_str().unwrap().to_owned()));
                            if job["status"] == "SUCCEEDED" {
                                return;
                            }
                        }
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("the job's end on the jobs stream");
        seen
    });
    assert_eq!(
        seen.first().map(|e| e.0.as_str()),
        Some("job_created"),
        "{seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&("job_status".to_owned(), "SUCCEEDED".to_owned())),
        "{seen:?}"
    );
    assert!(seen.iter().any(|e| e.1 == "RUNNING"), "{seen:?}");
}

/// The `bin` directory of the Python tools `cargo xtask test` installs.
fn python_tool(name: &str) -> std::path::PathBuf {
    let bin = std::env::var_os("TESSERA_PY_BIN").expect(
        "TESSERA_PY_BIN is not set: run the tests with `cargo xtask test` (it installs openapi-spec-validator and schemathesis)",
    );
    std::path::Path::new(&bin).join(name)
}

#[test]
fn the_openapi_document_is_valid_and_the_server_keeps_to_it() {
    // Two workers: the jobs schemathesis submits finish, without loading a shared machine.
    let s = serve(&["--workers", "2"]);
    let rt = rt();
    let doc = send(&rt, get(&s, "/openapi.json"));
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    // Every route the server serves is documented (and no documented route is missing).
    let paths = doc.body["paths"].as_object().unwrap();
    for (method, path) in function_host::http::openapi::ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path}"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, function_host::http::openapi::ROUTES.len());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), doc.body.to_string()).unwrap();
    let out = std::process::Command::new(python_tool("openapi-spec-validator"))
        .arg(file.path())
        .output()
        .expect("running openapi-spec-validator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A job for the generated requests to find, then schemathesis with every check but one:
    // positive_data_acceptance expects any schema-valid request to succeed, but the schema of
    // each job type's params cannot say its cross-field rules (`blob` or `blobs`, min_zoom <=
    // max_zoom, a power-of-two blocksize), and the geospatial params name blobs that must
    // exist, so schema-valid params may be refused with 400 by design (docs/http-api.md).
    send(
        &rt,
        post_json(
            &s,
            "/api/jobs",
            json!({"job_type": "synthetic", "params": {"n": 10}}),
        ),
    );
    // Run from a scratch directory: schemathesis keeps a cache where it runs. Three runs with
    // the same checks:
    // - the examples and coverage phases;
    // - the fuzzing phase (10 examples per operation), without `getJobEvents`: schemathesis
    //   reuses the IDs of the jobs it submitted, and the event stream of a real job lasts
    //   until the job ends (as it should), past any request timeout;
    // - the stateful phase, which follows the document's links from a submitted job to its
    //   reads (its events as a JSON page), cancel and delete (50 examples: about 25
    //   scenarios).
    let scratch = tempfile::tempdir().unwrap();
    for (phases, examples, exclude) in [
        ("examples,coverage", "10", None),
        ("fuzzing", "10", Some("getJobEvents")),
        ("stateful", "50", None),
    ] {
        let mut schemathesis = std::process::Command::new(python_tool("schemathesis"));
        schemathesis.args(["run", &s.url("/openapi.json")]);
        if let Some(operation) = exclude {
            schemathesis.args(["--exclude-operation-id", operation]);
        }
        let out = schemathesis
            .current_dir(scratch.path())
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            .args(["--phases", phases])
            .args([
                "--max-examples",
                examples,
                "--seed",
                "1",
                // Generous: a shared CI machine (GDAL, Chromium and the other tests run
                // beside it) was seen to leave a request unanswered for over 20 s.
                "--request-timeout",
                "60",
            ])
            .env("NO_COLOR", "1")
            .output()
            .expect("running schemathesis");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis ({phases}) found failures:\n{report}"
        );
        if phases == "stateful" {
            // Links were followed (the summary's "API Links: N covered / ..."): only a link
            // from a submitted job reaches a job that exists.
            let covered: usize = report
                .lines()
                .find_map(|l| l.trim().strip_prefix("API Links:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no stateful summary in the report:\n{report}"));
            assert!(covered >= 5, "only {covered} links followed:\n{report}");
        }
    }
}

/// Poison messages over the API and the CLI: a job whose task messages were delivered too
/// often without an outcome (as crashed deliveries leave them) fails POISONED; its messages
/// are listed with their job and tasks, one replay re-runs the job to success, the others are
/// then stale; an unreadable message cannot be replayed, only discarded.
#[test]
fn poison_messages_are_listed_replayed_and_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tessera.db");
    let (code, out, err) = crate::support::run(
        &db,
        &["submit", "hello_world", "--params", r#"{"n": 3}"#, "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    {
        // What crashed deliveries leave: dequeue counts past the limit (5); and a message no
        // one can read.
        let c = rusqlite::Connection::open(&db).unwrap();
        let n = c
            .execute(
                "UPDATE queue SET dequeue_count = 9 WHERE queue = 'tasks' AND body NOT LIKE '%expand%'",
                [],
            )
            .unwrap();
        assert!(n > 0);
        c.execute(
            "INSERT INTO queue (queue, body, visible_at, inserted_at) VALUES ('tasks', 'not a message', 0, 0)",
            [],
        )
        .unwrap();
    }
    let s = start(dir, &["--workers", "2"], None);
    let rt = rt();
    let failed = wait_done(&rt, &s, &id);
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("POISONED"),
        "{failed}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let items = loop {
        let list = send(&rt, get(&s, "/api/poison"));
        assert_eq!(list.status, 200, "{}", list.body);
        let items = list.body["items"].as_array().unwrap().clone();
        if items.iter().any(|m| m["kind"] == "unreadable") {
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "no unreadable message listed: {items:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let of_kind =
        |kind: &str| -> Vec<&Value> { items.iter().filter(|m| m["kind"] == kind).collect() };
    let (tasks, unreadable) = (of_kind("tasks"), of_kind("unreadable"));
    assert!(!tasks.is_empty(), "{items:?}");
    for m in &tasks {
        assert_eq!(m["job_id"], id.as_str());
        assert!(!m["task_ids"].as_array().unwrap().is_empty(), "{m}");
    }

    // The unreadable one: replay refused (422), discard (204), then it is gone (404).
    let bad = unreadable[0]["id"].as_str().unwrap();
    let replay_bad = send(
        &rt,
        s.request(reqwest::Method::POST, &format!("/api/poison/{bad}/replay")),
    );
    assert_problem(&replay_bad, 422, "UNREADABLE_MESSAGE");
    let discard = send(
        &rt,
        s.request(reqwest::Method::DELETE, &format!("/api/poison/{bad}")),
    );
    assert_eq!(discard.status, 204, "{}", discard.body);
    let again = send(
        &rt,
        s.request(reqwest::Method::DELETE, &format!("/api/poison/{bad}")),
    );
    assert_problem(&again, 404, "POISON_NOT_FOUND");
    let invalid = send(
        &rt,
        s.request(reqwest::Method::POST, "/api/poison/a%20b/replay"),
    );
    assert_problem(&invalid, 400, "INVALID_ID");

    // The CLI as a client lists the same messages and replays the first: the job re-runs.
    let server = s.base.clone();
    let (code, out, err) = crate::support::run(
        &db_of(&s),
        &["poison", "list", "--server", &server, "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), tasks.len(), "{out}");
    let first = tasks[0]["id"].as_str().unwrap();
    let (code, out, err) = crate::support::run(
        &db_of(&s),
        &["poison", "replay", first, "--server", &server],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("re-runs (attempt 2"), "{out}");
    let done = wait_done(&rt, &s, &id);
    assert_eq!(
        (done["status"].clone(), done["attempt"].clone()),
        (json!("SUCCEEDED"), json!(2)),
        "{done}"
    );

    for m in &tasks[1..] {
        let path = format!("/api/poison/{}/replay", m["id"].as_str().unwrap());
        let r = send(&rt, s.request(reqwest::Method::POST, &path));
        // Stale now; or already gone with the first attempt's messages.
        if r.status == 200 {
            assert_eq!(r.body["action"], "stale", "{}", r.body);
        } else {
            assert_problem(&r, 404, "POISON_NOT_FOUND");
        }
    }
    let list = send(&rt, get(&s, "/api/poison"));
    assert_eq!(list.body["items"], json!([]), "{}", list.body);
}

/// The database file of a server started by `start`.
fn db_of(s: &Server) -> std::path::PathBuf {
    s._dir.path().join("tessera.db")
}

/// What submission can check cheaply is refused then (400, nothing stored); what is too
/// costly (inputs beyond the first few of a `cog_conversion`) is checked at expansion, where
/// the job ends FAILED `INVALID_PARAMS` naming the field.
#[test]
fn costly_checks_run_at_expansion_and_fail_the_job_with_the_field() {
    let data = crate::support::data_dir_with("in", &["byte.tif"]);
    let names: Vec<String> = (0..12).map(|i| format!("r{i:02}.tif")).collect();
    for name in &names {
        std::fs::copy(
            data.path().join("in/byte.tif"),
            data.path().join("in").join(name),
        )
        .unwrap();
    }
    let data_dir = data.path().to_str().unwrap().to_owned();
    let s = serve(&["--data-dir", &data_dir]);
    let rt = rt();
    // A missing first input: refused at submission.
    let early = send(
        &rt,
        post_json(
            &s,
            "/api/jobs",
            json!({"job_type": "cog_conversion", "params": {"container": "in", "blobs": ["a-missing.tif", "r00.tif"], "output_container": "out"}}),
        ),
    );
    assert_problem(&early, 400, "INVALID_PARAMS");
    assert_eq!(
        early.body["errors"][0]["field"], "params.blobs[0]",
        "{}",
        early.body
    );
    // A missing twelfth: accepted, then failed at expansion.
    let mut blobs = names.clone();
    blobs.push("zz-missing.tif".into());
    let id = submit_id(
        &rt,
        &s,
        json!({"job_type": "cog_conversion", "params": {"container": "in", "blobs": blobs, "output_container": "out"}}),
    );
    let failed = wait_done(&rt, &s, &id);
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["error"]["code"], "INVALID_PARAMS", "{failed}");
    assert_eq!(
        failed["error"]["message"], "blobs[12]: blob in/zz-missing.tif does not exist",
        "{failed}"
    );
    assert_eq!(failed["planned_tasks"], 0, "nothing was planned: {failed}");
    drop(data);
}

/// `tessera serve --backend azure` on Azurite: a job submitted over HTTP runs to its end on
/// the in-process workers, its events stream to `job_completed`, and the events page holds
/// them all, once each.
#[test]
fn serve_runs_on_the_azure_backend() {
    let store = crate::support::Store::azure(crate::support::azurite_connection());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cmd = store.tessera(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "4",
        "--data-dir",
        cache.to_str().unwrap(),
    ]);
    let s = start_command(cmd, dir, None);
    let rt = rt();
    let id = submit_id(
        &rt,
        &s,
        json!({"job_type": "hello_world", "params": {"n": 20, "fail_every": 7}, "outcome_policy": "continue"}),
    );
    let streamed = read_sse(&rt, get(&s, &format!("/api/jobs/{id}/events")));
    assert_eq!(
        streamed.last().map(|(_, name, _)| name.as_str()),
        Some("job_completed"),
        "{streamed:?}"
    );
    let done = wait_done(&rt, &s, &id);
    assert_eq!(done["status"], "COMPLETED_WITH_ERRORS", "{done}");
    let page = send(
        &rt,
        get(&s, &format!("/api/jobs/{id}/events?after=0&limit=1000")),
    );
    assert_eq!(page.status, 200);
    let cursors: Vec<u64> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cursor"].as_u64().unwrap())
        .collect();
    let streamed_cursors: Vec<u64> = streamed.iter().map(|(c, _, _)| *c).collect();
    assert_eq!(cursors, streamed_cursors, "the stream and the page agree");
    let mut unique = cursors.clone();
    unique.dedup();
    assert_eq!(unique.len(), cursors.len(), "no event twice");
    let ends = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            ["task_completed", "task_failed"]
                .contains(&e["event"]["type"].as_str().unwrap_or_default())
        })
        .count();
    assert_eq!(ends, 21, "20 greetings and the summary, each ended once");
}
