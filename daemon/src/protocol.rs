//! The module's HTTP lifecycle API: `GET /health`, `POST /install`,
//! `/uninstall`, `/sleep`, `/resume`. Every call has a deadline and a
//! response-size limit, so a hung or hostile module cannot stall forklet.

use std::net::SocketAddr;
use std::time::Duration;

use forklet_state::fetch::error_chain;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::metrics::{METRICS, Outcome};

pub use forklet_state::operation::Operation;

/// The one success status the specification gives each endpoint.
pub fn expected_status(operation: Operation) -> reqwest::StatusCode {
    match operation {
        Operation::Install => reqwest::StatusCode::CREATED,
        Operation::Uninstall => reqwest::StatusCode::NO_CONTENT,
        Operation::Sleep | Operation::Resume => reqwest::StatusCode::OK,
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a new runner may take to answer `GET /health`.
    pub health_deadline: Duration,
    /// How long one lifecycle call may take, unless `per_call` says otherwise.
    pub call_timeout: Duration,
    /// Deadlines of their own for some operations (an install that deploys
    /// a lot may need longer than a sleep).
    pub per_call: Vec<(Operation, Duration)>,
    /// Largest response body read from a module.
    pub max_body: usize,
}

impl Limits {
    pub fn timeout(&self, operation: Operation) -> Duration {
        self.per_call
            .iter()
            .find(|(op, _)| *op == operation)
            .map_or(self.call_timeout, |(_, t)| *t)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            health_deadline: Duration::from_secs(60),
            call_timeout: Duration::from_secs(300),
            per_call: Vec::new(),
            max_body: 1 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("GET /health did not answer healthy within {deadline:?}; last: {last}")]
    NeverHealthy { deadline: Duration, last: String },
    #[error("{method} {path}: could not reach the module: {detail}")]
    Unreachable {
        method: &'static str,
        path: &'static str,
        detail: String,
    },
    #[error("{method} {path}: no answer within {timeout:?}")]
    Timeout {
        method: &'static str,
        path: &'static str,
        timeout: Duration,
    },
    #[error("POST {path} answered {status} (expected {expected}): {body}")]
    Status {
        path: &'static str,
        status: reqwest::StatusCode,
        expected: reqwest::StatusCode,
        body: String,
    },
    #[error("POST {path}: response body is not a JSON object: {snippet}")]
    NotAnObject { path: &'static str, snippet: String },
    #[error("{method} {path}: response body is larger than {limit} bytes")]
    TooLarge {
        method: &'static str,
        path: &'static str,
        limit: usize,
    },
}

impl CallError {
    /// Whether the runner itself may be gone (rather than the module saying no).
    pub fn runner_suspect(&self) -> bool {
        matches!(
            self,
            CallError::NeverHealthy { .. }
                | CallError::Unreachable { .. }
                | CallError::Timeout { .. }
        )
    }
}

#[derive(Clone)]
pub struct ModuleClient {
    http: reqwest::Client,
    limits: Limits,
}

/// Health polls of a runner that may still start quickly: at most this far
/// apart, so forklet sees it about as soon as a hand-written loop would.
const QUICK_PAUSE: Duration = Duration::from_millis(8);
/// How long a runner counts as possibly quick.
const QUICK_WHILE: Duration = Duration::from_secs(5);
/// Polls of a slow starter: milliseconds no longer matter, the engine's
/// port proxy's work per attempt does.
const SLOW_PAUSE: Duration = Duration::from_millis(100);

impl ModuleClient {
    pub fn new(limits: Limits) -> Self {
        let http = reqwest::Client::builder()
            // Runners are on loopback; a proxy from the environment must not intercept.
            .no_proxy()
            // A module's answer is its own: a redirect would send the config
            // and metadata wherever the module points (host loopback, cloud
            // metadata), and its status is then a wrong one.
            .redirect(reqwest::redirect::Policy::none())
            // Plain HTTP on loopback: loading the system's CA roots would only cost memory.
            .tls_built_in_root_certs(false)
            .connect_timeout(Duration::from_secs(2))
            // No connection kept between calls: each runner is a host of
            // its own, and a thousand idle connections would hold a
            // thousand file descriptors (the common soft limit is 1024) and
            // their buffers, to save a loopback connect per call.
            .pool_max_idle_per_host(0)
            .build()
            .expect("a plain HTTP client always builds");
        Self { http, limits }
    }

    /// Polls `GET /health` until it answers 200 (and not `"healthy": false`),
    /// starting at a millisecond so a fast module is seen at once, every
    /// few milliseconds while a module may still be quick (a second's start
    /// is seen within [`QUICK_PAUSE`]), then less often.
    pub async fn wait_healthy(&self, endpoint: SocketAddr) -> Result<(), CallError> {
        let started = Instant::now();
        let deadline = started + self.limits.health_deadline;
        let url = format!("http://{endpoint}/health");
        let mut pause = Duration::from_millis(1);
        loop {
            let last = match self.health_once(&url).await {
                Ok(()) => return Ok(()),
                Err(last) => last,
            };
            if Instant::now() + pause >= deadline {
                return Err(CallError::NeverHealthy {
                    deadline: self.limits.health_deadline,
                    last,
                });
            }
            tokio::time::sleep(pause).await;
            let cap = match started.elapsed() < QUICK_WHILE {
                true => QUICK_PAUSE,
                false => SLOW_PAUSE,
            };
            pause = (pause * 2).min(cap);
        }
    }

    /// `GET url` on a runner, as every call goes: no proxy, no redirect.
    pub(crate) async fn get(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, String> {
        self.http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| error_chain(&err))
    }

    async fn health_once(&self, url: &str) -> Result<(), String> {
        let response = self.get(url, Duration::from_secs(2)).await?;
        let status = response.status();
        let body = read_limited(response, self.limits.max_body)
            .await
            .map_err(|_| "unreadable body".to_owned())?;
        if status != reqwest::StatusCode::OK {
            return Err(format!("status {status}"));
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(report) if report.get("healthy") == Some(&Value::Bool(false)) => Err(format!(
                "module reports unhealthy: {}",
                report.get("message").unwrap_or(&Value::Null)
            )),
            _ => Ok(()),
        }
    }

    /// Calls a lifecycle endpoint with `body`. `Some(object)` is the module's
    /// new metadata; `None` (empty body) keeps what was stored.
    pub async fn call(
        &self,
        endpoint: SocketAddr,
        operation: Operation,
        body: &Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, CallError> {
        let path = operation.path();
        let timeout = self.limits.timeout(operation);
        let exchange = async {
            let response = self
                .http
                .post(format!("http://{endpoint}{path}"))
                .json(body)
                .send()
                .await
                .map_err(|err| CallError::Unreachable {
                    method: "POST",
                    path,
                    detail: error_chain(&err),
                })?;
            let status = response.status();
            let bytes =
                read_limited(response, self.limits.max_body)
                    .await
                    .map_err(|err| match err {
                        BodyError::TooLarge => CallError::TooLarge {
                            method: "POST",
                            path,
                            limit: self.limits.max_body,
                        },
                        BodyError::Transport(detail) => CallError::Unreachable {
                            method: "POST",
                            path,
                            detail,
                        },
                    })?;
            Ok::<_, CallError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout {
                method: "POST",
                path,
                timeout,
            })??;
        if status != expected_status(operation) {
            let text = String::from_utf8_lossy(&bytes);
            return Err(CallError::Status {
                path,
                status,
                expected: expected_status(operation),
                body: snippet(text.trim()),
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(metadata)) => Ok(Some(metadata)),
            _ => Err(CallError::NotAnObject {
                path,
                snippet: snippet(&String::from_utf8_lossy(&bytes)),
            }),
        }
    }
}

/// What a lifecycle call sends: the metadata the module returned last, with
/// the config over it (the config wins where both name a key).
pub fn call_body(metadata: &Map<String, Value>, config: &Map<String, Value>) -> Map<String, Value> {
    let mut body = metadata.clone();
    body.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
    body
}

/// What the reconciler needs of a module's HTTP API, so that its logic can
/// be tested without one. The real implementation is [`ModuleClient`].
pub trait ModuleApi: Send + Sync + 'static {
    /// Waits until the module at `endpoint` answers healthy.
    fn wait_healthy(
        &self,
        endpoint: SocketAddr,
    ) -> impl Future<Output = Result<(), CallError>> + Send;

    /// Calls a lifecycle endpoint; `Some(object)` is the new metadata.
    fn call(
        &self,
        endpoint: SocketAddr,
        operation: Operation,
        body: &Map<String, Value>,
    ) -> impl Future<Output = Result<Option<Map<String, Value>>, CallError>> + Send;
}

impl ModuleApi for ModuleClient {
    async fn wait_healthy(&self, endpoint: SocketAddr) -> Result<(), CallError> {
        let started = std::time::Instant::now();
        let healthy = ModuleClient::wait_healthy(self, endpoint).await;
        METRICS.call("health", Outcome::of(&healthy), started.elapsed());
        healthy
    }

    async fn call(
        &self,
        endpoint: SocketAddr,
        operation: Operation,
        body: &Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, CallError> {
        let started = std::time::Instant::now();
        let answer = ModuleClient::call(self, endpoint, operation, body).await;
        METRICS.call(operation.as_str(), Outcome::of(&answer), started.elapsed());
        answer
    }
}

pub(crate) enum BodyError {
    TooLarge,
    Transport(String),
}

/// A response's body, refused past `limit` bytes.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| BodyError::Transport(error_chain(&err)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A module's error text, cut to what fits in a status line.
fn snippet(text: &str) -> String {
    const MAX: usize = 512;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_has_its_deadline_or_the_common_one() {
        let limits = Limits {
            call_timeout: Duration::from_secs(300),
            per_call: vec![(Operation::Install, Duration::from_secs(900))],
            ..Limits::default()
        };
        assert_eq!(limits.timeout(Operation::Install), Duration::from_secs(900));
        assert_eq!(limits.timeout(Operation::Sleep), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn a_module_that_redirects_a_call_is_refused_and_nothing_follows_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Where a hostile module would send the config: it must hear nothing.
        let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = elsewhere.local_addr().unwrap();
        let module = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = module.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = module.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target}/steal\r\nContent-Length: 0\r\n\r\n"
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
        });
        let client = ModuleClient::new(Limits::default());
        let config = serde_json::json!({"password": "s3cret"});
        let answer = client
            .call(endpoint, Operation::Install, config.as_object().unwrap())
            .await;
        assert!(
            matches!(&answer, Err(CallError::Status { status, .. }) if status.as_u16() == 307),
            "{answer:?}"
        );
        let followed = tokio::time::timeout(Duration::from_millis(200), elsewhere.accept()).await;
        assert!(followed.is_err(), "the redirect was followed");
    }

    #[test]
    fn long_module_errors_are_cut_on_a_character_boundary() {
        let text = "é".repeat(400);
        let cut = snippet(&text);
        assert!(cut.ends_with('…') && cut.len() <= 512 + '…'.len_utf8());
        assert_eq!(snippet("short"), "short");
    }
}
