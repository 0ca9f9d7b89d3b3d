//! The reconciler's decision: given what the manifests ask for and what
//! forklet knows, the one next step for a module. Pure, so every case is a
//! unit test.

use std::sync::Arc;

use forklet_state::desired::DesiredModule;
use forklet_state::store::{ModuleRecord, Phase};

/// What the manifests say about one module.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Run it as described.
    Run(Arc<DesiredModule>),
    /// No manifest names it any more: uninstall it.
    Remove,
    /// A manifest names it but cannot be used now (it does not parse or
    /// validate) and no good version is known: keep it as it is.
    Hold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Install,
    Sleep,
    Resume,
    Uninstall,
    /// Bring the runner up (or find it) and confirm it is healthy, without
    /// any lifecycle call: after a restart, or after a runner failure.
    Adopt,
    /// Nothing to do until something changes.
    Idle,
    /// Nothing desired and nothing recorded: the worker can end.
    Forget,
}

/// The phase a module rests in when nothing is under way.
pub fn settled(asleep: bool) -> Phase {
    if asleep { Phase::Sleeped } else { Phase::Ready }
}

pub fn plan(intent: &Intent, record: Option<&ModuleRecord>, runner_ready: bool) -> Action {
    let Some(record) = record else {
        return match intent {
            Intent::Run(_) => Action::Install,
            Intent::Remove | Intent::Hold => Action::Forget,
        };
    };
    let desired = match intent {
        Intent::Remove => return Action::Uninstall,
        Intent::Hold if record.installed_hash.is_none() => return Action::Idle,
        Intent::Hold => None,
        Intent::Run(desired) => Some(desired),
    };
    if let Some(desired) = desired {
        // Another workspace is another cluster: clean up the old one first
        // (with its kubeconfig, still in place); the install then starts fresh.
        if desired.workspace != record.workspace && record.installed_hash.is_some() {
            return Action::Uninstall;
        }
        // Covers a first install that failed or was interrupted, and any
        // edit of definition or config.
        if record.installed_hash.as_deref() != Some(desired.install_hash.as_str()) {
            return Action::Install;
        }
        if desired.hibernated != record.asleep {
            return if desired.hibernated {
                Action::Sleep
            } else {
                Action::Resume
            };
        }
    }
    if !runner_ready || record.phase != settled(record.asleep) {
        return Action::Adopt;
    }
    Action::Idle
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use forklet_state::ObjectKey;
    use forklet_state::definition::parse_definition;
    use forklet_state::store::RunnerSettings;
    use serde_json::json;

    fn desired(hibernated: bool, install_hash: &str) -> Intent {
        let definition = parse_definition(&json!({
            "kind": "Custom",
            "metadata": {"name": "m", "version": "1.0.0", "supportedOperatorVersion": "*"},
            "spec": {"image": "img"}
        }))
        .unwrap();
        Intent::Run(Arc::new(DesiredModule {
            key: ObjectKey::new("default", "app").unwrap(),
            file: "app.yaml".into(),
            workspace: ObjectKey::new("default", "dev").unwrap(),
            definition,
            config: Default::default(),
            hibernated,
            kubeconfig: None,
            runner: settings(),
            install_hash: install_hash.into(),
        }))
    }

    fn settings() -> RunnerSettings {
        RunnerSettings {
            image: "img".into(),
            runner_hash: "r".into(),
            kubeconfig: false,
            cpu_shares: None,
            memory_reservation: None,
            pull_secrets: Vec::new(),
            controller: false,
        }
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

    #[test]
    fn a_new_module_is_installed() {
        assert_eq!(plan(&desired(false, "h"), None, false), Action::Install);
    }

    #[test]
    fn an_interrupted_or_failed_install_is_installed_again() {
        for phase in [Phase::Installing, Phase::Failed] {
            assert_eq!(
                plan(
                    &desired(false, "h"),
                    Some(&record(phase, None, false)),
                    true
                ),
                Action::Install
            );
        }
    }

    #[test]
    fn an_edit_reinstalls_even_while_asleep() {
        let asleep = record(Phase::Sleeped, Some("old"), true);
        assert_eq!(
            plan(&desired(true, "new"), Some(&asleep), true),
            Action::Install
        );
    }

    #[test]
    fn moving_to_another_workspace_uninstalls_from_the_old_one_first() {
        let mut moved = record(Phase::Ready, Some("h"), false);
        moved.workspace = ObjectKey::new("default", "old").unwrap();
        assert_eq!(
            plan(&desired(false, "h2"), Some(&moved), true),
            Action::Uninstall
        );
        // Never installed there: nothing to clean up.
        moved.installed_hash = None;
        assert_eq!(
            plan(&desired(false, "h2"), Some(&moved), true),
            Action::Install
        );
    }

    #[test]
    fn hibernated_drives_sleep_and_resume() {
        assert_eq!(
            plan(
                &desired(true, "h"),
                Some(&record(Phase::Ready, Some("h"), false)),
                true
            ),
            Action::Sleep
        );
        assert_eq!(
            plan(
                &desired(false, "h"),
                Some(&record(Phase::Sleeped, Some("h"), true)),
                true
            ),
            Action::Resume
        );
        // Interrupted or failed calls are made again.
        assert_eq!(
            plan(
                &desired(true, "h"),
                Some(&record(Phase::Sleeping, Some("h"), false)),
                true
            ),
            Action::Sleep
        );
        assert_eq!(
            plan(
                &desired(false, "h"),
                Some(&record(Phase::Failed, Some("h"), true)),
                true
            ),
            Action::Resume
        );
    }

    #[test]
    fn a_settled_module_with_a_runner_is_left_alone() {
        assert_eq!(
            plan(
                &desired(false, "h"),
                Some(&record(Phase::Ready, Some("h"), false)),
                true
            ),
            Action::Idle
        );
        assert_eq!(
            plan(
                &desired(true, "h"),
                Some(&record(Phase::Sleeped, Some("h"), true)),
                true
            ),
            Action::Idle
        );
    }

    #[test]
    fn after_a_restart_the_runner_is_adopted_not_reinstalled() {
        assert_eq!(
            plan(
                &desired(false, "h"),
                Some(&record(Phase::Ready, Some("h"), false)),
                false
            ),
            Action::Adopt
        );
        // A failed health check after adoption is retried as adoption.
        assert_eq!(
            plan(
                &desired(false, "h"),
                Some(&record(Phase::Failed, Some("h"), false)),
                true
            ),
            Action::Adopt
        );
    }

    #[test]
    fn removal_uninstalls_from_any_phase() {
        for phase in [
            Phase::Installing,
            Phase::Ready,
            Phase::Sleeping,
            Phase::Resuming,
            Phase::Failed,
        ] {
            assert_eq!(
                plan(
                    &Intent::Remove,
                    Some(&record(phase, Some("h"), false)),
                    true
                ),
                Action::Uninstall
            );
        }
        assert_eq!(plan(&Intent::Remove, None, false), Action::Forget);
    }

    #[test]
    fn a_held_module_keeps_running_as_it_is() {
        assert_eq!(
            plan(
                &Intent::Hold,
                Some(&record(Phase::Ready, Some("h"), false)),
                true
            ),
            Action::Idle
        );
        assert_eq!(
            plan(
                &Intent::Hold,
                Some(&record(Phase::Ready, Some("h"), false)),
                false
            ),
            Action::Adopt
        );
        assert_eq!(
            plan(
                &Intent::Hold,
                Some(&record(Phase::Failed, None, false)),
                false
            ),
            Action::Idle
        );
        assert_eq!(plan(&Intent::Hold, None, false), Action::Forget);
    }
}
