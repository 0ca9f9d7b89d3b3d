//! The kernel's neighbour (ARP) table, which a thousand runners outgrow.
//!
//! Each runner forkletd calls takes two entries in it: the host's for the
//! runner's address on the bridge, and the runner's for its gateway (the
//! table is one for all network namespaces). Linux's default hard limit,
//! `net.ipv4.neigh.default.gc_thresh3 = 1024`, is full at about 450
//! runners; past it the kernel drops new entries, and calls to runners,
//! through a published port or not, time out at random. Measured here with
//! 1000 runners: one `GET /health` in ten timed out, a restart took a
//! minute to adopt them instead of a second. forkletd cannot raise a host
//! setting by itself, so it says so, once, when the modules outgrow it.

use std::sync::Arc;

use forklet_state::desired::DesiredState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const LIMIT: &str = "/proc/sys/net/ipv4/neigh/default/gc_thresh3";
/// The host's own neighbours: its network, other bridges, other containers.
const HEADROOM: usize = 128;

/// The table's entries `runners` runners need, with the host's own.
pub fn entries_needed(runners: usize) -> usize {
    runners.saturating_mul(2).saturating_add(HEADROOM)
}

/// Says once when the modules outgrow the table, and again only after
/// they fitted in between. Every module is counted, asleep or not: the
/// warning is for the most the table may have to hold.
#[derive(Debug, Default)]
pub struct Room {
    warned: bool,
}

impl Room {
    /// The warning to give, if any, for `runners` under `limit` (`None`:
    /// no such table here, as on a Mac).
    pub fn check(&mut self, runners: usize, limit: Option<usize>) -> Option<String> {
        let needed = entries_needed(runners);
        let short = limit.is_some_and(|limit| needed > limit);
        let say = short && !self.warned;
        self.warned = short;
        say.then(|| {
            format!(
                "{runners} modules' runners need about {needed} entries in the kernel's neighbour \
                 table, and net.ipv4.neigh.default.gc_thresh3 is {}: calls to runners will time \
                 out at random; raise the limits as root: install 60-forklet.conf (in systemd/, \
                 or /usr/share/doc/forklet/examples/ from the package) into /etc/sysctl.d/ and \
                 run sysctl --system",
                limit.unwrap_or_default()
            )
        })
    }
}

/// Reads the limit; `None` where there is none to read or it is not a
/// number (procfs files are small, but the read is bounded all the same).
async fn limit() -> Option<usize> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(LIMIT).await.ok()?;
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).await.ok()?;
    text.trim().parse().ok()
}

/// Reads the limit whenever the number of modules changes, until
/// `shutdown`: a limit raised meanwhile is seen at the next change. An
/// engine on another kernel (a remote `DOCKER_HOST`, a VM) has its own
/// table, which this cannot see: the warning may then be wrong.
pub async fn watch(mut desired: watch::Receiver<Arc<DesiredState>>, shutdown: CancellationToken) {
    let mut room = Room::default();
    let mut counted = None;
    loop {
        let runners = desired.borrow_and_update().modules.len();
        if counted != Some(runners) {
            counted = Some(runners);
            if let Some(warning) = room.check(runners, limit().await) {
                tracing::warn!("{warning}");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = desired.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINUX_DEFAULT: Option<usize> = Some(1024);

    #[test]
    fn a_few_hundred_runners_fit_the_default_table() {
        assert!(Room::default().check(400, LINUX_DEFAULT).is_none());
    }

    #[test]
    fn a_thousand_runners_outgrow_the_default_table_and_the_warning_names_the_fix() {
        let warning = Room::default()
            .check(1000, LINUX_DEFAULT)
            .expect("a warning");
        assert!(warning.contains("2128 entries"), "{warning}");
        assert!(warning.contains("gc_thresh3 is 1024"), "{warning}");
        assert!(warning.contains("60-forklet.conf"), "{warning}");
        assert!(warning.contains("sysctl --system"), "{warning}");
    }

    #[test]
    fn the_warning_is_given_once_while_the_table_stays_too_small() {
        let mut room = Room::default();
        assert!(room.check(1000, LINUX_DEFAULT).is_some());
        assert!(room.check(1001, LINUX_DEFAULT).is_none());
        assert!(room.check(400, LINUX_DEFAULT).is_none());
        assert!(
            room.check(1000, LINUX_DEFAULT).is_some(),
            "outgrown again after fitting"
        );
    }

    #[test]
    fn a_raised_limit_or_none_at_all_says_nothing() {
        assert!(Room::default().check(1000, Some(16384)).is_none());
        assert!(Room::default().check(1000, None).is_none());
    }

    #[test]
    fn the_shipped_sysctl_file_leaves_room_for_thousands_of_runners() {
        let file = include_str!("../../systemd/60-forklet.conf");
        let hard: usize = file
            .lines()
            .find_map(|line| line.strip_prefix("net.ipv4.neigh.default.gc_thresh3"))
            .and_then(|rest| rest.trim_start_matches([' ', '=']).trim().parse().ok())
            .expect("gc_thresh3 in 60-forklet.conf");
        assert!(hard >= entries_needed(5000), "{hard}");
    }
}
