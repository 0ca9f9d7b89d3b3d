//! Manifest problems in each module's history: written when they appear,
//! change or go away, so `forklet get` shows when an edit broke.

use std::collections::HashMap;

use forklet_state::ObjectKey;
use forklet_state::desired::DesiredState;
use forklet_state::event::EventReason;
use forklet_state::manifest::Kind;

use crate::store_thread::StoreThread;

#[derive(Default)]
pub(super) struct ProblemHistory {
    /// The problems last written for each module.
    noted: HashMap<ObjectKey, String>,
}

impl ProblemHistory {
    /// Notes what changed for `keys` (the modules forklet knows) and for
    /// every module noted before.
    pub fn note<'k>(
        &mut self,
        writes: &StoreThread,
        state: &DesiredState,
        keys: impl Iterator<Item = &'k ObjectKey>,
    ) {
        let mut keys: Vec<ObjectKey> = keys.cloned().collect();
        keys.extend(self.noted.keys().cloned());
        for key in keys {
            let now: Vec<String> = state
                .problems_of(Kind::Module, &key)
                .map(|p| p.short())
                .collect();
            let now = now.join("; ");
            let before = self.noted.get(&key).map_or("", String::as_str);
            if now == before {
                continue;
            }
            let (reason, message) = if now.is_empty() {
                (
                    EventReason::ManifestFixed,
                    "the manifest is valid again".to_owned(),
                )
            } else {
                (EventReason::ManifestProblem, now.clone())
            };
            let event_key = key.clone();
            writes.submit(move |store| {
                if let Err(err) = store.add_event(&event_key, reason, &message) {
                    tracing::warn!(module = %event_key, error = %err, "cannot record a manifest problem");
                }
            });
            if now.is_empty() {
                self.noted.remove(&key);
            } else {
                self.noted.insert(key, now);
            }
        }
    }
}
