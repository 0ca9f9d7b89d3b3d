//! Where a Module's definition comes from: `source.raw` (embedded),
//! `source.httpURL` (fetched by the daemon, or by `forklet validate --fetch`),
//! and the forklet extension `source.file` (a file inside the manifests
//! directory). `configMap`, `existingHelmRelease` and `github` need a
//! Kubernetes cluster or the operator's own machinery.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::bounded::read_text;
use crate::manifest::{Document, ModuleSpec};

/// Largest definition accepted from a file or a URL.
pub const MAX_DEFINITION_BYTES: u64 = crate::bounded::MANIFEST_MAX;

/// What resolution may read: files, and URLs fetched by someone else.
pub trait Definitions {
    /// The text of a definition file (already confined to the manifests dir).
    fn read_file(&self, path: &Path) -> Result<String, String>;
    /// What was fetched from `url`: `None` when nothing was fetched yet.
    fn fetched(&self, url: &str) -> Option<Result<String, String>>;
}

/// Files from disk, and no fetched URLs: the offline default.
pub struct LocalDefinitions;

impl Definitions for LocalDefinitions {
    fn read_file(&self, path: &Path) -> Result<String, String> {
        read_definition_file(path)
    }

    fn fetched(&self, _url: &str) -> Option<Result<String, String>> {
        None
    }
}

/// Files from disk, and the URLs fetched beforehand (`forklet validate --fetch`).
pub struct FetchedDefinitions(pub HashMap<String, Result<String, String>>);

impl Definitions for FetchedDefinitions {
    fn read_file(&self, path: &Path) -> Result<String, String> {
        read_definition_file(path)
    }

    fn fetched(&self, url: &str) -> Option<Result<String, String>> {
        self.0.get(url).cloned()
    }
}

/// Reads a definition file, refusing anything larger than the limit.
pub fn read_definition_file(path: &Path) -> Result<String, String> {
    read_text(path, MAX_DEFINITION_BYTES).map_err(|e| format!("{}: {e}", path.display()))
}

/// Why no definition could be had.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceError {
    /// Wrong or unreadable: `field` and what is wrong there.
    Invalid { field: String, message: String },
    /// An `httpURL` that nobody has fetched yet.
    Unfetched { url: String },
}

/// The definition a Module names, as a JSON value, and the field path its
/// own problems are reported under.
pub fn definition_of(
    doc: &Document<ModuleSpec>,
    defs: &dyn Definitions,
) -> Result<(Value, String), SourceError> {
    let source = &doc.spec.source;
    let invalid = |field: &str, message: String| SourceError::Invalid {
        field: field.to_owned(),
        message,
    };
    let set = [
        source.raw.is_some(),
        source.http_url.is_some(),
        source.file.is_some(),
        source.config_map.is_some(),
        source.existing_helm_release.is_some(),
        source.github.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(invalid(
            "spec.source",
            "exactly one of raw, httpURL, file (forklet extension), configMap, existingHelmRelease, github must be set"
                .into(),
        ));
    }
    if let Some(raw) = &source.raw {
        return Ok((raw.clone(), "spec.source.raw".into()));
    }
    if let Some(url) = &source.http_url {
        let field = "spec.source.httpURL";
        check_url(url).map_err(|m| invalid(field, m))?;
        return match defs.fetched(url) {
            None => Err(SourceError::Unfetched { url: url.clone() }),
            Some(Err(message)) => Err(invalid(field, format!("fetching {url}: {message}"))),
            Some(Ok(text)) => parse_one(&text)
                .map(|v| (v, field.into()))
                .map_err(|m| invalid(field, m)),
        };
    }
    if let Some(file) = &source.file {
        let field = "spec.source.file";
        let path = confined(&doc.file, file).map_err(|m| invalid(field, m))?;
        let text = defs.read_file(&path).map_err(|m| invalid(field, m))?;
        return parse_one(&text)
            .map(|v| (v, field.into()))
            .map_err(|m| invalid(field, format!("{}: {m}", path.display())));
    }
    let field = if source.config_map.is_some() {
        "spec.source.configMap"
    } else if source.existing_helm_release.is_some() {
        "spec.source.existingHelmRelease"
    } else {
        "spec.source.github"
    };
    Err(invalid(
        field,
        "not available without Kubernetes (use raw, httpURL, or the forklet extension file)".into(),
    ))
}

/// `http://` or `https://` with a host; nothing else is fetched.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(format!("{url:?} is not an http:// or https:// URL")),
    }
}

/// `relative` from the manifest's directory, refusing to leave it.
fn confined(manifest: &Path, relative: &Path) -> Result<PathBuf, String> {
    if relative.is_absolute() {
        return Err(format!(
            "{} must be relative to the manifest",
            relative.display()
        ));
    }
    let root = manifest.parent().unwrap_or(Path::new("."));
    let path = root.join(relative);
    let canonical = path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    if !canonical.starts_with(&root) {
        return Err(format!(
            "{} is outside the manifests directory {}",
            relative.display(),
            root.display()
        ));
    }
    Ok(canonical)
}

/// A definition file holds exactly one YAML document.
fn parse_one(text: &str) -> Result<Value, String> {
    let mut documents = crate::yaml::documents(text).filter(|d| !matches!(d, Ok(Value::Null)));
    let first = documents
        .next()
        .ok_or("no definition in it")?
        .map_err(|e| format!("invalid YAML: {e}"))?;
    if documents.next().is_some() {
        return Err("holds more than one document (expected one kind: Custom definition)".into());
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, parse_file};

    fn module(dir: &Path, source: &str) -> Document<ModuleSpec> {
        let text = format!(
            "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {{name: m}}\nspec:\n  workspace: {{name: dev}}\n  source: {source}\n"
        );
        let parsed = parse_file(&dir.join("m.yaml"), &text);
        assert_eq!(parsed.problems, vec![]);
        match parsed.manifests.into_iter().next() {
            Some(Manifest::Module(doc)) => doc,
            other => panic!("{other:?}"),
        }
    }

    fn error(result: Result<(Value, String), SourceError>) -> String {
        match result {
            Err(SourceError::Invalid { field, message }) => format!("{field}: {message}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_definition_file_beside_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("defs")).unwrap();
        std::fs::write(
            dir.path().join("defs/d.yaml"),
            "kind: Custom\nspec: {image: i}\n",
        )
        .unwrap();
        let (value, field) = definition_of(
            &module(dir.path(), "{file: defs/d.yaml}"),
            &LocalDefinitions,
        )
        .unwrap();
        assert_eq!(value["spec"]["image"], "i");
        assert_eq!(field, "spec.source.file");
    }

    #[test]
    fn a_definition_file_may_not_leave_the_manifests_directory() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("manifests");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(outer.path().join("secret.yaml"), "kind: Custom\n").unwrap();
        let escaped = error(definition_of(
            &module(&dir, "{file: ../secret.yaml}"),
            &LocalDefinitions,
        ));
        assert!(
            escaped
                .starts_with("spec.source.file: ../secret.yaml is outside the manifests directory"),
            "{escaped}"
        );
        let absolute = error(definition_of(
            &module(&dir, "{file: /etc/passwd}"),
            &LocalDefinitions,
        ));
        assert_eq!(
            absolute,
            "spec.source.file: /etc/passwd must be relative to the manifest"
        );
    }

    #[test]
    fn urls_are_resolved_from_what_was_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let url = "https://example.com/d.yaml";
        let doc = module(dir.path(), &format!("{{httpURL: '{url}'}}"));
        assert_eq!(
            definition_of(&doc, &LocalDefinitions),
            Err(SourceError::Unfetched { url: url.into() })
        );
        let fetched = FetchedDefinitions(HashMap::from([(
            url.to_owned(),
            Ok("kind: Custom\n".to_owned()),
        )]));
        assert_eq!(definition_of(&doc, &fetched).unwrap().0["kind"], "Custom");
        let failed = FetchedDefinitions(HashMap::from([(
            url.to_owned(),
            Err("404 Not Found".to_owned()),
        )]));
        assert_eq!(
            error(definition_of(&doc, &failed)),
            format!("spec.source.httpURL: fetching {url}: 404 Not Found")
        );
        let ftp = module(dir.path(), "{httpURL: 'ftp://x/d.yaml'}");
        assert_eq!(
            error(definition_of(&ftp, &LocalDefinitions)),
            "spec.source.httpURL: \"ftp://x/d.yaml\" is not an http:// or https:// URL"
        );
    }

    #[test]
    fn kubernetes_only_sources_say_so() {
        let dir = tempfile::tempdir().unwrap();
        for (source, field) in [
            ("{configMap: {name: x}}", "spec.source.configMap"),
            (
                "{existingHelmRelease: {name: x}}",
                "spec.source.existingHelmRelease",
            ),
            ("{github: {}}", "spec.source.github"),
        ] {
            assert_eq!(
                error(definition_of(
                    &module(dir.path(), source),
                    &LocalDefinitions
                )),
                format!(
                    "{field}: not available without Kubernetes (use raw, httpURL, or the forklet extension file)"
                )
            );
        }
        let two = error(definition_of(
            &module(dir.path(), "{raw: {}, httpURL: 'http://x'}"),
            &LocalDefinitions,
        ));
        assert!(
            two.starts_with("spec.source: exactly one of raw, httpURL, file"),
            "{two}"
        );
    }
}
