//! The control API's Unix sockets: bound only where nothing else stands,
//! and private to the daemon's user (served by [`crate::http_server`]).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another forkletd is already listening on {0}")]
    AlreadyRunning(PathBuf),
    #[error("control socket {0} exists and is not a socket: refusing to replace it")]
    NotASocket(PathBuf),
    #[error(
        "control socket directory {0} can be written by other users: choose a private directory"
    )]
    SharedDirectory(PathBuf),
}

/// Binds `path` with `mode`, replacing only a stale socket left by a
/// daemon that did not stop cleanly.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, SocketError> {
    bind_as(path, mode, None)
}

/// [`bind`], the socket owned by group `gid` when given. The socket is made
/// in a private directory beside `path`, given its mode and group there,
/// and only then renamed into place: it never exists at `path` with any
/// other permissions, not even for a moment.
pub fn bind_as(path: &Path, mode: u32, gid: Option<u32>) -> Result<UnixListener, SocketError> {
    let io = |source| SocketError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::private_dir(parent).map_err(io)?;
        let meta = std::fs::metadata(parent).map_err(io)?;
        let mode = meta.permissions().mode();
        // Anyone who can write there could put their own socket in its place.
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            return Err(SocketError::SharedDirectory(parent.to_owned()));
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::AlreadyRunning(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => return Err(SocketError::NotASocket(path.to_owned())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io(err)),
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = parent.join(format!(".forkletd-bind-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    crate::private_dir(&staging).map_err(io)?;
    let staged = staging.join("sock");
    let bound = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        if gid.is_some() {
            std::os::unix::fs::chown(&staged, None, gid)?;
        }
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    bound.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};

    #[tokio::test]
    async fn a_socket_for_a_group_has_that_group_and_mode_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forkletd.sock");
        // The process's own group: any user may give a file that one.
        let gid = std::fs::metadata(dir.path()).unwrap().gid();
        let _listener = bind_as(&path, 0o660, Some(gid)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
        assert!(
            std::os::unix::net::UnixStream::connect(&path).is_ok(),
            "bound where it is"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no staging directory left behind");
    }

    #[test]
    fn a_regular_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "keep me").unwrap();
        let err = bind(&path, 0o600).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "control socket {} exists and is not a socket: refusing to replace it",
                path.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forkletd.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let live = bind(&path, 0o600).expect("a stale socket is replaced");
        assert!(matches!(
            bind(&path, 0o600),
            Err(SocketError::AlreadyRunning(_))
        ));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(live);
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::DirBuilder::new()
            .mode(0o777)
            .create(&shared)
            .unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = bind(&shared.join("forkletd.sock"), 0o600).unwrap_err();
        assert!(matches!(err, SocketError::SharedDirectory(_)), "{err}");
    }
}
