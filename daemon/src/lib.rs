//! forkletd: runs Forkspacer `kind: Custom` modules on one machine's Docker
//! engine, driven by a directory of Module and Workspace manifests.
//!
//! [`run`] is the whole daemon; the binary only parses flags and signals, so
//! tests start the real thing in-process on temporary directories.

pub mod api;
pub mod backoff;
pub mod catalog;
pub mod cluster;
pub mod control_socket;
pub mod controller_sockets;
pub mod docker;
pub mod event_stream;
pub mod fault;
pub mod hibernation;
pub mod http_server;
pub mod image_ref;
pub mod kubeconfig;
pub mod logging;
pub mod metrics;
pub mod module_logs;
pub mod module_test;
pub mod neighbours;
pub mod openapi;
pub mod orphans;
pub mod plan;
pub mod problem_response;
pub mod protocol;
pub mod reconciler;
pub mod resources;
pub mod runner_events;
pub mod runner_files;
pub mod runtime;
pub mod service;
pub mod store_thread;
#[cfg(test)]
mod test_support;
#[cfg(feature = "testing")]
pub mod testing;
pub mod watcher;
pub mod workspace_history;

use std::collections::HashMap;
use std::fs::{DirBuilder, File};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use forklet_state::store::{Store, StoreError};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::catalog::Catalog;
use crate::cluster::Resolver;
use crate::cluster::engine_view::Engine;
use crate::cluster::relay::{Peers, Relays};
use crate::controller_sockets::ControllerSockets;
use crate::docker::DockerRuntime;
use crate::hibernation::HibernationClock;
use crate::orphans::OrphanSweeper;
use crate::protocol::{Limits, ModuleClient};
use crate::reconciler::{Command, Context, Supervisor};
use crate::runner_events::RunnerChange;
use crate::runner_files::RunnerFiles;
use crate::runtime::RuntimeError;
use crate::store_thread::StoreThread;
use crate::watcher::{ManifestWatcher, SharedCatalog};

#[derive(Debug, Clone)]
pub struct Config {
    pub manifests_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// The control socket's group (mode 0660); `None`: owner only (0600).
    pub socket_group: Option<u32>,
    pub limits: Limits,
    /// How many modules may be acted on at once.
    pub max_concurrent: usize,
    /// How failed steps are retried.
    pub retry: Backoff,
    /// How long a runner that belongs to no module is left before removal.
    pub orphan_grace: Duration,
    /// How long a module stays absent from every manifest before it is
    /// uninstalled.
    pub removal_grace: Duration,
    /// How long an image pull may go without progress before it fails.
    pub pull_stall: Duration,
    /// How often the manifests (and kubeconfigs) are looked at without an
    /// event ([`watcher::RESYNC`]).
    pub rescan_every: Duration,
    /// Keep runners running while their module is asleep (default: stop them).
    pub keep_runners_while_asleep: bool,
    /// Where to serve Prometheus metrics (`None`: not served).
    pub metrics_address: Option<std::net::SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another forkletd is using state directory {0}")]
    StateDirLocked(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "cannot use Docker: {0} (is the engine running? forkletd connects as `docker` does, through DOCKER_HOST or /var/run/docker.sock)"
    )]
    Docker(#[from] RuntimeError),
    #[error("--metrics-address {address}: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("manifests directory {path}: {source} (create it, or pass --manifests)")]
    Manifests {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("watching manifests directory {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error(transparent)]
    Socket(#[from] control_socket::SocketError),
    #[error("the {task} stopped: {why}")]
    TaskEnded { task: &'static str, why: String },
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let state_dir = &config.state_dir;
    private_state_dir(state_dir).map_err(|source| Error::StateDir {
        path: state_dir.clone(),
        source,
    })?;
    let _lock = lock_state_dir(state_dir)?;
    let store = Arc::new(Store::open(&state_dir.join("forklet.db"))?);
    for name in store.drop_unaddressable()? {
        tracing::warn!(
            module = name,
            "forgetting a module whose name is not a Kubernetes name (its runner is removed as an orphan; rename it in its manifest)"
        );
    }
    let instance = store.setting_or_init("instance", random_id)?;
    let runtime = DockerRuntime::connect(instance.clone(), config.pull_stall).await?;
    let docker = runtime.docker().clone();
    let relays = Relays::new(
        tokio::runtime::Handle::current(),
        Peers::runners(docker.clone(), instance),
    );
    let engine = Engine::docker(docker.clone(), tokio::runtime::Handle::current());
    let resolver = Resolver::new(store.clone(), engine, Some(relays.clone()));
    let clusters = resolver.book();
    let (look_again_tx, look_again_rx) = tokio::sync::mpsc::unbounded_channel();
    let runner_events = runtime.runner_events();
    let sweeper = OrphanSweeper {
        runtime: runtime.clone(),
        store: store.clone(),
        grace: config.orphan_grace,
    };

    let manifests = &config.manifests_dir;
    // Watch first, then scan: an edit between the two is then never missed.
    let watcher = ManifestWatcher::start(manifests).map_err(|source| Error::Watch {
        path: manifests.clone(),
        source,
    })?;
    let catalog = SharedCatalog::new(Catalog::new(manifests.clone(), store.clone(), resolver));
    catalog
        .with(Catalog::rescan)
        .await
        .map_err(|source| Error::Manifests {
            path: manifests.clone(),
            source,
        })?;
    let initial = catalog.with(Catalog::desired).await;
    for problem in &initial.problems {
        tracing::warn!(%problem, "manifest problem");
    }
    let (desired_tx, desired_rx) = watch::channel(Arc::new(initial));

    // 0600 (or 0660 for one group): the API can start containers.
    let mode = match config.socket_group {
        Some(_) => 0o660,
        None => 0o600,
    };
    let listener = control_socket::bind_as(&config.socket, mode, config.socket_group)?;
    let metrics = match config.metrics_address {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| Error::Metrics { address, source })?,
        ),
        None => None,
    };
    tracing::info!(socket = %config.socket.display(), manifests = %manifests.display(), "forkletd ready");

    // The first snapshot is taken before any worker starts, so that a module
    // in a workspace asleep by schedule is never woken at start.
    let initial = desired_rx.borrow().clone();
    let first = HibernationClock::snapshot(&store, &initial, chrono::Utc::now());
    let (hibernation_tx, hibernation_rx) = watch::channel(Arc::new(first));
    let overrides_changed = Arc::new(tokio::sync::Notify::new());
    let writes = StoreThread::start(store.clone());
    let clock = HibernationClock {
        store: store.clone(),
        writes: writes.clone(),
        desired: desired_rx.clone(),
        published: hibernation_tx,
        overrides_changed: overrides_changed.clone(),
    };
    let (commands_tx, commands_rx) = tokio::sync::mpsc::unbounded_channel();
    let changes = commands_tx.clone();
    let report = move |change| {
        let _ = changes.send(match change {
            RunnerChange::Module(key, id) => Command::RunnerChanged(key, id),
            RunnerChange::All => Command::AllRunnersChanged,
        });
    };
    let (refresh_tx, refresh_rx) = tokio::sync::mpsc::unbounded_channel();
    let api_state = api::ApiState {
        store: store.clone(),
        writes: writes.clone(),
        desired: desired_rx.clone(),
        refresh: refresh_tx,
        look_again: look_again_tx.clone(),
        clusters: clusters.clone(),
        commands: commands_tx,
        hibernation: hibernation_rx.clone(),
        overrides_changed,
        scope: None,
        docker: Some(docker.clone()),
        shutdown: shutdown.clone(),
    };
    // Sockets of their own, in directories of their own, for runners with
    // the `controller` permission: what is mounted into them is that and
    // nothing more (never the state dir).
    let controllers = ControllerSockets::new(
        state_dir.join("controller"),
        api_state.clone(),
        shutdown.clone(),
    );
    let app = api::router(api_state);
    // Controller runners that outlive a restart find their socket again
    // before their module is next looked at.
    for record in store.modules()? {
        if record.runner.controller
            && let Err(err) = controllers.dir(&record.workspace)
        {
            tracing::warn!(module = %record.key, error = %err, "cannot bind the controller socket");
        }
    }
    let sockets = controllers.clone();

    // Just before the workers look at their runners: see START_LIST_FRESH.
    if let Err(err) = runtime.list_at_start().await {
        tracing::warn!(error = %err, "cannot list the runners; each module's is looked up alone");
    }
    let service = service::ServiceManager::from_env();
    let ctx = Arc::new(Context {
        store: store.clone(),
        writes: writes.clone(),
        runtime,
        client: ModuleClient::new(config.limits.clone()),
        files: RunnerFiles::new(state_dir),
        permits: Semaphore::new(config.max_concurrent.max(1)),
        shutdown: shutdown.clone(),
        controller_dirs: Box::new(move |workspace| controllers.dir(workspace)),
        backoff: config.retry,
        removal_grace: config.removal_grace,
        stop_runners_while_asleep: !config.keep_runners_while_asleep,
        clusters,
        look_again: Some(look_again_tx.clone()),
        service: service.clone(),
    });
    let mut core = CoreTasks::default();
    let stop = &shutdown;
    core.spawn("hibernation clock", clock.run(stop.clone()));
    core.spawn(
        "workspace history",
        workspace_history::run(desired_rx.clone(), writes.clone(), stop.clone()),
    );
    core.spawn(
        "neighbour table",
        neighbours::watch(desired_rx.clone(), stop.clone()),
    );
    core.spawn_fallible("reconciler", async move {
        let supervisor = Supervisor::new(ctx);
        let ran = supervisor
            .run(desired_rx, hibernation_rx, commands_rx)
            .await;
        ran.map_err(|err| err.to_string())
    });
    core.spawn("engine events", runner_events.run(report, stop.clone()));
    core.spawn("orphan sweeper", sweeper.run(stop.clone()));
    core.spawn("heap trim", resources::release_freed(stop.clone()));
    core.spawn(
        "engine view",
        cluster::engine_view::run(docker, look_again_tx, stop.clone()),
    );
    core.spawn(
        "manifest watcher",
        watcher.run(
            catalog,
            desired_tx,
            refresh_rx,
            look_again_rx,
            config.rescan_every,
            stop.clone(),
        ),
    );
    core.spawn(
        "control socket",
        http_server::serve(listener, app, "control socket", stop.clone()),
    );
    if let Some(listener) = metrics {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "serving metrics at /metrics");
        }
        core.spawn(
            "metrics",
            metrics::serve(listener, store.clone(), stop.clone()),
        );
    }
    // Every core task runs until shutdown: one that ends before is a
    // daemon that no longer does its job, and it says so by failing (a
    // service manager then restarts it).
    let failed = core.first_end(&shutdown).await;
    service.stopping();
    shutdown.cancel();
    core.drain().await;
    relays.stop_all();
    let _ = std::fs::remove_file(&config.socket);
    sockets.remove_all();
    match failed {
        Some((task, why)) => Err(Error::TaskEnded { task, why }),
        None => Ok(()),
    }
}

/// The daemon's long-running tasks, by name.
#[derive(Default)]
struct CoreTasks {
    tasks: JoinSet<Result<(), String>>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl CoreTasks {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn_fallible(name, async move {
            task.await;
            Ok(())
        });
    }

    /// A task that may end with a reason of its own.
    fn spawn_fallible(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits for shutdown or for a task to end; a task that ended first is
    /// returned with why.
    async fn first_end(&mut self, shutdown: &CancellationToken) -> Option<(&'static str, String)> {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            Some(ended) = self.tasks.join_next_with_id() => {
                // Tasks end as they should once shutdown has begun.
                if shutdown.is_cancelled() {
                    return None;
                }
                let (id, why) = match ended {
                    Ok((id, Ok(()))) => (id, "it ended".to_owned()),
                    Ok((id, Err(why))) => (id, why),
                    Err(err) if err.is_panic() => (err.id(), "it panicked".to_owned()),
                    Err(err) => (err.id(), err.to_string()),
                };
                let task = self.names.get(&id).copied().unwrap_or("a task");
                tracing::error!(task, "{why} while forkletd was running; stopping");
                Some((task, why))
            }
        }
    }

    async fn drain(&mut self) {
        while let Some(ended) = self.tasks.join_next_with_id().await {
            if let Err(err) = ended
                && err.is_panic()
            {
                let task = self.names.get(&err.id()).copied().unwrap_or("a task");
                tracing::error!(task, "panicked while stopping");
            }
        }
    }
}

/// The state dir holds registry passwords and kubeconfigs: only the
/// daemon's user may enter it. One made open by hand is closed again; a
/// directory shared on purpose (sticky, like /tmp) is refused, never changed.
fn private_state_dir(path: &Path) -> std::io::Result<()> {
    private_dir(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode & 0o1000 != 0 {
        return Err(std::io::Error::other(
            "a shared directory (sticky bit, like /tmp) cannot be a state directory: choose one of its own",
        ));
    }
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the state directory was open to other users; making it private");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

pub(crate) fn private_dir(path: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// Two daemons on one state dir would fight over every container.
fn lock_state_dir(state_dir: &Path) -> Result<File, Error> {
    let path = state_dir.join("forkletd.lock");
    let file = File::create(&path).map_err(|source| Error::StateDir {
        path: path.clone(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::StateDirLocked(state_dir.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::StateDir { path, source }),
    }
}

/// Names this state dir's containers apart from any other forklet's.
pub fn random_id() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_core_task_that_ends_or_panics_early_is_named() {
        let shutdown = CancellationToken::new();
        for (task, why) in [("quitter", "it ended"), ("panicker", "it panicked")] {
            let mut core = CoreTasks::default();
            let until_stopped = shutdown.clone();
            core.spawn("steady", async move { until_stopped.cancelled().await });
            match task {
                "quitter" => core.spawn(task, async {}),
                _ => core.spawn(task, async { panic!("on purpose") }),
            }
            assert_eq!(
                core.first_end(&shutdown).await,
                Some((task, why.to_owned()))
            );
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn shutdown_is_no_failure() {
        let shutdown = CancellationToken::new();
        let mut core = CoreTasks::default();
        let until_stopped = shutdown.clone();
        core.spawn("steady", async move { until_stopped.cancelled().await });
        shutdown.cancel();
        assert_eq!(core.first_end(&shutdown).await, None);
        core.drain().await;
    }

    #[test]
    fn a_shared_directory_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = private_state_dir(&shared).unwrap_err();
        assert!(err.to_string().contains("sticky bit"), "{err}");
        let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o1777);
    }

    #[test]
    fn a_state_directory_open_to_others_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        private_state_dir(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
