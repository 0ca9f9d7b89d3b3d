//! Default locations, shared by forkletd and the CLI so both agree on the
//! socket without being told.

use std::path::PathBuf;

use directories::ProjectDirs;

fn project() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "forklet")
}

/// `~/.config/forklet/manifests`.
pub fn default_manifests_dir() -> PathBuf {
    project().map_or_else(
        || PathBuf::from("manifests"),
        |p| p.config_dir().join("manifests"),
    )
}

/// `~/.local/share/forklet`.
pub fn default_state_dir() -> PathBuf {
    project().map_or_else(
        || PathBuf::from("forklet-state"),
        |p| p.data_dir().to_owned(),
    )
}

/// `$XDG_RUNTIME_DIR/forklet/forkletd.sock`, or in the state dir where there
/// is no runtime dir (e.g. a login without systemd).
pub fn default_socket() -> PathBuf {
    match project().and_then(|p| p.runtime_dir().map(|d| d.join("forkletd.sock"))) {
        Some(socket) => socket,
        None => default_state_dir().join("forkletd.sock"),
    }
}

/// The system service's socket (the packaged and `systemd/` unit).
pub const SYSTEM_SOCKET: &str = "/run/forklet/forkletd.sock";

/// Where the CLI looks without being told: the user's own daemon, else the
/// system service's (a member of the `forklet` group reaches it as is).
pub fn client_socket() -> PathBuf {
    let own = default_socket();
    let system = PathBuf::from(SYSTEM_SOCKET);
    match !own.exists() && system.exists() {
        true => system,
        false => own,
    }
}
