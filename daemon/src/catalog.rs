//! The manifests directory as desired state.
//!
//! Each rescan reads every manifest file but parses only those whose content
//! changed. A file that stops parsing keeps its last good documents, so a
//! half-saved edit never uninstalls anything; deleting the file does. The
//! last good text of each file is kept in the store, so this holds across a
//! daemon restart too.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forklet_state::Problem;
use forklet_state::desired::DesiredState;
use forklet_state::manifest::{ParsedFile, is_manifest_file, parse_file};
use forklet_state::source::{Definitions, read_definition_file};
use forklet_state::store::Store;

struct CachedFile {
    content_hash: u64,
    parsed: ParsedFile,
}

pub struct Catalog {
    dir: PathBuf,
    files: BTreeMap<PathBuf, CachedFile>,
    store: Arc<Store>,
    /// Definition files (`source.file`) read by the last resolution, with
    /// their content hashes: a change to one is a change of desired state.
    definition_files: BTreeMap<PathBuf, u64>,
    /// URLs whose last fetch failed, and why; cleared to retry.
    fetch_failures: HashMap<String, String>,
    /// The `httpURL`s the last resolution used.
    definition_urls: BTreeSet<String>,
}

impl Catalog {
    pub fn new(dir: PathBuf, store: Arc<Store>) -> Self {
        Self {
            dir,
            files: BTreeMap::new(),
            store,
            definition_files: BTreeMap::new(),
            fetch_failures: HashMap::new(),
            definition_urls: BTreeSet::new(),
        }
    }

    /// Records what fetching `url` gave. The text is kept in the store.
    pub fn fetched(&mut self, url: &str, result: Result<String, String>) {
        match result {
            Ok(text) => {
                self.fetch_failures.remove(url);
                self.remember(|store| store.save_fetched_definition(url, &text));
            }
            Err(message) => {
                self.fetch_failures.insert(url.to_owned(), message);
            }
        }
    }

    /// The `httpURL`s modules use now: what an explicit refresh fetches again.
    pub fn definition_urls(&self) -> impl Iterator<Item = &str> {
        self.definition_urls.iter().map(String::as_str)
    }

    /// Forgets failed fetches so they are tried again; `true` if there were any.
    pub fn retry_failed_fetches(&mut self) -> bool {
        let had = !self.fetch_failures.is_empty();
        self.fetch_failures.clear();
        had
    }

    /// Re-reads the directory. `Ok(true)` when anything changed. An
    /// unreadable directory is an error, never "no manifests": that would
    /// uninstall every module.
    pub fn rescan(&mut self) -> io::Result<bool> {
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if is_manifest_file(&path) && path.is_file() {
                seen.push(path);
            }
        }
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| !seen.contains(path))
            .cloned()
            .collect();
        let mut changed = !gone.is_empty() || self.definition_files_changed();
        for path in gone {
            self.files.remove(&path);
            self.remember(|store| store.forget_manifest(&path));
        }
        for path in seen {
            changed |= self.refresh(path);
        }
        Ok(changed)
    }

    fn refresh(&mut self, path: PathBuf) -> bool {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) => {
                let problem = Problem::file(&path, format!("cannot be read: {err}"));
                return self.keep_last_good(
                    path,
                    u64::MAX,
                    ParsedFile {
                        manifests: vec![],
                        problems: vec![problem],
                    },
                );
            }
        };
        let content_hash = content_hash(&text);
        if self
            .files
            .get(&path)
            .is_some_and(|cached| cached.content_hash == content_hash)
        {
            return false;
        }
        let parsed = parse_file(&path, &text);
        if !parsed.problems.iter().any(|p| p.object.is_none()) {
            self.remember(|store| store.save_last_good_manifest(&path, &text));
        }
        self.keep_last_good(path, content_hash, parsed)
    }

    /// Losing the last good copy only weakens a later recovery; say so and go on.
    fn remember(&self, write: impl FnOnce(&Store) -> Result<(), forklet_state::store::StoreError>) {
        if let Err(err) = write(&self.store) {
            tracing::warn!(error = %err, "cannot keep the last good manifest");
        }
    }

    /// The documents that stood for `path` before: in memory, or from the
    /// store when this daemon has not seen the file parse yet.
    fn previous(&self, path: &Path) -> Vec<forklet_state::manifest::Manifest> {
        if let Some(cached) = self.files.get(path) {
            return cached.parsed.manifests.clone();
        }
        match self.store.last_good_manifest(path) {
            Ok(Some(text)) => parse_file(path, &text).manifests,
            Ok(None) => Vec::new(),
            Err(err) => {
                tracing::warn!(error = %err, file = %path.display(), "cannot read the last good manifest");
                Vec::new()
            }
        }
    }

    /// Where part of a file could not even be read as documents, its
    /// previous documents stand in for the part that was lost.
    fn keep_last_good(&mut self, path: PathBuf, content_hash: u64, mut parsed: ParsedFile) -> bool {
        let unreadable: Vec<String> = parsed
            .problems
            .iter()
            .filter(|p| p.object.is_none())
            .map(|p| p.message.clone())
            .collect();
        if !unreadable.is_empty() {
            let why = format!("keeping the last good version: {}", unreadable.join("; "));
            for manifest in &self.previous(&path) {
                let key = (manifest.kind(), manifest.key());
                if !parsed.manifests.iter().any(|m| (m.kind(), m.key()) == key) {
                    // Shown on the object, so `forklet get` says why an edit has no effect.
                    parsed.problems.push(Problem::document(
                        &path,
                        manifest.kind(),
                        manifest.key(),
                        "",
                        why.clone(),
                    ));
                    parsed.manifests.push(manifest.clone());
                }
            }
        }
        let changed = self
            .files
            .get(&path)
            .is_none_or(|previous| previous.parsed != parsed);
        self.files.insert(
            path,
            CachedFile {
                content_hash,
                parsed,
            },
        );
        changed
    }

    pub fn desired(&mut self) -> DesiredState {
        let definitions = CatalogDefinitions {
            store: &self.store,
            failures: &self.fetch_failures,
            read: RefCell::default(),
            urls: RefCell::default(),
        };
        let state = DesiredState::build(self.files.values().map(|f| &f.parsed), &definitions);
        self.definition_files = definitions.read.into_inner();
        self.definition_urls = definitions.urls.into_inner();
        state
    }

    fn definition_files_changed(&self) -> bool {
        self.definition_files.iter().any(|(path, hash)| {
            read_definition_file(path).map_or(u64::MAX, |text| content_hash(&text)) != *hash
        })
    }
}

/// Definitions as the daemon has them: files read now (and remembered, to
/// notice edits), URLs from what was fetched before.
struct CatalogDefinitions<'a> {
    store: &'a Store,
    failures: &'a HashMap<String, String>,
    read: RefCell<BTreeMap<PathBuf, u64>>,
    urls: RefCell<BTreeSet<String>>,
}

impl Definitions for CatalogDefinitions<'_> {
    fn read_file(&self, path: &Path) -> Result<String, String> {
        let result = read_definition_file(path);
        let hash = result.as_ref().map_or(u64::MAX, |text| content_hash(text));
        self.read.borrow_mut().insert(path.to_owned(), hash);
        result
    }

    fn fetched(&self, url: &str) -> Option<Result<String, String>> {
        self.urls.borrow_mut().insert(url.to_owned());
        // A stored copy wins over a later failure: a refresh that cannot
        // reach the server keeps the definition that was working.
        match self.store.fetched_definition(url) {
            Ok(Some(text)) => Some(Ok(text)),
            Ok(None) => self.failures.get(url).cloned().map(Err),
            Err(err) => Some(Err(format!("reading the stored definition: {err}"))),
        }
    }
}

fn content_hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use forklet_state::ObjectKey;
    use forklet_state::manifest::Kind;
    use std::fs;

    fn store(dir: &Path) -> Arc<Store> {
        Arc::new(Store::open(&dir.join("state.db")).unwrap())
    }

    const WS: &str =
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n";

    #[test]
    fn a_file_that_breaks_keeps_its_last_good_documents_until_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let file = dir.path().join("ws.yaml");
        fs::write(&file, WS).unwrap();
        let mut catalog = Catalog::new(dir.path().to_owned(), store(state.path()));
        assert!(catalog.rescan().unwrap());
        assert!(
            !catalog.rescan().unwrap(),
            "an unchanged directory is no change"
        );

        fs::write(&file, "apiVersion: [broken").unwrap();
        assert!(catalog.rescan().unwrap());
        let desired = catalog.desired();
        let dev = ObjectKey::new("default", "dev").unwrap();
        assert!(desired.workspaces.contains_key(&dev));
        let shown: Vec<String> = desired
            .problems_of(Kind::Workspace, &dev)
            .map(|p| p.short())
            .collect();
        assert_eq!(shown.len(), 1);
        assert!(
            shown[0].contains("keeping the last good version: document 1: invalid YAML"),
            "{shown:?}"
        );

        fs::remove_file(&file).unwrap();
        assert!(catalog.rescan().unwrap());
        assert!(catalog.desired().workspaces.is_empty());
    }

    #[test]
    fn a_file_broken_before_a_restart_still_stands_on_its_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let file = dir.path().join("ws.yaml");
        fs::write(&file, WS).unwrap();
        Catalog::new(dir.path().to_owned(), store(state.path()))
            .rescan()
            .unwrap();

        fs::write(&file, "apiVersion: [broken").unwrap();
        let mut restarted = Catalog::new(dir.path().to_owned(), store(state.path()));
        restarted.rescan().unwrap();
        assert!(
            restarted
                .desired()
                .workspaces
                .contains_key(&ObjectKey::new("default", "dev").unwrap())
        );

        // Once deleted, the file is forgotten for good.
        fs::remove_file(&file).unwrap();
        restarted.rescan().unwrap();
        fs::write(&file, "apiVersion: [broken").unwrap();
        let mut again = Catalog::new(dir.path().to_owned(), store(state.path()));
        again.rescan().unwrap();
        assert!(again.desired().workspaces.is_empty());
    }

    #[test]
    fn a_missing_directory_is_an_error_not_an_empty_state() {
        let state = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::new(
            PathBuf::from("/nonexistent/forklet-manifests"),
            store(state.path()),
        );
        assert!(catalog.rescan().is_err());
    }
}
