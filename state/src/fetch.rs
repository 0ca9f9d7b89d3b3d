//! Fetching `source.httpURL` definitions: http or https only, bounded in time
//! and size, and anything but 200 is an error.

use std::time::Duration;

use crate::source::{MAX_DEFINITION_BYTES, check_url};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Cheap to create and clone: the HTTP client, with the system's CA roots
/// parsed into memory, is only built when the first definition is fetched,
/// so a daemon without `httpURL` modules never pays for it.
#[derive(Clone, Default)]
pub struct Fetcher {
    http: std::sync::Arc<std::sync::OnceLock<reqwest::Client>>,
}

impl Fetcher {
    fn client(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(TOTAL_TIMEOUT)
                .build()
                .expect("a TLS client builds with the system's roots")
        })
    }
}

impl Fetcher {
    /// The definition's text, or why it could not be had.
    pub async fn fetch(&self, url: &str) -> Result<String, String> {
        check_url(url)?;
        let mut response = self
            .client()
            .get(url)
            .send()
            .await
            .map_err(|err| describe(&err))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("answered {status} (expected 200 OK)"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| describe(&err))? {
            if (body.len() + chunk.len()) as u64 > MAX_DEFINITION_BYTES {
                return Err(format!("larger than {MAX_DEFINITION_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| "not UTF-8 text".to_owned())
    }
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return format!("no answer within {TOTAL_TIMEOUT:?}");
    }
    error_chain(err)
}

/// An error with all its causes: reqwest's own message ("error sending
/// request") hides the one that says what went wrong.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
