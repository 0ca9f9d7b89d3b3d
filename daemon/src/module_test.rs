//! `forklet test-module`: one module image run as forkletd runs it (the
//! same container settings, `/forkspacer` files, init, port and limits),
//! with no daemon, and the module contract walked, each step a check.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use forklet_state::ObjectKey;
use forklet_state::operation::Operation;
use forklet_state::store::RunnerSettings;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::docker::DockerRuntime;
use crate::protocol::{BodyError, Limits, ModuleClient, call_body, read_limited};
use crate::runner_files::{Durable, KubeconfigFile, RunnerFiles};
use crate::runtime::{RunnerSpec, Runtime, RuntimeError};

/// Longer than this after SIGTERM and a module is not stopping on it.
pub const STOP_WITHIN: Duration = Duration::from_secs(5);

pub struct Options {
    pub image: String,
    /// The config the module receives, validated already where a
    /// definition was given.
    pub config: Map<String, Value>,
    pub cpu_shares: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// The `workspace` permission: the kubeconfig the runner gets (cut to
    /// one context, its files embedded, as forkletd gives it).
    pub kubeconfig: Option<String>,
    /// For becoming healthy.
    pub health_timeout: Duration,
    /// For each lifecycle call.
    pub call_timeout: Duration,
    /// The `controller` permission: forklet's read-only API mounted at
    /// `/forklet`, as forkletd mounts it (here with no other module).
    pub controller: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    /// The specification recommends it; the contract does not require it.
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    /// What came back, or what was expected and what came instead.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub image: String,
    /// Every required check passed.
    pub passed: bool,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_bytes: Option<i64>,
    /// The runner container's name (removed when the test ends).
    pub runner: String,
    /// What the module returned last (install, sleep, resume).
    pub metadata: Map<String, Value>,
}

/// One test run: its runner, its files, and what it found.
pub struct ModuleTest {
    runtime: DockerRuntime,
    key: ObjectKey,
    files: PathBuf,
    options: Options,
    /// Ends the controller socket's server.
    shutdown: tokio_util::sync::CancellationToken,
}

impl ModuleTest {
    /// Connects to the engine as forkletd does. Nothing is started yet.
    pub async fn connect(options: Options) -> Result<Self, RuntimeError> {
        // An instance of its own: forkletd's sweeper never takes these
        // runners for its own, and two tests never share a container.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        // The first 8 characters name the container: both the process and
        // the moment in them, so a runner left by an earlier run never
        // takes this one's name.
        let mixed = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9) ^ u64::from(nanos);
        let instance = format!("t{:07x}", mixed & 0xfff_ffff);
        let runtime = DockerRuntime::connect(instance.clone(), Duration::from_secs(120)).await?;
        Ok(Self {
            runtime,
            key: ObjectKey::new("default", "test-module").expect("a valid name"),
            files: std::env::temp_dir().join(format!("forklet-test-module-{instance}")),
            options,
            shutdown: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Walks the contract; `progress` hears each step as it starts.
    pub async fn walk(&self, progress: &(dyn Fn(&str) + Send + Sync)) -> Report {
        let mut checks = Vec::new();
        let mut metadata = Map::new();
        let mut passed = self.steps(&mut checks, &mut metadata, progress).await;
        let image = self
            .runtime
            .docker()
            .inspect_image(&self.options.image)
            .await
            .ok();
        let image_bytes = image.as_ref().and_then(|image| image.size);
        if passed {
            let user = image.and_then(|image| image.config?.user);
            checks.push(user_check(user));
        }
        passed &= checks.iter().all(|c| c.verdict != Verdict::Fail);
        Report {
            image: self.options.image.clone(),
            passed,
            checks,
            image_bytes,
            runner: self.runner(),
            metadata,
        }
    }

    /// forklet's workspace-scoped API for a `controller` module, served as
    /// forkletd serves it, from a state of its own that holds no module.
    fn controller_socket(&self) -> Result<PathBuf, String> {
        use std::sync::Arc;
        use tokio::sync::{mpsc, watch};
        let store = forklet_state::store::Store::open(&self.files.join("state.db"))
            .map_err(|err| err.to_string())?;
        let store = Arc::new(store);
        let (refresh, _) = mpsc::unbounded_channel();
        let (look_again, _) = mpsc::unbounded_channel();
        let (commands, _) = mpsc::unbounded_channel();
        let api = crate::api::ApiState {
            writes: crate::store_thread::StoreThread::start(store.clone()),
            store,
            desired: watch::channel(Arc::default()).1,
            refresh,
            look_again,
            clusters: watch::channel(crate::cluster::Book::default()).1,
            commands,
            hibernation: watch::channel(Arc::default()).1,
            overrides_changed: Arc::default(),
            scope: None,
            docker: None,
            shutdown: self.shutdown.clone(),
        };
        let sockets = crate::controller_sockets::ControllerSockets::new(
            self.files.join("controller"),
            api,
            self.shutdown.clone(),
        );
        let workspace = ObjectKey::new("default", "test-workspace").expect("a valid name");
        sockets.dir(&workspace).map_err(|err| err.to_string())
    }

    /// The runner's exit status, when it is not running.
    async fn exited(&self) -> Option<i64> {
        let info = self
            .runtime
            .docker()
            .inspect_container(&self.runner(), None)
            .await
            .ok()?;
        let state = info.state?;
        (state.running != Some(true)).then_some(state.exit_code?)
    }

    /// The runner container's name.
    pub fn runner(&self) -> String {
        self.runtime.container_name(&self.key)
    }

    /// The runner and its files go, whatever happened (also after Ctrl-C);
    /// what could not be removed is said.
    pub async fn clean(&self) -> Result<(), String> {
        self.shutdown.cancel();
        let files = std::fs::remove_dir_all(&self.files);
        let gone = |err: RuntimeError| format!("runner {}: {err}", self.runner());
        self.runtime.remove_runners(&self.key).await.map_err(gone)?;
        // A create cut short by a signal may land after the list: by name too.
        self.runtime.remove(&self.runner()).await.map_err(gone)?;
        match files {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {err}", self.files.display()))
            }
            _ => Ok(()),
        }
    }

    /// `false` when a step failed so that the rest could not run.
    async fn steps(
        &self,
        checks: &mut Vec<Check>,
        metadata: &mut Map<String, Value>,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> bool {
        let options = &self.options;
        progress("starting the runner");
        let started = Instant::now();
        let endpoint = match self.start(progress).await {
            Ok(endpoint) => endpoint,
            Err(err) => {
                checks.push(fail("start", err.to_string(), started));
                return false;
            }
        };
        checks.push(pass("start", format!("runner on {endpoint}"), started));

        progress("waiting for GET /health");
        let client = ModuleClient::new(Limits {
            health_deadline: options.health_timeout,
            call_timeout: options.call_timeout,
            ..Limits::default()
        });
        let since = Instant::now();
        if let Err(err) = client.wait_healthy(endpoint).await {
            let detail = match self.exited().await {
                Some(code) => format!("{err}; the runner exited with status {code}"),
                None => err.to_string(),
            };
            checks.push(fail("health", detail, since));
            return false;
        }
        checks.push(pass("health", "200".into(), since));
        checks.push(health_body(&client, endpoint).await);

        for (name, operation, again) in [
            ("install", Operation::Install, false),
            ("install-again", Operation::Install, true),
            ("sleep", Operation::Sleep, false),
            ("resume", Operation::Resume, false),
            ("uninstall", Operation::Uninstall, false),
        ] {
            progress(&format!("POST {}", operation.path()));
            let body = call_body(metadata, &options.config);
            let since = Instant::now();
            match client.call(endpoint, operation, &body).await {
                Ok(answer) => {
                    let what = match (&answer, again) {
                        (_, true) => "idempotent: the returned metadata taken again",
                        (Some(_), false) => "a JSON object",
                        (None, false) => "an empty body (the metadata stays)",
                    };
                    checks.push(pass(name, what.to_owned(), since));
                    if let Some(answer) = answer {
                        *metadata = answer;
                    }
                }
                Err(err) => {
                    checks.push(fail(name, err.to_string(), since));
                    return false;
                }
            }
        }

        progress("stopping the runner (SIGTERM)");
        let since = Instant::now();
        if let Err(err) = self.runtime.stop_runners(&self.key).await {
            checks.push(fail("sigterm", err.to_string(), since));
            return true;
        }
        let took = since.elapsed();
        let state = self
            .runtime
            .docker()
            .inspect_container(&self.runner(), None)
            .await
            .ok()
            .and_then(|info| info.state);
        // 137: SIGKILL, after `docker stop`'s grace ran out.
        let killed = state.and_then(|s| s.exit_code) == Some(137);
        checks.push(match (killed, took <= STOP_WITHIN) {
            (true, _) => fail(
                "sigterm",
                format!(
                    "killed {} s after SIGTERM: the module's process ignores SIGTERM \
                     (forklet runs it under an init, which passes the signal on)",
                    took.as_secs()
                ),
                since,
            ),
            (false, true) => pass("sigterm", "stopped".into(), since),
            (false, false) => warn(
                "sigterm",
                format!("took {} s to stop after SIGTERM", took.as_secs()),
                since,
            ),
        });
        true
    }

    async fn start(&self, progress: &(dyn Fn(&str) + Send + Sync)) -> Result<SocketAddr, String> {
        let options = &self.options;
        let kubeconfig = match &options.kubeconfig {
            Some(text) => KubeconfigFile::Write(text),
            None => KubeconfigFile::Remove,
        };
        // Private, and made here (never one that stood already): the
        // kubeconfig below it carries credentials, and /tmp is everyone's.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&self.files)
            .map_err(|err| format!("{}: {err}", self.files.display()))?;
        let files = RunnerFiles::new(&self.files)
            // A trial runner is gone after the test: nothing to keep.
            .write_for(&self.key, &options.config, kubeconfig, Durable::Later)
            .map_err(|err| err.to_string())?;
        let controller_dir = match options.controller {
            true => Some(self.controller_socket()?),
            false => None,
        };
        let spec = RunnerSpec {
            key: self.key.clone(),
            settings: RunnerSettings {
                image: options.image.clone(),
                runner_hash: "test-module".into(),
                kubeconfig: options.kubeconfig.is_some(),
                cpu_shares: options.cpu_shares,
                memory_reservation: options.memory_reservation,
                pull_secrets: Vec::new(),
                controller: options.controller,
                network: None,
            },
            files_dir: files,
            credentials: Vec::new(),
            missing_secrets: Vec::new(),
            controller_dir,
            trial: true,
        };
        let runner = self
            .runtime
            .ensure_runner(&spec, progress)
            .await
            .map_err(|err| err.to_string())?;
        Ok(runner.endpoint)
    }
}

/// The specification's images run as a user of their own (`USER`, before
/// any `:group`, neither empty nor root).
fn user_check(user: Option<String>) -> Check {
    let since = Instant::now();
    let user = user.unwrap_or_default();
    let name = user.split(':').next().unwrap_or_default();
    match name.is_empty() || name == "root" || name.parse::<u32>() == Ok(0) {
        true => warn(
            "user",
            "the image runs as root: a USER of its own is recommended".into(),
            since,
        ),
        false => pass("user", format!("runs as {user}"), since),
    }
}

/// The most of a health body read: far beyond the specification's fields.
const HEALTH_BODY_MAX: usize = 64 << 10;

/// `GET /health`'s body has the fields the specification shows.
async fn health_body(client: &ModuleClient, endpoint: SocketAddr) -> Check {
    let since = Instant::now();
    let answer = async {
        // forkletd's own client: straight to the runner, no proxy, no redirect.
        let url = format!("http://{endpoint}/health");
        let response = client.get(&url, Duration::from_secs(5)).await?;
        let bytes = read_limited(response, HEALTH_BODY_MAX)
            .await
            .map_err(|err| match err {
                BodyError::TooLarge => format!("more than {HEALTH_BODY_MAX} bytes"),
                BodyError::Transport(detail) => detail,
            })?;
        serde_json::from_slice::<Value>(&bytes).map_err(|_| "not JSON".to_owned())
    };
    let missing: Vec<&str> = match answer.await {
        Ok(Value::Object(body)) => ["healthy", "message", "timestamp", "uptime"]
            .into_iter()
            .filter(|field| !body.contains_key(*field))
            .collect(),
        Ok(_) => vec!["a JSON object"],
        Err(err) => return warn("health-body", format!("the body: {err}"), since),
    };
    match missing.is_empty() {
        true => pass(
            "health-body",
            "healthy, message, timestamp, uptime".into(),
            since,
        ),
        false => warn(
            "health-body",
            format!("recommended but missing: {}", missing.join(", ")),
            since,
        ),
    }
}

fn pass(name: &'static str, detail: String, since: Instant) -> Check {
    Check {
        name,
        verdict: Verdict::Pass,
        detail,
        millis: Some(u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)),
    }
}

fn warn(name: &'static str, detail: String, since: Instant) -> Check {
    Check {
        verdict: Verdict::Warn,
        ..pass(name, detail, since)
    }
}

fn fail(name: &'static str, detail: String, since: Instant) -> Check {
    Check {
        verdict: Verdict::Fail,
        ..pass(name, detail, since)
    }
}
