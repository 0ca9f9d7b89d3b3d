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
use forklet_state::desired::DesiredModule;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("making {path} durable: {source}")]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// When what is written must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// Before each file replaces the last: after a power cut a file is the
    /// old one or the new one, never empty (a running module's kubeconfig).
    Now,
    /// Only once [`RunnerFiles::sync`] is done: for files no record relies on
    /// until then (an install, which is done again if it was cut short).
    Later,
}

/// What becomes of the runner's `workspace_kubeconfig`.
pub enum KubeconfigFile<'a> {
    Write(&'a str),
    /// Left as it is: the cluster cannot be found now, and a running
    /// module keeps the way it had.
    Keep,
    /// Gone: no `workspace` permission, no credentials.
    Remove,
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
    pub fn write(
        &self,
        module: &DesiredModule,
        kubeconfig: KubeconfigFile<'_>,
        durable: Durable,
    ) -> Result<PathBuf, FilesError> {
        self.write_for(&module.key, &module.config, kubeconfig, durable)
    }

    /// As [`Self::write`], from the parts: for `forklet test-module`, which
    /// has a config and no manifest.
    pub fn write_for(
        &self,
        key: &ObjectKey,
        config: &serde_json::Map<String, Value>,
        kubeconfig: KubeconfigFile<'_>,
        durable: Durable,
    ) -> Result<PathBuf, FilesError> {
        let dir = self.dir(key);
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
        let config = Value::Object(config.clone()).to_string();
        write_for_runner(&dir.join("config.json"), config.as_bytes(), durable)?;
        let kubeconfig_path = dir.join("workspace_kubeconfig");
        match kubeconfig {
            KubeconfigFile::Write(text) => {
                write_for_runner(&kubeconfig_path, text.as_bytes(), durable)?
            }
            KubeconfigFile::Keep => {}
            KubeconfigFile::Remove => {
                let _ = fs::remove_file(&kubeconfig_path);
            }
        }
        Ok(dir)
    }

    /// Makes what [`Self::write`] wrote with [`Durable::Later`] survive a
    /// power cut: apart from the write, so that the disk is waited for while
    /// the runner starts, not before.
    pub fn sync(&self, key: &ObjectKey) -> Result<(), FilesError> {
        let dir = self.dir(key);
        let synced = |path: &Path| {
            let err = |source| FilesError::Sync {
                path: path.to_owned(),
                source,
            };
            match fs::File::open(path) {
                Ok(file) => file.sync_all().map_err(err),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(err(e)),
            }
        };
        synced(&dir.join("config.json"))?;
        synced(&dir.join("workspace_kubeconfig"))?;
        // The directories too: the module's holds the renames, the
        // namespace's the module's own name, `runners/` the namespace's, the
        // state directory `runners/` itself (all may be new). A missing one
        // is an error.
        let namespace = dir.parent().unwrap_or(&dir);
        let state = self.root.parent().unwrap_or(&self.root);
        for dir in [dir.as_path(), namespace, self.root.as_path(), state] {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| FilesError::Sync {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        Ok(())
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

/// Written to a temp file and renamed, so a reader never sees half a file.
/// 0644, for the image's user; private by the state dir around it.
fn write_for_runner(path: &Path, contents: &[u8], durable: Durable) -> Result<(), FilesError> {
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
    if durable == Durable::Now {
        file.sync_all().map_err(err)?;
    }
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
        write_for_runner(&path, b"x", Durable::Now).unwrap();
        write_for_runner(&path, b"y", Durable::Later).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"y");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn syncing_needs_the_files_written_and_names_what_it_cannot_sync() {
        let state = tempfile::tempdir().unwrap();
        let files = RunnerFiles::new(state.path());
        let key = ObjectKey::new("default", "web").unwrap();
        let config = serde_json::Map::from_iter([("a".to_owned(), Value::from(1))]);
        // Nothing written yet: the directory to make durable is missing.
        let missing = files.sync(&key).unwrap_err().to_string();
        assert!(missing.contains("runners/default/web"), "{missing}");
        // With no kubeconfig (no `workspace` permission) there is one file.
        files
            .write_for(&key, &config, KubeconfigFile::Remove, Durable::Later)
            .unwrap();
        files.sync(&key).unwrap();
        files
            .write_for(&key, &config, KubeconfigFile::Write("k"), Durable::Later)
            .unwrap();
        files.sync(&key).unwrap();
        assert_eq!(
            fs::read(files.dir(&key).join("workspace_kubeconfig")).unwrap(),
            b"k"
        );
    }
}
