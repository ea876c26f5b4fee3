//! A protocol-level Azure Functions host for tests and the benchmark: it reads a function
//! app folder (`host.json`, each function's `function.json`), starts the custom handler
//! binary as the host does (app settings as environment, `FUNCTIONS_CUSTOMHANDLER_PORT`,
//! `GET /` readiness within 60 s), polls the queues the queue triggers name on Azurite,
//! decodes per `messageEncoding`, invokes `POST /<FunctionName>` with real `Metadata` and the
//! invocation headers (renewing the message while the invocation runs), writes queue output
//! bindings and deletes on 2xx, hides the message for `visibilityTimeout` on failure, moves
//! it to `<queue>-poison` after `maxDequeueCount` failed deliveries, fires the timer, and
//! forwards HTTP requests as HTTP-trigger invocations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::host_queues::{HostMessage, HostQueues};

/// `host.json`'s queue settings.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    pub base64: bool,
    pub max_dequeue: u32,
    pub visibility_timeout: Duration,
    pub batch_size: usize,
    pub new_batch_threshold: usize,
}

/// One binding of a `function.json`.
#[derive(Clone, Debug)]
pub struct Binding {
    pub kind: String,
    pub direction: String,
    pub name: String,
    /// Queue bindings: the queue, app settings (`%NAME%`) resolved.
    pub queue: Option<String>,
    /// HTTP trigger: route and methods.
    pub route: Option<String>,
    pub methods: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct FunctionDef {
    pub name: String,
    pub bindings: Vec<Binding>,
}

impl FunctionDef {
    pub fn trigger(&self) -> &Binding {
        self.bindings
            .iter()
            .find(|b| b.kind.ends_with("Trigger"))
            .expect("a function has a trigger binding")
    }
}

/// A function app folder, read as the host reads it.
#[derive(Clone, Debug)]
pub struct FunctionApp {
    pub dir: PathBuf,
    pub host: Value,
    pub queues: QueueSettings,
    pub functions: Vec<FunctionDef>,
    pub executable: PathBuf,
    pub arguments: Vec<String>,
}

fn duration(text: &str) -> Duration {
    let parts: Vec<f64> = text.split(':').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "a TimeSpan hh:mm:ss: {text}");
    Duration::from_secs_f64(parts[0] * 3600.0 + parts[1] * 60.0 + parts[2])
}

/// `%NAME%` app settings in a binding value.
fn resolve(text: &str, settings: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('%')
            .expect("a closing % in a binding expression");
        let name = &after[..end];
        out.push_str(
            settings
                .get(name)
                .unwrap_or_else(|| panic!("app setting {name} is not set")),
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

impl FunctionApp {
    pub fn read(dir: &Path, settings: &HashMap<String, String>) -> Self {
        let read_json = |path: PathBuf| -> Value {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let host = read_json(dir.join("host.json"));
        let q = &host["extensions"]["queues"];
        let queues = QueueSettings {
            base64: q["messageEncoding"].as_str().unwrap_or("base64") == "base64",
            max_dequeue: q["maxDequeueCount"].as_u64().unwrap_or(5) as u32,
            visibility_timeout: q["visibilityTimeout"]
                .as_str()
                .map_or(Duration::ZERO, duration),
            batch_size: q["batchSize"].as_u64().unwrap_or(16) as usize,
            new_batch_threshold: q["newBatchThreshold"].as_u64().unwrap_or(8) as usize,
        };
        let description = &host["customHandler"]["description"];
        let executable = dir.join(description["defaultExecutablePath"].as_str().unwrap());
        let arguments = description["arguments"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        let mut functions = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.join("function.json").exists() {
                continue;
            }
            let doc = read_json(path.join("function.json"));
            let bindings = doc["bindings"]
                .as_array()
                .expect("function.json has bindings")
                .iter()
                .map(|b| Binding {
                    kind: b["type"].as_str().unwrap().to_owned(),
                    direction: b["direction"].as_str().unwrap().to_owned(),
                    name: b["name"].as_str().unwrap().to_owned(),
                    queue: b["queueName"].as_str().map(|q| resolve(q, settings)),
                    route: b["route"].as_str().map(str::to_owned),
                    methods: b["methods"]
                        .as_array()
                        .map(|m| m.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                        .unwrap_or_default(),
                })
                .collect();
            functions.push(FunctionDef {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                bindings,
            });
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        FunctionApp {
            dir: dir.to_owned(),
            host,
            queues,
            functions,
            executable,
            arguments,
        }
    }

    /// The HTTP function whose route and method match, with the route's parameters.
    fn http_function(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(&FunctionDef, Map<String, Value>)> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        self.functions.iter().find_map(|f| {
            let trigger = f.trigger();
            if trigger.kind != "httpTrigger"
                || !trigger
                    .methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(method))
            {
                return None;
            }
            let route: Vec<&str> = trigger.route.as_deref()?.split('/').collect();
            if route.len() != segments.len() {
                return None;
            }
            let mut params = Map::new();
            for (r, s) in route.iter().zip(&segments) {
                if let Some(name) = r.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                    params.insert(name.to_owned(), Value::String((*s).to_owned()));
                } else if r != s {
                    return None;
                }
            }
            Some((f, params))
        })
    }
}

/// One running handler process (an instance of the app).
struct Instance {
    child: Option<Child>,
    port: u16,
}

/// What the host does with a message of a queue trigger before invoking.
pub type Hook = Arc<dyn Fn(&str, &HostMessage) -> Fate + Send + Sync>;

/// A hook's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Invoke normally.
    Invoke,
    /// Invoke, and put a copy of the message on its queue first (a duplicate delivery).
    Duplicate,
    /// Invoke, and kill the handler process `after` into the invocation; the host restarts it.
    Crash { after: Duration },
}

/// What the host counted.
#[derive(Debug, Default)]
pub struct HostCounters {
    pub invocations: AtomicU64,
    pub failures: AtomicU64,
    pub poisoned: AtomicU64,
    pub restarts: AtomicU64,
}

/// The simulated host.
pub struct Host {
    pub app: FunctionApp,
    settings: HashMap<String, String>,
    pub queues: Arc<HostQueues>,
    instances: Arc<Mutex<Vec<Instance>>>,
    http: reqwest::Client,
    next: AtomicUsize,
    pub counters: Arc<HostCounters>,
    hook: Mutex<Option<Hook>>,
    log_dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Host {
    /// Start `instances` handler processes of `app_dir` with the app `settings` (the storage
    /// connection in `AzureWebJobsStorage`); each must answer `GET /` within 60 s.
    pub async fn start(
        app_dir: &Path,
        settings: HashMap<String, String>,
        instances: usize,
    ) -> Host {
        let app = FunctionApp::read(app_dir, &settings);
        let queues = HostQueues::connect(&settings["AzureWebJobsStorage"]).expect("queue service");
        let log_dir = app_dir.join("logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let host = Host {
            app,
            settings,
            queues: Arc::new(queues),
            instances: Arc::new(Mutex::new(Vec::new())),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            next: AtomicUsize::new(0),
            counters: Arc::new(HostCounters::default()),
            hook: Mutex::new(None),
            log_dir,
        };
        for q in host.trigger_queues() {
            host.queues.create(&q).await.unwrap();
            host.queues.create(&format!("{q}-poison")).await.unwrap();
        }
        for f in &host.app.functions {
            for b in &f.bindings {
                if let (Some(q), "out") = (&b.queue, b.direction.as_str()) {
                    host.queues.create(q).await.unwrap();
                }
            }
        }
        for i in 0..instances {
            let instance = host.spawn(i);
            host.instances.lock().unwrap().push(instance);
        }
        for i in 0..instances {
            host.wait_ready(i).await;
        }
        host
    }

    fn spawn(&self, index: usize) -> Instance {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("instance-{index}.log")))
            .unwrap();
        let child = Command::new(&self.app.executable)
            .args(&self.app.arguments)
            .current_dir(&self.app.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.settings)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("WEBSITE_INSTANCE_ID", format!("instance-{index}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting the custom handler");
        Instance {
            child: Some(child),
            port,
        }
    }

    async fn wait_ready(&self, index: usize) {
        let port = self.instances.lock().unwrap()[index].port;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self
                .http
                .get(format!("http://127.0.0.1:{port}/"))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the handler did not answer GET / within 60 s; log:\n{}",
                self.log(index)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An instance's stderr so far.
    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("instance-{index}.log")))
            .unwrap_or_default()
    }

    /// Kill an instance (SIGKILL) and start it again, as the host restarts a crashed worker.
    pub async fn restart(&self, index: usize) {
        {
            let mut instances = self.instances.lock().unwrap();
            if let Some(mut child) = instances[index].child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            instances[index] = self.spawn(index);
        }
        self.counters.restarts.fetch_add(1, Ordering::Relaxed);
        self.wait_ready(index).await;
    }

    /// Stop every instance as the host does at scale-in (SIGTERM, then wait) and return each
    /// one's stderr.
    pub fn shutdown(&self) -> Vec<String> {
        let mut instances = self.instances.lock().unwrap();
        for instance in instances.iter_mut() {
            if let Some(mut child) = instance.child.take() {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let _ = child.wait();
            }
        }
        (0..instances.len()).map(|i| self.log(i)).collect()
    }

    pub fn set_hook(&self, hook: Hook) {
        *self.hook.lock().unwrap() = Some(hook);
    }

    /// The queues the queue triggers consume.
    pub fn trigger_queues(&self) -> Vec<String> {
        self.app
            .functions
            .iter()
            .filter(|f| f.trigger().kind == "queueTrigger")
            .filter_map(|f| f.trigger().queue.clone())
            .collect()
    }

    /// Pick an instance round-robin: (index, port).
    fn pick(&self) -> (usize, u16) {
        let instances = self.instances.lock().unwrap();
        let i = self.next.fetch_add(1, Ordering::Relaxed) % instances.len();
        (i, instances[i].port)
    }

    /// POST an invocation to an instance; `Err` when the process did not answer (crashed).
    async fn post(&self, port: u16, function: &str, body: &Value) -> Result<(u16, Value), String> {
        self.counters.invocations.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .post(format!("http://127.0.0.1:{port}/{function}"))
            .header(
                "X-Azure-Functions-InvocationId",
                format!("{:032x}", rand_u128()),
            )
            .header("X-Azure-Functions-HostVersion", "4.1037.0.0")
            .header("Content-Type", "application/json")
            .json(body)
            .send()
            .await
            .map_err(|e| format!("invocation failed: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        let value =
            serde_json::from_str(&text).map_err(|e| format!("answer is not JSON ({e}): {text}"))?;
        Ok((status, value))
    }

    /// An HTTP request through the HTTP trigger: (status, headers, body text).
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> (u16, Map<String, Value>, String) {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let Some((function, params)) = self.app.http_function(method, path) else {
            return (404, Map::new(), String::new());
        };
        let query: Map<String, Value> = form_pairs(query);
        let mut headers = json!({"Host": ["localhost"]});
        if body.is_some() {
            headers["Content-Type"] = json!(["application/json"]);
        }
        let req = json!({
            "Url": format!("http://localhost:7071{path_and_query}"),
            "Method": method.to_ascii_uppercase(),
            "Query": query,
            "Headers": headers,
            "Params": params,
            "Identities": [],
            "Body": body.map(|b| Value::String(b.to_string())).unwrap_or(Value::Null),
        });
        let trigger = function.trigger().name.clone();
        let invocation = json!({
            "Data": { trigger: req },
            "Metadata": { "sys": { "MethodName": function.name, "UtcNow": now_rfc3339(), "RandGuid": format!("{:032x}", rand_u128()) } },
        });
        // While a crashed instance restarts the host holds requests: try again meanwhile.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (status, answer) = loop {
            let (_, port) = self.pick();
            match self.post(port, &function.name, &invocation).await {
                Ok(answered) => break answered,
                Err(e) => assert!(Instant::now() < deadline, "HTTP invocation: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status, 200, "an HTTP-trigger invocation succeeds: {answer}");
        let res = &answer["Outputs"]["res"];
        let code: u16 = match &res["statusCode"] {
            Value::String(s) => s.parse().unwrap(),
            Value::Number(n) => n.as_u64().unwrap() as u16,
            other => panic!("statusCode {other}"),
        };
        let body = match &res["body"] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        (
            code,
            res["headers"].as_object().cloned().unwrap_or_default(),
            body,
        )
    }

    /// Fire the timer on every instance at once.
    pub async fn fire_timer(&self) -> Vec<u16> {
        let timers: Vec<String> = self
            .app
            .functions
            .iter()
            .filter(|f| f.trigger().kind == "timerTrigger")
            .map(|f| f.name.clone())
            .collect();
        let ports: Vec<u16> = self
            .instances
            .lock()
            .unwrap()
            .iter()
            .map(|i| i.port)
            .collect();
        let mut calls = Vec::new();
        for name in &timers {
            for port in &ports {
                let body = json!({"Data": {"timer": {"IsPastDue": false}}, "Metadata": {}});
                calls.push(async move {
                    self.post(*port, name, &body)
                        .await
                        .map(|(s, _)| s)
                        .unwrap_or(0)
                });
            }
        }
        futures::future::join_all(calls).await
    }

    /// Poll every queue trigger and invoke until `stop`. Up to `batchSize +
    /// newBatchThreshold` invocations in flight, like one host instance per handler.
    pub async fn pump(self: &Arc<Self>, stop: CancellationToken) {
        let per_instance = self.app.queues.batch_size + self.app.queues.new_batch_threshold;
        let n_instances = self.instances.lock().unwrap().len();
        let slots = Arc::new(tokio::sync::Semaphore::new(per_instance * n_instances));
        let triggers: Vec<(String, String, String)> = self
            .app
            .functions
            .iter()
            .filter(|f| f.trigger().kind == "queueTrigger")
            .map(|f| {
                (
                    f.name.clone(),
                    f.trigger().name.clone(),
                    f.trigger().queue.clone().unwrap(),
                )
            })
            .collect();
        let mut idle = Duration::from_millis(10);
        while !stop.is_cancelled() {
            let mut received = 0;
            for (function, binding, queue) in &triggers {
                let free = slots
                    .available_permits()
                    .min(self.app.queues.batch_size)
                    .min(32);
                if free == 0 {
                    break;
                }
                // Hidden for RECEIVE_VISIBILITY, renewed while the invocation runs.
                let messages = match self.queues.get(queue, free as u8, RECEIVE_VISIBILITY).await {
                    Ok(m) => m,
                    Err(_) => continue,
                };
                received += messages.len();
                for message in messages {
                    let permit = slots.clone().acquire_owned().await.unwrap();
                    let host = self.clone();
                    let (function, binding, queue) =
                        (function.clone(), binding.clone(), queue.clone());
                    tokio::spawn(async move {
                        host.deliver(&function, &binding, &queue, message).await;
                        drop(permit);
                    });
                }
            }
            if received == 0 {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(idle) => {}
                }
                idle = (idle * 2).min(Duration::from_millis(500));
            } else {
                idle = Duration::from_millis(10);
            }
        }
        // Let in-flight invocations finish.
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            slots.acquire_many((per_instance * n_instances) as u32),
        )
        .await;
    }

    async fn deliver(&self, function: &str, binding: &str, queue: &str, mut message: HostMessage) {
        let data = if self.app.queues.base64 {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(&message.text) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                // The real host moves an undecodable message to the poison queue at once.
                Err(_) => {
                    self.poison(queue, &message).await;
                    return;
                }
            }
        } else {
            message.text.clone()
        };
        let hook = self.hook.lock().unwrap().clone();
        let fate = hook.map_or(Fate::Invoke, |h| h(queue, &message));
        if fate == Fate::Duplicate {
            self.queues
                .put(queue, &message.text, Duration::ZERO)
                .await
                .unwrap();
        }
        let invocation = json!({
            // The host passes a JSON message as a string holding it.
            "Data": { binding: Value::String(data) },
            "Metadata": {
                "DequeueCount": message.dequeue_count,
                "Id": message.id,
                "PopReceipt": message.pop_receipt,
                "InsertionTime": message.insertion_time,
                "ExpirationTime": message.expiration_time,
                "NextVisibleTime": message.next_visible_time,
                "sys": { "MethodName": function, "UtcNow": now_rfc3339(), "RandGuid": format!("{:032x}", rand_u128()) },
            },
        });
        let (index, port) = self.pick();
        let crash_at = match fate {
            Fate::Crash { after } => Some(tokio::time::Instant::now() + after),
            _ => None,
        };
        let call = self.post(port, function, &invocation);
        tokio::pin!(call);
        let mut renew = tokio::time::interval(RECEIVE_VISIBILITY / 3);
        renew.tick().await;
        let outcome = loop {
            tokio::select! {
                result = &mut call => break result,
                _ = renew.tick() => {
                    // As the host does while a function runs; a failure (storage down) only
                    // means the message may come back early.
                    let _ = self.queues.update(queue, &mut message, RECEIVE_VISIBILITY).await;
                }
                _ = sleep_until_some(crash_at) => {
                    self.restart(index).await;
                    break Err("the handler process crashed".to_owned());
                }
            }
        };
        match outcome {
            Ok((status, answer)) if (200..300).contains(&status) => {
                if let Some(outputs) = answer["Outputs"].as_object() {
                    for (name, value) in outputs {
                        self.write_output(function, name, value).await;
                    }
                }
                let _ = self.queues.delete(queue, &message).await;
            }
            _ => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                if message.dequeue_count >= self.app.queues.max_dequeue {
                    self.poison(queue, &message).await;
                } else {
                    let _ = self
                        .queues
                        .update(queue, &mut message, self.app.queues.visibility_timeout)
                        .await;
                }
            }
        }
    }

    async fn poison(&self, queue: &str, message: &HostMessage) {
        self.counters.poisoned.fetch_add(1, Ordering::Relaxed);
        self.queues
            .put(&format!("{queue}-poison"), &message.text, Duration::ZERO)
            .await
            .unwrap();
        let _ = self.queues.delete(queue, message).await;
    }

    /// A queue output binding: a string (or each string of an array) as it is, any other
    /// JSON as its text; base64-encoded when `messageEncoding` is base64.
    async fn write_output(&self, function: &str, name: &str, value: &Value) {
        let Some(def) = self.app.functions.iter().find(|f| f.name == function) else {
            return;
        };
        let Some(queue) = def
            .bindings
            .iter()
            .find(|b| b.name == name && b.direction == "out" && b.kind == "queue")
            .and_then(|b| b.queue.clone())
        else {
            return;
        };
        let texts: Vec<String> = match value {
            Value::Array(items) => items.iter().map(text_of).collect(),
            other => vec![text_of(other)],
        };
        for text in texts {
            let text = if self.app.queues.base64 {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(text)
            } else {
                text
            };
            self.queues
                .put(&queue, &text, Duration::ZERO)
                .await
                .unwrap();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for instance in self.instances.lock().unwrap().iter_mut() {
            if let Some(mut child) = instance.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// How long a received message stays hidden before the host renews it.
const RECEIVE_VISIBILITY: Duration = Duration::from_secs(10);

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn form_pairs(query: &str) -> Map<String, Value> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), Value::String(v.to_owned()))
        })
        .collect()
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (u128::from(h.finish()) << 64) | u128::from(std::process::id())
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("@{secs}")
}
