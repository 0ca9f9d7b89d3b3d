//! A typed client for forkletd's control API over its Unix socket.

use std::path::{Path, PathBuf};

use forklet_state::ObjectKey;
use forklet_state::api::{ErrorCode, ProblemDetails};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug)]
pub enum ClientError {
    /// The daemon is not there: the one-line answer users need.
    Unreachable { socket: PathBuf, detail: String },
    /// The daemon took the request and closed the connection unanswered.
    Dropped { detail: String },
    /// The daemon refused: its problem details' code and words.
    Refused { code: ErrorCode, detail: String },
    /// A command line that cannot mean anything (exit status 2).
    Usage(String),
    /// Stopped by a signal (exit status 130, as shells report Ctrl-C).
    Interrupted(String),
    /// The daemon ended a stream a follower was reading: it is stopping.
    StreamEnded,
    /// Anything else: an answer that makes no sense, a file that cannot be read.
    Api(String),
}

impl ClientError {
    /// Whether the daemon said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ClientError::Refused {
                code: ErrorCode::NotFound,
                ..
            }
        )
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable { socket, detail } => {
                write!(
                    f,
                    "forkletd is not running at {} ({detail})",
                    socket.display()
                )
            }
            ClientError::Dropped { detail } => write!(
                f,
                "forkletd closed the connection without answering ({detail}); its log says why"
            ),
            ClientError::Refused { detail, .. } => f.write_str(detail),
            ClientError::Api(message)
            | ClientError::Usage(message)
            | ClientError::Interrupted(message) => f.write_str(message),
            ClientError::StreamEnded => {
                f.write_str("forkletd ended the event stream (it is stopping)")
            }
        }
    }
}

pub struct Client {
    http: reqwest::Client,
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        let http = reqwest::Client::builder()
            .unix_socket(socket)
            // A Unix socket never speaks TLS: skip loading the system's CA roots.
            .tls_built_in_root_certs(false)
            .build()
            .expect("a unix-socket client always builds");
        Self {
            http,
            socket: socket.to_owned(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let bytes = self.send(self.http.get(url(path))).await?;
        decode(&bytes)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = self.send(self.http.post(url(path)).json(body)).await?;
        decode(&bytes)
    }

    /// `POST` without a body, for requests that only start something.
    pub async fn trigger(&self, path: &str) -> Result<(), ClientError> {
        self.send(self.http.post(url(path))).await.map(drop)
    }

    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send(self.http.delete(url(path))).await.map(drop)
    }

    /// `GET path`, handing each chunk of the answer to `chunk` as it comes,
    /// until it returns `false` or the answer ends.
    pub async fn stream(
        &self,
        path: &str,
        mut chunk: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), ClientError> {
        let mut response = self.response(self.http.get(url(path))).await?;
        if !response.status().is_success() {
            let status = response.status();
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(error_of(status, &bytes));
        }
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    if !chunk(&bytes) {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(err) => {
                    return Err(ClientError::Dropped {
                        detail: root_cause(&err),
                    });
                }
            }
        }
    }

    async fn response(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        request.send().await.map_err(|err| {
            let detail = root_cause(&err);
            if err.is_connect() {
                ClientError::Unreachable {
                    socket: self.socket.clone(),
                    detail,
                }
            } else {
                ClientError::Dropped { detail }
            }
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let response = self.response(request).await?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| ClientError::Api(format!("reading the answer: {err}")))?;
        if !status.is_success() {
            return Err(error_of(status, &bytes));
        }
        Ok(bytes.to_vec())
    }
}

/// The daemon's error answer, in its words.
fn error_of(status: reqwest::StatusCode, bytes: &[u8]) -> ClientError {
    if let Ok(problem) = serde_json::from_slice::<ProblemDetails>(bytes) {
        return ClientError::Refused {
            code: problem.code,
            detail: problem.detail,
        };
    }
    // A forkletd from before problem details: `{"error": "..."}`.
    #[derive(serde::Deserialize)]
    struct Older {
        error: String,
    }
    match serde_json::from_slice::<Older>(bytes) {
        Ok(older) => ClientError::Refused {
            code: match status {
                reqwest::StatusCode::NOT_FOUND => ErrorCode::NotFound,
                _ => ErrorCode::Unknown,
            },
            detail: older.error,
        },
        Err(_) => ClientError::Api(format!("forkletd answered {status}")),
    }
}

/// `/v1/{kind}/{namespace}/{name}{rest}`, with the names checked as
/// Kubernetes names first: what cannot name an object is said here, in the
/// user's words, rather than as a confusing answer from the daemon.
pub fn object_path(
    kind: &str,
    namespace: &str,
    name: &str,
    rest: &str,
) -> Result<String, ClientError> {
    let key = ObjectKey::new(namespace, name).map_err(|err| {
        let field = err.field().trim_start_matches("metadata.");
        ClientError::Api(format!("{field}: {}", err.reason()))
    })?;
    Ok(format!(
        "/v1/{kind}/{}/{}{rest}",
        key.namespace(),
        key.name()
    ))
}

/// The host is ignored on a Unix socket; the path is what counts.
fn url(path: &str) -> String {
    format!("http://forkletd{path}")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ClientError::Api(format!("unexpected answer from forkletd: {err}")))
}

fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
