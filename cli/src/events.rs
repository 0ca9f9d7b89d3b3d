//! `forklet events [-w]`, and the event stream `get -w` and `wait` follow.

use forklet_state::api::StreamEventView;

use crate::client::{Client, ClientError};
use crate::table::{Format, render, structured};

#[derive(clap::Args)]
pub struct Args {
    /// Keep printing events as they happen.
    #[arg(short, long)]
    watch: bool,
    /// Only one object's: `module/NAME` or `workspace/NAME` (its overrides
    /// and scheduled transitions).
    #[arg(long = "for", value_name = "module/NAME|workspace/NAME")]
    target: Option<String>,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

pub async fn run(client: &Client, args: Args) -> Result<(), ClientError> {
    let object = match &args.target {
        None => None,
        Some(target) => {
            let (kind, name) = target
                .split_once('/')
                .filter(|(kind, _)| matches!(*kind, "module" | "workspace"))
                .ok_or_else(|| {
                    ClientError::Usage(format!(
                        "--for {target}: give module/NAME or workspace/NAME"
                    ))
                })?;
            let key = forklet_state::ObjectKey::new(args.namespace.as_str(), name)
                .map_err(|e| ClientError::Usage(format!("--for {target}: {e}")))?;
            Some(format!("{kind}={key}"))
        }
    };
    let filter = object.as_ref().map(|o| format!("&{o}")).unwrap_or_default();
    // Where following starts: the newest event of all (taken first), or
    // the newest one shown, so nothing falls between and nothing shows twice.
    let everything: Vec<StreamEventView> = client.get("/v1/events").await?;
    let history: Vec<StreamEventView> = match &object {
        Some(o) => client.get(&format!("/v1/events?{o}")).await?,
        None => everything.clone(),
    };
    if !args.watch {
        crate::print_out(
            &structured(args.output, &history).unwrap_or_else(|| rows(&history, true)),
        );
        return Ok(());
    }
    let output = args.output;
    let show = move |events: &[StreamEventView], header: bool| match output {
        Format::Table => crate::print_out(&rows(events, header)),
        // One document per event, as `kubectl get -w -o json|yaml`.
        Format::Json => events
            .iter()
            .for_each(|e| crate::print_out(&serde_json::to_string(e).unwrap_or_default())),
        Format::Yaml => events.iter().for_each(|e| {
            let yaml = serde_yaml::to_string(e).unwrap_or_default();
            crate::print_out(&format!("---\n{}", yaml.trim_end()));
        }),
    };
    show(&history, true);
    let newest = |events: &[StreamEventView]| events.last().map_or(0, |e| e.id);
    let after = newest(&everything).max(newest(&history));
    follow(client, &format!("after={after}{filter}"), |event| {
        show(std::slice::from_ref(&event), false);
        true
    })
    .await
}

/// kubectl's columns: when, why, which, what.
fn rows(events: &[StreamEventView], header: bool) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                e.reason.to_string(),
                format!("{}/{}/{}", e.kind.noun(), e.namespace, e.name),
                e.message.clone(),
            ]
        })
        .collect();
    let text = render(&["AT", "REASON", "OBJECT", "MESSAGE"], &rows);
    match header {
        true => text,
        false => text.lines().skip(1).collect::<Vec<_>>().join("\n"),
    }
}

/// The longest event frame read: far beyond any event's message.
const FRAME_MAX: usize = 1 << 20;

/// Follows `GET /v1/events?follow=true&{query}`, handing each event to
/// `on_event` until it returns `false` or the stream ends.
pub async fn follow(
    client: &Client,
    query: &str,
    mut on_event: impl FnMut(StreamEventView) -> bool,
) -> Result<(), ClientError> {
    // Bytes, not text: a chunk may end inside a character.
    let mut pending: Vec<u8> = Vec::new();
    let mut done = false;
    let mut too_long = false;
    client
        .stream(&format!("/v1/events?follow=true&{query}"), |chunk| {
            pending.extend_from_slice(chunk);
            if pending.len() > FRAME_MAX {
                too_long = true;
                return false;
            }
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = pending.drain(..end + 2).collect();
                let frame = String::from_utf8_lossy(&frame);
                let data: String = frame
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if let Ok(event) = serde_json::from_str::<StreamEventView>(&data)
                    && !on_event(event)
                {
                    done = true;
                    return false;
                }
            }
            true
        })
        .await?;
    match (done, too_long) {
        (true, _) => Ok(()),
        // No event is this long: not the stream forklet speaks.
        (_, true) => Err(ClientError::Api(format!(
            "the event stream sent more than {FRAME_MAX} bytes without an event"
        ))),
        // The daemon ended it: a follower must not look like one that finished.
        _ => Err(ClientError::StreamEnded),
    }
}
