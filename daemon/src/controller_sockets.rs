//! The control sockets of `controller` runners: one per workspace, each in
//! a directory of its own that is mounted read-only into that workspace's
//! controller runners, serving only the read-only, workspace-scoped API
//! ([`crate::api::controller_router`]). A socket is bound when the first
//! runner that needs it is made, and again at that point after a restart:
//! the directory is mounted, not the socket, so running containers see
//! the new one.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use forklet_state::ObjectKey;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiState, controller_router};
use crate::control_socket::{self, SocketError};

/// The socket's file name in its directory, as runners find it.
pub const SOCKET_NAME: &str = "forkletd.sock";

pub struct ControllerSockets {
    root: PathBuf,
    api: ApiState,
    shutdown: CancellationToken,
    /// Workspace -> the directory its socket is bound in.
    bound: Mutex<HashMap<ObjectKey, PathBuf>>,
}

impl ControllerSockets {
    pub fn new(root: PathBuf, api: ApiState, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            root,
            api,
            shutdown,
            bound: Mutex::new(HashMap::new()),
        })
    }

    /// The directory of `workspace`'s controller socket, bound and served.
    pub fn dir(&self, workspace: &ObjectKey) -> Result<PathBuf, SocketError> {
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = bound.get(workspace) {
            return Ok(dir.clone());
        }
        let dir = self
            .root
            .join(format!("{}_{}", workspace.namespace(), workspace.name()));
        let socket = dir.join(SOCKET_NAME);
        let io = |source| SocketError::Io {
            path: dir.clone(),
            source,
        };
        crate::private_dir(&dir).map_err(io)?;
        // Reachable by the image's user inside the container; kept from
        // other local users by the state dir around it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        let listener = control_socket::bind(&socket, 0o666)?;
        let app = controller_router(self.api.clone(), workspace.clone());
        let shutdown = self.shutdown.clone();
        tokio::spawn(crate::http_server::serve(
            listener,
            app,
            "controller socket",
            shutdown,
        ));
        tracing::info!(workspace = %workspace, socket = %socket.display(), "controller socket ready");
        bound.insert(workspace.clone(), dir.clone());
        Ok(dir)
    }

    /// Removes the sockets, once the daemon has stopped serving them.
    pub fn remove_all(&self) {
        let bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        for dir in bound.values() {
            let _ = std::fs::remove_file(dir.join(SOCKET_NAME));
        }
    }
}
