//! The reconciler's decision: given what the manifests ask for, what
//! forklet recorded and what it observed of the runner, the one next step
//! for a module. Pure, so every case is a unit test.
//!
//! A lifecycle call that was interrupted or failed has an unknown effect
//! (the record keeps it as `operation`): the plan then makes the call that
//! reaches what the manifest asks now, never trusting that the old one
//! did or did not happen. Modules are idempotent by contract.

use std::sync::Arc;

use forklet_state::desired::DesiredModule;
use forklet_state::operation::Operation;
use forklet_state::store::{ModuleRecord, Phase, RunnerSettings};

/// What the manifests say about one module.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Run it as described.
    Run(Arc<DesiredModule>),
    /// No manifest names it any more: uninstall it.
    Remove,
    /// A manifest names it but cannot be used now (it does not parse or
    /// validate) and no good version is known, or (after a restart) it has
    /// been absent for less than the grace period: keep it as it is, with
    /// no lifecycle call.
    Hold,
}

/// What the worker last observed of the module's runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerSeen {
    /// Not looked at since the daemon started, or something changed it.
    Unknown,
    /// Found or made, and it answered `GET /health`.
    Healthy,
    /// Stopped on purpose while its module sleeps.
    StoppedAsleep,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Install(Arc<DesiredModule>),
    Sleep(Arc<DesiredModule>),
    Resume(Arc<DesiredModule>),
    /// `/uninstall`, with the runner as it was recorded.
    Uninstall,
    /// Bring the runner up (or find it) and confirm it is healthy, without
    /// any lifecycle call: after a restart, or after a runner failure.
    Adopt(RunnerSettings),
    /// Nothing to do until something changes.
    Idle,
    /// Nothing desired and nothing recorded: the worker can end.
    Forget,
}

impl Action {
    /// The lifecycle call the action makes, if any.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Action::Install(_) => Some(Operation::Install),
            Action::Sleep(_) => Some(Operation::Sleep),
            Action::Resume(_) => Some(Operation::Resume),
            Action::Uninstall => Some(Operation::Uninstall),
            Action::Adopt(_) | Action::Idle | Action::Forget => None,
        }
    }

    /// How the action is named in messages: `install`, `adopt`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Adopt(_) => "adopt",
            Action::Idle => "idle",
            Action::Forget => "forget",
            other => other.operation().map_or("act", Operation::as_str),
        }
    }
}

/// The phase a module rests in when nothing is under way.
pub fn settled(asleep: bool) -> Phase {
    if asleep { Phase::Sleeped } else { Phase::Ready }
}

pub fn plan(intent: &Intent, record: Option<&ModuleRecord>, runner: RunnerSeen) -> Action {
    let Some(record) = record else {
        return match intent {
            Intent::Run(desired) => Action::Install(desired.clone()),
            Intent::Remove | Intent::Hold => Action::Forget,
        };
    };
    let unsure = record.operation;
    match intent {
        Intent::Remove => return Action::Uninstall,
        Intent::Run(desired) => {
            // Another workspace is another cluster: clean up the old one first
            // (with its kubeconfig, still in place); the install then starts fresh.
            if desired.workspace != record.workspace && record.installed_hash.is_some() {
                return Action::Uninstall;
            }
            let sleep_unsure = matches!(unsure, Some(Operation::Sleep | Operation::Resume));
            // An install or uninstall cut short may have done anything: the
            // install brings the module to its config again. Also covers a
            // first install and any edit of definition or config.
            if matches!(unsure, Some(Operation::Install | Operation::Uninstall))
                || record.installed_hash.as_deref() != Some(desired.install_hash.as_str())
            {
                // Nothing says /install wakes a module: one that is (or may
                // be) asleep and should wake is resumed first.
                if (sleep_unsure || record.asleep) && !desired.hibernated {
                    return Action::Resume(desired.clone());
                }
                return Action::Install(desired.clone());
            }
            // A sleep or resume cut short may have happened or not: make the
            // call that reaches what the manifest asks now.
            if sleep_unsure || desired.hibernated != record.asleep {
                return if desired.hibernated {
                    Action::Sleep(desired.clone())
                } else {
                    Action::Resume(desired.clone())
                };
            }
            if (runner != RunnerSeen::Healthy && !resting_asleep(record, runner))
                || record.phase != settled(record.asleep)
            {
                return Action::Adopt(desired.runner.clone());
            }
        }
        // Nothing usable is desired: no lifecycle call, only keep a module
        // that was settled running as it is.
        Intent::Hold => {
            let settled_before = record.installed_hash.is_some() && unsure.is_none();
            if settled_before
                && (runner == RunnerSeen::Unknown || record.phase != settled(record.asleep))
                && !resting_asleep(record, runner)
            {
                return Action::Adopt(record.runner.clone());
            }
        }
    }
    Action::Idle
}

/// An asleep module whose runner was stopped on purpose needs no runner.
fn resting_asleep(record: &ModuleRecord, runner: RunnerSeen) -> bool {
    runner == RunnerSeen::StoppedAsleep && record.asleep && record.phase == Phase::Sleeped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::settings;
    use chrono::Utc;
    use forklet_state::ObjectKey;

    use RunnerSeen::{Healthy, StoppedAsleep, Unknown};

    fn module(hibernated: bool, install_hash: &str) -> Arc<DesiredModule> {
        Arc::new(crate::test_support::module("app", hibernated, install_hash))
    }

    fn desired(hibernated: bool, install_hash: &str) -> Intent {
        Intent::Run(module(hibernated, install_hash))
    }

    fn record(phase: Phase, installed: Option<&str>, asleep: bool) -> ModuleRecord {
        let mut record = ModuleRecord::new(
            ObjectKey::new("default", "app").unwrap(),
            ObjectKey::new("default", "dev").unwrap(),
            settings(),
            Utc::now(),
        );
        record.phase = phase;
        record.installed_hash = installed.map(str::to_owned);
        record.asleep = asleep;
        record
    }

    /// A record whose `operation` was cut short or failed.
    fn unsure(phase: Phase, asleep: bool, operation: Operation) -> ModuleRecord {
        let mut record = record(phase, Some("h"), asleep);
        record.operation = Some(operation);
        record
    }

    fn name(action: Action) -> &'static str {
        action.name()
    }

    #[test]
    fn a_new_module_is_installed() {
        assert_eq!(name(plan(&desired(false, "h"), None, Unknown)), "install");
    }

    #[test]
    fn an_interrupted_or_failed_first_install_is_installed_again() {
        for phase in [Phase::Installing, Phase::Failed] {
            let action = plan(
                &desired(false, "h"),
                Some(&record(phase, None, false)),
                Healthy,
            );
            assert_eq!(name(action), "install", "{phase}");
        }
    }

    #[test]
    fn an_edit_reinstalls_even_while_asleep() {
        let asleep = record(Phase::Sleeped, Some("old"), true);
        let action = plan(&desired(true, "new"), Some(&asleep), StoppedAsleep);
        assert_eq!(action, Action::Install(module(true, "new")));
    }

    #[test]
    fn moving_to_another_workspace_uninstalls_from_the_old_one_first() {
        let mut moved = record(Phase::Ready, Some("h"), false);
        moved.workspace = ObjectKey::new("default", "old").unwrap();
        assert_eq!(
            plan(&desired(false, "h2"), Some(&moved), Healthy),
            Action::Uninstall
        );
        // Never installed there: nothing to clean up.
        moved.installed_hash = None;
        assert_eq!(
            name(plan(&desired(false, "h2"), Some(&moved), Healthy)),
            "install"
        );
    }

    #[test]
    fn hibernated_drives_sleep_and_resume() {
        let awake = record(Phase::Ready, Some("h"), false);
        assert_eq!(
            name(plan(&desired(true, "h"), Some(&awake), Healthy)),
            "sleep"
        );
        let asleep = record(Phase::Sleeped, Some("h"), true);
        assert_eq!(
            name(plan(&desired(false, "h"), Some(&asleep), StoppedAsleep)),
            "resume"
        );
    }

    #[test]
    fn a_sleep_or_resume_cut_short_is_followed_by_the_call_the_manifest_asks_now() {
        // Each interrupted or failed call, then each wish: the call made is
        // the wish, whatever the record believed about sleep.
        for (phase, asleep, operation) in [
            (Phase::Sleeping, false, Operation::Sleep),
            (Phase::Failed, false, Operation::Sleep),
            (Phase::Resuming, true, Operation::Resume),
            (Phase::Failed, true, Operation::Resume),
        ] {
            let cut = unsure(phase, asleep, operation);
            for (hibernated, call) in [(true, "sleep"), (false, "resume")] {
                assert_eq!(
                    name(plan(&desired(hibernated, "h"), Some(&cut), Unknown)),
                    call,
                    "{operation} cut short in {phase}, then hibernated: {hibernated}"
                );
            }
        }
    }

    #[test]
    fn an_install_or_uninstall_cut_short_is_followed_by_an_install_if_still_wanted() {
        for (phase, operation) in [
            (Phase::Installing, Operation::Install),
            (Phase::Uninstalling, Operation::Uninstall),
            (Phase::Failed, Operation::Uninstall),
        ] {
            // The hash matches: only the unknown effect calls for /install.
            let cut = unsure(phase, false, operation);
            assert_eq!(
                name(plan(&desired(false, "h"), Some(&cut), Healthy)),
                "install"
            );
            assert_eq!(
                plan(&Intent::Remove, Some(&cut), Healthy),
                Action::Uninstall
            );
        }
    }

    #[test]
    fn a_module_that_may_be_asleep_is_woken_before_an_edit_is_installed() {
        let asleep = record(Phase::Sleeped, Some("old"), true);
        assert_eq!(
            name(plan(&desired(false, "new"), Some(&asleep), StoppedAsleep)),
            "resume"
        );
        let cut = unsure(Phase::Sleeping, false, Operation::Sleep);
        assert_eq!(
            name(plan(&desired(false, "new"), Some(&cut), Unknown)),
            "resume"
        );
        // Staying asleep: installed first, put to sleep again after.
        assert_eq!(
            name(plan(&desired(true, "new"), Some(&cut), Unknown)),
            "install"
        );
    }

    #[test]
    fn a_settled_module_with_a_runner_is_left_alone() {
        let awake = record(Phase::Ready, Some("h"), false);
        assert_eq!(
            plan(&desired(false, "h"), Some(&awake), Healthy),
            Action::Idle
        );
        let asleep = record(Phase::Sleeped, Some("h"), true);
        assert_eq!(
            plan(&desired(true, "h"), Some(&asleep), Healthy),
            Action::Idle
        );
        assert_eq!(
            plan(&desired(true, "h"), Some(&asleep), StoppedAsleep),
            Action::Idle
        );
    }

    #[test]
    fn after_a_restart_the_runner_is_adopted_not_reinstalled() {
        let awake = record(Phase::Ready, Some("h"), false);
        assert_eq!(
            plan(&desired(false, "h"), Some(&awake), Unknown),
            Action::Adopt(settings())
        );
        // A failed health check after adoption is retried as adoption.
        let failed = record(Phase::Failed, Some("h"), false);
        assert_eq!(
            name(plan(&desired(false, "h"), Some(&failed), Healthy)),
            "adopt"
        );
    }

    #[test]
    fn removal_uninstalls_from_any_phase() {
        for phase in [
            Phase::Installing,
            Phase::Ready,
            Phase::Sleeping,
            Phase::Sleeped,
            Phase::Resuming,
            Phase::Failed,
        ] {
            let recorded = record(phase, Some("h"), false);
            assert_eq!(
                plan(&Intent::Remove, Some(&recorded), Healthy),
                Action::Uninstall
            );
        }
        assert_eq!(plan(&Intent::Remove, None, Unknown), Action::Forget);
    }

    #[test]
    fn a_held_module_keeps_running_as_it_is() {
        let ready = record(Phase::Ready, Some("h"), false);
        assert_eq!(plan(&Intent::Hold, Some(&ready), Healthy), Action::Idle);
        assert_eq!(
            plan(&Intent::Hold, Some(&ready), Unknown),
            Action::Adopt(settings())
        );
        let asleep = record(Phase::Sleeped, Some("h"), true);
        assert_eq!(
            plan(&Intent::Hold, Some(&asleep), StoppedAsleep),
            Action::Idle
        );
        // Never installed, or cut short: nothing to keep running, no call.
        let never = record(Phase::Failed, None, false);
        assert_eq!(plan(&Intent::Hold, Some(&never), Unknown), Action::Idle);
        let cut = unsure(Phase::Sleeping, false, Operation::Sleep);
        assert_eq!(plan(&Intent::Hold, Some(&cut), Unknown), Action::Idle);
        assert_eq!(plan(&Intent::Hold, None, Unknown), Action::Forget);
    }
}
