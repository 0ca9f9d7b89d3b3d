//! Whether a module should be asleep, and why. In order, the first that
//! speaks decides:
//!
//! 1. the module's manifest says `hibernated: true`;
//! 2. its workspace's manifest says `hibernated: true`;
//! 3. a manual override on the module (`forklet sleep|resume NAME`);
//! 4. a manual override on its workspace;
//! 5. the workspace's schedule.
//!
//! So an override never fights a manifest's own `hibernated: true`, and
//! turning a workspace's `hibernated` off wakes only what it put to sleep.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OverrideAction {
    Sleep,
    Resume,
}

impl OverrideAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideAction::Sleep => "sleep",
            OverrideAction::Resume => "resume",
        }
    }
}

impl fmt::Display for OverrideAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A manual sleep or resume, lasting until `until` (or until replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub action: OverrideAction,
    pub until: Option<DateTime<Utc>>,
}

impl Override {
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// What an override applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Module,
    Workspace,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Module => "module",
            Scope::Workspace => "workspace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SleepReason {
    /// The module's own manifest.
    Manifest,
    /// Its workspace's manifest.
    Workspace,
    Override,
    WorkspaceOverride,
    Schedule,
}

impl fmt::Display for SleepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            SleepReason::Manifest => "its manifest says hibernated",
            SleepReason::Workspace => "its workspace's manifest says hibernated",
            SleepReason::Override => "put to sleep by hand",
            SleepReason::WorkspaceOverride => "its workspace was put to sleep by hand",
            SleepReason::Schedule => "its workspace's schedule",
        })
    }
}

/// Everything that has a say, for one module at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs<'a> {
    pub module_hibernated: bool,
    pub workspace_hibernated: bool,
    pub module_override: Option<&'a Override>,
    pub workspace_override: Option<&'a Override>,
    pub scheduled_asleep: bool,
}

/// `Some(reason)` when the module should be asleep at `now`.
pub fn decide(inputs: Inputs<'_>, now: DateTime<Utc>) -> Option<SleepReason> {
    if inputs.module_hibernated {
        return Some(SleepReason::Manifest);
    }
    if inputs.workspace_hibernated {
        return Some(SleepReason::Workspace);
    }
    for (active, reason) in [
        (inputs.module_override, SleepReason::Override),
        (inputs.workspace_override, SleepReason::WorkspaceOverride),
    ] {
        if let Some(o) = active.filter(|o| o.active_at(now)) {
            return (o.action == OverrideAction::Sleep).then_some(reason);
        }
    }
    inputs.scheduled_asleep.then_some(SleepReason::Schedule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn until(action: OverrideAction, at: Option<DateTime<Utc>>) -> Override {
        Override { action, until: at }
    }

    #[test]
    fn manifests_come_first_and_overrides_never_fight_them() {
        let now = Utc::now();
        let resume = until(OverrideAction::Resume, None);
        let inputs = Inputs {
            module_hibernated: true,
            module_override: Some(&resume),
            ..Inputs::default()
        };
        assert_eq!(decide(inputs, now), Some(SleepReason::Manifest));
        let inputs = Inputs {
            workspace_hibernated: true,
            module_override: Some(&resume),
            ..Inputs::default()
        };
        assert_eq!(decide(inputs, now), Some(SleepReason::Workspace));
    }

    #[test]
    fn overrides_beat_the_schedule_until_they_expire() {
        let now = Utc::now();
        let resume_for_an_hour = until(OverrideAction::Resume, Some(now + Duration::hours(1)));
        let inputs = Inputs {
            scheduled_asleep: true,
            module_override: Some(&resume_for_an_hour),
            ..Inputs::default()
        };
        assert_eq!(decide(inputs, now), None, "woken by hand during the night");
        assert_eq!(
            decide(inputs, now + Duration::hours(2)),
            Some(SleepReason::Schedule),
            "expired: the schedule again"
        );
    }

    #[test]
    fn a_module_override_is_more_specific_than_its_workspaces() {
        let now = Utc::now();
        let sleep = until(OverrideAction::Sleep, None);
        let resume = until(OverrideAction::Resume, None);
        let inputs = Inputs {
            module_override: Some(&resume),
            workspace_override: Some(&sleep),
            ..Inputs::default()
        };
        assert_eq!(decide(inputs, now), None);
        let inputs = Inputs {
            workspace_override: Some(&sleep),
            ..Inputs::default()
        };
        assert_eq!(decide(inputs, now), Some(SleepReason::WorkspaceOverride));
        assert_eq!(decide(Inputs::default(), now), None);
    }
}
