//! `forklet secret`: registry credentials for `imagePullSecrets` and
//! kubeconfigs for a workspace's `connection.secretReference`, kept by
//! forkletd (0600, never shown again, never logged).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use forklet_state::bounded::{KUBECONFIG_MAX, read_bytes};
use forklet_state::names::{check_dns_subdomain, check_secret_key};

use forklet_state::api::{SecretCreate, SecretType, SecretView};

use crate::client::{Client, ClientError};
use crate::table::{Format, render, structured};

#[derive(clap::Subcommand)]
pub enum Action {
    /// Create a secret, as `kubectl create secret` does.
    Create {
        #[command(subcommand)]
        kind: Kind,
    },
    /// List secrets: names and types only.
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Delete a secret; one a workspace or module still names only with --force.
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::Subcommand)]
pub enum Kind {
    /// Credentials for a container registry.
    DockerRegistry {
        name: String,
        #[arg(long)]
        docker_server: String,
        #[arg(long)]
        docker_username: String,
        /// The password; prefer --docker-password-stdin, which keeps it out
        /// of the shell history and the process list.
        #[arg(
            long,
            conflicts_with = "docker_password_stdin",
            required_unless_present = "docker_password_stdin"
        )]
        docker_password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        docker_password_stdin: bool,
        /// Accepted for kubectl compatibility; not used.
        #[arg(long)]
        docker_email: Option<String>,
    },
    /// Keys with the contents of files, e.g. a kubeconfig for a workspace's
    /// `connection.secretReference`.
    Generic {
        name: String,
        /// `KEY=PATH`, or `PATH` for a key named after the file; repeatable.
        #[arg(long = "from-file", required = true, value_name = "[KEY=]PATH")]
        from_file: Vec<String>,
        /// Matched against `secretReference.namespace` when that is given.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
}

pub async fn run(client: &Client, action: Action) -> Result<String, ClientError> {
    match action {
        Action::Create {
            kind:
                Kind::DockerRegistry {
                    name,
                    docker_server,
                    docker_username,
                    docker_password,
                    ..
                },
        } => {
            let password = match docker_password {
                Some(password) => password,
                None => read_password()?,
            };
            let request = SecretCreate {
                name,
                kind: SecretType::DockerRegistry,
                server: docker_server,
                username: docker_username,
                password,
                ..SecretCreate::default()
            };
            let created: SecretView = client.post("/v1/secrets", &request).await?;
            Ok(format!("secret/{} created", created.name))
        }
        Action::Create {
            kind:
                Kind::Generic {
                    name,
                    from_file,
                    namespace,
                },
        } => {
            let mut data = BTreeMap::new();
            let mut total = 0;
            for spec in &from_file {
                let (key, bytes) = read_from_file(spec)?;
                total += bytes.len();
                if total > KUBECONFIG_MAX as usize {
                    return Err(ClientError::Api(format!(
                        "--from-file: more than {} MiB in all",
                        KUBECONFIG_MAX >> 20
                    )));
                }
                if data.insert(key.clone(), STANDARD.encode(bytes)).is_some() {
                    return Err(ClientError::Api(format!(
                        "--from-file: key {key} given twice"
                    )));
                }
            }
            let request = SecretCreate {
                name,
                kind: SecretType::Generic,
                namespace: Some(namespace),
                data,
                ..SecretCreate::default()
            };
            let created: SecretView = client.post("/v1/secrets", &request).await?;
            Ok(format!("secret/{} created", created.name))
        }
        Action::List { output } => {
            let secrets: Vec<SecretView> = client.get("/v1/secrets").await?;
            Ok(structured(output, &secrets).unwrap_or_else(|| {
                let rows: Vec<Vec<String>> = secrets
                    .iter()
                    .map(|s| vec![s.name.clone(), s.namespace.clone(), s.kind.to_string()])
                    .collect();
                render(&["NAME", "NAMESPACE", "TYPE"], &rows)
            }))
        }
        Action::Delete { name, force } => {
            check_dns_subdomain(&name)
                .map_err(|e| ClientError::Api(format!("secret name: {e}")))?;
            let query = if force { "?force=true" } else { "" };
            client.delete(&format!("/v1/secrets/{name}{query}")).await?;
            Ok(format!("secret/{name} deleted"))
        }
    }
}

/// `KEY=PATH` or `PATH` (the key is the file's name), read as the daemon
/// will take it: a regular file, no bigger than a kubeconfig may be.
fn read_from_file(spec: &str) -> Result<(String, Vec<u8>), ClientError> {
    let (key, path) = match spec.split_once('=') {
        Some((key, path)) => (key.to_owned(), Path::new(path)),
        None => {
            let path = Path::new(spec);
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                ClientError::Api(format!("--from-file={spec}: name a file, or give KEY=PATH"))
            })?;
            (name.to_owned(), path)
        }
    };
    check_secret_key(&key).map_err(|e| ClientError::Api(format!("--from-file={spec}: {e}")))?;
    let bytes = read_bytes(path, KUBECONFIG_MAX)
        .map_err(|e| ClientError::Api(format!("--from-file={spec}: {}: {e}", path.display())))?;
    Ok((key, bytes))
}

/// The whole of standard input, less one trailing newline (`echo` adds one).
fn read_password() -> Result<String, ClientError> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|err| {
            ClientError::Api(format!("reading the password from standard input: {err}"))
        })?;
    let password = password
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&password);
    if password.is_empty() {
        return Err(ClientError::Api("no password on standard input".into()));
    }
    Ok(password.to_owned())
}
