//! What the reconciler needs from a container engine, so that its logic can
//! be tested without one. The real implementation is [`crate::docker`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use forklet_state::ObjectKey;
use forklet_state::store::RunnerSettings;

/// How a module's runner container must look.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerSpec {
    pub key: ObjectKey,
    pub settings: RunnerSettings,
    /// Mounted read-only at `/forkspacer`.
    pub files_dir: PathBuf,
}

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
    #[error("runner container {id} publishes no port for 8080/tcp")]
    NoPort { id: String },
}

pub trait Runtime: Send + Sync + 'static {
    /// Makes sure exactly one runner for `spec.key` runs and matches `spec`:
    /// adopts a matching container (starting it if stopped), replaces one
    /// that does not match, creates one where there is none.
    fn ensure_runner(
        &self,
        spec: &RunnerSpec,
    ) -> impl Future<Output = Result<Runner, RuntimeError>> + Send;

    /// Removes every runner of `key`; absent ones are no error.
    fn remove_runners(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
}
