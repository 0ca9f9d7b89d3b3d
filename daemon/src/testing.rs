//! The real daemon, in-process, on temporary directories, against the real
//! Docker engine: what forklet's integration tests stand on.
//!
//! Dropping a [`Harness`] removes every container its daemon made (they
//! carry its instance label), even when the test panicked.
//!
//! Without a Docker engine [`Harness::start`] returns `None` and the test
//! skips, unless `FORKLET_REQUIRE_DOCKER=1`, where it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::LogsOptionsBuilder;
use forklet_state::api::{ModuleView, WorkspaceView};
use forklet_state::store::Store;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::docker::{LABEL_INSTANCE, labelled};
use crate::protocol::Limits;
use crate::{Config, Error};

/// The example module's image, built from `examples/modules/hello`.
pub const HELLO_IMAGE: &str = "forklet-examples/hello:dev";
/// A module that breaks the contract as its config says (see its source).
pub const MISBEHAVE_IMAGE: &str = "forklet-examples/misbehave:dev";
/// A module as modules are published: Python as PID 1 with no SIGTERM
/// handler, a non-root `USER`, slow to start when told (`examples/modules/python`).
pub const PYTHON_IMAGE: &str = "forklet-examples/python:dev";
/// A module that calls its workspace's cluster with Debian's kubectl, and a
/// stand-in API server (`examples/modules/kubectl`).
pub const KUBECTL_IMAGE: &str = "forklet-examples/kubectl:dev";

/// The workspace most tests put their modules in.
pub const WORKSPACE: &str =
    "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n";

/// A Module manifest for tests, with an embedded Custom definition. The
/// defaults: the hello image in workspace `dev`, awake, config `{}`; a test
/// sets what it varies: `ModuleYaml { name: "app", hibernated: true, ..Default::default() }`.
#[derive(Debug, Clone, Copy)]
pub struct ModuleYaml<'a> {
    pub name: &'a str,
    pub workspace: &'a str,
    pub hibernated: bool,
    pub image: &'a str,
    /// The Module's `config`, as a YAML flow mapping.
    pub config: &'a str,
    /// More fields of the definition's `spec`, e.g. `permissions: [workspace]`.
    pub spec: &'a str,
    /// More fields of the definition's `metadata`, e.g. `resource_usage: {...}`.
    pub metadata: &'a str,
}

impl Default for ModuleYaml<'_> {
    fn default() -> Self {
        Self {
            name: "app",
            workspace: "dev",
            hibernated: false,
            image: HELLO_IMAGE,
            config: "{}",
            spec: "",
            metadata: "",
        }
    }
}

impl std::fmt::Display for ModuleYaml<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            name,
            workspace,
            hibernated,
            image,
            config,
            ..
        } = self;
        // Fields appended to a YAML flow mapping (none for "").
        let more = |fields: &str| {
            if fields.is_empty() {
                String::new()
            } else {
                format!(", {fields}")
            }
        };
        let (spec, metadata) = (more(self.spec), more(self.metadata));
        write!(
            f,
            "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {{name: {name}}}\nspec:\n  workspace: {{name: {workspace}}}\n  hibernated: {hibernated}\n  source:\n    raw:\n      kind: Custom\n      metadata: {{name: {name}, version: 1.0.0, supportedOperatorVersion: '*'{metadata}}}\n      spec: {{image: '{image}'{spec}}}\n  config: {config}\n"
        )
    }
}

/// How long a test waits for a condition before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Harness {
    pub manifests: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub socket: PathBuf,
    pub docker: Docker,
    instance: String,
    daemon: Option<Daemon>,
    api: reqwest::Client,
    edit: Box<dyn Fn(&mut Config) + Send + Sync>,
}

/// The daemon under test: in this process, or the real binary as a child
/// process (to be crashed and killed).
enum Daemon {
    InProcess(CancellationToken, JoinHandle<Result<(), Error>>),
    Process(std::process::Child),
}

impl Harness {
    /// Builds the hello image (once per test binary) and starts a daemon.
    pub async fn start() -> Option<Self> {
        Self::start_with(|_| {}).await
    }

    /// As [`Harness::start`], with the daemon's config changed by `edit`.
    pub async fn start_with(edit: impl Fn(&mut Config) + Send + Sync + 'static) -> Option<Self> {
        let docker = docker_or_skip().await?;
        capture_logs();
        build_images();
        let manifests = tempfile::tempdir().expect("temp dir");
        let state = tempfile::tempdir().expect("temp dir");
        let socket = state.path().join("forkletd.sock");
        let api = reqwest::Client::builder()
            .unix_socket(socket.as_path())
            .build()
            .expect("client");
        // The harness makes the state database and its instance id, so it
        // knows its runners even when the daemon under test crashes at once.
        let instance = Store::open(&state.path().join("forklet.db"))
            .and_then(|store| store.setting_or_init("instance", crate::random_id))
            .expect("a state database");
        let mut harness = Self {
            edit: Box::new(edit),
            manifests,
            state,
            socket,
            docker,
            instance,
            daemon: None,
            api,
        };
        harness.start_daemon().await;
        Some(harness)
    }

    pub fn config(&self) -> Config {
        let mut config = Config {
            manifests_dir: self.manifests.path().to_owned(),
            state_dir: self.state.path().to_owned(),
            socket: self.socket.clone(),
            socket_group: None,
            limits: Limits {
                health_deadline: Duration::from_secs(20),
                ..Limits::default()
            },
            max_concurrent: 8,
            orphan_grace: Duration::from_millis(300),
            // Short, so tests of deletion do not wait; tests of the grace set their own.
            removal_grace: Duration::from_millis(200),
            pull_stall: Duration::from_secs(120),
            rescan_every: crate::watcher::RESYNC,
            keep_runners_while_asleep: false,
            metrics_address: None,
            // Short, so tests see retries happen without waiting long.
            retry: Backoff {
                base: Duration::from_millis(100),
                cap: Duration::from_millis(400),
            },
        };
        (self.edit)(&mut config);
        config
    }

    async fn start_daemon(&mut self) {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(crate::run(self.config(), shutdown.clone()));
        self.daemon = Some(Daemon::InProcess(shutdown, task));
        self.wait_api().await;
    }

    /// Waits until the control API answers.
    pub async fn wait_api(&self) {
        self.wait_until("the control socket answers", || async {
            self.api
                .get("http://forkletd/v1/modules")
                .send()
                .await
                .is_ok()
                .then_some(())
        })
        .await;
    }

    /// Stops the daemon as SIGTERM would and waits until it has.
    pub async fn stop(&mut self) {
        let Some(Daemon::InProcess(shutdown, task)) = self.daemon.take() else {
            panic!("an in-process daemon is running")
        };
        shutdown.cancel();
        task.await
            .expect("the daemon does not panic")
            .expect("the daemon stops cleanly");
    }

    /// Stops the in-process daemon and runs the `forkletd` binary `bin` on
    /// the same directories instead, crashing at `crash_at` if given (see
    /// [`crate::fault`]). Does not wait for it: it may crash at once.
    pub async fn spawn_binary(&mut self, bin: &str, crash_at: Option<&str>) {
        self.spawn_binary_with(bin, crash_at, &[]).await;
    }

    /// [`Harness::spawn_binary`] with more environment for the daemon.
    pub async fn spawn_binary_with(
        &mut self,
        bin: &str,
        crash_at: Option<&str>,
        env: &[(&str, &std::ffi::OsStr)],
    ) {
        if let Some(Daemon::InProcess(..)) = self.daemon {
            self.stop().await;
        }
        assert!(self.daemon.is_none(), "one daemon at a time");
        let config = self.config();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.path().join("forkletd.log"))
            .expect("daemon log");
        let mut command = Command::new(bin);
        command
            .arg("--manifests")
            .arg(&config.manifests_dir)
            .arg("--state-dir")
            .arg(&config.state_dir)
            .arg("--socket")
            .arg(&config.socket)
            .env(
                "FORKLET_HEALTH_TIMEOUT",
                config.limits.health_deadline.as_secs().max(1).to_string(),
            )
            .env("FORKLET_RETRY_MAX", "1")
            .env("FORKLET_ORPHAN_GRACE", "2")
            .env(
                "FORKLET_REMOVAL_GRACE",
                config.removal_grace.as_secs().to_string(),
            )
            .env("FORKLET_LOG", "info")
            .env_remove("FORKLET_CRASH_AT")
            .stdout(std::process::Stdio::null())
            .stderr(log);
        if let Some(point) = crash_at {
            command.env("FORKLET_CRASH_AT", point);
        }
        command.envs(env.iter().copied());
        self.daemon = Some(Daemon::Process(command.spawn().expect("start forkletd")));
    }

    /// Waits for the daemon process to end by itself (a crash point).
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let Some(Daemon::Process(mut child)) = self.daemon.take() else {
            panic!("a daemon process is running")
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon never crashed:\n{}",
                self.daemon_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The daemon process's id, when it runs as one.
    pub fn pid(&self) -> Option<u32> {
        match &self.daemon {
            Some(Daemon::Process(child)) => Some(child.id()),
            _ => None,
        }
    }

    /// SIGKILLs the daemon process, as a power cut or the OOM killer would.
    pub fn kill(&mut self) {
        if let Some(Daemon::Process(mut child)) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the daemon process wrote to stderr, for failure messages.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("forkletd.log")).unwrap_or_default()
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_daemon().await;
    }

    /// Starts the daemon again after [`Harness::stop`].
    pub async fn restart_stopped(&mut self) {
        assert!(self.daemon.is_none(), "the daemon is stopped");
        self.start_daemon().await;
    }

    /// Writes a manifest as editors do: a temporary file renamed into place.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.manifests.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write manifest");
        std::fs::rename(&tmp, self.manifests.path().join(name)).expect("rename manifest");
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.manifests.path().join(name)).expect("remove manifest");
    }

    pub fn runner_dir(&self, name: &str) -> PathBuf {
        self.state.path().join("runners").join("default").join(name)
    }

    /// `GET path` on the control API; `None` on 404.
    pub async fn api<T: DeserializeOwned>(&self, path: &str) -> Option<T> {
        let response = self
            .api
            .get(format!("http://forkletd{path}"))
            .send()
            .await
            .expect("the API answers");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        Some(response.json().await.expect("a JSON answer"))
    }

    /// `POST path` with a JSON body on the control API: status and body.
    pub async fn api_post(&self, path: &str, body: &Value) -> (reqwest::StatusCode, Value) {
        let response = self
            .api
            .post(format!("http://forkletd{path}"))
            .json(body)
            .send()
            .await
            .expect("the API answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `DELETE path` on the control API: status and body.
    pub async fn api_delete(&self, path: &str) -> (reqwest::StatusCode, Value) {
        let response = self
            .api
            .delete(format!("http://forkletd{path}"))
            .send()
            .await
            .expect("the API answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Every response body of the read endpoints, concatenated: for checking
    /// that nothing secret is ever answered.
    pub async fn everything_the_api_says(&self) -> String {
        let mut text = String::new();
        let modules: Vec<ModuleView> = self.api("/v1/modules").await.unwrap_or_default();
        for module in &modules {
            let one: Value = self
                .api(&format!("/v1/modules/{}/{}", module.namespace, module.name))
                .await
                .unwrap_or_default();
            text.push_str(&one.to_string());
        }
        for path in ["/v1/modules", "/v1/workspaces", "/v1/secrets"] {
            text.push_str(
                &self
                    .api::<Value>(path)
                    .await
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        text
    }

    pub async fn module(&self, name: &str) -> Option<ModuleView> {
        self.api(&format!("/v1/modules/default/{name}")).await
    }

    pub async fn workspaces(&self) -> Vec<WorkspaceView> {
        self.api("/v1/workspaces").await.expect("the list exists")
    }

    /// Waits until module `name` is in `phase`, and returns it.
    pub async fn wait_phase(&self, name: &str, phase: &str) -> ModuleView {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let seen = self.module(name).await;
            match seen {
                Some(module) if module.phase.as_str() == phase => return module,
                seen if Instant::now() >= deadline => panic!(
                    "timed out waiting for module {name} in phase {phase}; last seen: {}",
                    seen.map_or("none".to_owned(), |m| format!("{}: {}", m.phase, m.message))
                ),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    pub async fn wait_gone(&self, name: &str) {
        self.wait_until(&format!("module {name} gone"), || async {
            self.module(name).await.is_none().then_some(())
        })
        .await
    }

    /// Polls `probe` until it yields a value; fails the test after [`DEADLINE`].
    pub async fn wait_until<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The daemon's instance id, as its runners' labels carry it.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Every container this harness's daemon has made, running or not.
    pub async fn containers(&self) -> Vec<ContainerSummary> {
        let labels = [format!("{LABEL_INSTANCE}={}", self.instance)];
        labelled(&self.docker, &labels)
            .await
            .expect("list containers")
    }

    /// Everything a container has printed so far, one JSON value per line.
    pub async fn output(&self, container_id: &str) -> Vec<Value> {
        let options = LogsOptionsBuilder::default().stdout(true).build();
        let chunks: Vec<_> = self
            .docker
            .logs(container_id, Some(options))
            .collect()
            .await;
        let text: String = chunks
            .into_iter()
            .flatten()
            .map(|c| String::from_utf8_lossy(&c.into_bytes()).into_owned())
            .collect();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("the module prints JSON lines"))
            .collect()
    }

    /// Follows a container's stdout from its start, collecting one JSON
    /// value per line until the container is removed. Following (rather
    /// than reading once) keeps what a module printed just before removal.
    pub fn follow_output(&self, container_id: &str) -> ModuleOutput {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let options = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .build();
        let mut stream = self.docker.logs(container_id, Some(options));
        let sink = lines.clone();
        let task = tokio::spawn(async move {
            let mut pending = String::new();
            while let Some(Ok(chunk)) = stream.next().await {
                pending.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                while let Some(end) = pending.find('\n') {
                    let line: String = pending.drain(..=end).collect();
                    let value =
                        serde_json::from_str(line.trim()).expect("the module prints JSON lines");
                    sink.lock().expect("not poisoned").push(value);
                }
            }
        });
        ModuleOutput { lines, task }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        match self.daemon.take() {
            Some(Daemon::InProcess(shutdown, _)) => shutdown.cancel(),
            Some(Daemon::Process(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {}
        }
        // Synchronous on purpose: Drop may run while a test unwinds.
        let filter = format!("label={LABEL_INSTANCE}={}", self.instance);
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output();
        if let Ok(out) = ids {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

/// What a module printed, as it arrives.
pub struct ModuleOutput {
    lines: Arc<Mutex<Vec<Value>>>,
    task: JoinHandle<()>,
}

impl ModuleOutput {
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().expect("not poisoned").clone()
    }

    /// The bodies the module received on `endpoint`, in order.
    pub fn bodies(&self, endpoint: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["endpoint"] == endpoint)
            .map(|l| l["body"].clone())
            .collect()
    }

    /// Waits until at least `count` requests reached `endpoint`.
    pub async fn wait_bodies(&self, endpoint: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let bodies = self.bodies(endpoint);
            if bodies.len() >= count {
                return bodies;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} {endpoint} requests; saw {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the container to be gone, then returns everything it printed.
    pub async fn finish(self) -> Vec<Value> {
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the container goes away")
            .expect("log task");
        self.lines.lock().expect("not poisoned").clone()
    }
}

/// Everything the daemons of this test process logged, at every level.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().expect("not poisoned")).into_owned()
}

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    // Another subscriber may already be set (e.g. by a test); then keep it.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(|| LogSink)
        .try_init();
}

async fn docker_or_skip() -> Option<Docker> {
    let required = std::env::var("FORKLET_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
    let connected = async { Docker::connect_with_defaults()?.negotiate_version().await }.await;
    let docker = match connected {
        Ok(docker) if docker.ping().await.is_ok() => Some(docker),
        _ => None,
    };
    if docker.is_none() {
        assert!(
            !required,
            "FORKLET_REQUIRE_DOCKER=1 but no Docker engine answers"
        );
        eprintln!(
            "skipping: no Docker engine (set FORKLET_REQUIRE_DOCKER=1 to make this a failure)"
        );
    }
    docker
}

/// The example images built, for tests that run images without a daemon
/// (`forklet test-module`); `false` (skip) without an engine.
pub async fn example_images() -> bool {
    if docker_or_skip().await.is_none() {
        return false;
    }
    build_images();
    true
}

/// Builds the example module images from the current source, once per
/// test process.
fn build_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        for (bin, tag) in [
            ("hello-module", HELLO_IMAGE),
            ("misbehave-module", MISBEHAVE_IMAGE),
        ] {
            run_build_script("examples/modules/build-image.sh", &[bin, tag]);
        }
    });
}

/// Runs one of the image build scripts; fails the test with its output.
fn run_build_script(script: &str, args: &[&str]) {
    let script = repo_root().join(script);
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .expect("run a build-image.sh");
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds [`PYTHON_IMAGE`] (once per test binary), for the tests that use
/// it: the first build needs root, debootstrap and a Debian mirror.
pub fn build_python_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        run_build_script("examples/modules/python/build-image.sh", &[PYTHON_IMAGE]);
    });
}

/// Builds [`KUBECTL_IMAGE`] (once per test binary), as [`build_python_image`].
pub fn build_kubectl_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        run_build_script("examples/modules/kubectl/build-image.sh", &[KUBECTL_IMAGE]);
    });
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the daemon crate sits in the repo root")
        .to_owned()
}
