//! Workspace and Module documents as users write them, and the parsing of a
//! manifest file into them.
//!
//! Field names follow the Forkspacer CRDs (`batch.forkspacer.com/v1`). Fields
//! that only forklet reads are marked "forklet extension" here and in the
//! README.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::names::ObjectKey;
use crate::problem::Problem;

pub const API_VERSION: &str = "batch.forkspacer.com/v1";
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Kind {
    Workspace,
    Module,
}

impl Kind {
    /// `module` or `workspace`, as kubectl writes kinds in `kind/name`.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Workspace => "workspace",
            Kind::Module => "module",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Workspace => "Workspace",
            Kind::Module => "Module",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(deserializer)?.unwrap_or_default())
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModuleSpec {
    pub workspace: WorkspaceRef,
    pub source: Source,
    /// Values keyed by the definition's config `alias`; `config:` with no
    /// value is an empty config.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub config: Map<String, Value>,
    #[serde(default)]
    pub hibernated: bool,
    /// The operator's flag for Helm modules; a Custom module creates what it
    /// needs itself, so forklet reads and ignores it.
    #[serde(default)]
    pub create_namespace: bool,
}

/// `spec.workspace`: `{name, namespace=default}`, checked as Kubernetes names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawWorkspaceRef")]
pub struct WorkspaceRef(ObjectKey);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping {name, namespace}")]
struct RawWorkspaceRef {
    name: String,
    #[serde(default = "default_namespace")]
    namespace: String,
}

impl TryFrom<RawWorkspaceRef> for WorkspaceRef {
    type Error = String;
    fn try_from(raw: RawWorkspaceRef) -> Result<Self, String> {
        ObjectKey::new(raw.namespace, raw.name)
            .map(WorkspaceRef)
            .map_err(|err| {
                let field = err.field().trim_start_matches("metadata.");
                format!("{field}: {}", err.reason())
            })
    }
}

impl WorkspaceRef {
    pub fn key(&self) -> &ObjectKey {
        &self.0
    }
}

/// Where a Module's resource definition comes from; exactly one is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    pub raw: Option<Value>,
    #[serde(rename = "httpURL")]
    pub http_url: Option<String>,
    pub config_map: Option<Value>,
    pub existing_helm_release: Option<Value>,
    pub github: Option<Value>,
    /// forklet extension: a definition file, relative to the manifest and
    /// inside its directory.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspaceSpec {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Forking another workspace: needs Kubernetes, refused with a reason.
    pub from: Option<Value>,
    #[serde(default)]
    pub hibernated: bool,
    #[serde(default)]
    pub connection: Connection,
    pub auto_hibernation: Option<AutoHibernation>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Connection {
    #[serde(rename = "type", default)]
    pub kind: ConnectionType,
    /// The operator's form: a secret holding the kubeconfig (here one made
    /// with `forklet secret create generic`).
    pub secret_reference: Option<SecretReference>,
    /// forklet extension: the kubeconfig file to hand to modules, instead of
    /// the daemon user's default (`$KUBECONFIG` or `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// forklet extension: the context in that kubeconfig to make current.
    pub context: Option<String>,
}

/// `connection.secretReference`: which key of which secret holds the kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretReference {
    pub name: String,
    /// Matched against the secret's namespace when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `kubeconfig` when not given, as in the operator.
    #[serde(default = "SecretReference::default_key")]
    pub key: String,
}

impl SecretReference {
    fn default_key() -> String {
        "kubeconfig".to_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionType {
    #[default]
    Local,
    InCluster,
    Kubeconfig,
}

impl fmt::Display for ConnectionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionType::Local => "local",
            ConnectionType::InCluster => "in-cluster",
            ConnectionType::Kubeconfig => "kubeconfig",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoHibernation {
    #[serde(default)]
    pub enabled: bool,
    pub schedule: Option<String>,
    pub wake_schedule: Option<String>,
    /// forklet extension: the IANA zone the schedules are read in (default:
    /// the machine's own zone; a `CRON_TZ=` prefix also works).
    pub timezone: Option<String>,
}

/// A parsed document: which object it is and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<S> {
    pub key: ObjectKey,
    pub file: PathBuf,
    /// 1-based position of the document in its file.
    pub position: usize,
    pub spec: S,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Workspace(Document<WorkspaceSpec>),
    Module(Document<ModuleSpec>),
}

impl Manifest {
    pub fn kind(&self) -> Kind {
        match self {
            Manifest::Workspace(_) => Kind::Workspace,
            Manifest::Module(_) => Kind::Module,
        }
    }

    pub fn key(&self) -> &ObjectKey {
        match self {
            Manifest::Workspace(doc) => &doc.key,
            Manifest::Module(doc) => &doc.key,
        }
    }

    pub fn file(&self) -> &Path {
        match self {
            Manifest::Workspace(doc) => &doc.file,
            Manifest::Module(doc) => &doc.file,
        }
    }
}

/// What one file yields: the documents that parsed, and a problem for each
/// that did not. A bad document never hides its good neighbours.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedFile {
    pub manifests: Vec<Manifest>,
    pub problems: Vec<Problem>,
}

/// `.yaml`/`.yml` files, minus hidden files and editors' swap and backup files.
pub fn is_manifest_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let ignored = name.starts_with('.') || name.starts_with('#') || name.ends_with('~');
    !ignored && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// The text of a manifest file: a regular file of at most
/// [`MANIFEST_MAX`](crate::bounded::MANIFEST_MAX) bytes.
pub fn read_manifest(path: &Path) -> Result<String, Box<Problem>> {
    crate::bounded::read_text(path, crate::bounded::MANIFEST_MAX)
        .map_err(|err| Box::new(Problem::file(path, format!("cannot be read: {err}"))))
}

/// A symbolic link in the manifests directory `dir` is followed only to a
/// file inside it: a manifest is never a way to read elsewhere.
pub fn check_link_inside(dir: &Path, path: &Path) -> Result<(), Box<Problem>> {
    let cannot =
        |err: std::io::Error| Box::new(Problem::file(path, format!("cannot be read: {err}")));
    if !std::fs::symlink_metadata(path)
        .map_err(cannot)?
        .file_type()
        .is_symlink()
    {
        return Ok(());
    }
    let target = std::fs::canonicalize(path).map_err(cannot)?;
    let dir = std::fs::canonicalize(dir).map_err(cannot)?;
    if target.starts_with(&dir) {
        return Ok(());
    }
    Err(Box::new(Problem::file(
        path,
        format!(
            "is a symbolic link to {}, outside the manifests directory: not read",
            target.display()
        ),
    )))
}

/// Parses every YAML document in `text`; `file` is only for messages.
pub fn parse_file(file: &Path, text: &str) -> ParsedFile {
    let mut parsed = ParsedFile::default();
    for (index, document) in crate::yaml::documents(text).enumerate() {
        let position = index + 1;
        let value = match document {
            Ok(Value::Null) => continue, // an empty document, e.g. a trailing `---`
            Ok(value) => value,
            Err(err) => {
                let problem =
                    Problem::file(file, format!("document {position}: invalid YAML: {err}"));
                parsed.problems.push(problem);
                continue; // the reader stops after a broken document
            }
        };
        if is_definition(&value) {
            // A definition file (for `source.file`): checked, but nothing to run.
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)")
                .to_owned();
            for (path, message) in crate::definition::parse_definition(&value)
                .err()
                .unwrap_or_default()
            {
                let field = path.trim_start_matches('.');
                let problem = Problem::file(
                    file,
                    format!("document {position}: Custom {name}: {field}: {message}"),
                );
                parsed.problems.push(problem);
            }
            continue;
        }
        // A Kubernetes Secret beside the manifests (as `forklet export`
        // writes them for the operator): not forklet's to read. Its
        // secrets are made with `forklet secret create`.
        if value.get("apiVersion") == Some(&Value::from("v1"))
            && value.get("kind") == Some(&Value::from("Secret"))
        {
            continue;
        }
        match parse_document(file, position, value) {
            Ok(manifest) => parsed.manifests.push(manifest),
            Err(problem) => parsed.problems.push(*problem),
        }
    }
    // Kept for as long as the file is unchanged: a manifest is hundreds of
    // bytes, and a first push reserves room for four.
    parsed.manifests.shrink_to_fit();
    parsed.problems.shrink_to_fit();
    parsed
}

fn parse_document(
    file: &Path,
    position: usize,
    mut value: Value,
) -> Result<Manifest, Box<Problem>> {
    let at = |message: String| {
        Box::new(Problem::file(
            file,
            format!("document {position}: {message}"),
        ))
    };
    let Some(object) = value.as_object_mut() else {
        return Err(at(
            "expected a mapping with apiVersion, kind, metadata and spec".into(),
        ));
    };
    let api_version = object.remove("apiVersion");
    let kind = object.remove("kind");
    let kind = match (
        api_version.as_ref().and_then(Value::as_str),
        kind.as_ref().and_then(Value::as_str),
    ) {
        (Some(API_VERSION), Some("Workspace")) => Kind::Workspace,
        (Some(API_VERSION), Some("Module")) => Kind::Module,
        (Some(API_VERSION), Some(other)) => {
            return Err(at(format!(
                "kind {other:?} is not read by forklet (expected Workspace or Module)"
            )));
        }
        (api, kind) => {
            let shown =
                |value: Option<&str>| value.map_or("(none)".to_owned(), |v| format!("{v:?}"));
            return Err(at(format!(
                "apiVersion {} kind {} is not a forklet document (expected apiVersion {API_VERSION})",
                shown(api),
                shown(kind)
            )));
        }
    };
    let metadata: ObjectMeta = match object.remove("metadata") {
        Some(meta) => {
            typed(meta).map_err(|(path, msg)| at(format!("{kind}: metadata{path}: {msg}")))?
        }
        None => return Err(at(format!("{kind}: metadata: missing (name is required)"))),
    };
    // A name that is not a Kubernetes name cannot address anything: the
    // problem is the document's, not an object's.
    let key = ObjectKey::new(&metadata.namespace, &metadata.name).map_err(|err| {
        at(format!(
            "{kind} {:?}: {}: {}",
            metadata.name,
            err.field(),
            err.reason()
        ))
    })?;
    let problem = |field: String, message: String| {
        Box::new(Problem::document(file, kind, &key, field, message))
    };
    // `status` is what the operator writes back; a manifest exported from a
    // cluster may carry it and forklet has no use for it.
    object.remove("status");
    if let Some(extra) = object.keys().find(|k| *k != "spec") {
        return Err(problem(
            extra.clone(),
            "unknown top-level field (expected apiVersion, kind, metadata, spec)".into(),
        ));
    }
    let spec = object
        .remove("spec")
        .unwrap_or_else(|| Value::Object(Map::new()));
    let spec_problem = |(path, msg)| problem(format!("spec{path}"), msg);
    Ok(match kind {
        Kind::Workspace => {
            Manifest::Workspace(document(key.clone(), file, position, spec).map_err(spec_problem)?)
        }
        Kind::Module => {
            Manifest::Module(document(key.clone(), file, position, spec).map_err(spec_problem)?)
        }
    })
}

fn document<S: DeserializeOwned>(
    key: ObjectKey,
    file: &Path,
    position: usize,
    spec: Value,
) -> Result<Document<S>, (String, String)> {
    Ok(Document {
        key,
        file: file.to_owned(),
        position,
        spec: typed(spec)?,
    })
}

/// A bare `kind: Custom` resource definition, as `source.file` points at.
fn is_definition(value: &Value) -> bool {
    value.get("kind").and_then(Value::as_str) == Some("Custom") && value.get("apiVersion").is_none()
}

/// Deserializes `value`, reporting the failing field as a `.a.b[2]` suffix.
pub(crate) fn typed<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." {
            String::new()
        } else {
            format!(".{path}")
        };
        (path, err.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ParsedFile {
        parse_file(Path::new("m.yaml"), text)
    }

    #[test]
    fn only_manifest_files_are_read() {
        for (name, read) in [
            ("a.yaml", true),
            ("a.yml", true),
            (".a.yaml", false),
            ("a.yaml~", false),
            ("#a.yaml#", false),
            ("a.yaml.swp", false),
            ("a.yaml.bak", false),
            ("a.json", false),
        ] {
            assert_eq!(is_manifest_file(Path::new(name)), read, "{name}");
        }
    }

    #[test]
    fn reads_a_workspace_and_a_module_from_one_file() {
        let parsed = parse(
            "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\nspec:\n  connection: {type: local}\n---\n\
             apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: app, namespace: team}\n\
             spec:\n  workspace: {name: dev}\n  source: {raw: {kind: Custom}}\n  config: {env: prod}\n",
        );
        assert_eq!(parsed.problems, vec![]);
        assert_eq!(parsed.manifests.len(), 2);
        let Manifest::Module(module) = &parsed.manifests[1] else {
            panic!("second document is the module")
        };
        assert_eq!(module.key, ObjectKey::new("team", "app").unwrap());
        assert_eq!(module.position, 2);
        assert_eq!(
            module.spec.workspace.key(),
            &ObjectKey::new("default", "dev").unwrap()
        );
        assert_eq!(module.spec.config["env"], "prod");
        assert!(!module.spec.hibernated);
    }

    #[test]
    fn a_bad_document_is_reported_and_its_neighbours_still_parse() {
        let parsed = parse(
            "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: bad}\nspec:\n  workspace: {name: dev}\n  source: {}\n  hibernate: true\n---\n\
             apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n",
        );
        assert_eq!(parsed.manifests.len(), 1);
        assert_eq!(parsed.manifests[0].kind(), Kind::Workspace);
        let text = parsed.problems[0].to_string();
        assert!(
            text.starts_with(
                "m.yaml: Module default/bad: spec.hibernate: unknown field `hibernate`"
            ),
            "{text}"
        );
    }

    #[test]
    fn names_that_are_not_kubernetes_names_address_nothing() {
        for (metadata, field) in [
            ("{name: '../../x'}", "metadata.name"),
            ("{name: /etc}", "metadata.name"),
            ("{name: App}", "metadata.name"),
            ("{name: ''}", "metadata.name"),
            ("{name: x, namespace: '..'}", "metadata.namespace"),
            ("{name: x, namespace: a.b}", "metadata.namespace"),
        ] {
            let parsed = parse(&format!(
                "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {metadata}\n"
            ));
            assert!(parsed.manifests.is_empty(), "{metadata}");
            let text = parsed.problems[0].to_string();
            assert!(
                text.starts_with("m.yaml: document 1: Workspace ")
                    && text.contains(&format!(": {field}: "))
                    && text.contains("is not a DNS-1123"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_workspace_reference_is_checked_as_names_too() {
        let parsed = parse(
            "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: app}\n\
             spec:\n  workspace: {name: dev, namespace: '../state'}\n  source: {raw: {kind: Custom}}\n",
        );
        assert!(parsed.manifests.is_empty());
        let text = parsed.problems[0].to_string();
        assert!(
            text.starts_with("m.yaml: Module default/app: spec.workspace: namespace: \"../state\" is not a DNS-1123 label"),
            "{text}"
        );
    }

    #[test]
    fn config_with_no_value_is_an_empty_config() {
        let parsed = parse(
            "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: app}\n\
             spec:\n  workspace: {name: dev}\n  source: {raw: {kind: Custom}}\n  config:\n",
        );
        assert_eq!(parsed.problems, vec![]);
        let Manifest::Module(module) = &parsed.manifests[0] else {
            panic!("a module")
        };
        assert!(module.spec.config.is_empty());
    }

    #[test]
    fn a_key_given_twice_is_an_error_not_a_silent_winner() {
        let parsed = parse(
            "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: app}\n\
             spec:\n  hibernated: true\n  hibernated: false\n",
        );
        assert!(parsed.manifests.is_empty());
        let text = parsed.problems[0].to_string();
        assert!(
            text.starts_with("m.yaml: document 1: invalid YAML: ")
                && text.contains("duplicate entry with key \"hibernated\""),
            "{text}"
        );
    }

    #[test]
    fn foreign_kinds_and_empty_documents() {
        let parsed = parse("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n");
        assert!(parsed.manifests.is_empty());
        assert_eq!(parsed.problems.len(), 1);
        assert!(
            parsed.problems[0]
                .to_string()
                .contains("is not a forklet document")
        );
    }

    #[test]
    fn a_definition_file_is_checked_but_runs_nothing() {
        let good = parse(
            "kind: Custom\nmetadata: {name: m, version: 1.0.0, supportedOperatorVersion: '*'}\nspec: {image: i}\n",
        );
        assert_eq!(good, ParsedFile::default());
        let bad = parse(
            "kind: Custom\nmetadata: {name: m, version: 1.0.0, supportedOperatorVersion: '*'}\nspec: {}\n",
        );
        assert_eq!(
            bad.problems[0].to_string(),
            "m.yaml: document 1: Custom m: spec: missing field `image`"
        );
    }

    #[test]
    fn invalid_yaml_names_the_document() {
        let parsed = parse("apiVersion: batch.forkspacer.com/v1\nkind: [unclosed\n");
        assert_eq!(parsed.problems.len(), 1);
        assert!(
            parsed.problems[0]
                .to_string()
                .starts_with("m.yaml: document 1: invalid YAML")
        );
    }

    #[test]
    fn workspace_connection_defaults_to_local() {
        let parsed = parse(
            "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\nspec: {}\n",
        );
        let Manifest::Workspace(ws) = &parsed.manifests[0] else {
            panic!()
        };
        assert_eq!(ws.spec.connection.kind, ConnectionType::Local);
    }
}
