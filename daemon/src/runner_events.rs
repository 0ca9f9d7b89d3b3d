//! Runners that change under forklet: a container that dies, is removed or
//! runs out of memory is reported so its module's worker finds or recreates
//! it and checks its health, without calling `/install` again (the module's
//! metadata lives in forklet, not in the container). When the engine's event
//! stream breaks (an engine restart), forklet reconnects with backoff and has
//! every runner looked at again.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::EventsOptionsBuilder;
use forklet_state::ObjectKey;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::docker::{LABEL_INSTANCE, LABEL_MODULE};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerChange {
    /// This module's runner, the container with this id, changed.
    Module(ObjectKey, String),
    /// Any runner may have changed: the event stream was interrupted.
    All,
}

pub struct RunnerEvents {
    pub(crate) docker: Docker,
    pub(crate) instance: String,
}

impl RunnerEvents {
    /// Reports changes to `report` until `shutdown`.
    pub async fn run(self, report: impl Fn(RunnerChange), shutdown: CancellationToken) {
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            (
                "event",
                vec!["die".to_owned(), "destroy".to_owned(), "oom".to_owned()],
            ),
            ("label", vec![format!("{LABEL_INSTANCE}={}", self.instance)]),
        ]);
        let reconnect = Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        };
        let mut failures = 0;
        loop {
            let options = EventsOptionsBuilder::new().filters(&filters).build();
            let mut events = self.docker.events(Some(options));
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = events.next() => event,
                };
                match event {
                    Some(Ok(event)) => {
                        failures = 0;
                        let Some(actor) = event.actor else { continue };
                        let module = actor.attributes.and_then(|mut a| a.remove(LABEL_MODULE));
                        if let (Some(key), Some(id)) =
                            (module.as_deref().and_then(ObjectKey::parse), actor.id)
                        {
                            tracing::debug!(module = %key, container = %id, action = event.action.as_deref(), "runner changed");
                            report(RunnerChange::Module(key, id));
                        }
                    }
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "the container engine's event stream failed");
                        break;
                    }
                    None => {
                        tracing::warn!("the container engine closed its event stream");
                        break;
                    }
                }
            }
            failures += 1;
            let delay = reconnect.next(failures);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            if self.docker.ping().await.is_ok() {
                tracing::info!("the container engine answers again; checking every runner");
                report(RunnerChange::All);
            }
        }
    }
}
