//! Runners that belong to no module: left by a crash between creating a
//! container and recording it, by a wiped state database, or by hand. A
//! container carrying this daemon's instance label whose module has no
//! record is removed once it has been seen that way for a grace period.
//! Runners of other forklet instances (other state directories) are theirs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use forklet_state::store::Store;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;

use crate::docker::{DockerRuntime, LABEL_INSTANCE};

pub struct OrphanSweeper {
    pub runtime: DockerRuntime,
    pub store: Arc<Store>,
    pub grace: Duration,
}

/// How often the engine is looked at when nothing suggests an orphan: a
/// look lists every runner, which with a thousand of them is not free.
const IDLE_SWEEP: Duration = Duration::from_secs(600);

impl OrphanSweeper {
    pub async fn run(self, shutdown: CancellationToken) {
        // Container id -> when it was first seen without a module.
        let mut suspects: HashMap<String, Instant> = HashMap::new();
        let soon = (self.grace / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
        // A runner of this instance being created is the one way an orphan
        // appears while forkletd runs (by hand, or by another process with
        // this state's instance id). forkletd's own creates are seen too (it
        // records a module before making its runner, so they are no
        // suspects): a burst of installs costs a sweep every `soon` at most
        // while it lasts.
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("event", vec!["create".to_owned()]),
            (
                "label",
                vec![format!("{LABEL_INSTANCE}={}", self.runtime.instance())],
            ),
        ]);
        let mut created = None;
        let mut failures: u32 = 0;
        let mut stream_failures: u32 = 0;
        // The stream is followed again from this moment on after it failed.
        let mut follow_at = Instant::now();
        // Leftovers of a crash or a wiped state are looked for at start.
        let mut next = Instant::now() + soon;
        loop {
            let paused = Instant::now() < follow_at;
            let events = (!paused).then(|| {
                created.get_or_insert_with(|| {
                    let options = EventsOptionsBuilder::new().filters(&filters).build();
                    self.runtime.docker().events(Some(options)).boxed()
                })
            });
            let event = async {
                match events {
                    Some(events) => events.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
                _ = tokio::time::sleep_until(follow_at), if paused => continue,
                event = event => {
                    if matches!(event, Some(Ok(_))) {
                        // The engine answers: any backoff is over.
                        stream_failures = 0;
                        failures = 0;
                    } else {
                        // Followed again after a pause that grows while it
                        // keeps failing (an engine that is down fails at once).
                        created = None;
                        stream_failures += 1;
                        follow_at = Instant::now() + Duration::from_secs(1 << stream_failures.min(6));
                    }
                    // A create, or events lost while the stream was down:
                    // look soon, unless sweeps are failing and backing off.
                    if failures == 0 {
                        next = next.min(Instant::now() + soon);
                    }
                    continue;
                }
            }
            let swept = self.sweep(&mut suspects).await;
            if let Err(err) = &swept {
                tracing::warn!(error = %err, "looking for orphaned runners");
            }
            // A sweep that failed is tried again soon, then less and less
            // often while it keeps failing (an engine that is down).
            failures = if swept.is_ok() { 0 } else { failures + 1 };
            let wait = match (failures, suspects.is_empty()) {
                (0, true) => IDLE_SWEEP,
                (0, false) => soon,
                (n, _) => soon.saturating_mul(1 << n.min(12)).min(IDLE_SWEEP),
            };
            next = Instant::now() + wait;
        }
    }

    async fn sweep(&self, suspects: &mut HashMap<String, Instant>) -> Result<(), String> {
        let runners = self
            .runtime
            .all_runners()
            .await
            .map_err(|e| e.to_string())?;
        let store = self.store.clone();
        let recorded = tokio::task::spawn_blocking(move || store.module_keys())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let orphans: Vec<_> = runners
            .into_iter()
            .filter(|(key, _)| !key.as_ref().is_some_and(|key| recorded.contains(key)))
            .collect();
        suspects.retain(|id, _| orphans.iter().any(|(_, o)| o == id));
        let now = Instant::now();
        for (key, id) in orphans {
            let since = *suspects.entry(id.clone()).or_insert(now);
            if now.duration_since(since) >= self.grace {
                let module = key
                    .as_ref()
                    .map_or_else(|| "(no valid name)".to_owned(), |k| k.to_string());
                tracing::warn!(module, container = %id, "removing a runner that belongs to no module");
                self.runtime.remove(&id).await.map_err(|e| e.to_string())?;
                suspects.remove(&id);
            }
        }
        Ok(())
    }
}
