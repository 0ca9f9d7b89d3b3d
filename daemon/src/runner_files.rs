//! The files a runner sees under `/forkspacer`: `config.json` (the validated
//! config) and, with the `workspace` permission, `workspace_kubeconfig`.
//!
//! Each module has its own directory under the state dir, bind-mounted
//! read-only. The directory is mounted rather than single files so that a
//! rewrite (temp file + rename) is seen by the running container.
//!
//! Modules run as whatever `USER` their image names, so the directory and
//! its files are readable by all: what keeps them from other local users is
//! the state dir above (0700), which a container never passes through (its
//! bind mount starts at the module's own directory).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use forklet_state::ObjectKey;
use forklet_state::bounded::{KUBECONFIG_MAX, ReadError, read_text};
use forklet_state::desired::{DesiredModule, KubeconfigSource};
use serde_json::Value;

use crate::kubeconfig::{KubeconfigError, minify};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("workspace {workspace}: no kubeconfig: {path} cannot be read: {source}")]
    KubeconfigMissing {
        workspace: ObjectKey,
        path: PathBuf,
        source: ReadError,
    },
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error("workspace {workspace}: no kubeconfig path: neither KUBECONFIG nor HOME is set")]
    NoDefaultKubeconfig { workspace: ObjectKey },
}

#[derive(Debug, Clone)]
pub struct RunnerFiles {
    root: PathBuf,
}

impl RunnerFiles {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            root: state_dir.join("runners"),
        }
    }

    pub fn dir(&self, key: &ObjectKey) -> PathBuf {
        // A namespace is a DNS label and a name a DNS subdomain: neither can
        // hold `/` or be `..`, so this stays under the root.
        self.root.join(key.namespace()).join(key.name())
    }

    /// Writes the files `module` needs; returns the directory to mount.
    pub fn write(&self, module: &DesiredModule) -> Result<PathBuf, FilesError> {
        let dir = self.dir(&module.key);
        let err = |source| FilesError::Write {
            path: dir.clone(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(err)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(err)?;
        let config = Value::Object(module.config.clone()).to_string();
        write_for_runner(&dir.join("config.json"), config.as_bytes())?;
        let kubeconfig_path = dir.join("workspace_kubeconfig");
        match &module.kubeconfig {
            Some(source) => {
                let text = kubeconfig_text(&module.workspace, source)?;
                write_for_runner(&kubeconfig_path, text.as_bytes())?;
            }
            // A permission taken away takes the credentials with it.
            None => {
                let _ = fs::remove_file(&kubeconfig_path);
            }
        }
        Ok(dir)
    }

    pub fn remove(&self, key: &ObjectKey) {
        let dir = self.dir(key);
        let _ = fs::remove_dir_all(&dir);
        // The namespace's directory goes with its last module (a directory
        // that is not empty stays).
        if let Some(namespace) = dir.parent() {
            let _ = fs::remove_dir(namespace);
        }
    }
}

/// A fingerprint of the kubeconfig a module would receive now (or of why
/// there is none): it changes when the file, its context or a file it
/// names changes.
pub fn kubeconfig_stamp(workspace: &ObjectKey, source: &KubeconfigSource) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    match kubeconfig_text(workspace, source) {
        Ok(text) => text.hash(&mut hasher),
        Err(err) => err.to_string().hash(&mut hasher),
    }
    hasher.finish()
}

/// The kubeconfig a module receives: minified to the workspace's context
/// and flattened (see [`crate::kubeconfig`]).
fn kubeconfig_text(workspace: &ObjectKey, source: &KubeconfigSource) -> Result<String, FilesError> {
    let path = match &source.path {
        Some(path) => path.clone(),
        None => default_kubeconfig().ok_or_else(|| FilesError::NoDefaultKubeconfig {
            workspace: workspace.clone(),
        })?,
    };
    let text =
        read_text(&path, KUBECONFIG_MAX).map_err(|source| FilesError::KubeconfigMissing {
            workspace: workspace.clone(),
            path: path.clone(),
            source,
        })?;
    Ok(minify(workspace, &path, &text, source.context.as_deref())?)
}

/// What kubectl would use: the first entry of `$KUBECONFIG`, else `~/.kube/config`.
fn default_kubeconfig() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Some(first);
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube").join("config"))
}

/// Written to a temp file and renamed, so a reader never sees half a file.
/// 0644, for the image's user; private by the state dir around it.
fn write_for_runner(path: &Path, contents: &[u8]) -> Result<(), FilesError> {
    let err = |source| FilesError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(err)?;
    // Set, not only asked for: the umask (systemd's UMask=0077) and a
    // leftover temp file would otherwise decide.
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: a\n  cluster: {server: 'https://a'}\n- name: b\n  cluster: {server: 'https://b'}\ncontexts:\n- name: a\n  context: {cluster: a}\n- name: b\n  context: {cluster: b}\n";

    fn source(path: &Path, context: Option<&str>) -> KubeconfigSource {
        KubeconfigSource {
            path: Some(path.to_owned()),
            context: context.map(str::to_owned),
        }
    }

    #[test]
    fn the_chosen_context_becomes_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        fs::write(&path, KUBECONFIG).unwrap();
        let ws = ObjectKey::new("default", "dev").unwrap();
        let text = kubeconfig_text(&ws, &source(&path, Some("b"))).unwrap();
        let parsed: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(parsed["current-context"].as_str(), Some("b"));
        let err = kubeconfig_text(&ws, &source(&path, Some("c"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "workspace default/dev: kubeconfig {}: no context \"c\"",
                path.display()
            )
        );
    }

    #[test]
    fn a_missing_kubeconfig_names_workspace_and_path() {
        let ws = ObjectKey::new("default", "dev").unwrap();
        let err = kubeconfig_text(&ws, &source(Path::new("/nonexistent/kc"), None)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "workspace default/dev: no kubeconfig: /nonexistent/kc cannot be read"
            )
        );
    }

    #[test]
    fn files_are_for_the_runner_and_stay_under_the_state_dir() {
        let state = tempfile::tempdir().unwrap();
        let dir = RunnerFiles::new(state.path()).dir(&ObjectKey::new("team", "web.v2").unwrap());
        assert_eq!(dir, state.path().join("runners/team/web.v2"));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        // A leftover temp file, private as a umask of 077 makes new files.
        fs::write(path.with_extension("tmp"), "old").unwrap();
        fs::set_permissions(
            path.with_extension("tmp"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        write_for_runner(&path, b"x").unwrap();
        write_for_runner(&path, b"y").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"y");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
}
