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

use crate::docker::DockerRuntime;

pub struct OrphanSweeper {
    pub runtime: DockerRuntime,
    pub store: Arc<Store>,
    pub grace: Duration,
}

impl OrphanSweeper {
    pub async fn run(self, shutdown: CancellationToken) {
        // Container id -> when it was first seen without a module.
        let mut suspects: HashMap<String, Instant> = HashMap::new();
        let every = (self.grace / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(err) = self.sweep(&mut suspects).await {
                tracing::warn!(error = %err, "looking for orphaned runners");
            }
        }
    }

    async fn sweep(&self, suspects: &mut HashMap<String, Instant>) -> Result<(), String> {
        let runners = self
            .runtime
            .all_runners()
            .await
            .map_err(|e| e.to_string())?;
        let mut orphans = Vec::new();
        for (key, id) in runners {
            let known = match &key {
                Some(key) => self.store.module(key).map_err(|e| e.to_string())?.is_some(),
                None => false,
            };
            if !known {
                orphans.push((key, id));
            }
        }
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
