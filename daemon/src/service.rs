//! What the service manager (systemd with `Type=notify`) is told: ready
//! once the control socket accepts connections and the first scan is
//! applied, a one-line status, stopping, and the watchdog's beat, which the
//! reconciler sends from its own loop so that a wedged daemon is restarted.
//! Without `NOTIFY_SOCKET` nothing is sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sd_notify::NotifyState;

/// How often the status line is looked at when there is no watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Default)]
pub struct ServiceManager {
    enabled: bool,
    watchdog: Option<Duration>,
    /// The status line last sent: only a change is sent again.
    status: Arc<Mutex<String>>,
}

impl ServiceManager {
    /// As the environment says: `NOTIFY_SOCKET`, `WATCHDOG_USEC` (and
    /// `WATCHDOG_PID`, which must be this process when set).
    pub fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: sd_notify::watchdog_enabled(),
            status: Arc::default(),
        }
    }

    fn send(&self, state: &[NotifyState<'_>]) {
        if self.enabled
            && let Err(err) = sd_notify::notify(state)
        {
            tracing::warn!(error = %err, "cannot notify the service manager");
        }
    }

    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// Sends `line` as the status, if it is news.
    pub fn status(&self, line: &str) {
        let mut last = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if *last != line {
            line.clone_into(&mut last);
            self.send(&[NotifyState::Status(line)]);
        }
    }

    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// How often the reconciler beats (half the watchdog's interval) and
    /// refreshes the status; `None`: nobody listens.
    pub fn beat_every(&self) -> Option<Duration> {
        match (self.enabled, self.watchdog) {
            (false, _) => None,
            (true, Some(interval)) => {
                Some((interval / 2).clamp(Duration::from_millis(10), STATUS_EVERY))
            }
            (true, None) => Some(STATUS_EVERY),
        }
    }
}

/// "12 modules: 10 ready, 2 asleep, 0 failed" (and how many are under way).
pub fn summary(counts: &[(String, u64)]) -> String {
    let count = |phase: &str| {
        counts
            .iter()
            .filter(|(p, _)| p == phase)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let (ready, asleep, failed) = (count("ready"), count("sleeped"), count("failed"));
    let busy = total - ready - asleep - failed;
    let noun = if total == 1 { "module" } else { "modules" };
    let mut line = format!("{total} {noun}: {ready} ready, {asleep} asleep, {failed} failed");
    if busy > 0 {
        line.push_str(&format!(", {busy} in progress"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_counts_modules_by_what_users_care_about() {
        let counts = [
            ("ready".to_owned(), 10),
            ("sleeped".to_owned(), 2),
            ("installing".to_owned(), 1),
        ];
        assert_eq!(
            summary(&counts),
            "13 modules: 10 ready, 2 asleep, 0 failed, 1 in progress"
        );
        assert_eq!(summary(&[]), "0 modules: 0 ready, 0 asleep, 0 failed");
    }
}
