//! Turns file-system events in the manifests directory into rescans of the
//! catalog, fetches `httpURL` definitions, and publishes each new desired
//! state.
//!
//! Any event means "rescan": editors save by rename, by truncate-and-write,
//! through swap files; reading the directory again is cheap (unchanged files
//! are only looked at) and always right. The directory is read as soon as
//! no manifest is known to be mid-change: one created or written is waited
//! for until it is closed, one moved away or removed until a new copy is in
//! place, each for at most a short quiet period. Events that come during a
//! rescan are gathered into the next one, and a slow periodic rescan covers
//! events the kernel dropped.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forklet_state::desired::DesiredState;
use forklet_state::manifest::is_manifest_file;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use forklet_state::fetch::Fetcher;

/// How long a change that may be half-written (a file still open for
/// writing, a new link) is given to finish before it is read anyway.
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
    events: mpsc::UnboundedReceiver<Notice>,
    /// Manifests being written, since when: each stands at its last
    /// version until its writer is done, for up to [`WRITE_PATIENCE`].
    writing: HashMap<PathBuf, Instant>,
}

/// What an event says of the change to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Whole: the writer is done (closed after writing, renamed into place).
    Done,
    /// Perhaps under way: a file open and half-written, or a manifest moved
    /// or removed on its way to being replaced (an editor's backup rename).
    UnderWay,
}

/// One event that matters: what it says of which paths. `None` is an error
/// (events may be lost): read the directory now.
type Notice = Option<Vec<(Change, PathBuf)>>;

/// The longest a burst of changes is waited for before the directory is
/// read anyway: a writer that never stops does not hold every other file.
const MOST_SETTLE: Duration = Duration::from_millis(500);

/// How long a manifest still being written stands at its last version: a
/// slow writer (`scp`, a pipe) is waited for; a file held open for longer
/// than any editor or copy would is read as it is.
const WRITE_PATIENCE: Duration = Duration::from_secs(30);

impl ManifestWatcher {
    pub fn start(dir: &Path) -> notify::Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let inside = dir.to_owned();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // An error may mean lost events: rescan then too. Of the parent's
            // events, only those about the directory's own name count.
            let notice = match event {
                Ok(e) => {
                    let elsewhere =
                        !e.paths.is_empty() && !e.paths.iter().any(|p| p.starts_with(&inside));
                    if elsewhere || !can_change_content(&e.kind) {
                        return;
                    }
                    // The kernel's queue overflowed: events were lost.
                    (!e.need_rescan()).then(|| changes_of(&e.kind, e.paths))
                }
                Err(_) => None,
            };
            let _ = tx.send(notice);
        })?;
        let mut this = Self {
            dir: dir.to_owned(),
            watcher,
            watched: None,
            events,
            writing: HashMap::new(),
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
            let (holding, patience_ends) = (!self.writing.is_empty(), self.patience_ends());
            let changed = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = self.events.recv() => {
                    let Some(notice) = event else { return };
                    tracing::debug!("manifests changed");
                    self.settle(notice).await;
                    self.rewatch_replaced();
                    let writing = self.still_writing();
                    catalog.with(move |c| rescan(c, &writing)).await
                }
                _ = resync.tick() => {
                    self.rewatch_replaced();
                    let writing = self.still_writing();
                    catalog.with(move |c| c.retry_failed_fetches() | rescan(c, &writing)).await
                }
                // The engine changed (a cluster started or moved) or a
                // secret did: kubeconfigs and routes are looked at now.
                Some(()) = look_again.recv() => {
                    while look_again.try_recv().is_ok() {}
                    let writing = self.still_writing();
                    catalog.with(move |c| rescan(c, &writing)).await
                }
                // A writer that kept a manifest open past the patience:
                // read as it is now.
                _ = tokio::time::sleep_until(patience_ends), if holding => {
                    let writing = self.still_writing();
                    catalog.with(move |c| rescan(c, &writing)).await
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
                tracing::debug!("desired state published");
            }
        }
    }

    /// Takes every event already queued; while any path is still under
    /// way, waits for the next event for up to [`QUIET`], and all in all
    /// for up to [`MOST_SETTLE`].
    async fn settle(&mut self, first: Notice) {
        let give_up = Instant::now() + MOST_SETTLE;
        let mut under_way = HashMap::new();
        self.take(&mut under_way, first);
        loop {
            while let Ok(notice) = self.events.try_recv() {
                self.take(&mut under_way, notice);
            }
            // A writer that never stops does not hold the rescan.
            if under_way.is_empty() || Instant::now() >= give_up {
                return;
            }
            let wait = QUIET.min(give_up.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, self.events.recv()).await {
                Ok(Some(notice)) => self.take(&mut under_way, notice),
                _ => return,
            }
        }
    }

    /// Notes `notice` in this burst's `under_way` and in what is being
    /// written across bursts.
    fn take(&mut self, under_way: &mut HashMap<PathBuf, Instant>, notice: Notice) {
        note(&mut self.writing, notice.clone());
        note(under_way, notice);
    }

    /// A new directory holds none of the old one's writes (`rm -rf` then
    /// `mv` marks every old path as under way, and nothing ends that).
    fn rewatch_replaced(&mut self) {
        if self.rewatch_if_replaced() {
            self.writing.clear();
        }
    }

    /// When the oldest write under way has been waited for long enough.
    fn patience_ends(&self) -> Instant {
        let oldest = self.writing.values().min().copied();
        oldest.unwrap_or_else(Instant::now) + WRITE_PATIENCE
    }

    /// The manifests still being written, for at most [`WRITE_PATIENCE`].
    fn still_writing(&mut self) -> HashSet<PathBuf> {
        let now = Instant::now();
        self.writing
            .retain(|_, since| now.saturating_duration_since(*since) < WRITE_PATIENCE);
        self.writing.keys().cloned().collect()
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

/// `true` when the directory's manifests or definitions changed; the
/// manifests in `writing` stand as they were.
fn rescan(catalog: &mut Catalog, writing: &HashSet<PathBuf>) -> bool {
    catalog.rescan_holding(writing).unwrap_or_else(|err| {
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

/// Keeps in `under_way` the paths whose change is not known to be done,
/// with when it began.
fn note(under_way: &mut HashMap<PathBuf, Instant>, notice: Notice) {
    let Some(changes) = notice else {
        under_way.clear();
        return;
    };
    for (change, path) in changes {
        match change {
            Change::UnderWay => {
                under_way.entry(path).or_insert_with(Instant::now);
            }
            Change::Done => {
                under_way.remove(&path);
            }
        }
    }
}

/// Opening and reading a file does not change it, and the rescan itself
/// opens every manifest: reacting to that would rescan for ever.
fn can_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// What an event of `kind` says of each of its paths. Only manifests are
/// waited for: a temporary file renamed into place, a swap file removed or
/// a definition written say nothing of a manifest still being written.
fn changes_of(kind: &EventKind, paths: Vec<PathBuf>) -> Vec<(Change, PathBuf)> {
    let done = |path| (Change::Done, path);
    let under_way = |path: PathBuf| match is_manifest_file(&path) {
        true => (Change::UnderWay, path),
        false => (Change::Done, path),
    };
    match kind {
        // Modes, owners and times (`chmod`, `tar x` after its close): no
        // writer is at work, and none will close the file to say so.
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any))
        | EventKind::Modify(ModifyKind::Metadata(_)) => paths.into_iter().map(done).collect(),
        // From, then to: the old name may be replaced next, the new one is whole.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            let mut paths = paths.into_iter();
            let from = paths.next().map(under_way);
            from.into_iter().chain(paths.map(done)).collect()
        }
        // Created or written: a writer that keeps the file open is not done
        // yet, and its close (or the quiet period) will say so. Moved away
        // or removed: an editor's save may be putting a new one in its place.
        _ => paths.into_iter().map(under_way).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind};

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    fn waits_for(events: &[(EventKind, &[&str])]) -> HashSet<PathBuf> {
        let mut under_way = HashMap::new();
        for (kind, names) in events {
            note(&mut under_way, Some(changes_of(kind, paths(names))));
        }
        under_way.into_keys().collect()
    }

    const CREATE: EventKind = EventKind::Create(CreateKind::File);
    const WRITE: EventKind = EventKind::Modify(ModifyKind::Data(DataChange::Any));
    const CLOSE: EventKind = EventKind::Access(AccessKind::Close(AccessMode::Write));
    const FROM: EventKind = EventKind::Modify(ModifyKind::Name(RenameMode::From));
    const TO: EventKind = EventKind::Modify(ModifyKind::Name(RenameMode::To));
    const BOTH: EventKind = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
    const REMOVE: EventKind = EventKind::Remove(RemoveKind::File);

    #[test]
    fn reading_a_file_is_no_reason_to_rescan() {
        for kind in [
            AccessKind::Open(AccessMode::Any),
            AccessKind::Close(AccessMode::Read),
            AccessKind::Read,
        ] {
            assert!(!can_change_content(&EventKind::Access(kind)), "{kind:?}");
        }
        for kind in [CREATE, WRITE, CLOSE, FROM, TO, BOTH, REMOVE, EventKind::Any] {
            assert!(can_change_content(&kind), "{kind:?}");
        }
    }

    #[test]
    fn a_manifest_written_in_place_is_read_once_it_is_closed() {
        let open = [(CREATE, &["a.yaml"][..]), (WRITE, &["a.yaml"][..])];
        assert_eq!(waits_for(&open), paths(&["a.yaml"]).into_iter().collect());
        let closed = [open[0], open[1], (CLOSE, &["a.yaml"][..])];
        assert!(waits_for(&closed).is_empty());
    }

    #[test]
    fn one_file_done_does_not_end_the_wait_for_another_still_being_written() {
        let events = [
            (CREATE, &["b.yaml"][..]),
            (CREATE, &["a.yaml"][..]),
            (CLOSE, &["a.yaml"][..]),
        ];
        assert_eq!(waits_for(&events), paths(&["b.yaml"]).into_iter().collect());
    }

    #[test]
    fn a_temporary_file_renamed_into_place_is_read_at_once() {
        // As most editors and `kubectl`-style tools save.
        let events = [
            (CREATE, &[".a.yaml.tmp"][..]),
            (CLOSE, &[".a.yaml.tmp"][..]),
            (FROM, &[".a.yaml.tmp"][..]),
            (TO, &["a.yaml"][..]),
            (BOTH, &[".a.yaml.tmp", "a.yaml"][..]),
        ];
        assert!(waits_for(&events).is_empty());
    }

    #[test]
    fn a_manifest_moved_aside_for_a_backup_is_waited_for_until_its_new_copy_is_closed() {
        // vim's save with a backup: a.yaml -> a.yaml~, then a new a.yaml.
        let moved = [
            (FROM, &["a.yaml"][..]),
            (TO, &["a.yaml~"][..]),
            (BOTH, &["a.yaml", "a.yaml~"][..]),
        ];
        assert_eq!(waits_for(&moved), paths(&["a.yaml"]).into_iter().collect());
        let rewritten = [
            moved[0],
            moved[1],
            moved[2],
            (CREATE, &["a.yaml"][..]),
            (CLOSE, &["a.yaml"][..]),
        ];
        assert!(waits_for(&rewritten).is_empty());
    }

    #[test]
    fn only_a_manifest_removed_is_waited_for() {
        assert!(waits_for(&[(REMOVE, &[".a.yaml.swp"][..])]).is_empty());
        assert!(waits_for(&[(REMOVE, &["4913"][..])]).is_empty());
        assert_eq!(
            waits_for(&[(REMOVE, &["a.yaml"][..])]),
            paths(&["a.yaml"]).into_iter().collect()
        );
    }

    #[test]
    fn changing_modes_or_times_after_the_close_is_no_write_under_way() {
        let chmod = EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any));
        assert!(
            waits_for(&[
                (CREATE, &["a.yaml"]),
                (CLOSE, &["a.yaml"]),
                (chmod, &["a.yaml"])
            ])
            .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_is_waited_for_at_most_its_patience_from_its_first_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = ManifestWatcher::start(dir.path()).unwrap();
        let a = PathBuf::from("a.yaml");
        note(
            &mut watcher.writing,
            Some(changes_of(&WRITE, vec![a.clone()])),
        );
        tokio::time::advance(WRITE_PATIENCE - Duration::from_millis(1)).await;
        // A writer still writing does not push the end further.
        note(
            &mut watcher.writing,
            Some(changes_of(&WRITE, vec![a.clone()])),
        );
        assert!(watcher.still_writing().contains(&a));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(watcher.still_writing().is_empty(), "read as it is now");
    }

    #[test]
    fn lost_events_end_every_wait() {
        let mut under_way = HashMap::new();
        note(
            &mut under_way,
            Some(changes_of(&CREATE, paths(&["c.yaml"]))),
        );
        note(&mut under_way, None);
        assert!(
            under_way.is_empty(),
            "an error means: read the directory now"
        );
    }
}
