//! The manifests directory as desired state.
//!
//! Each rescan stats every manifest file and reads only those whose stamp
//! changed. An object whose document stops parsing or resolving stands on
//! its last good version, so a half-saved edit never uninstalls anything;
//! deleting its document does (after the reconciler's grace period). The
//! last good text of each file is kept in the store, so this holds across a
//! daemon restart too.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forklet_state::ObjectKey;
use forklet_state::Problem;
use forklet_state::desired::{DesiredState, KubeconfigSource};
use forklet_state::manifest::{
    Kind, Manifest, ParsedFile, check_link_inside, is_manifest_file, parse_file, read_manifest,
};
use forklet_state::source::{Definitions, read_definition_file};
use forklet_state::store::Store;

use crate::cluster::{Reach, Resolver, stamp};

struct CachedFile {
    /// What the file looked like when it was read: an unchanged stamp means
    /// an unchanged file, and the periodic rescan does not read it again.
    stamp: Option<Stamp>,
    content_hash: u64,
    /// The text read (none for a file that could not be read).
    text: Option<String>,
    parsed: ParsedFile,
    /// Whether this text is stored as the file's last good version.
    saved: bool,
}

/// Size, modification and change times, and inode: any write or
/// replacement of a file changes at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    ctime: (i64, i64),
    inode: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
        }
    }
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
    /// The kubeconfigs modules receive, with the fingerprint each had.
    kubeconfigs: HashMap<(ObjectKey, KubeconfigSource), u64>,
    /// Works out how runners reach each workspace's cluster.
    resolver: Resolver,
    /// Whether the directory has been read since the daemon started.
    scanned: bool,
}

impl Catalog {
    pub fn new(dir: PathBuf, store: Arc<Store>, resolver: Resolver) -> Self {
        Self {
            dir,
            files: BTreeMap::new(),
            resolver,
            store,
            definition_files: BTreeMap::new(),
            fetch_failures: HashMap::new(),
            definition_urls: BTreeSet::new(),
            kubeconfigs: HashMap::new(),
            scanned: false,
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
        self.rescan_holding(&HashSet::new())
    }

    /// As [`Self::rescan`], but the files in `writing` (still being
    /// written) stand as they were read before, or unread if they are new:
    /// a half-written manifest is never acted on.
    pub fn rescan_holding(&mut self, writing: &HashSet<PathBuf>) -> io::Result<bool> {
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if is_manifest_file(&path) {
                seen.push(path);
            }
        }
        if !std::mem::replace(&mut self.scanned, true) {
            self.remember(|store| store.keep_manifests(&seen));
        }
        let present: std::collections::HashSet<&PathBuf> = seen.iter().collect();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| !present.contains(path))
            .cloned()
            .collect();
        let mut changed =
            !gone.is_empty() || self.definition_files_changed() || self.kubeconfigs_changed();
        for path in gone {
            self.files.remove(&path);
            self.remember(|store| store.forget_manifest(&path));
        }
        for path in seen {
            // A symlink made in place (`ln -s`) has no writer to wait for.
            let held = writing.contains(&path)
                && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
            if !held {
                changed |= self.refresh(path);
            }
        }
        Ok(changed)
    }

    fn refresh(&mut self, path: PathBuf) -> bool {
        let stamp = match self.check_entry(&path) {
            Ok(Some(stamp)) => stamp,
            // A directory named like a manifest: nothing to read.
            Ok(None) => return self.files.remove(&path).is_some(),
            Err(_) if path_gone(&path) => return self.vanished(path),
            Err(problem) => return self.unreadable(path, *problem),
        };
        if self
            .files
            .get(&path)
            .is_some_and(|cached| cached.stamp == Some(stamp))
        {
            return false;
        }
        let text = match read_manifest(&path) {
            Ok(text) => text,
            Err(_) if path_gone(&path) => return self.vanished(path),
            Err(problem) => return self.unreadable(path, *problem),
        };
        let content_hash = content_hash(&text);
        if let Some(cached) = self.files.get_mut(&path)
            && cached.content_hash == content_hash
        {
            cached.stamp = Some(stamp);
            return false;
        }
        let parsed = parse_file(&path, &text);
        self.keep_last_good(path, Some(stamp), content_hash, Some(text), parsed)
    }

    /// The file's stamp if it is one to read: `None` for a directory; a
    /// problem for a symlink that leads out of the manifests directory.
    fn check_entry(&self, path: &Path) -> Result<Option<Stamp>, Box<Problem>> {
        check_link_inside(&self.dir, path)?;
        let cannot =
            |err: io::Error| Box::new(Problem::file(path, format!("cannot be read: {err}")));
        let meta = std::fs::metadata(path).map_err(cannot)?;
        Ok((!meta.is_dir()).then(|| Stamp::of(&meta)))
    }

    /// A file removed since the directory was read (`rm *.yaml` under way):
    /// gone, as the next read of the directory will say, not unreadable.
    fn vanished(&mut self, path: PathBuf) -> bool {
        self.remember(|store| store.forget_manifest(&path));
        self.files.remove(&path).is_some()
    }

    fn unreadable(&mut self, path: PathBuf, problem: Problem) -> bool {
        let parsed = ParsedFile {
            manifests: vec![],
            problems: vec![problem],
        };
        self.keep_last_good(path, None, u64::MAX, None, parsed)
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

    /// Objects whose documents in `path` did not parse stand on their
    /// previous version: where part of the file could not be read as
    /// documents at all, every object it named before; otherwise each
    /// object named by a problem.
    fn keep_last_good(
        &mut self,
        path: PathBuf,
        stamp: Option<Stamp>,
        content_hash: u64,
        text: Option<String>,
        mut parsed: ParsedFile,
    ) -> bool {
        let unreadable: Vec<String> = parsed
            .problems
            .iter()
            .filter(|p| p.object.is_none())
            .map(|p| p.message.clone())
            .collect();
        let broken: BTreeSet<(Kind, ObjectKey)> = parsed
            .problems
            .iter()
            .filter_map(|p| Some((p.kind?, p.object.clone()?)))
            .collect();
        if !unreadable.is_empty() || !broken.is_empty() {
            let why = format!("keeping the last good version: {}", unreadable.join("; "));
            for manifest in self.previous(&path) {
                let key = (manifest.kind(), manifest.key().clone());
                let stands = parsed
                    .manifests
                    .iter()
                    .any(|m| (m.kind(), m.key()) == (key.0, &key.1));
                if stands || (unreadable.is_empty() && !broken.contains(&key)) {
                    continue;
                }
                if !broken.contains(&key) {
                    // Shown on the object, so `forklet get` says why an edit has no effect.
                    parsed
                        .problems
                        .push(Problem::document(&path, key.0, &key.1, "", why.clone()));
                }
                parsed.manifests.push(manifest);
            }
        }
        let changed = self
            .files
            .get(&path)
            .is_none_or(|previous| previous.parsed != parsed);
        self.files.insert(
            path,
            CachedFile {
                stamp,
                content_hash,
                text,
                parsed,
                saved: false,
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
        let mut state = DesiredState::build(self.files.values().map(|f| &f.parsed), &definitions);
        save_good_files(&mut self.files, &self.store, &state);
        // Objects that parse but do not resolve (a config the schema
        // refuses, a broken schedule) stand on their last good version:
        // workspaces first, as modules resolve against them.
        for kind in [Kind::Workspace, Kind::Module] {
            if let Some(files) = self.last_good_stand_ins(&state, kind) {
                let mut next = DesiredState::build(&files, &definitions);
                // The problems of the version not used still show.
                for problem in state.problems {
                    if !next.problems.contains(&problem) {
                        next.problems.push(problem);
                    }
                }
                state = next;
            }
        }
        self.definition_files = definitions.read.into_inner();
        self.definition_urls = definitions.urls.into_inner();
        let mut reached: HashMap<(ObjectKey, KubeconfigSource), Arc<Reach>> = HashMap::new();
        // The modules that want each workspace's kubeconfig (a relay serves them).
        let mut users: HashMap<ObjectKey, HashSet<ObjectKey>> = HashMap::new();
        for module in state.modules.values_mut() {
            let Some(source) = &module.kubeconfig else {
                continue;
            };
            let modules = users.entry(module.workspace.clone()).or_default();
            modules.insert(module.key.clone());
            let reach = reached
                .entry((module.workspace.clone(), source.clone()))
                .or_insert_with(|| Arc::new(self.resolver.resolve(&module.workspace, source)));
            module.kubeconfig_stamp = Some(stamp(reach));
            module.runner.network = match reach.as_ref() {
                Ok(access) => access.network.clone(),
                // Not found now (a cluster stopped, a kubeconfig half
                // written): a running module keeps the network it has.
                Err(_) => self
                    .store
                    .module(&module.key)
                    .ok()
                    .flatten()
                    .and_then(|record| record.runner.network),
            };
        }
        self.kubeconfigs = reached
            .iter()
            .map(|(key, reach)| (key.clone(), stamp(reach)))
            .collect();
        self.resolver.publish(
            reached
                .into_iter()
                .map(|((workspace, _), reach)| (workspace, reach))
                .collect(),
            users,
        );
        state
    }

    /// The files with each held object of `kind` replaced by its last good
    /// document, where one is stored and differs; `None` when none is.
    fn last_good_stand_ins(&self, state: &DesiredState, kind: Kind) -> Option<Vec<ParsedFile>> {
        state.held(kind).next()?;
        let mut replaced = false;
        let mut files = Vec::with_capacity(self.files.len());
        for (path, cached) in &self.files {
            let mut parsed = cached.parsed.clone();
            let held = |m: &Manifest| m.kind() == kind && state.is_held(kind, m.key());
            if parsed.manifests.iter().any(held) {
                let good = match self.store.last_good_manifest(path) {
                    Ok(Some(text)) => parse_file(path, &text).manifests,
                    _ => Vec::new(),
                };
                for manifest in parsed.manifests.iter_mut().filter(|m| held(m)) {
                    let stand_in = good
                        .iter()
                        .find(|g| g.kind() == kind && g.key() == manifest.key());
                    if let Some(stand_in) = stand_in
                        && stand_in != manifest
                    {
                        *manifest = stand_in.clone();
                        replaced = true;
                    }
                }
            }
            files.push(parsed);
        }
        replaced.then_some(files)
    }

    /// Kubeconfigs live anywhere (`~/.kube/config`): each rescan, the
    /// periodic one included, looks at them again.
    fn kubeconfigs_changed(&self) -> bool {
        self.kubeconfigs
            .iter()
            .any(|((workspace, source), before)| {
                stamp(&self.resolver.resolve(workspace, source)) != *before
            })
    }

    fn definition_files_changed(&self) -> bool {
        self.definition_files.iter().any(|(path, hash)| {
            read_definition_file(path).map_or(u64::MAX, |text| content_hash(&text)) != *hash
        })
    }
}

/// A file whose every object parsed and resolved is stored as the last
/// good version of all of them (once per text).
fn save_good_files(files: &mut BTreeMap<PathBuf, CachedFile>, store: &Store, state: &DesiredState) {
    for (path, cached) in files {
        let Some(text) = &cached.text else { continue };
        let good = cached.parsed.problems.is_empty()
            && !cached
                .parsed
                .manifests
                .iter()
                .any(|m| state.is_held(m.kind(), m.key()));
        if good && !cached.saved {
            if let Err(err) = store.save_last_good_manifest(path, text) {
                tracing::warn!(error = %err, "cannot keep the last good manifest");
            }
            cached.saved = true;
        }
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

/// Whether nothing is at `path` any more, not even a dangling link.
fn path_gone(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use forklet_state::manifest::Kind;
    use std::fs;

    fn store(dir: &Path) -> Arc<Store> {
        Arc::new(Store::open(&dir.join("state.db")).unwrap())
    }

    /// No engine to look at: every server is taken as written.
    fn new_catalog(dir: &Path, state: &Path) -> Catalog {
        let store = store(state);
        let engine = crate::cluster::engine_view::Engine::Fixed(Arc::default());
        let resolver = Resolver::new(store.clone(), engine, None);
        Catalog::new(dir.to_owned(), store, resolver)
    }

    /// A catalog that has read the directory and resolved it, as the
    /// daemon does at start.
    fn scanned(dir: &Path, state: &Path) -> Catalog {
        let mut catalog = new_catalog(dir, state);
        catalog.rescan().unwrap();
        catalog.desired();
        catalog
    }

    const WS: &str =
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n";

    #[test]
    fn a_manifest_still_being_written_stands_as_it_was_read_before() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let ws = |name: &str| WS.replace("dev", name);
        let (edited, new) = (dir.path().join("ws.yaml"), dir.path().join("new.yaml"));
        fs::write(&edited, ws("before")).unwrap();
        let mut catalog = scanned(dir.path(), state.path());
        // Half of each: a valid document, but not the one being written.
        fs::write(&edited, ws("bef")).unwrap();
        fs::write(&new, ws("ne")).unwrap();
        let writing = HashSet::from([edited.clone(), new.clone()]);
        assert!(
            !catalog.rescan_holding(&writing).unwrap(),
            "nothing to act on yet"
        );
        let names = |catalog: &mut Catalog| -> Vec<String> {
            let desired = catalog.desired();
            desired
                .workspaces
                .keys()
                .map(|k| k.name().to_owned())
                .collect()
        };
        assert_eq!(names(&mut catalog), ["before"]);
        // Done: read as they are.
        fs::write(&edited, ws("after")).unwrap();
        fs::write(&new, ws("newer")).unwrap();
        assert!(catalog.rescan_holding(&HashSet::new()).unwrap());
        assert_eq!(names(&mut catalog), ["after", "newer"]);
        // Removed while under way: gone, not held.
        fs::remove_file(&new).unwrap();
        assert!(catalog.rescan_holding(&writing).unwrap());
        assert_eq!(names(&mut catalog), ["after"]);
    }

    #[test]
    fn a_file_that_breaks_keeps_its_last_good_documents_until_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let file = dir.path().join("ws.yaml");
        fs::write(&file, WS).unwrap();
        let mut catalog = new_catalog(dir.path(), state.path());
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
    fn a_file_removed_between_listing_and_reading_is_gone_not_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let file = dir.path().join("ws.yaml");
        fs::write(&file, WS).unwrap();
        let mut catalog = scanned(dir.path(), state.path());
        fs::remove_file(&file).unwrap();
        // As a rescan does for a name the directory listed a moment before.
        assert!(catalog.refresh(file.clone()), "the workspace went with it");
        let desired = catalog.desired();
        assert!(desired.problems.is_empty(), "{:?}", desired.problems);
        assert!(desired.workspaces.is_empty());
        assert_eq!(catalog.store.last_good_manifest(&file).unwrap(), None);
    }

    #[test]
    fn a_document_with_a_type_error_keeps_its_object_on_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let file = dir.path().join("ws.yaml");
        fs::write(&file, format!("{WS}spec: {{hibernated: true}}\n")).unwrap();
        let mut catalog = scanned(dir.path(), state.path());
        let dev = ObjectKey::new("default", "dev").unwrap();

        for typo in ["hibernated: yes", "hibernate: true", "connection: local"] {
            fs::write(&file, format!("{WS}spec: {{{typo}}}\n")).unwrap();
            catalog.rescan().unwrap();
            let desired = catalog.desired();
            let workspace = desired.workspaces.get(&dev).expect(typo);
            assert!(
                workspace.spec.hibernated,
                "{typo}: the last good version runs"
            );
            let problem = desired.problems_of(Kind::Workspace, &dev).next().unwrap();
            assert!(
                problem.field.as_deref().unwrap().starts_with("spec"),
                "{typo}"
            );
        }

        // The same typo across a restart: the stored good version stands.
        let mut restarted = new_catalog(dir.path(), state.path());
        restarted.rescan().unwrap();
        assert!(restarted.desired().workspaces[&dev].spec.hibernated);
    }

    fn module(replicas: u32) -> String {
        format!(
            "{WS}---\napiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {{name: app}}\nspec:\n  workspace: {{name: dev}}\n  source:\n    raw:\n      kind: Custom\n      metadata: {{name: m, version: 1.0.0, supportedOperatorVersion: '*'}}\n      config:\n        - {{type: integer, name: replicas, alias: replicas, spec: {{max: 3}}}}\n      spec: {{image: img}}\n  config: {{replicas: {replicas}}}\n"
        )
    }

    #[test]
    fn a_config_the_schema_refuses_keeps_the_last_good_one_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.yaml");
        fs::write(&file, module(2)).unwrap();
        let mut catalog = new_catalog(dir.path(), state.path());
        catalog.rescan().unwrap();
        let app = ObjectKey::new("default", "app").unwrap();
        assert_eq!(catalog.desired().modules[&app].config["replicas"], 2);

        fs::write(&file, module(9)).unwrap();
        catalog.rescan().unwrap();
        let desired = catalog.desired();
        assert_eq!(
            desired.modules[&app].config["replicas"], 2,
            "the last good config runs"
        );
        let problem = desired.problems_of(Kind::Module, &app).next().unwrap();
        assert_eq!(problem.field.as_deref(), Some("spec.config.replicas"));

        let mut restarted = new_catalog(dir.path(), state.path());
        restarted.rescan().unwrap();
        assert_eq!(restarted.desired().modules[&app].config["replicas"], 2);

        fs::write(&file, module(3)).unwrap();
        restarted.rescan().unwrap();
        let fixed = restarted.desired();
        assert_eq!(fixed.modules[&app].config["replicas"], 3);
        assert_eq!(fixed.problems, vec![]);
    }

    #[test]
    fn a_new_object_with_a_type_error_is_held_with_its_problem() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("ws.yaml"),
            format!("{WS}spec: {{hibernated: yes}}\n"),
        )
        .unwrap();
        let mut catalog = new_catalog(dir.path(), state.path());
        catalog.rescan().unwrap();
        let desired = catalog.desired();
        let dev = ObjectKey::new("default", "dev").unwrap();
        assert!(desired.is_held(Kind::Workspace, &dev));
        assert_eq!(desired.problems_of(Kind::Workspace, &dev).count(), 1);
    }

    #[test]
    fn fifos_devices_and_symlinks_out_of_the_directory_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.yaml");
        fs::write(&secret, WS).unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("link.yaml")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
        let fifo = dir.path().join("fifo.yaml");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let mut catalog = new_catalog(dir.path(), state.path());
        catalog.rescan().unwrap();
        let desired = catalog.desired();
        assert!(desired.workspaces.is_empty());
        let mut problems: Vec<String> = desired.problems.iter().map(|p| p.to_string()).collect();
        problems.sort();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].ends_with("fifo.yaml: cannot be read: is not a regular file"));
        assert!(problems[1].contains("link.yaml: is a symbolic link to"));
        assert!(problems[1].ends_with("outside the manifests directory: not read"));
        assert!(problems[2].ends_with(
            "zero.yaml: is a symbolic link to /dev/zero, outside the manifests directory: not read"
        ));
    }

    #[test]
    fn a_file_broken_before_a_restart_still_stands_on_its_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let file = dir.path().join("ws.yaml");
        fs::write(&file, WS).unwrap();
        scanned(dir.path(), state.path());

        fs::write(&file, "apiVersion: [broken").unwrap();
        let mut restarted = new_catalog(dir.path(), state.path());
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
        let mut again = new_catalog(dir.path(), state.path());
        again.rescan().unwrap();
        assert!(again.desired().workspaces.is_empty());
    }

    #[test]
    fn a_file_deleted_while_no_daemon_ran_is_forgotten_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let file = dir.path().join("ws.yaml");
        fs::write(&file, WS).unwrap();
        scanned(dir.path(), state.path());
        fs::remove_file(&file).unwrap();
        let mut started = new_catalog(dir.path(), state.path());
        started.rescan().unwrap();
        assert!(started.desired().workspaces.is_empty());
        // A broken file of that name, much later: nothing old comes back.
        fs::write(&file, "apiVersion: [broken").unwrap();
        let mut later = new_catalog(dir.path(), state.path());
        later.rescan().unwrap();
        assert!(later.desired().workspaces.is_empty());
    }

    #[test]
    fn a_missing_directory_is_an_error_not_an_empty_state() {
        let state = tempfile::tempdir().unwrap();
        let mut catalog = new_catalog(Path::new("/nonexistent/forklet-manifests"), state.path());
        assert!(catalog.rescan().is_err());
    }
}
