//! What the reconciler needs from a container engine, so that its logic can
//! be tested without one. The real implementation is [`crate::docker`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use forklet_state::ObjectKey;
use forklet_state::store::{RegistrySecret, RunnerSettings};

/// How a module's runner container must look.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerSpec {
    pub key: ObjectKey,
    pub settings: RunnerSettings,
    /// Mounted read-only at `/forkspacer`.
    pub files_dir: PathBuf,
    /// The registry secrets named in `settings.pull_secrets` that exist.
    pub credentials: Vec<RegistrySecret>,
    /// Those named that do not: a runner cannot be made until they do.
    pub missing_secrets: Vec<String>,
    /// With the `controller` permission: the directory of the control
    /// socket meant for runners, mounted at [`CONTROLLER_MOUNT`].
    pub controller_dir: Option<PathBuf>,
    /// A runner of `forklet test-module`: the local image is used when
    /// there is one (the author's fresh build), and the engine never
    /// restarts it (a test interrupted hard leaves nothing that comes back).
    pub trial: bool,
}

/// Where a runner with the `controller` permission finds forklet's API.
pub const CONTROLLER_MOUNT: &str = "/forklet";
pub const CONTROLLER_SOCKET: &str = "/forklet/forkletd.sock";

/// A running runner: where its HTTP API answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub container_id: String,
    pub endpoint: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {image} is not present and could not be pulled: {detail}")]
    Pull { image: String, detail: String },
    #[error("container engine: {action}: {detail}")]
    Engine {
        action: &'static str,
        detail: String,
    },
    #[error(
        "container name {name} is taken by a container that is not this module's runner; \
         forklet leaves it alone (remove or rename it)"
    )]
    NameTaken { name: String },
    #[error(
        "runner container {id} stopped before it answered GET /health{}",
        code.map_or(" (it is gone)".to_owned(), |code| format!(" (exit code {code})"))
    )]
    StoppedBeforeHealthy { id: String, code: Option<i64> },
    #[error("runner container {id} publishes no port for 8080/tcp")]
    NoPort { id: String },
    #[error(
        "image pull secret {} does not exist (create it with: forklet secret create docker-registry NAME \
         --docker-server ... --docker-username ... --docker-password-stdin)",
        .0.join(", ")
    )]
    MissingSecrets(Vec<String>),
}

/// Where long work (an image pull) reports how it goes.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

pub trait Runtime: Send + Sync + 'static {
    /// Makes sure exactly one runner for `spec.key` runs and matches `spec`:
    /// adopts a matching container (starting it if stopped), replaces one
    /// that does not match, creates one where there is none.
    fn ensure_runner(
        &self,
        spec: &RunnerSpec,
        progress: Progress<'_>,
    ) -> impl Future<Output = Result<Runner, RuntimeError>> + Send;

    /// Stops (without removing) every runner of `key`.
    fn stop_runners(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Removes every runner of `key`; absent ones are no error.
    fn remove_runners(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Resolves once runner container `id` is not running (at once if it
    /// is not, or is gone), with its exit code where the engine says it;
    /// pending while it runs, or when the engine cannot tell.
    fn stopped(&self, id: &str) -> impl Future<Output = Option<i64>> + Send;
}

/// A container id as `docker ps` shows it (ids are ASCII hex).
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
