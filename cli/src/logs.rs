//! `forklet logs NAME`: the module runner's stdout and stderr, each to its
//! own descriptor, as `docker logs` does.

use std::io::Write;

use crate::client::{Client, ClientError, object_path};
use crate::hibernate::parse_duration;

#[derive(clap::Args)]
pub struct Args {
    name: String,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Keep following: across a runner replaced or restarted, until the
    /// module is gone.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines of the output so far.
    #[arg(long, value_name = "N")]
    tail: Option<u64>,
    /// Only output newer than this (e.g. 90s, 10m, 2h).
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Each line with the engine's timestamp.
    #[arg(short, long)]
    timestamps: bool,
}

pub async fn run(client: &Client, args: Args) -> Result<(), ClientError> {
    let mut query = vec![format!("follow={}", args.follow)];
    if let Some(tail) = args.tail {
        query.push(format!("tail={tail}"));
    }
    if let Some(since) = &args.since {
        let seconds =
            parse_duration(since).map_err(|e| ClientError::Usage(format!("--since: {e}")))?;
        query.push(format!("since={seconds}"));
    }
    if args.timestamps {
        query.push("timestamps=true".into());
    }
    let path = object_path("modules", &args.namespace, &args.name, "/logs")?;
    let path = format!("{path}?{}", query.join("&"));
    let mut pending = Vec::new();
    let mut broken = false;
    client
        .stream(&path, |chunk| {
            pending.extend_from_slice(chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if !broken {
                    broken = !print(&line);
                }
            }
            !broken
        })
        .await
}

/// Writes one `{"stream","data"}` line where it belongs; `false` once the
/// reader went away (`| head`).
fn print(line: &[u8]) -> bool {
    let Ok(frame) = serde_json::from_slice::<serde_json::Value>(line) else {
        return true;
    };
    let data = frame["data"].as_str().unwrap_or_default().as_bytes();
    let written = match frame["stream"].as_str() {
        Some("stderr") => std::io::stderr().lock().write_all(data),
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(data).and_then(|()| out.flush())
        }
    };
    written.is_ok()
}
