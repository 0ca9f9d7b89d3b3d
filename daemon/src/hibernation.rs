//! The hibernation clock: from the manifests, the stored overrides and the
//! time, which workspaces should be asleep now and when that next changes.
//! Re-evaluated at every upcoming occurrence and override expiry, and at
//! least once a minute: tokio's timers do not follow the wall clock across
//! a laptop's suspend, and a minute is how late a missed window may be seen.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use forklet_state::ObjectKey;
use forklet_state::desired::{DesiredModule, DesiredState, DesiredWorkspace};
use forklet_state::event::EventReason;
use forklet_state::hibernation::{Inputs, Override, Scope, SleepReason, decide};
use forklet_state::schedule::Transition;
use forklet_state::store::Store;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::store_thread::StoreThread;

/// The longest the clock goes without looking.
const AT_LEAST_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceSleep {
    pub scheduled_asleep: bool,
    pub next: Option<(DateTime<Utc>, Transition)>,
    pub over: Option<Override>,
}

/// Who should sleep, as of `at`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hibernation {
    pub at: DateTime<Utc>,
    pub workspaces: HashMap<ObjectKey, WorkspaceSleep>,
    pub module_overrides: HashMap<ObjectKey, Override>,
}

impl Hibernation {
    pub fn compute(
        desired: &DesiredState,
        overrides: &[(Scope, ObjectKey, Override)],
        now: DateTime<Utc>,
    ) -> Self {
        let over = |scope: Scope, key: &ObjectKey| {
            overrides
                .iter()
                .find(|(s, k, o)| *s == scope && k == key && o.active_at(now))
                .map(|(_, _, o)| *o)
        };
        let workspaces = desired
            .workspaces
            .iter()
            .map(|(key, ws)| {
                let sleep = WorkspaceSleep {
                    scheduled_asleep: ws.schedule.as_ref().is_some_and(|s| s.asleep_at(now)),
                    next: ws.schedule.as_ref().and_then(|s| s.next_transition(now)),
                    over: over(Scope::Workspace, key),
                };
                (key.clone(), sleep)
            })
            .collect();
        let module_overrides = desired
            .modules
            .keys()
            .filter_map(|key| over(Scope::Module, key).map(|o| (key.clone(), o)))
            .collect();
        Self {
            at: now,
            workspaces,
            module_overrides,
        }
    }

    /// Why `module` should be asleep now, if it should.
    pub fn module(&self, module: &DesiredModule, desired: &DesiredState) -> Option<SleepReason> {
        let workspace = self.workspaces.get(&module.workspace);
        let inputs = Inputs {
            module_hibernated: module.hibernated,
            workspace_hibernated: desired
                .workspaces
                .get(&module.workspace)
                .is_some_and(|w| w.spec.hibernated),
            module_override: self.module_overrides.get(&module.key),
            workspace_override: workspace.and_then(|w| w.over.as_ref()),
            scheduled_asleep: workspace.is_some_and(|w| w.scheduled_asleep),
        };
        decide(inputs, self.at)
    }

    /// Why `workspace` is asleep now, if it is.
    pub fn workspace(&self, workspace: &DesiredWorkspace) -> Option<SleepReason> {
        let sleep = self.workspaces.get(&workspace.key);
        let inputs = Inputs {
            workspace_hibernated: workspace.spec.hibernated,
            workspace_override: sleep.and_then(|w| w.over.as_ref()),
            scheduled_asleep: sleep.is_some_and(|w| w.scheduled_asleep),
            ..Inputs::default()
        };
        decide(inputs, self.at)
    }

    /// What happened between `self` and `next` that belongs in a history:
    /// a schedule's transition, an override running out. Workspaces that
    /// came or went with a manifest edit have no transition.
    fn news(&self, next: &Hibernation) -> Vec<News> {
        let mut news = Vec::new();
        for (key, now) in &next.workspaces {
            let Some(before) = self.workspaces.get(key) else {
                continue;
            };
            // The transition the schedule had said was next, now past: a
            // manifest edit that changes the answer is no transition.
            let due = before.next.is_some_and(|(at, _)| at <= next.at);
            if due && before.scheduled_asleep != now.scheduled_asleep {
                let (reason, message) = match now.scheduled_asleep {
                    true => (EventReason::ScheduledSleep, "the schedule puts it to sleep"),
                    false => (EventReason::ScheduledWake, "the schedule wakes it"),
                };
                news.push((Scope::Workspace, key.clone(), reason, message));
            }
            if expired(before.over, now.over, next.at) {
                news.push(expired_news(Scope::Workspace, key));
            }
        }
        for (key, before) in &self.module_overrides {
            if expired(
                Some(*before),
                next.module_overrides.get(key).copied(),
                next.at,
            ) {
                news.push(expired_news(Scope::Module, key));
            }
        }
        news
    }

    /// When the answer may next change.
    fn next_look(&self) -> DateTime<Utc> {
        let transitions = self
            .workspaces
            .values()
            .filter_map(|w| w.next.map(|(at, _)| at));
        let expiries = self.workspaces.values().filter_map(|w| w.over?.until);
        let module_expiries = self.module_overrides.values().filter_map(|o| o.until);
        let latest = self.at + chrono::Duration::from_std(AT_LEAST_EVERY).expect("a minute fits");
        transitions
            .chain(expiries)
            .chain(module_expiries)
            .fold(latest, DateTime::min)
    }
}

/// One line of history: on what, why, in words.
type News = (Scope, ObjectKey, EventReason, &'static str);

/// An override that ran out (not one cleared by hand: that one is written
/// where it is cleared).
fn expired(before: Option<Override>, now: Option<Override>, at: DateTime<Utc>) -> bool {
    now.is_none() && before.is_some_and(|o| o.until.is_some_and(|until| until <= at))
}

fn expired_news(scope: Scope, key: &ObjectKey) -> News {
    let message = "the manual sleep or resume ran out: the manifests and schedule decide again";
    (scope, key.clone(), EventReason::OverrideExpired, message)
}

fn record(store: &Store, news: Vec<News>) {
    for (scope, key, reason, message) in news {
        match reason {
            EventReason::ScheduledSleep => crate::metrics::METRICS.scheduled("sleep"),
            EventReason::ScheduledWake => crate::metrics::METRICS.scheduled("wake"),
            _ => {}
        }
        if let Err(err) = store.note(scope, &key, reason, message) {
            tracing::warn!(object = %key, error = %err, "cannot record {reason}");
        }
    }
}

pub struct HibernationClock {
    pub store: Arc<Store>,
    /// For the history: scheduled transitions and overrides running out.
    pub writes: StoreThread,
    pub desired: watch::Receiver<Arc<DesiredState>>,
    pub published: watch::Sender<Arc<Hibernation>>,
    /// Rung when an override is set, to be taken into account at once.
    pub overrides_changed: Arc<Notify>,
}

impl HibernationClock {
    /// The snapshot at `now`, from what is stored.
    pub fn snapshot(store: &Store, desired: &DesiredState, now: DateTime<Utc>) -> Hibernation {
        let overrides = store.overrides(now).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "reading sleep/resume overrides");
            Vec::new()
        });
        Hibernation::compute(desired, &overrides, now)
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let now = Utc::now();
            let desired = self.desired.borrow_and_update().clone();
            let snapshot = Self::snapshot(&self.store, &desired, now);
            let next = snapshot.next_look();
            self.published.send_if_modified(|current| {
                // Only a change of who sleeps (or when next) is news.
                let changed = current.workspaces != snapshot.workspaces
                    || current.module_overrides != snapshot.module_overrides;
                if changed {
                    let news = current.news(&snapshot);
                    if !news.is_empty() {
                        self.writes.submit(move |store| record(store, news));
                    }
                    *current = Arc::new(snapshot);
                }
                changed
            });
            // A few milliseconds past the occurrence, so that it has happened.
            let wait = (next - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(5);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait.min(AT_LEAST_EVERY)) => {}
                changed = self.desired.changed() => if changed.is_err() { return },
                _ = self.overrides_changed.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use forklet_state::hibernation::OverrideAction;
    use forklet_state::manifest::parse_file;
    use forklet_state::source::LocalDefinitions;

    /// A workspace asleep 22:00-07:00 UTC with one module in it.
    fn desired() -> DesiredState {
        let text = "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\nspec:\n  autoHibernation: {enabled: true, schedule: '0 22 * * *', wakeSchedule: '0 7 * * *', timezone: UTC}\n---\napiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: app}\nspec:\n  workspace: {name: dev}\n  source:\n    raw: {kind: Custom, metadata: {name: app, version: 1.0.0, supportedOperatorVersion: '*'}, spec: {image: i}}\n";
        let parsed = parse_file(std::path::Path::new("/m/all.yaml"), text);
        let state = DesiredState::build([&parsed], &LocalDefinitions);
        assert_eq!(state.problems, vec![]);
        state
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 10, h, m, 0).unwrap()
    }

    #[test]
    fn a_restart_in_the_middle_of_the_night_finds_the_module_asleep() {
        let desired = desired();
        let app = &desired.modules[&ObjectKey::new("default", "app").unwrap()];
        let night = Hibernation::compute(&desired, &[], at(23, 30));
        assert_eq!(night.module(app, &desired), Some(SleepReason::Schedule));
        let dev = &night.workspaces[&ObjectKey::new("default", "dev").unwrap()];
        assert_eq!(
            dev.next,
            Some((
                Utc.with_ymd_and_hms(2026, 6, 11, 7, 0, 0).unwrap(),
                Transition::Wake
            ))
        );
        // Nothing is due for hours, but the clock looks again within a minute.
        assert_eq!(night.next_look(), at(23, 31));
        let day = Hibernation::compute(&desired, &[], at(12, 0));
        assert_eq!(day.module(app, &desired), None);
    }

    #[test]
    fn the_schedule_s_transitions_and_an_expired_override_are_news_once() {
        let desired = desired();
        let dev = ObjectKey::new("default", "dev").unwrap();
        let app = ObjectKey::new("default", "app").unwrap();
        let evening = Hibernation::compute(&desired, &[], at(21, 59));
        let night = Hibernation::compute(&desired, &[], at(22, 1));
        let news = evening.news(&night);
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(
            (news[0].0, &news[0].1, news[0].2),
            (Scope::Workspace, &dev, EventReason::ScheduledSleep)
        );
        assert!(night.news(&night).is_empty(), "no change, no news");
        // A schedule turned off at night wakes the workspace, by a manifest
        // edit and not by the schedule: no ScheduledWake.
        let mut edited = night.clone();
        let sleep = edited.workspaces.get_mut(&dev).unwrap();
        (sleep.scheduled_asleep, sleep.next) = (false, None);
        edited.at = at(22, 30);
        assert!(night.news(&edited).is_empty(), "{:?}", night.news(&edited));
        let next_morning = Utc.with_ymd_and_hms(2026, 6, 11, 7, 1, 0).unwrap();
        let morning = Hibernation::compute(&desired, &[], next_morning);
        assert_eq!(night.news(&morning)[0].2, EventReason::ScheduledWake);

        let wake = Override {
            action: OverrideAction::Resume,
            until: Some(at(23, 40)),
        };
        let overrides = [(Scope::Module, app.clone(), wake)];
        let woken = Hibernation::compute(&desired, &overrides, at(23, 30));
        let ran_out = Hibernation::compute(&desired, &overrides, at(23, 41));
        let news = woken.news(&ran_out);
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(
            (news[0].0, &news[0].1, news[0].2),
            (Scope::Module, &app, EventReason::OverrideExpired)
        );
        // Cleared by hand before its time: written where it is cleared, not here.
        let cleared = Hibernation::compute(&desired, &[], at(23, 35));
        assert!(woken.news(&cleared).is_empty());
    }

    #[test]
    fn an_override_wakes_until_it_expires_and_the_clock_looks_then() {
        let desired = desired();
        let app = ObjectKey::new("default", "app").unwrap();
        let module = &desired.modules[&app];
        let wake = Override {
            action: OverrideAction::Resume,
            until: Some(at(23, 40)),
        };
        let overrides = [(Scope::Module, app.clone(), wake)];
        let woken = Hibernation::compute(&desired, &overrides, at(23, 30));
        assert_eq!(woken.module(module, &desired), None);
        assert_eq!(woken.next_look(), at(23, 31).min(at(23, 40)));
        let expired = Hibernation::compute(&desired, &overrides, at(23, 45));
        assert_eq!(
            expired.module(module, &desired),
            Some(SleepReason::Schedule)
        );
    }
}
