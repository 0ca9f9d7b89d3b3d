//! How long a failed step waits before it is tried again: exponential from
//! a base, capped, with jitter so that modules failing together (an engine
//! restart, a registry outage) do not all retry in the same instant.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The wait after `failures` failures in a row (1 or more), for a
    /// `jitter` in `[0, 1]`: between half and all of `base * 2^(failures-1)`,
    /// never more than `cap`.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let full = self.base.saturating_mul(1 << doublings).min(self.cap);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// [`Backoff::delay`] with a fresh random jitter.
    pub fn next(&self, failures: u32) -> Duration {
        let random = RandomState::new().build_hasher().finish();
        self.delay(failures, random as f64 / u64::MAX as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_stays_within_half() {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        let full: Vec<u64> = (1..=8).map(|n| backoff.delay(n, 1.0).as_secs()).collect();
        assert_eq!(full, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(
            backoff.delay(u32::MAX, 1.0),
            Duration::from_secs(60),
            "no overflow"
        );
        for _ in 0..100 {
            let d = backoff.next(4);
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
                "{d:?}"
            );
        }
    }
}
