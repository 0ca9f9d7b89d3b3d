//! The kubeconfig a `workspace` module receives: one context, its cluster
//! and its user, with every file they name embedded. A module sees only the
//! cluster its workspace names, and nothing points at files that do not
//! exist inside its container.

use std::path::Path;

use base64::Engine;
use forklet_state::ObjectKey;
use serde_yaml::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
#[error("workspace {workspace}: kubeconfig {origin}: {problem}")]
pub struct KubeconfigError {
    pub workspace: ObjectKey,
    /// The file, or the secret and key.
    pub origin: String,
    pub problem: String,
}

/// Where a kubeconfig's text came from.
pub enum Origin<'a> {
    /// A file: the files it names are read relative to its directory.
    File(&'a Path),
    /// A secret (`secret NAME, key KEY`): it cannot name files.
    Secret(&'a str),
}

/// `text` cut down to `context` (default: its current one).
pub fn minify(
    workspace: &ObjectKey,
    origin: Origin<'_>,
    text: &str,
    context: Option<&str>,
) -> Result<Value, KubeconfigError> {
    let (shown, dir) = match origin {
        Origin::File(path) => (
            path.display().to_string(),
            Some(path.parent().unwrap_or(Path::new("."))),
        ),
        Origin::Secret(name) => (name.to_owned(), None),
    };
    let fail = |problem: String| KubeconfigError {
        workspace: workspace.clone(),
        origin: shown.clone(),
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
    Ok(Value::Mapping(out))
}

/// The server of a minified kubeconfig's one cluster.
pub fn server_of(config: &Value) -> Option<&str> {
    config["clusters"][0]["cluster"]["server"].as_str()
}

/// Points a minified kubeconfig's cluster at `server`, while the
/// certificate is still checked against `verify_as` (the host the
/// kubeconfig named, which its users reached it by), unless the kubeconfig
/// already says which name to check. Verification is never switched off.
pub fn point_at(config: &mut Value, server: &str, verify_as: &str) {
    let cluster = config
        .get_mut("clusters")
        .and_then(Value::as_sequence_mut)
        .and_then(|clusters| clusters.first_mut())
        .and_then(|entry| entry.get_mut("cluster"))
        .and_then(Value::as_mapping_mut);
    let Some(cluster) = cluster else {
        return;
    };
    cluster.insert("server".into(), server.into());
    if !cluster.contains_key("tls-server-name") {
        cluster.insert("tls-server-name".into(), verify_as.into());
    }
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
    dir: Option<&Path>,
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
        let Some(dir) = dir else {
            return Err(format!(
                "{section} {entry_name:?}: {file_key} names a file, which a kubeconfig kept in a \
                 secret cannot do (make the secret from `kubectl config view --flatten --minify`)"
            ));
        };
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
    use std::path::PathBuf;

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
        let out: Value = minify(&ws(), Origin::File(&path), TWO_CLUSTERS, None).unwrap();
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
        let out: Value = minify(&ws(), Origin::File(&path), TWO_CLUSTERS, Some("b")).unwrap();
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
        let err = |context, text: &str| {
            minify(&ws(), Origin::File(&path), text, context)
                .unwrap_err()
                .to_string()
        };
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
        let in_secret = minify(
            &ws(),
            Origin::Secret("secret kc, key kubeconfig"),
            TWO_CLUSTERS,
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            in_secret,
            "workspace default/dev: kubeconfig secret kc, key kubeconfig: cluster \"a\": certificate-authority names a file, which a kubeconfig kept in a secret cannot do (make the secret from `kubectl config view --flatten --minify`)"
        );
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        assert!(err(None, TWO_CLUSTERS).starts_with(&format!(
            "{at} cluster \"a\": certificate-authority {}",
            dir.path().join("ca.crt").display()
        )));
    }
}
