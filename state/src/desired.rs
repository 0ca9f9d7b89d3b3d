//! From parsed manifests to the desired state: every Module resolved against
//! its Workspace and definition, config validated, ready to run.
//!
//! Objects whose documents exist but cannot be resolved are `held`: the
//! daemon keeps them on their last good version rather than treating a typo
//! as a deletion.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::definition::{CustomDefinition, Permission, parse_definition};
use crate::manifest::{
    Connection, ConnectionType, Document, Kind, Manifest, ModuleSpec, ObjectKey, ParsedFile,
    SecretReference, WorkspaceSpec,
};
use crate::problem::Problem;
use crate::schedule::{Schedule, local_zone};
use crate::schema::validate_config;
use crate::source::{Definitions, SourceError, definition_of};
use crate::store::RunnerSettings;

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredWorkspace {
    pub key: ObjectKey,
    pub file: PathBuf,
    pub spec: WorkspaceSpec,
    /// `spec.autoHibernation`, when enabled.
    pub schedule: Option<Schedule>,
}

/// Which kubeconfig a module with the `workspace` permission receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct KubeconfigSource {
    /// `None` (and no secret): the daemon user's default (`$KUBECONFIG`,
    /// else `~/.kube/config`).
    pub path: Option<PathBuf>,
    /// The operator's `secretReference`. Left out of the serialized form
    /// when absent, so the install hash of a file-based module is the same
    /// as before secrets could be named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretReference>,
    pub context: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredModule {
    pub key: ObjectKey,
    pub file: PathBuf,
    pub workspace: ObjectKey,
    pub definition: CustomDefinition,
    /// The config the module receives: validated, defaults applied.
    pub config: Map<String, Value>,
    pub hibernated: bool,
    pub kubeconfig: Option<KubeconfigSource>,
    /// What the kubeconfig handed to the runner holds now (set by whoever
    /// can read it: the daemon): a change is written into the runner's
    /// files without a new `/install`.
    pub kubeconfig_stamp: Option<u64>,
    pub runner: RunnerSettings,
    /// Changes when `/install` must be called again.
    pub install_hash: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredState {
    pub workspaces: BTreeMap<ObjectKey, DesiredWorkspace>,
    pub modules: BTreeMap<ObjectKey, DesiredModule>,
    /// Named by a document but not resolvable now.
    pub held: BTreeSet<(Kind, ObjectKey)>,
    pub problems: Vec<Problem>,
    /// Modules waiting for their `httpURL` definition to be fetched.
    pub awaiting: BTreeMap<ObjectKey, String>,
}

impl DesiredState {
    /// Resolves `files`, reading definitions through `definitions`.
    pub fn build<'a>(
        files: impl IntoIterator<Item = &'a ParsedFile>,
        definitions: &dyn Definitions,
    ) -> Self {
        let mut state = DesiredState::default();
        // Schedules without a zone of their own are read in the machine's.
        let zone = local_zone();
        let mut workspace_docs: BTreeMap<ObjectKey, Vec<&Document<WorkspaceSpec>>> =
            BTreeMap::new();
        let mut module_docs: BTreeMap<ObjectKey, Vec<&Document<ModuleSpec>>> = BTreeMap::new();
        for file in files {
            state.problems.extend(file.problems.iter().cloned());
            for manifest in &file.manifests {
                match manifest {
                    Manifest::Workspace(doc) => {
                        workspace_docs.entry(doc.key.clone()).or_default().push(doc)
                    }
                    Manifest::Module(doc) => {
                        module_docs.entry(doc.key.clone()).or_default().push(doc)
                    }
                }
            }
        }
        for (key, docs) in workspace_docs {
            match unique(Kind::Workspace, &key, &docs)
                .and_then(|doc| check_workspace(doc, zone).map(|schedule| (doc, schedule)))
            {
                Ok((doc, schedule)) => {
                    let workspace = DesiredWorkspace {
                        key: key.clone(),
                        file: doc.file.clone(),
                        spec: doc.spec.clone(),
                        schedule,
                    };
                    state.workspaces.insert(key, workspace);
                }
                Err(problems) => state.hold(Kind::Workspace, key, problems),
            }
        }
        for (key, docs) in module_docs {
            match unique(Kind::Module, &key, &docs).and_then(|doc| {
                resolve_module(doc, &state.workspaces, definitions, &mut state.awaiting)
            }) {
                Ok(module) => {
                    state.modules.insert(key, module);
                }
                Err(problems) => state.hold(Kind::Module, key, problems),
            }
        }
        // A document that names an object but does not parse (a type error,
        // an unknown field) still holds that object: a typo is never a
        // deletion, and a new object with one is shown with its problem.
        let broken: Vec<(Kind, ObjectKey)> = state
            .problems
            .iter()
            .filter_map(|p| Some((p.kind?, p.object.clone()?)))
            .filter(|(kind, key)| !state.defines(*kind, key))
            .collect();
        state.held.extend(broken);
        state
    }

    /// Whether `key` resolved to a workspace or module to run.
    fn defines(&self, kind: Kind, key: &ObjectKey) -> bool {
        match kind {
            Kind::Workspace => self.workspaces.contains_key(key),
            Kind::Module => self.modules.contains_key(key),
        }
    }

    fn hold(&mut self, kind: Kind, key: ObjectKey, problems: Vec<Problem>) {
        self.problems.extend(problems);
        self.held.insert((kind, key));
    }

    /// Objects of `kind` named by a document but not resolvable now.
    pub fn held(&self, kind: Kind) -> impl Iterator<Item = &ObjectKey> {
        self.held
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, key)| key)
    }

    pub fn is_held(&self, kind: Kind, key: &ObjectKey) -> bool {
        self.held.contains(&(kind, key.clone()))
    }

    /// The URLs some module waits for.
    pub fn unfetched(&self) -> BTreeSet<&str> {
        self.awaiting.values().map(String::as_str).collect()
    }

    /// Problems attached to one object, for showing on it.
    pub fn problems_of(&self, kind: Kind, key: &ObjectKey) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(move |p| p.kind == Some(kind) && p.object.as_ref() == Some(key))
    }
}

/// Two documents for one object is an error on both, never a silent winner.
fn unique<'d, S>(
    kind: Kind,
    key: &ObjectKey,
    docs: &[&'d Document<S>],
) -> Result<&'d Document<S>, Vec<Problem>> {
    if let [doc] = docs {
        return Ok(doc);
    }
    let places: Vec<String> = docs
        .iter()
        .map(|d| format!("{} (document {})", d.file.display(), d.position))
        .collect();
    Err(docs
        .iter()
        .map(|d| {
            Problem::document(
                &d.file,
                kind,
                key,
                "metadata.name",
                format!("defined more than once: {}", places.join(", ")),
            )
        })
        .collect())
}

fn resolve_module(
    doc: &Document<ModuleSpec>,
    workspaces: &BTreeMap<ObjectKey, DesiredWorkspace>,
    definitions: &dyn Definitions,
    awaiting: &mut BTreeMap<ObjectKey, String>,
) -> Result<DesiredModule, Vec<Problem>> {
    let problem = |field: &str, message: String| {
        Problem::document(&doc.file, Kind::Module, &doc.key, field, message)
    };
    let (raw, source_field) = definition_of(doc, definitions).map_err(|err| match err {
        SourceError::Invalid { field, message } => vec![problem(&field, message)],
        SourceError::Unfetched { url } => {
            awaiting.insert(doc.key.clone(), url);
            Vec::new()
        }
    })?;
    let definition = parse_definition(&raw).map_err(|errors| {
        errors
            .into_iter()
            .map(|(path, message)| problem(&format!("{source_field}{path}"), message))
            .collect::<Vec<_>>()
    })?;
    let config =
        validate_config(definition.config.as_deref(), &doc.spec.config).map_err(|errors| {
            errors
                .into_iter()
                .map(|(alias, message)| problem(&format!("spec.config.{alias}"), message))
                .collect::<Vec<_>>()
        })?;
    let workspace_key = doc.spec.workspace.key().clone();
    let Some(workspace) = workspaces.get(&workspace_key) else {
        return Err(vec![problem(
            "spec.workspace",
            format!("workspace {workspace_key} is not defined in any manifest"),
        )]);
    };
    let kubeconfig = definition
        .spec
        .has(Permission::Workspace)
        .then(|| kubeconfig_source(workspace));
    let runner_hash = hash(&json!({
        "image": definition.spec.image,
        "permissions": definition.spec.permissions,
        "imagePullSecrets": definition.spec.image_pull_secrets,
        "resourceUsage": definition.metadata.resource_usage,
    }));
    // Hashed from the definition as written (not forklet's structs), so a
    // newer daemon computes the same hash and adopts instead of reinstalling.
    let install_hash = hash(&json!({
        "definition": raw,
        "config": config,
        "workspace": workspace_key,
        "kubeconfig": kubeconfig,
    }));
    let runner = RunnerSettings {
        image: definition.spec.image.clone(),
        runner_hash,
        kubeconfig: kubeconfig.is_some(),
        cpu_shares: definition.cpu_shares(),
        memory_reservation: definition.memory_reservation(),
        pull_secrets: definition.spec.image_pull_secrets.clone(),
        controller: definition.spec.has(Permission::Controller),
        network: None,
    };
    Ok(DesiredModule {
        key: doc.key.clone(),
        file: doc.file.clone(),
        workspace: workspace_key,
        definition,
        config,
        hibernated: doc.spec.hibernated,
        runner,
        kubeconfig,
        kubeconfig_stamp: None,
        install_hash,
    })
}

pub fn kubeconfig_source(workspace: &DesiredWorkspace) -> KubeconfigSource {
    let connection = &workspace.spec.connection;
    KubeconfigSource {
        path: connection
            .kubeconfig
            .as_ref()
            .map(|p| absolute_from(&workspace.file, p)),
        secret: connection.secret_reference.clone(),
        context: connection.context.clone(),
    }
}

/// Where the kubeconfig comes from: a `kubeconfig` connection names one
/// secret or (forklet extension) one file.
fn check_connection(connection: &Connection) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    match (
        connection.kind,
        &connection.secret_reference,
        &connection.kubeconfig,
    ) {
        (ConnectionType::Kubeconfig, None, None) => problems.push((
            "spec.connection",
            "type kubeconfig needs secretReference (a secret made with `forklet secret create \
             generic NAME --from-file=kubeconfig=PATH`) or the forklet extension \
             connection.kubeconfig (a file path)"
                .to_owned(),
        )),
        (_, Some(_), Some(_)) => problems.push((
            "spec.connection",
            "secretReference and kubeconfig both name a kubeconfig: keep one".to_owned(),
        )),
        (ConnectionType::Local | ConnectionType::InCluster, Some(_), _) => problems.push((
            "spec.connection.secretReference",
            format!(
                "is read only with type kubeconfig (this connection is {})",
                connection.kind
            ),
        )),
        _ => {}
    }
    if let Some(reference) = &connection.secret_reference {
        if let Err(err) = crate::names::check_dns_subdomain(&reference.name) {
            problems.push(("spec.connection.secretReference.name", err.to_string()));
        }
        if let Some(namespace) = &reference.namespace
            && let Err(err) = crate::names::check_dns_label(namespace)
        {
            problems.push(("spec.connection.secretReference.namespace", err.to_string()));
        }
        if let Err(err) = crate::names::check_secret_key(&reference.key) {
            problems.push(("spec.connection.secretReference.key", err.to_string()));
        }
    }
    problems
}

/// What a Workspace asks for that one machine cannot give, and its schedule.
fn check_workspace(
    doc: &Document<WorkspaceSpec>,
    zone: Tz,
) -> Result<Option<Schedule>, Vec<Problem>> {
    let problem = |field: &str, message: &str| {
        Problem::document(&doc.file, Kind::Workspace, &doc.key, field, message)
    };
    let spec = &doc.spec;
    let mut problems = Vec::new();
    if let Some(kind) = spec.kind.as_deref()
        && kind != "kubernetes"
    {
        problems.push(problem(
            "spec.type",
            &format!("{kind:?} is not a workspace type (expected kubernetes)"),
        ));
    }
    if spec.from.is_some() {
        problems.push(problem(
            "spec.from",
            "forking a workspace is not available without Kubernetes",
        ));
    }
    for (field, message) in check_connection(&spec.connection) {
        problems.push(problem(field, &message));
    }
    let schedule = match spec
        .auto_hibernation
        .as_ref()
        .map(|auto| Schedule::parse(auto, zone))
        .transpose()
    {
        Ok(schedule) => schedule.flatten(),
        Err(errors) => {
            for (field, message) in errors {
                problems.push(problem(&format!("spec.autoHibernation{field}"), &message));
            }
            None
        }
    };
    if problems.is_empty() {
        Ok(schedule)
    } else {
        Err(problems)
    }
}

/// `~/x` from `$HOME`, relative paths from the manifest's own directory.
fn absolute_from(manifest: &Path, path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    match manifest.parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_owned(),
    }
}

/// SHA-256 of the canonical JSON (serde_json maps are sorted).
pub fn hash(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_file;

    const WORKSPACE: &str = "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\nspec:\n  connection: {type: local, kubeconfig: kube/config, context: kind-dev}\n";

    fn module(name: &str, config: &str) -> String {
        format!(
            "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {{name: {name}}}\nspec:\n  workspace: {{name: dev}}\n  source:\n    raw:\n      kind: Custom\n      metadata: {{name: m, version: 1.0.0, supportedOperatorVersion: '>= 0.0.0'}}\n      config:\n        - {{type: integer, name: replicas, alias: replicas, spec: {{default: 1, max: 3}}}}\n      spec: {{image: 'img:1', permissions: [workspace]}}\n  config: {config}\n"
        )
    }

    fn build(files: &[(&str, String)]) -> DesiredState {
        let parsed: Vec<ParsedFile> = files
            .iter()
            .map(|(name, text)| parse_file(Path::new(name), text))
            .collect();
        DesiredState::build(&parsed, &crate::source::LocalDefinitions)
    }

    #[test]
    fn a_module_resolves_with_its_workspace_kubeconfig() {
        let state = build(&[
            ("/m/ws.yaml", WORKSPACE.into()),
            ("/m/app.yaml", module("app", "{}")),
        ]);
        assert_eq!(state.problems, vec![]);
        let app = &state.modules[&ObjectKey::new("default", "app").unwrap()];
        assert_eq!(
            app.config,
            json!({"replicas": 1}).as_object().unwrap().clone()
        );
        assert_eq!(
            app.kubeconfig,
            Some(KubeconfigSource {
                path: Some("/m/kube/config".into()),
                secret: None,
                context: Some("kind-dev".into())
            })
        );
    }

    #[test]
    fn the_operators_secret_reference_names_the_kubeconfig() {
        let workspace = "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\nspec:\n  connection:\n    type: kubeconfig\n    secretReference: {name: kind-dev, namespace: default}\n";
        let state = build(&[
            ("/m/ws.yaml", workspace.into()),
            ("/m/app.yaml", module("app", "{}")),
        ]);
        assert_eq!(state.problems, vec![]);
        let app = &state.modules[&ObjectKey::new("default", "app").unwrap()];
        assert_eq!(
            app.kubeconfig,
            Some(KubeconfigSource {
                path: None,
                secret: Some(SecretReference {
                    name: "kind-dev".into(),
                    namespace: Some("default".into()),
                    key: "kubeconfig".into(),
                }),
                context: None,
            })
        );
    }

    #[test]
    fn a_connection_that_names_no_usable_kubeconfig_is_refused_by_field() {
        let problems = |connection: &str| {
            let text = format!(
                "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {{name: dev}}\nspec:\n  connection: {connection}\n"
            );
            build(&[("/m/ws.yaml", text)])
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.field.as_deref().unwrap_or(""), p.message))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            problems("{type: kubeconfig}")[0],
            "spec.connection: type kubeconfig needs secretReference (a secret made with `forklet secret create generic NAME --from-file=kubeconfig=PATH`) or the forklet extension connection.kubeconfig (a file path)"
        );
        assert_eq!(
            problems("{type: kubeconfig, kubeconfig: a, secretReference: {name: s}}")[0],
            "spec.connection: secretReference and kubeconfig both name a kubeconfig: keep one"
        );
        assert_eq!(
            problems("{type: local, secretReference: {name: s}}")[0],
            "spec.connection.secretReference: is read only with type kubeconfig (this connection is local)"
        );
        let bad =
            problems("{type: kubeconfig, secretReference: {name: ../x, namespace: A, key: a/b}}");
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].starts_with(
            "spec.connection.secretReference.name: \"../x\" is not a DNS-1123 subdomain"
        ));
        assert!(bad[1].starts_with(
            "spec.connection.secretReference.namespace: \"A\" is not a DNS-1123 label"
        ));
        assert!(
            bad[2].starts_with("spec.connection.secretReference.key: \"a/b\" is not a secret key")
        );
    }

    /// The hashes decide whether a running module is adopted or installed
    /// again: a change here reinstalls every module of every user on
    /// upgrade. Change them only on purpose, with a migration.
    #[test]
    fn the_hashes_of_a_known_module_never_change() {
        let state = build(&[
            ("/m/ws.yaml", WORKSPACE.into()),
            ("/m/app.yaml", module("app", "{replicas: 2}")),
        ]);
        let app = &state.modules[&ObjectKey::new("default", "app").unwrap()];
        assert_eq!(
            app.runner.runner_hash,
            "eb01ae469db0f5c61ffe0fea5498648203546c486cb6a1a7f9ccde093647559f"
        );
        assert_eq!(
            app.install_hash,
            "76133ffd15e6a9422d5607aef36e2dfcacdf8b9fce200a8df38a0aea3b6693a9"
        );
    }

    #[test]
    fn config_changes_the_install_hash_but_not_the_runner_hash() {
        let a = build(&[
            ("/m/ws.yaml", WORKSPACE.into()),
            ("/m/app.yaml", module("app", "{replicas: 2}")),
        ]);
        let b = build(&[
            ("/m/ws.yaml", WORKSPACE.into()),
            ("/m/app.yaml", module("app", "{replicas: 3}")),
        ]);
        let key = ObjectKey::new("default", "app").unwrap();
        assert_eq!(a.modules[&key].runner, b.modules[&key].runner);
        assert_ne!(a.modules[&key].install_hash, b.modules[&key].install_hash);
    }

    #[test]
    fn an_invalid_module_is_held_with_a_problem_naming_file_and_field() {
        let state = build(&[
            ("/m/ws.yaml", WORKSPACE.into()),
            ("/m/app.yaml", module("app", "{replicas: 9}")),
        ]);
        let key = ObjectKey::new("default", "app").unwrap();
        assert!(state.modules.is_empty());
        assert!(state.held.contains(&(Kind::Module, key.clone())));
        assert_eq!(
            state
                .problems_of(Kind::Module, &key)
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            vec![
                "/m/app.yaml: Module default/app: spec.config.replicas: validation failed for field 'replicas': value 9 is greater than maximum 3"
            ]
        );
    }

    #[test]
    fn a_document_with_a_type_error_holds_its_object() {
        for spec in [
            "hibernated: yes",
            "workspace: dev",
            "hibernate: true",
            "source: {raw: {kind: Custom}, colour: red}",
        ] {
            let text = format!(
                "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {{name: app}}\nspec:\n  {spec}\n"
            );
            let state = build(&[("/m/ws.yaml", WORKSPACE.into()), ("/m/app.yaml", text)]);
            let key = ObjectKey::new("default", "app").unwrap();
            assert!(
                state.held.contains(&(Kind::Module, key.clone())),
                "{spec}: held, not dropped"
            );
            let problem = state.problems_of(Kind::Module, &key).next().unwrap();
            assert!(
                problem.field.as_deref().unwrap().starts_with("spec"),
                "{spec}"
            );
        }
    }

    #[test]
    fn a_missing_workspace_holds_the_module() {
        let state = build(&[("/m/app.yaml", module("app", "{}"))]);
        let key = ObjectKey::new("default", "app").unwrap();
        assert!(state.held.contains(&(Kind::Module, key.clone())));
        let problem = state.problems_of(Kind::Module, &key).next().unwrap();
        assert_eq!(
            problem.message,
            "workspace default/dev is not defined in any manifest"
        );
    }

    #[test]
    fn a_module_defined_twice_is_an_error_on_both() {
        let state = build(&[
            ("/m/ws.yaml", WORKSPACE.into()),
            ("/m/a.yaml", module("app", "{}")),
            ("/m/b.yaml", module("app", "{}")),
        ]);
        let key = ObjectKey::new("default", "app").unwrap();
        assert!(state.modules.is_empty());
        let files: Vec<_> = state
            .problems_of(Kind::Module, &key)
            .map(|p| p.file.clone())
            .collect();
        assert_eq!(
            files,
            vec![PathBuf::from("/m/a.yaml"), PathBuf::from("/m/b.yaml")]
        );
    }

    #[test]
    fn unsupported_sources_say_so() {
        let text = "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: app}\nspec:\n  workspace: {name: dev}\n  source: {configMap: {name: x}}\n";
        let state = build(&[
            ("/m/ws.yaml", WORKSPACE.into()),
            ("/m/app.yaml", text.into()),
        ]);
        assert_eq!(
            state.problems[0].to_string(),
            "/m/app.yaml: Module default/app: spec.source.configMap: not available without Kubernetes (use raw, httpURL, or the forklet extension file)"
        );
    }
}
