//! `forklet wait module NAME --for=phase=PHASE|--for=delete`: `kubectl
//! wait` for modules, on the event stream.

use std::time::{Duration, Instant};

use forklet_state::api::{ModulePhase, ModuleView, StreamEventView};

use crate::client::{Client, ClientError, object_path};
use crate::hibernate::parse_duration;

#[derive(clap::Args)]
pub struct Args {
    /// `module`.
    kind: String,
    name: String,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// `phase=PHASE` (ready, sleeped, failed, ...) or `delete`.
    #[arg(long = "for", value_name = "CONDITION")]
    condition: String,
    /// How long to wait (kubectl's default: 30s).
    #[arg(long, default_value = "30s")]
    timeout: String,
}

/// The phases a module can be in (kubectl's are case-insensitive too).
enum Condition {
    Phase(ModulePhase),
    Deleted,
}

/// `Ok(true)` when the condition was met in time.
pub async fn run(client: &Client, args: Args) -> Result<(String, bool), ClientError> {
    let usage = ClientError::Usage;
    if args.kind != "module" && args.kind != "modules" {
        return Err(usage(format!(
            "cannot wait for {:?}: only module NAME",
            args.kind
        )));
    }
    let condition = match args.condition.as_str() {
        "delete" => Condition::Deleted,
        other => match other.strip_prefix("phase=").map(str::to_ascii_lowercase) {
            Some(phase) if phase.parse::<ModulePhase>().is_ok() => {
                Condition::Phase(phase.parse().expect("checked"))
            }
            _ => {
                let phases: Vec<&str> = ModulePhase::ALL.iter().map(|p| p.as_str()).collect();
                return Err(usage(format!(
                    "--for={other}: give delete or phase=PHASE, one of {}",
                    phases.join(", ")
                )));
            }
        },
    };
    let timeout = parse_duration(&args.timeout).map_err(|e| usage(format!("--timeout: {e}")))?;
    // At most a year, as every duration forklet takes.
    let deadline = Instant::now() + Duration::from_secs(timeout.min(366 * 86_400));
    let path = object_path("modules", &args.namespace, &args.name, "")?;
    let key = format!("{}/{}", args.namespace, args.name);
    let met = match &condition {
        Condition::Phase(phase) => format!("module/{} condition met (phase={phase})", args.name),
        Condition::Deleted => format!("module/{} deleted", args.name),
    };
    // Where the stream starts: before the first look, so that no change
    // falls between the look and the stream.
    let history: Vec<StreamEventView> = client.get("/v1/events").await?;
    let mut after = history.last().map_or(0, |e| e.id);
    loop {
        let now = current(client, &path).await?;
        let reached = match (&condition, &now) {
            (Condition::Deleted, None) => true,
            (Condition::Phase(phase), Some(module)) => module.phase == *phase,
            _ => false,
        };
        if reached {
            return Ok((met, true));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let next = follow_one(client, &key, after);
        match tokio::time::timeout(left, next).await {
            Ok(Ok(Some(id))) => after = id,
            // The stream ended (the daemon stopped): nothing more will come.
            Ok(Ok(None)) => return Err(ClientError::StreamEnded),
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                let last = match &now {
                    Some(m) => format!("phase {}: {}", m.phase, m.message),
                    None => "not found".to_owned(),
                };
                let wanted = match &condition {
                    Condition::Phase(phase) => format!("phase={phase}"),
                    Condition::Deleted => "delete".to_owned(),
                };
                let text = format!(
                    "timed out waiting for module {key} ({wanted}) after {}; last: {last}",
                    args.timeout
                );
                return Ok((text, false));
            }
        }
    }
}

async fn current(client: &Client, path: &str) -> Result<Option<ModuleView>, ClientError> {
    match client.get::<ModuleView>(path).await {
        Ok(module) => Ok(Some(module)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err),
    }
}

/// The id of the module's next event after `after`.
async fn follow_one(client: &Client, key: &str, after: i64) -> Result<Option<i64>, ClientError> {
    let mut seen = None;
    let query = format!("after={after}&module={key}");
    let followed = crate::events::follow(client, &query, |event| {
        seen = Some(event.id);
        false
    })
    .await;
    match followed {
        Ok(()) => Ok(seen),
        Err(ClientError::StreamEnded) => Ok(None),
        Err(err) => Err(err),
    }
}
