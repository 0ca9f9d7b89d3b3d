//! `forklet secret`: registry credentials for `imagePullSecrets`, kept by
//! forkletd (0600, never shown again, never logged).

use std::io::Read;

use forklet_state::api::{SecretCreate, SecretView};

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
    /// Delete a secret.
    Delete { name: String },
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
                kind: "docker-registry".into(),
                server: docker_server,
                username: docker_username,
                password,
            };
            let created: SecretView = client.post("/v1/secrets", &request).await?;
            Ok(format!("secret/{} created", created.name))
        }
        Action::List { output } => {
            let secrets: Vec<SecretView> = client.get("/v1/secrets").await?;
            Ok(structured(output, &secrets).unwrap_or_else(|| {
                let rows: Vec<Vec<String>> = secrets
                    .iter()
                    .map(|s| vec![s.name.clone(), s.kind.clone()])
                    .collect();
                render(&["NAME", "TYPE"], &rows)
            }))
        }
        Action::Delete { name } => {
            client.delete(&format!("/v1/secrets/{name}")).await?;
            Ok(format!("secret/{name} deleted"))
        }
    }
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
