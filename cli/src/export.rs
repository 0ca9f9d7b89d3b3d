//! `forklet export [PATH...]`: the manifests in the form the Forkspacer
//! operator reads unchanged, every forklet extension carried over to an
//! operator field or refused by name.
//!
//! - `source.file` becomes `source.raw`, the definition inlined;
//! - `connection.kubeconfig` (+ `context`) becomes a `Secret` with the
//!   flattened kubeconfig and `connection.secretReference`;
//! - `autoHibernation.timezone` becomes a `CRON_TZ=ZONE ` prefix, which the
//!   operator's parser (robfig/cron v3) reads; without one, forklet reads
//!   schedules in this machine's zone, so that zone is written out;
//! - registry secrets named in `imagePullSecrets` become
//!   `kubernetes.io/dockerconfigjson` Secrets in `forkspacer-system` when
//!   asked for (`--include-secrets`, read from forklet's state), and are
//!   listed as what to create otherwise, never silently dropped.

use std::collections::BTreeMap;

use forklet_state::desired::{DesiredState, kubeconfig_source};
use forklet_state::manifest::{Kind, Manifest, ParsedFile};
use forklet_state::source::{LocalDefinitions, SourceError, definition_of};
use forklet_state::{ObjectKey, Problem};
use forkletd::kubeconfig::{Origin, minify};
use serde_json::{Value, json};

use std::path::PathBuf;
use std::process::ExitCode;

use forklet_state::paths;

use crate::validate::Input;

#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Put every object (and its references) in this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Also print the secrets: the registry secrets the modules pull with
    /// (kubernetes.io/dockerconfigjson, passwords included, read from
    /// forklet's state) and the workspaces' kubeconfigs; otherwise what to
    /// create is said on stderr.
    #[arg(long)]
    include_secrets: bool,
    /// forkletd's state directory, for --include-secrets.
    #[arg(long, env = "FORKLET_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

/// `forklet export`: YAML on stdout, notes and problems on stderr.
pub fn run(args: Args) -> ExitCode {
    let usage = |message: String| {
        eprintln!("forklet: {message}");
        ExitCode::from(crate::USAGE)
    };
    let files = match crate::validate::expand(&args.paths) {
        Ok(files) => files,
        Err(err) => return usage(err),
    };
    if let Some(ns) = &args.namespace
        && let Err(err) = forklet_state::names::check_dns_label(ns)
    {
        return usage(format!("--namespace: {err}"));
    }
    let store = match args.include_secrets {
        false => None,
        true => {
            let db = args
                .state_dir
                .unwrap_or_else(paths::default_state_dir)
                .join("forklet.db");
            // Read, never made: no state, no secrets.
            if !db.exists() {
                return usage(format!(
                    "--include-secrets: no state database at {}",
                    db.display()
                ));
            }
            match forklet_state::store::Store::open_read_only(&db) {
                Ok(store) => Some(store),
                Err(err) => {
                    eprintln!("forklet: --include-secrets: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    match export(&files, args.namespace.as_deref(), store.as_ref()) {
        Ok(exported) => {
            crate::print_out(exported.yaml.trim_end());
            for note in &exported.notes {
                eprintln!("forklet: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The namespace of the operator's registry secrets.
const OPERATOR_NAMESPACE: &str = "forkspacer-system";

pub struct Exported {
    /// YAML documents, `---` between them.
    pub yaml: String,
    /// What to do besides applying them (secrets to create, what was not
    /// known offline), a line each.
    pub notes: Vec<String>,
}

/// Where registry secrets come from, when they are to be exported.
pub type Secrets<'a> = Option<&'a forklet_state::store::Store>;

/// Every problem in the input, or what the operator reads.
pub fn export(
    files: &[Input],
    namespace: Option<&str>,
    secrets: Secrets<'_>,
) -> Result<Exported, Vec<Problem>> {
    let parsed: Vec<ParsedFile> = files.iter().map(crate::validate::read).collect();
    let state = DesiredState::build(&parsed, &LocalDefinitions);
    if !state.problems.is_empty() {
        return Err(state.problems);
    }
    let zone = forklet_state::schedule::local_zone();
    let raw = raw_documents(files);
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    // With --namespace, two objects may land on one name: refused, never
    // one silently replacing the other.
    let mut landed: BTreeMap<(Kind, String), &Manifest> = BTreeMap::new();
    // Each registry secret, with the first module that pulls with it.
    let mut pull_secrets: BTreeMap<String, (std::path::PathBuf, ObjectKey)> = BTreeMap::new();
    for manifest in parsed.iter().flat_map(|p| &p.manifests) {
        let key = manifest.key();
        let target = namespace.unwrap_or(key.namespace());
        let Some(document) = raw.get(&(manifest.kind(), key.clone())) else {
            let message = "changed while it was read: export again".to_owned();
            problems.push(problem(manifest, "", message));
            continue;
        };
        if let Some(first) = landed.insert(
            (manifest.kind(), format!("{target}/{}", key.name())),
            manifest,
        ) {
            let message = format!(
                "lands on {target}/{} as {} {} does: export without --namespace, or rename one",
                key.name(),
                first.kind(),
                first.key()
            );
            problems.push(problem(manifest, "metadata.namespace", message));
            continue;
        }
        let mut meta = document["metadata"].clone();
        meta["namespace"] = json!(target);
        let mut spec = document["spec"].clone();
        match manifest {
            Manifest::Module(doc) => {
                let definition = match definition_of(doc, &LocalDefinitions) {
                    Ok((found, _)) => Some(found),
                    // The operator fetches it itself; what it pulls with is
                    // not known here.
                    Err(SourceError::Unfetched { url }) => {
                        notes.push(format!(
                            "module {key}: its definition comes from {url}: check the imagePullSecrets it names exist in {OPERATOR_NAMESPACE}"
                        ));
                        None
                    }
                    Err(SourceError::Invalid { field, message }) => {
                        problems.push(problem(manifest, &field, message));
                        continue;
                    }
                };
                let definition = definition.unwrap_or(Value::Null);
                if let Some(names) = definition["spec"]["imagePullSecrets"].as_array() {
                    for name in names.iter().filter_map(Value::as_str) {
                        pull_secrets
                            .entry(name.to_owned())
                            .or_insert_with(|| (manifest.file().to_owned(), key.clone()));
                    }
                }
                let source = match &doc.spec.source.http_url {
                    Some(url) => json!({"httpURL": url}),
                    None => json!({"raw": definition}),
                };
                let workspace = doc.spec.workspace.key();
                spec["workspace"] = json!({
                    "name": workspace.name(),
                    "namespace": namespace.unwrap_or(workspace.namespace()),
                });
                spec["source"] = source;
                documents.push(object("Module", meta, spec));
            }
            Manifest::Workspace(doc) => {
                let desired = &state.workspaces[key];
                let connection = &doc.spec.connection;
                if connection.context.is_some() && connection.kubeconfig.is_none() {
                    let message = "has no operator form without connection.kubeconfig: \
                                   put the kubeconfig in a secret (secretReference)";
                    problems.push(problem(manifest, "spec.connection.context", message.into()));
                    continue;
                }
                if connection.kubeconfig.is_some() {
                    let source = kubeconfig_source(desired);
                    let path = source.path.expect("a kubeconfig file");
                    let text = match forklet_state::bounded::read_text(
                        &path,
                        forklet_state::bounded::KUBECONFIG_MAX,
                    ) {
                        Ok(text) => text,
                        Err(err) => {
                            let message = format!("{}: {err}", path.display());
                            problems.push(problem(manifest, "spec.connection.kubeconfig", message));
                            continue;
                        }
                    };
                    let flat =
                        match minify(key, Origin::File(&path), &text, source.context.as_deref()) {
                            Ok(flat) => flat,
                            Err(err) => {
                                problems.push(problem(
                                    manifest,
                                    "spec.connection.kubeconfig",
                                    err.to_string(),
                                ));
                                continue;
                            }
                        };
                    let secret = format!("{}-kubeconfig", key.name());
                    if forklet_state::names::check_dns_subdomain(&secret).is_err() {
                        let message = format!(
                            "the Secret it needs, {secret}, is longer than a Kubernetes name may be: shorten the workspace's name"
                        );
                        problems.push(problem(manifest, "metadata.name", message));
                        continue;
                    }
                    let server = forkletd::kubeconfig::server_of(&flat).unwrap_or_default();
                    if server.contains("://127.")
                        || server.contains("://localhost")
                        || server.contains("://[::1]")
                    {
                        notes.push(format!(
                            "workspace {key}: its cluster is at {server}, this machine's loopback: the operator needs an address it can reach"
                        ));
                    }
                    let kubeconfig = serde_yaml::to_string(&flat).expect("a kubeconfig serializes");
                    // Credentials: printed only when asked for, as registry
                    // passwords are.
                    match secrets {
                        Some(_) => documents.push(json!({
                            "apiVersion": "v1",
                            "kind": "Secret",
                            "metadata": {"name": secret, "namespace": target},
                            "type": "Opaque",
                            "stringData": {"kubeconfig": kubeconfig},
                        })),
                        None => notes.push(format!(
                            "workspace {key}: create Secret {target}/{secret} with key kubeconfig holding {} cut to its context (--include-secrets prints it)",
                            path.display()
                        )),
                    }
                    spec["connection"] = json!({
                        "type": "kubeconfig",
                        "secretReference": {"name": secret, "namespace": target, "key": "kubeconfig"},
                    });
                } else if let Some(reference) = &connection.secret_reference {
                    // A forklet secret: the operator reads a Kubernetes one
                    // of the same name, where the reference now points.
                    let ref_namespace = namespace
                        .or(reference.namespace.as_deref())
                        .unwrap_or(forklet_state::manifest::DEFAULT_NAMESPACE);
                    spec["connection"]["secretReference"]["namespace"] = json!(ref_namespace);
                    notes.push(format!(
                        "workspace {key}: create Secret {ref_namespace}/{} with key {} (forklet's generic secret of that name)",
                        reference.name, reference.key
                    ));
                } else if spec.get("connection").is_none() {
                    // forklet's default is local, the operator's in-cluster.
                    spec["connection"] = json!({"type": "local"});
                }
                if let Some(auto) = spec
                    .get_mut("autoHibernation")
                    .and_then(Value::as_object_mut)
                {
                    let zone = auto
                        .remove("timezone")
                        .and_then(|z| z.as_str().map(str::to_owned))
                        .unwrap_or_else(|| zone.name().to_owned());
                    for field in ["schedule", "wakeSchedule"] {
                        if let Some(Value::String(text)) = auto.get_mut(field) {
                            *text = with_zone(text, &zone);
                        }
                    }
                }
                documents.push(object("Workspace", meta, spec));
            }
        }
    }
    for (name, (file, module)) in pull_secrets {
        let named = |message: String| {
            let field = "spec.source: imagePullSecrets";
            Problem::document(&file, Kind::Module, &module, field, message)
        };
        match secrets.map(|store| store.secret(&name)) {
            None => notes.push(format!(
                "module {module}: create registry Secret {OPERATOR_NAMESPACE}/{name} \
                 (kubernetes.io/dockerconfigjson; --include-secrets prints forklet's)"
            )),
            Some(Ok(Some(secret))) => documents.push(registry_secret(&secret)),
            Some(Ok(None)) => problems.push(named(format!(
                "registry secret {name} is named in imagePullSecrets but forklet has none \
                 (forklet secret create docker-registry {name} ...)"
            ))),
            Some(Err(err)) => problems.push(named(format!("registry secret {name}: {err}"))),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Each document as JSON, which is YAML too: every string quoted, so a
    // YAML 1.1 reader (kubectl's) never takes `yes` or `1_000` for a
    // boolean or a number.
    let yaml = documents
        .iter()
        .map(|d| serde_json::to_string_pretty(d).expect("documents serialize") + "\n")
        .collect::<Vec<_>>()
        .join("---\n");
    Ok(Exported { yaml, notes })
}

/// `text` in `zone`, in the one form robfig/cron reads: `CRON_TZ=ZONE
/// PATTERN`, single spaces. A prefix already there wins, as forklet reads it.
fn with_zone(text: &str, zone: &str) -> String {
    let text = text.trim();
    let (zone, pattern) = match text
        .strip_prefix("CRON_TZ=")
        .or_else(|| text.strip_prefix("TZ="))
    {
        Some(rest) => rest.split_once(char::is_whitespace).unwrap_or((rest, "")),
        None => (zone, text),
    };
    let pattern = pattern.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("CRON_TZ={zone} {pattern}")
}

/// A registry secret as Kubernetes keeps one (`kubectl create secret
/// docker-registry`), where the operator looks for it.
fn registry_secret(secret: &forklet_state::store::RegistrySecret) -> Value {
    use base64::Engine;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let auth = b64(&format!("{}:{}", secret.username, secret.password));
    let config = json!({"auths": {secret.server.clone(): {
        "username": secret.username,
        "password": secret.password,
        "auth": auth,
    }}});
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret.name, "namespace": OPERATOR_NAMESPACE},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(&config.to_string())},
    })
}

/// Each document as written, by kind and key: what is exported keeps
/// every field forklet reads as the operator does.
fn raw_documents(files: &[Input]) -> std::collections::HashMap<(Kind, ObjectKey), Value> {
    let mut found = std::collections::HashMap::new();
    for input in files {
        let Ok(text) = forklet_state::manifest::read_manifest(&input.file) else {
            continue;
        };
        for document in forklet_state::yaml::documents(&text).flatten() {
            let kind = match document["kind"].as_str() {
                Some("Module") => Kind::Module,
                Some("Workspace") => Kind::Workspace,
                _ => continue,
            };
            let name = document["metadata"]["name"].as_str().unwrap_or_default();
            let namespace = document["metadata"]["namespace"]
                .as_str()
                .unwrap_or(forklet_state::manifest::DEFAULT_NAMESPACE);
            if let Ok(key) = ObjectKey::new(namespace, name) {
                found.insert((kind, key), document);
            }
        }
    }
    found
}

fn object(kind: &str, metadata: Value, spec: Value) -> Value {
    json!({
        "apiVersion": forklet_state::manifest::API_VERSION,
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    })
}

fn problem(manifest: &Manifest, field: &str, message: String) -> Problem {
    Problem::document(
        manifest.file(),
        manifest.kind(),
        manifest.key(),
        field,
        message,
    )
}

/// The forklet extensions a manifest uses, as problems: what
/// `forklet validate --operator` refuses.
pub fn extensions(parsed: &[ParsedFile]) -> Vec<Problem> {
    let mut found = Vec::new();
    let hint = "a forklet extension the Forkspacer operator does not read (`forklet export` carries it over)";
    for manifest in parsed.iter().flat_map(|p| &p.manifests) {
        let fields: Vec<&str> = match manifest {
            Manifest::Module(doc) => doc
                .spec
                .source
                .file
                .as_ref()
                .map(|_| "spec.source.file")
                .into_iter()
                .collect(),
            Manifest::Workspace(doc) => {
                let connection = &doc.spec.connection;
                let mut fields = Vec::new();
                if connection.kubeconfig.is_some() {
                    fields.push("spec.connection.kubeconfig");
                }
                if connection.context.is_some() {
                    fields.push("spec.connection.context");
                }
                if doc
                    .spec
                    .auto_hibernation
                    .as_ref()
                    .is_some_and(|a| a.timezone.is_some())
                {
                    fields.push("spec.autoHibernation.timezone");
                }
                fields
            }
        };
        found.extend(
            fields
                .into_iter()
                .map(|field| problem(manifest, field, hint.into())),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_gets_one_zone_in_the_form_robfig_reads() {
        assert_eq!(
            with_zone("0 22 * * *", "Europe/Berlin"),
            "CRON_TZ=Europe/Berlin 0 22 * * *"
        );
        assert_eq!(
            with_zone("  CRON_TZ=Asia/Tokyo\t0  22 * * *", "Europe/Berlin"),
            "CRON_TZ=Asia/Tokyo 0 22 * * *"
        );
        assert_eq!(
            with_zone("TZ=UTC @daily", "Europe/Berlin"),
            "CRON_TZ=UTC @daily"
        );
    }
}
