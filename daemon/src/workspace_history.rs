//! A workspace's manifest in its history: defined, edited, removed. So
//! `forklet events --for workspace/NAME` and `get workspaces -w` hear of a
//! manifest edit as they hear of an override or a scheduled transition.

use std::collections::HashMap;
use std::sync::Arc;

use forklet_state::ObjectKey;
use forklet_state::desired::{DesiredState, DesiredWorkspace};
use forklet_state::event::EventReason;
use forklet_state::hibernation::Scope;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store_thread::StoreThread;

/// Watches the desired state until shutdown; what the daemon started with
/// is the baseline, not news.
pub async fn run(
    mut desired: watch::Receiver<Arc<DesiredState>>,
    writes: StoreThread,
    shutdown: CancellationToken,
) {
    let mut before = workspaces(&desired.borrow_and_update());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = desired.changed() => if changed.is_err() { return },
        }
        let now = workspaces(&desired.borrow_and_update());
        let news = changes(&before, &now);
        if !news.is_empty() {
            writes.submit(move |store| {
                for (key, reason, message) in news {
                    if let Err(err) = store.note(Scope::Workspace, &key, reason, &message) {
                        tracing::warn!(workspace = %key, error = %err, "cannot record {reason}");
                    }
                }
            });
        }
        before = now;
    }
}

fn workspaces(state: &DesiredState) -> HashMap<ObjectKey, DesiredWorkspace> {
    state.workspaces.clone().into_iter().collect()
}

type News = (ObjectKey, EventReason, String);

/// What became of each workspace between two desired states.
fn changes(
    before: &HashMap<ObjectKey, DesiredWorkspace>,
    now: &HashMap<ObjectKey, DesiredWorkspace>,
) -> Vec<News> {
    let mut news: Vec<News> = now
        .iter()
        .filter_map(|(key, ws)| {
            let file = ws.file.display();
            match before.get(key) {
                None => Some((
                    key.clone(),
                    EventReason::Defined,
                    format!("defined in {file}"),
                )),
                Some(old) if old.spec != ws.spec || old.file != ws.file => {
                    Some((key.clone(), EventReason::Edited, format!("{file} changed")))
                }
                Some(_) => None,
            }
        })
        .collect();
    news.extend(
        before
            .iter()
            .filter(|(key, _)| !now.contains_key(key))
            .map(|(key, ws)| {
                let message = format!("no longer in {}", ws.file.display());
                (key.clone(), EventReason::Removed, message)
            }),
    );
    news.sort_by(|a, b| a.0.cmp(&b.0));
    news
}

#[cfg(test)]
mod tests {
    use super::*;
    use forklet_state::manifest::parse_file;
    use forklet_state::source::LocalDefinitions;

    fn state(text: &str) -> HashMap<ObjectKey, DesiredWorkspace> {
        let parsed = parse_file(std::path::Path::new("/m/ws.yaml"), text);
        workspaces(&DesiredState::build([&parsed], &LocalDefinitions))
    }

    #[test]
    fn a_workspace_is_defined_edited_and_removed_once_each() {
        let plain =
            state("apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n");
        let asleep = state(
            "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\nspec: {hibernated: true}\n",
        );
        let none = HashMap::new();
        let reasons = |news: Vec<News>| news.into_iter().map(|n| n.1).collect::<Vec<_>>();
        assert_eq!(reasons(changes(&none, &plain)), [EventReason::Defined]);
        assert_eq!(reasons(changes(&plain, &asleep)), [EventReason::Edited]);
        assert_eq!(reasons(changes(&asleep, &asleep)), []);
        assert_eq!(reasons(changes(&asleep, &none)), [EventReason::Removed]);
    }
}
