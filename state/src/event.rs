//! Why an event happened: one closed list, shared by the store, the daemon
//! and the CLI, so a script can match on a reason and know it is stable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A module's or workspace's event reason, as `kubectl get events` shows
/// reasons (`PascalCase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventReason {
    /// The runner is being created.
    Preparing,
    RunnerStarted,
    Installing,
    Installed,
    Sleeping,
    Slept,
    Resuming,
    Resumed,
    Uninstalling,
    Uninstalled,
    /// A runner found unhealthy is healthy again.
    Recovered,
    Failed,
    /// The daemon's worker for the module stopped unexpectedly.
    WorkerFailed,
    ManifestProblem,
    ManifestFixed,
    /// A manual sleep or resume was set (`forklet sleep|resume`).
    OverrideSet,
    /// A manual sleep or resume was cleared by hand.
    OverrideCleared,
    /// A manual sleep or resume ran out.
    OverrideExpired,
    /// A workspace's manifest appeared.
    Defined,
    /// A workspace's manifest changed.
    Edited,
    /// A workspace's manifest is gone.
    Removed,
    /// The workspace's schedule put it to sleep.
    ScheduledSleep,
    /// The workspace's schedule woke it.
    ScheduledWake,
    /// The module is gone from forklet: the stream's last word on it.
    Deleted,
    /// A reason this release does not know (written by a newer forklet).
    #[serde(other)]
    Unknown,
}

impl EventReason {
    /// Every reason, in the order above.
    pub const ALL: [EventReason; 25] = [
        EventReason::Preparing,
        EventReason::RunnerStarted,
        EventReason::Installing,
        EventReason::Installed,
        EventReason::Sleeping,
        EventReason::Slept,
        EventReason::Resuming,
        EventReason::Resumed,
        EventReason::Uninstalling,
        EventReason::Uninstalled,
        EventReason::Recovered,
        EventReason::Failed,
        EventReason::WorkerFailed,
        EventReason::ManifestProblem,
        EventReason::ManifestFixed,
        EventReason::OverrideSet,
        EventReason::OverrideCleared,
        EventReason::OverrideExpired,
        EventReason::Defined,
        EventReason::Edited,
        EventReason::Removed,
        EventReason::ScheduledSleep,
        EventReason::ScheduledWake,
        EventReason::Deleted,
        EventReason::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::Preparing => "Preparing",
            EventReason::RunnerStarted => "RunnerStarted",
            EventReason::Installing => "Installing",
            EventReason::Installed => "Installed",
            EventReason::Sleeping => "Sleeping",
            EventReason::Slept => "Slept",
            EventReason::Resuming => "Resuming",
            EventReason::Resumed => "Resumed",
            EventReason::Uninstalling => "Uninstalling",
            EventReason::Uninstalled => "Uninstalled",
            EventReason::Recovered => "Recovered",
            EventReason::Failed => "Failed",
            EventReason::WorkerFailed => "WorkerFailed",
            EventReason::ManifestProblem => "ManifestProblem",
            EventReason::ManifestFixed => "ManifestFixed",
            EventReason::OverrideSet => "OverrideSet",
            EventReason::OverrideCleared => "OverrideCleared",
            EventReason::OverrideExpired => "OverrideExpired",
            EventReason::Defined => "Defined",
            EventReason::Edited => "Edited",
            EventReason::Removed => "Removed",
            EventReason::ScheduledSleep => "ScheduledSleep",
            EventReason::ScheduledWake => "ScheduledWake",
            EventReason::Deleted => "Deleted",
            EventReason::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for EventReason {
    type Err = std::convert::Infallible;

    /// Never fails: what this release does not know reads as `Unknown`, so
    /// a database written by a newer forklet still lists its history.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
            .unwrap_or(EventReason::Unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_as_itself_in_the_store_and_on_the_wire() {
        for reason in EventReason::ALL {
            assert_eq!(reason.as_str().parse::<EventReason>(), Ok(reason));
            let wire = serde_json::to_string(&reason).unwrap();
            assert_eq!(wire, format!("\"{}\"", reason.as_str()));
            assert_eq!(serde_json::from_str::<EventReason>(&wire).unwrap(), reason);
        }
    }

    #[test]
    fn all_lists_every_reason() {
        // A new reason fails to compile here until it is placed, and then
        // this finds it missing from ALL (where it would read back Unknown).
        let place = |reason: EventReason| match reason {
            EventReason::Preparing
            | EventReason::RunnerStarted
            | EventReason::Installing
            | EventReason::Installed
            | EventReason::Sleeping
            | EventReason::Slept
            | EventReason::Resuming
            | EventReason::Resumed
            | EventReason::Uninstalling
            | EventReason::Uninstalled
            | EventReason::Recovered
            | EventReason::Failed
            | EventReason::WorkerFailed
            | EventReason::ManifestProblem
            | EventReason::ManifestFixed
            | EventReason::OverrideSet
            | EventReason::OverrideCleared
            | EventReason::OverrideExpired
            | EventReason::Defined
            | EventReason::Edited
            | EventReason::Removed
            | EventReason::ScheduledSleep
            | EventReason::ScheduledWake
            | EventReason::Deleted
            | EventReason::Unknown => EventReason::ALL.contains(&reason),
        };
        assert!(EventReason::ALL.into_iter().all(place));
        let distinct: std::collections::HashSet<_> = EventReason::ALL.iter().collect();
        assert_eq!(distinct.len(), EventReason::ALL.len());
    }

    #[test]
    fn a_reason_from_a_newer_release_reads_as_unknown() {
        assert_eq!(
            "Teleported".parse::<EventReason>(),
            Ok(EventReason::Unknown)
        );
        assert_eq!(
            serde_json::from_str::<EventReason>("\"Teleported\"").unwrap(),
            EventReason::Unknown
        );
    }
}
