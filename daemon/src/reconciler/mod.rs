//! Drives every module from what forklet knows towards what the manifests
//! ask for, shaped as a kube-rs controller: one worker per module plans the
//! next action from intent, record and observed runner ([`crate::plan`]),
//! performs it as one step, and on failure asks its error policy how long
//! to back off.
//!
//! - [`supervisor`]: dispatch. Turns desired states into each worker's
//!   intent, waits out the removal grace, routes commands, restarts workers
//!   that panic.
//! - [`worker`]: the per-module loop: coalescing, backoff, abandoning a step
//!   when its module is removed or forgotten.
//! - [`steps`]: the lifecycle steps, each phase change committed before the
//!   next call.
//! - [`mailbox`]: what a worker is told besides its intent (retry, runner
//!   news, a forced deletion), small enough for a thousand idle workers.
//! - [`problems`]: manifest problems written into each module's history.

mod mailbox;
mod problems;
mod steps;
mod supervisor;
mod worker;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use forklet_state::ObjectKey;
use forklet_state::store::Store;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::protocol::ModuleClient;
use crate::runner_files::RunnerFiles;
use crate::store_thread::StoreThread;

pub use supervisor::Supervisor;

pub type ControllerDirs =
    Box<dyn Fn(&ObjectKey) -> Result<PathBuf, crate::control_socket::SocketError> + Send + Sync>;

/// What every worker shares.
pub struct Context<R, M = ModuleClient> {
    pub store: Arc<Store>,
    /// The store's writes (and the reads that must follow them), in order,
    /// off the async runtime.
    pub writes: StoreThread,
    pub runtime: R,
    pub client: M,
    pub files: RunnerFiles,
    pub permits: Semaphore,
    pub shutdown: CancellationToken,
    /// The directory of the control socket that a workspace's `controller`
    /// runners get (bound on first use).
    pub controller_dirs: ControllerDirs,
    pub backoff: Backoff,
    /// How long a module must stay absent from every manifest before it is
    /// uninstalled: files vanish for a moment under editors, `git checkout`
    /// and `rsync`.
    pub removal_grace: Duration,
    /// Stop a module's runner once `/sleep` succeeded (and start it again
    /// to resume): an asleep module then costs nothing but disk.
    pub stop_runners_while_asleep: bool,
    /// How each workspace's modules reach its cluster, as of the last look.
    pub clusters: watch::Receiver<crate::cluster::Book>,
    /// Asks for another look at the clusters (after one could not be found).
    pub look_again: Option<mpsc::UnboundedSender<()>>,
    /// The service manager: beaten and told the status from the reconciler's loop.
    pub service: crate::service::ServiceManager,
}

/// What the control API and the engine watcher ask of the reconciler.
#[derive(Debug)]
pub enum Command {
    /// Try a failed module's step now; answers whether the module is known.
    Retry(ObjectKey, oneshot::Sender<bool>),
    /// A runner container changed under us: it died, was removed, restarted.
    RunnerChanged(ObjectKey, String),
    /// Any runner may have changed: the engine restarted or was unreachable.
    AllRunnersChanged,
    /// Forget a module whose manifest is gone, without calling `/uninstall`.
    ForceDelete(ObjectKey, oneshot::Sender<Result<(), ForgetError>>),
}

/// Why a module cannot be forgotten.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error("module {0} not found")]
    NotFound(ObjectKey),
    #[error("{file} still defines module {key}: delete it from there first")]
    StillDefined { key: ObjectKey, file: PathBuf },
    #[error("forgetting module {key}: {detail}")]
    Failed { key: ObjectKey, detail: String },
}
