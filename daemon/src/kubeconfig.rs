//! The kubeconfig a `workspace` module receives: one context, its cluster
//! and its user, with every file they name embedded. A module sees only the
//! cluster its workspace names, and nothing points at files that do not
//! exist inside its container.

use std::path::{Path, PathBuf};

use base64::Engine;
use forklet_state::ObjectKey;
use serde_yaml::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
#[error("workspace {workspace}: kubeconfig {path}: {problem}")]
pub struct KubeconfigError {
    pub workspace: ObjectKey,
    pub path: PathBuf,
    pub problem: String,
}

/// `text` (read from `path`) cut down to `context` (default: its current one).
pub fn minify(
    workspace: &ObjectKey,
    path: &Path,
    text: &str,
    context: Option<&str>,
) -> Result<String, KubeconfigError> {
    let fail = |problem: String| KubeconfigError {
        workspace: workspace.clone(),
        path: path.to_owned(),
        problem,
    };
    let config: Value =
        serde_yaml::from_str(text).map_err(|e| fail(format!("not valid YAML: {e}")))?;
    let current = config.get("current-context").and_then(Value::as_str);
    let name = context
        .or(current)
        .ok_or_else(|| fail("no context chosen and no current-context".into()))?;
    let context_entry =
        named(&config, "contexts", name).ok_or_else(|| fail(format!("no context {name:?}")))?;
    let cluster_name = context_entry
        .get("context")
        .and_then(|c| c.get("cluster"))
        .and_then(Value::as_str)
        .ok_or_else(|| fail(format!("context {name:?} names no cluster")))?;
    let mut cluster = named(&config, "clusters", cluster_name)
        .ok_or_else(|| {
            fail(format!(
                "context {name:?} names cluster {cluster_name:?}, which is not there"
            ))
        })?
        .clone();
    let dir = path.parent().unwrap_or(Path::new("."));
    embed(
        &mut cluster,
        "cluster",
        &[("certificate-authority", "certificate-authority-data")],
        dir,
        true,
    )
    .map_err(&fail)?;
    let mut users = Vec::new();
    if let Some(user_name) = context_entry
        .get("context")
        .and_then(|c| c.get("user"))
        .and_then(Value::as_str)
    {
        let mut user = named(&config, "users", user_name)
            .ok_or_else(|| {
                fail(format!(
                    "context {name:?} names user {user_name:?}, which is not there"
                ))
            })?
            .clone();
        let files = [
            ("client-certificate", "client-certificate-data"),
            ("client-key", "client-key-data"),
        ];
        embed(&mut user, "user", &files, dir, true).map_err(&fail)?;
        embed(&mut user, "user", &[("tokenFile", "token")], dir, false).map_err(&fail)?;
        users.push(user);
    }
    let mut out = Mapping::new();
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Config".into());
    out.insert("clusters".into(), Value::Sequence(vec![cluster]));
    out.insert(
        "contexts".into(),
        Value::Sequence(vec![context_entry.clone()]),
    );
    out.insert("users".into(), Value::Sequence(users));
    out.insert("current-context".into(), name.into());
    serde_yaml::to_string(&Value::Mapping(out)).map_err(|e| fail(e.to_string()))
}

/// The entry of list `list` (`clusters`, `contexts`, `users`) called `name`.
fn named<'a>(config: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    config
        .get(list)?
        .as_sequence()?
        .iter()
        .find(|entry| entry.get("name").and_then(Value::as_str) == Some(name))
}

/// Replaces each `file_key` under `entry[section]` by `data_key` holding the
/// file's content: base64 for certificates, as is for a token.
fn embed(
    entry: &mut Value,
    section: &str,
    keys: &[(&str, &str)],
    dir: &Path,
    base64: bool,
) -> Result<(), String> {
    let entry_name = entry
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let Some(body) = entry.get_mut(section).and_then(Value::as_mapping_mut) else {
        return Ok(());
    };
    for (file_key, data_key) in keys {
        let Some(file) = body.remove(*file_key) else {
            continue;
        };
        let file = file
            .as_str()
            .ok_or_else(|| format!("{section} {entry_name:?}: {file_key} is not a path"))?;
        let full = dir.join(file);
        // Certificates and tokens: regular files, never more than a kubeconfig.
        let bytes =
            forklet_state::bounded::read_bytes(&full, forklet_state::bounded::KUBECONFIG_MAX)
                .map_err(|e| {
                    format!(
                        "{section} {entry_name:?}: {file_key} {}: {e}",
                        full.display()
                    )
                })?;
        let data = if base64 {
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        } else {
            String::from_utf8_lossy(&bytes).trim().to_owned()
        };
        body.insert((*data_key).into(), data.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_CLUSTERS: &str = "apiVersion: v1
kind: Config
current-context: a
clusters:
- name: a
  cluster: {server: 'https://a:6443', certificate-authority: ca.crt}
- name: b
  cluster: {server: 'https://b:6443', certificate-authority-data: QkI=}
contexts:
- name: a
  context: {cluster: a, user: ua}
- name: b
  context: {cluster: b, user: ub}
users:
- name: ua
  user: {client-certificate: a.crt, client-key: a.key}
- name: ub
  user: {tokenFile: b.token}
";

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in [
            ("ca.crt", "CA"),
            ("a.crt", "CERT"),
            ("a.key", "KEY"),
            ("b.token", "tok\n"),
        ] {
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        let path = dir.path().join("config");
        (dir, path)
    }

    fn ws() -> ObjectKey {
        ObjectKey::new("default", "dev").unwrap()
    }

    #[test]
    fn the_current_context_is_kept_alone_with_its_files_embedded() {
        let (_dir, path) = setup();
        let out: Value =
            serde_yaml::from_str(&minify(&ws(), &path, TWO_CLUSTERS, None).unwrap()).unwrap();
        assert_eq!(out["current-context"].as_str(), Some("a"));
        assert_eq!(out["clusters"].as_sequence().unwrap().len(), 1);
        let cluster = &out["clusters"][0]["cluster"];
        assert_eq!(cluster["server"].as_str(), Some("https://a:6443"));
        assert_eq!(cluster["certificate-authority-data"].as_str(), Some("Q0E=")); // "CA"
        assert!(cluster.get("certificate-authority").is_none());
        let user = &out["users"][0]["user"];
        assert_eq!(user["client-certificate-data"].as_str(), Some("Q0VSVA==")); // "CERT"
        assert_eq!(user["client-key-data"].as_str(), Some("S0VZ")); // "KEY"
        assert_eq!(out["contexts"].as_sequence().unwrap().len(), 1);
    }

    #[test]
    fn a_chosen_context_wins_and_a_token_file_becomes_a_token() {
        let (_dir, path) = setup();
        let out: Value =
            serde_yaml::from_str(&minify(&ws(), &path, TWO_CLUSTERS, Some("b")).unwrap()).unwrap();
        assert_eq!(out["current-context"].as_str(), Some("b"));
        assert_eq!(out["clusters"][0]["name"].as_str(), Some("b"));
        assert_eq!(out["users"][0]["user"]["token"].as_str(), Some("tok"));
        assert!(
            !serde_yaml::to_string(&out)
                .unwrap()
                .contains("https://a:6443"),
            "the other cluster is gone"
        );
    }

    #[test]
    fn what_cannot_be_had_is_named() {
        let (dir, path) = setup();
        let err =
            |context, text: &str| minify(&ws(), &path, text, context).unwrap_err().to_string();
        let at = format!("workspace default/dev: kubeconfig {}:", path.display());
        assert_eq!(
            err(Some("c"), TWO_CLUSTERS),
            format!("{at} no context \"c\"")
        );
        assert_eq!(
            err(None, "contexts: []"),
            format!("{at} no context chosen and no current-context")
        );
        assert_eq!(
            err(
                None,
                &TWO_CLUSTERS.replace("- name: a\n  cluster", "- name: x\n  cluster")
            ),
            format!("{at} context \"a\" names cluster \"a\", which is not there")
        );
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        assert!(err(None, TWO_CLUSTERS).starts_with(&format!(
            "{at} cluster \"a\": certificate-authority {}",
            dir.path().join("ca.crt").display()
        )));
    }
}
