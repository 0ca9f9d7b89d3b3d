//! `GET /v1/modules/{namespace}/{name}/logs`: a module's runner output,
//! streamed from the engine as JSON lines (`{"stream":"stdout"|"stderr",
//! "data":...}`), so that the CLI can put each on its own descriptor.
//! Following goes on across a runner that is replaced or stopped and
//! started again, and ends when the module is gone.

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use forklet_state::ObjectKey;
use forklet_state::store::Store;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

/// How often a follower looks for the module's next runner when nothing
/// was written (a runner the engine restarted by itself).
const LOOK_AGAIN: Duration = Duration::from_secs(2);
/// The most lines `--tail` may ask for.
pub const MAX_TAIL: u64 = 100_000;

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Keep streaming, across runner replacement, until the module is gone.
    #[serde(default)]
    pub follow: bool,
    /// Only the last lines.
    pub tail: Option<u64>,
    /// Seconds back from now.
    pub since: Option<u64>,
    #[serde(default)]
    pub timestamps: bool,
}

/// Sends the module's output on `out` until it is all sent (or, following,
/// until the module is gone or the receiver hangs up).
pub async fn stream(
    docker: Docker,
    store: Arc<Store>,
    mut written: watch::Receiver<u64>,
    key: ObjectKey,
    query: LogsQuery,
    out: mpsc::Sender<Vec<u8>>,
) {
    // Seconds back from now, never before the epoch (Docker's `since` is
    // an i32 of seconds).
    let mut since = query.since.map(|back| {
        let back = i64::try_from(back).unwrap_or(i64::MAX);
        chrono::Utc::now().timestamp().saturating_sub(back).max(0)
    });
    let mut tail = query.tail.map(|t| t.min(MAX_TAIL));
    let mut shown: Option<String> = None;
    // The engine's timestamp of the last line sent: a runner followed again
    // (started after a sleep) goes on after it, nothing twice.
    let mut last: Option<chrono::DateTime<chrono::FixedOffset>> = None;
    loop {
        written.borrow_and_update();
        let record = match store.module(&key) {
            Ok(Some(record)) => record,
            _ => return,
        };
        let Some(id) = record.container_id else {
            if !query.follow {
                return;
            }
            if wait(&out, &mut written).await {
                return;
            }
            continue;
        };
        // A runner already shown and not running again: wait for news.
        if shown.as_deref() == Some(id.as_str()) && !running(&docker, &id).await {
            if !query.follow || wait(&out, &mut written).await {
                return;
            }
            continue;
        }
        let mut options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(query.follow)
            // Always: they tell a line already sent (stripped unless asked for).
            .timestamps(true);
        if let Some(since) = since {
            options = options.since(since.try_into().unwrap_or(i32::MAX));
        }
        if let Some(tail) = tail {
            options = options.tail(&tail.to_string());
        }
        let mut logs = docker.logs(&id, Some(options.build()));
        loop {
            tokio::select! {
                _ = out.closed() => return,
                frame = logs.next() => match frame {
                    Some(Ok(frame)) => {
                        let (stream, data) = match frame {
                            LogOutput::StdErr { message } => ("stderr", message),
                            LogOutput::StdOut { message } | LogOutput::Console { message } => ("stdout", message),
                            LogOutput::StdIn { .. } => continue,
                        };
                        let text = String::from_utf8_lossy(&data);
                        let (stamp, rest) = text.split_once(' ').unwrap_or((&text, ""));
                        let at = chrono::DateTime::parse_from_rfc3339(stamp).ok();
                        if let (Some(at), Some(last)) = (at, last)
                            && at <= last
                        {
                            continue;
                        }
                        last = at.or(last);
                        let shown_text = if query.timestamps { text.as_ref() } else { rest };
                        let line = serde_json::json!({ "stream": stream, "data": shown_text });
                        let mut line = line.to_string().into_bytes();
                        line.push(b'\n');
                        if out.send(line).await.is_err() {
                            return;
                        }
                    }
                    // The runner stopped or went away (or never was).
                    _ => break,
                },
            }
        }
        if !query.follow {
            return;
        }
        // What comes next is new: from the last line's second on, whole
        // (lines of that second already sent are skipped above).
        shown = Some(id);
        since = last.map(|at| at.timestamp()).or(since);
        tail = None;
    }
}

async fn running(docker: &Docker, id: &str) -> bool {
    docker
        .inspect_container(id, None)
        .await
        .ok()
        .and_then(|info| info.state?.running)
        .unwrap_or(false)
}

/// Waits for a store write (a runner started, the module gone) or a
/// moment; `true` when nobody listens any more.
async fn wait(out: &mpsc::Sender<Vec<u8>>, written: &mut watch::Receiver<u64>) -> bool {
    tokio::select! {
        _ = out.closed() => true,
        _ = written.changed() => false,
        _ = tokio::time::sleep(LOOK_AGAIN) => false,
    }
}
