//! Turns file-system events in the manifests directory into rescans of the
//! catalog, fetches `httpURL` definitions, and publishes each new desired
//! state.
//!
//! Any event means "rescan": editors save by rename, by truncate-and-write,
//! through swap files; reading the directory again is cheap and always right.
//! A short quiet period gathers a burst of events into one rescan, and a slow
//! periodic rescan covers events the kernel dropped.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forklet_state::desired::DesiredState;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use forklet_state::fetch::Fetcher;

/// Long enough to gather an editor's save, short enough not to be noticed.
const QUIET: Duration = Duration::from_millis(25);
/// How often the directory (and every kubeconfig modules get) is looked
/// at even without an event.
pub const RESYNC: Duration = Duration::from_secs(30);

pub struct ManifestWatcher {
    dir: PathBuf,
    watcher: RecommendedWatcher,
    /// The directory watched, by inode: a directory replaced under the same
    /// name (`rm -rf` and a fresh clone, a deploy tool's swap) is a new one
    /// to watch.
    watched: Option<u64>,
    events: mpsc::UnboundedReceiver<()>,
}

impl ManifestWatcher {
    pub fn start(dir: &Path) -> notify::Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let inside = dir.to_owned();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // An error may mean lost events: rescan then too. Of the parent's
            // events, only those about the directory's own name count.
            let ignored = event.is_ok_and(|e| {
                let elsewhere =
                    !e.paths.is_empty() && !e.paths.iter().any(|p| p.starts_with(&inside));
                !can_change_content(&e.kind) || elsewhere
            });
            if !ignored {
                let _ = tx.send(());
            }
        })?;
        let mut this = Self {
            dir: dir.to_owned(),
            watcher,
            watched: None,
            events,
        };
        // The parent too, for the directory's name: a directory removed and
        // made again, renamed over, or a symlink flipped to another is seen
        // at once, not at the next periodic rescan.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
            && let Err(err) = this.watcher.watch(parent, RecursiveMode::NonRecursive)
        {
            // Only quicker notice is lost: the periodic rescan still sees it.
            tracing::warn!(dir = %parent.display(), error = %err, "cannot watch the manifests directory's parent");
        }
        this.watch()?;
        Ok(this)
    }

    fn watch(&mut self) -> notify::Result<()> {
        let inode = std::fs::metadata(&self.dir).map(|m| m.ino()).ok();
        if self.watched.is_some() {
            let _ = self.watcher.unwatch(&self.dir);
        }
        // Recursive: definition files (`source.file`) may sit in subdirectories.
        self.watcher.watch(&self.dir, RecursiveMode::Recursive)?;
        self.watched = inode;
        Ok(())
    }

    /// Watches the directory again if the one there now is not the one
    /// watched; `true` when it did (the caller rescans).
    fn rewatch_if_replaced(&mut self) -> bool {
        let now = std::fs::metadata(&self.dir).map(|m| m.ino()).ok();
        if now.is_none() || now == self.watched {
            return false;
        }
        match self.watch() {
            Ok(()) => {
                tracing::info!(dir = %self.dir.display(), "the manifests directory was replaced; watching the new one");
                true
            }
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), error = %err, "cannot watch the manifests directory");
                false
            }
        }
    }

    /// Rescans on every burst of events, every `resync` and whenever asked
    /// on `look_again`, fetches the definitions modules wait for, and
    /// publishes to `desired` whenever the result changed, until `shutdown`.
    pub async fn run(
        mut self,
        catalog: SharedCatalog,
        desired: watch::Sender<Arc<DesiredState>>,
        mut refresh: mpsc::UnboundedReceiver<()>,
        mut look_again: mpsc::UnboundedReceiver<()>,
        resync: Duration,
        shutdown: CancellationToken,
    ) {
        let (fetched_tx, mut fetched_rx) = mpsc::unbounded_channel();
        let mut fetches = Fetches {
            fetcher: Fetcher::default(),
            in_flight: HashSet::new(),
            done: fetched_tx,
        };
        fetches.start(desired.borrow().unfetched());
        let mut resync = tokio::time::interval(resync);
        resync.tick().await; // the first tick is immediate; the caller has just scanned
        loop {
            let changed = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = self.events.recv() => {
                    if event.is_none() {
                        return;
                    }
                    self.settle().await;
                    self.rewatch_if_replaced();
                    catalog.with(rescan).await
                }
                _ = resync.tick() => {
                    self.rewatch_if_replaced();
                    catalog.with(|c| c.retry_failed_fetches() | rescan(c)).await
                }
                // The engine changed (a cluster started or moved) or a
                // secret did: kubeconfigs and routes are looked at now.
                Some(()) = look_again.recv() => {
                    while look_again.try_recv().is_ok() {}
                    catalog.with(rescan).await
                }
                Some(()) = refresh.recv() => {
                    // Fetched again in place; results come back as any fetch does.
                    let urls = catalog.with(|c| c.definition_urls().map(str::to_owned).collect::<Vec<_>>()).await;
                    fetches.start(urls.iter().map(String::as_str));
                    false
                }
                Some((url, result)) = fetched_rx.recv() => {
                    fetches.in_flight.remove(&url);
                    if let Err(message) = &result {
                        tracing::warn!(url, "fetching a definition failed: {message}");
                    }
                    catalog.with(move |c| c.fetched(&url, result)).await;
                    true
                }
            };
            if changed {
                let state = catalog.with(Catalog::desired).await;
                for problem in &state.problems {
                    tracing::warn!(%problem, "manifest problem");
                }
                fetches.start(state.unfetched());
                desired.send_replace(Arc::new(state));
            }
        }
    }

    /// Waits until no event has come for [`QUIET`].
    async fn settle(&mut self) {
        while let Ok(Some(())) = tokio::time::timeout(QUIET, self.events.recv()).await {}
    }
}

/// The catalog, worked on off the async runtime: a rescan reads files and
/// the store, and resolution reads definition files.
#[derive(Clone)]
pub struct SharedCatalog(Arc<Mutex<Catalog>>);

impl SharedCatalog {
    pub fn new(catalog: Catalog) -> Self {
        Self(Arc::new(Mutex::new(catalog)))
    }

    pub async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Catalog) -> T + Send + 'static,
    ) -> T {
        let catalog = self.0.clone();
        let done = tokio::task::spawn_blocking(move || {
            // Only the watcher works on the catalog, one call at a time: a
            // poisoned lock means a panic in that call, which is re-raised.
            let mut catalog = catalog.lock().unwrap_or_else(|e| e.into_inner());
            work(&mut catalog)
        })
        .await;
        match done {
            Ok(value) => value,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
}

/// `true` when the directory's manifests or definitions changed.
fn rescan(catalog: &mut Catalog) -> bool {
    catalog.rescan().unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot read the manifests directory; keeping the last state");
        false
    })
}

/// Definitions being fetched; each result comes back on `done`.
struct Fetches {
    fetcher: Fetcher,
    in_flight: HashSet<String>,
    done: mpsc::UnboundedSender<(String, Result<String, String>)>,
}

impl Fetches {
    fn start<'u>(&mut self, urls: impl IntoIterator<Item = &'u str>) {
        for url in urls {
            if !self.in_flight.insert(url.to_owned()) {
                continue;
            }
            tracing::info!(url, "fetching a module definition");
            let (fetcher, done, url) = (self.fetcher.clone(), self.done.clone(), url.to_owned());
            tokio::spawn(async move {
                let result = fetcher.fetch(&url).await;
                let _ = done.send((url, result));
            });
        }
    }
}

/// Opening and reading a file does not change it, and the rescan itself
/// opens every manifest: reacting to those would rescan for ever.
fn can_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn reading_a_file_is_no_reason_to_rescan() {
        assert!(!can_change_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!can_change_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!can_change_content(&EventKind::Access(AccessKind::Read)));
    }

    #[test]
    fn writes_renames_and_removals_are() {
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Remove(RemoveKind::File),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Any,
        ] {
            assert!(can_change_content(&kind), "{kind:?}");
        }
    }
}
