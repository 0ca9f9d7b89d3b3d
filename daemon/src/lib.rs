//! forkletd: runs Forkspacer `kind: Custom` modules on one machine's Docker
//! engine, driven by a directory of Module and Workspace manifests.
//!
//! [`run`] is the whole daemon; the binary only parses flags and signals, so
//! tests start the real thing in-process on temporary directories.

pub mod api;
pub mod backoff;
pub mod catalog;
pub mod docker;
pub mod fault;
pub mod hibernation;
pub mod image_ref;
pub mod kubeconfig;
pub mod orphans;
pub mod plan;
pub mod protocol;
pub mod reconciler;
pub mod runner_events;
pub mod runner_files;
pub mod runtime;
#[cfg(feature = "testing")]
pub mod testing;
pub mod watcher;

use std::fs::{DirBuilder, File};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use forklet_state::store::{Store, StoreError};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::catalog::Catalog;
use crate::docker::DockerRuntime;
use crate::hibernation::HibernationClock;
use crate::orphans::OrphanSweeper;
use crate::protocol::{Limits, ModuleClient};
use crate::reconciler::{Command, Context, Supervisor};
use crate::runner_events::RunnerChange;
use crate::runner_files::RunnerFiles;
use crate::runtime::RuntimeError;
use crate::watcher::{ManifestWatcher, SharedCatalog};

#[derive(Debug, Clone)]
pub struct Config {
    pub manifests_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
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
    /// Keep runners running while their module is asleep (default: stop them).
    pub keep_runners_while_asleep: bool,
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
    #[error("control socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another forkletd is already listening on {0}")]
    AlreadyRunning(PathBuf),
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let state_dir = &config.state_dir;
    private_dir(state_dir).map_err(|source| Error::StateDir {
        path: state_dir.clone(),
        source,
    })?;
    let _lock = lock_state_dir(state_dir)?;
    let store = Arc::new(Store::open(&state_dir.join("forklet.db"))?);
    let instance = store.setting_or_init("instance", random_id)?;
    let runtime = DockerRuntime::connect(instance).await?;
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
    let catalog = SharedCatalog::new(Catalog::new(manifests.clone(), store.clone()));
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

    let listener = bind_socket(&config.socket)?;
    // A socket of its own, in a directory of its own, for runners with the
    // `controller` permission: what is mounted into them is that and nothing
    // more (never the state dir), and it outlives daemon restarts.
    let controller_dir = state_dir.join("controller");
    let controller_socket = controller_dir.join("forkletd.sock");
    let controller_listener = bind_socket(&controller_socket)?;
    tracing::info!(socket = %config.socket.display(), manifests = %manifests.display(), "forkletd ready");

    let ctx = Arc::new(Context {
        store: store.clone(),
        runtime,
        client: ModuleClient::new(config.limits.clone()),
        files: RunnerFiles::new(state_dir),
        permits: Semaphore::new(config.max_concurrent.max(1)),
        shutdown: shutdown.clone(),
        controller_dir,
        backoff: config.retry,
        removal_grace: config.removal_grace,
        stop_runners_while_asleep: !config.keep_runners_while_asleep,
    });
    // The first snapshot is taken before any worker starts, so that a module
    // in a workspace asleep by schedule is never woken at start.
    let first = HibernationClock::snapshot(&store, &desired_rx.borrow(), chrono::Utc::now());
    let (hibernation_tx, hibernation_rx) = watch::channel(Arc::new(first));
    let overrides_changed = Arc::new(tokio::sync::Notify::new());
    let clock = HibernationClock {
        store: store.clone(),
        desired: desired_rx.clone(),
        published: hibernation_tx,
        overrides_changed: overrides_changed.clone(),
    };
    let clocking = tokio::spawn(clock.run(shutdown.clone()));
    let (commands_tx, commands_rx) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = tokio::spawn(Supervisor::new(ctx).run(
        desired_rx.clone(),
        hibernation_rx.clone(),
        commands_rx,
    ));
    let changes = commands_tx.clone();
    let report = move |change| {
        let _ = changes.send(match change {
            RunnerChange::Module(key, id) => Command::RunnerChanged(key, id),
            RunnerChange::All => Command::AllRunnersChanged,
        });
    };
    let watching_runners = tokio::spawn(runner_events.run(report, shutdown.clone()));
    let sweeping = tokio::spawn(sweeper.run(shutdown.clone()));
    let (refresh_tx, refresh_rx) = tokio::sync::mpsc::unbounded_channel();
    let watching = tokio::spawn(watcher.run(catalog, desired_tx, refresh_rx, shutdown.clone()));
    let app = api::router(api::ApiState {
        store,
        desired: desired_rx,
        refresh: refresh_tx,
        commands: commands_tx,
        hibernation: hibernation_rx,
        overrides_changed,
    });
    let stopped = || shutdown.clone().cancelled_owned();
    let users = axum::serve(listener, app.clone()).with_graceful_shutdown(stopped());
    let runners = axum::serve(controller_listener, app).with_graceful_shutdown(stopped());
    let served = tokio::try_join!(users.into_future(), runners.into_future())
        .map(drop)
        .map_err(|source| Error::Socket {
            path: config.socket.clone(),
            source,
        });

    shutdown.cancel();
    let _ = watching.await;
    let _ = watching_runners.await;
    let _ = sweeping.await;
    let _ = clocking.await;
    let supervised = supervisor.await.expect("the supervisor does not panic");
    let _ = std::fs::remove_file(&config.socket);
    let _ = std::fs::remove_file(&controller_socket);
    served?;
    supervised?;
    Ok(())
}

fn private_dir(path: &Path) -> std::io::Result<()> {
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

fn bind_socket(path: &Path) -> Result<UnixListener, Error> {
    let err = |source| Error::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        private_dir(parent).map_err(err)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::AlreadyRunning(path.to_owned()));
        }
        // Left behind by a daemon that did not stop cleanly.
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    // Only the daemon's user may drive it: the API can start containers.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
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
