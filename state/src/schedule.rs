//! Hibernation schedules: when a workspace should be asleep, computed from
//! the clock alone. Asleep means the most recent sleep occurrence is later
//! than the most recent wake occurrence, so the answer is the same after a
//! restart, a missed window or a suspended laptop: there are no edges to
//! miss, only a level to read.
//!
//! Cron: 5 fields (`m h dom mon dow`), 6 fields with seconds first, or a
//! descriptor (`@daily`, `@hourly`, `@weekly`, `@monthly`, `@yearly`). Times
//! are read in the schedule's IANA zone (a `CRON_TZ=Zone ` prefix, else the
//! workspace's `timezone`, else the machine's own zone), so DST is right: a
//! time that does not exist on the night the clocks spring forward takes
//! effect at the first instant after the gap, and a repeated hour counts once.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::manifest::AutoHibernation;

/// A cron pattern and the zone its times are read in.
#[derive(Debug, Clone)]
struct Zoned {
    cron: Cron,
    zone: Tz,
}

impl Zoned {
    fn previous(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.zone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn next(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[derive(Debug, Clone)]
pub struct Schedule {
    sleep: Zoned,
    wake: Option<Zoned>,
    /// The workspace's zone (a `CRON_TZ=` prefix may override it per pattern).
    pub zone: Tz,
    /// As written, for display and comparison.
    pub sleep_text: String,
    pub wake_text: Option<String>,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        (&self.sleep_text, &self.wake_text, self.zone)
            == (&other.sleep_text, &other.wake_text, other.zone)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Sleep,
    Wake,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Sleep => "sleep",
            Transition::Wake => "wake",
        }
    }
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Schedule {
    /// The schedule of `auto`, or `None` when it is not enabled. Problems
    /// come as `(field below autoHibernation, message)`.
    pub fn parse(
        auto: &AutoHibernation,
        default_zone: Tz,
    ) -> Result<Option<Self>, Vec<(String, String)>> {
        if !auto.enabled {
            return Ok(None);
        }
        let mut problems = Vec::new();
        let zone = match auto.timezone.as_deref() {
            Some(name) => Tz::from_str(name).unwrap_or_else(|_| {
                problems.push((
                    ".timezone".into(),
                    format!("{name:?} is not an IANA time zone (e.g. Europe/Berlin)"),
                ));
                default_zone
            }),
            None => default_zone,
        };
        let Some(sleep_text) = auto.schedule.as_deref().filter(|s| !s.trim().is_empty()) else {
            problems.push((
                ".schedule".into(),
                "required when autoHibernation is enabled".into(),
            ));
            return Err(problems);
        };
        let sleep = parse_cron(sleep_text, zone).map_err(|m| (".schedule".to_owned(), m));
        let wake_text = auto
            .wake_schedule
            .as_deref()
            .filter(|s| !s.trim().is_empty());
        let wake = wake_text
            .map(|text| parse_cron(text, zone).map_err(|m| (".wakeSchedule".to_owned(), m)))
            .transpose();
        if let Some(wake_text) = wake_text
            && normalize(wake_text) == normalize(sleep_text)
        {
            problems.push((
                ".wakeSchedule".into(),
                "is the same as schedule: the workspace would never stay asleep".into(),
            ));
        }
        problems.extend(sleep.as_ref().err().cloned());
        problems.extend(wake.as_ref().err().cloned());
        match (sleep, wake) {
            (Ok(sleep), Ok(wake)) if problems.is_empty() => Ok(Some(Self {
                sleep,
                wake,
                zone,
                sleep_text: sleep_text.to_owned(),
                wake_text: wake_text.map(str::to_owned),
            })),
            _ => Err(problems),
        }
    }

    /// Whether the workspace should be asleep at `now`.
    pub fn asleep_at(&self, now: DateTime<Utc>) -> bool {
        let last_sleep = self.sleep.previous(now);
        let last_wake = self.wake.as_ref().and_then(|w| w.previous(now));
        match (last_sleep, last_wake) {
            // At the same instant, waking wins.
            (Some(sleep), Some(wake)) => sleep > wake,
            // No wake schedule: asleep from the first sleep on, until woken by hand.
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The next scheduled occurrence after `now`, and which it is.
    pub fn next_transition(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, Transition)> {
        let sleep = self.sleep.next(now).map(|t| (t, Transition::Sleep));
        let wake = self
            .wake
            .as_ref()
            .and_then(|w| w.next(now))
            .map(|t| (t, Transition::Wake));
        match (sleep, wake) {
            (Some(s), Some(w)) => Some(if w.0 <= s.0 { w } else { s }),
            (s, w) => s.or(w),
        }
    }
}

/// The machine's own zone, as the operator's users would expect "local";
/// UTC where it cannot be found out.
pub fn local_zone() -> Tz {
    iana_time_zone::get_timezone()
        .ok()
        .and_then(|name| Tz::from_str(&name).ok())
        .unwrap_or(Tz::UTC)
}

/// A cron text, with an optional `CRON_TZ=Zone ` prefix that overrides `zone`.
fn parse_cron(text: &str, zone: Tz) -> Result<Zoned, String> {
    let text = text.trim();
    let (zone, pattern) = match text
        .strip_prefix("CRON_TZ=")
        .or_else(|| text.strip_prefix("TZ="))
    {
        Some(rest) => {
            let (name, pattern) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("{text:?}: no pattern after the zone"))?;
            let zone = Tz::from_str(name)
                .map_err(|_| format!("{name:?} is not an IANA time zone (e.g. Europe/Berlin)"))?;
            (zone, pattern.trim())
        }
        None => (zone, text),
    };
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    let cron = parser.parse(pattern).map_err(|err| {
        format!("{pattern:?} is not a cron schedule ({err}); expected 5 fields (m h dom mon dow), 6 with seconds first, or @daily-style")
    })?;
    Ok(Zoned { cron, zone })
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Berlin;

    fn schedule(sleep: &str, wake: Option<&str>, zone: Tz) -> Schedule {
        let auto = AutoHibernation {
            enabled: true,
            schedule: Some(sleep.into()),
            wake_schedule: wake.map(Into::into),
            timezone: None,
        };
        Schedule::parse(&auto, zone).unwrap().unwrap()
    }

    fn at<Z: TimeZone>(zone: &Z, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        zone.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_night_window_across_midnight() {
        let night = schedule("0 22 * * *", Some("0 7 * * *"), Berlin);
        assert!(!night.asleep_at(at(&Berlin, 2026, 6, 10, 21, 59)));
        assert!(night.asleep_at(at(&Berlin, 2026, 6, 10, 22, 0)));
        assert!(
            night.asleep_at(at(&Berlin, 2026, 6, 11, 3, 0)),
            "after midnight"
        );
        assert!(!night.asleep_at(at(&Berlin, 2026, 6, 11, 7, 0)));
        assert_eq!(
            night.next_transition(at(&Berlin, 2026, 6, 10, 23, 0)),
            Some((at(&Berlin, 2026, 6, 11, 7, 0), Transition::Wake))
        );
    }

    #[test]
    fn a_weekend_window_and_catch_up_after_downtime() {
        // Friday 18:00 to Monday 08:00; 2026-06-12 is a Friday.
        let weekend = schedule("0 18 * * 5", Some("0 8 * * 1"), Berlin);
        assert!(
            weekend.asleep_at(at(&Berlin, 2026, 6, 13, 12, 0)),
            "Saturday"
        );
        assert!(
            weekend.asleep_at(at(&Berlin, 2026, 6, 15, 7, 59)),
            "Monday before eight"
        );
        // A daemon that was down from Friday afternoon to Monday noon reads
        // the right answer at start: nothing to replay, nothing skipped.
        assert!(!weekend.asleep_at(at(&Berlin, 2026, 6, 12, 17, 0)));
        assert!(!weekend.asleep_at(at(&Berlin, 2026, 6, 15, 12, 0)));
    }

    #[test]
    fn spring_forward_a_sleep_in_the_gap_takes_effect_after_it() {
        // Berlin skips 02:00-03:00 on 2026-03-29.
        let nightly = schedule("30 2 * * *", Some("0 6 * * *"), Berlin);
        assert!(
            !nightly.asleep_at(Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 0).unwrap()),
            "01:59 CET"
        );
        assert!(
            nightly.asleep_at(Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()),
            "03:00 CEST, right after the gap"
        );
        assert!(!nightly.asleep_at(at(&Berlin, 2026, 3, 29, 6, 0)));
        // New York skips 02:00-03:00 on 2026-03-08.
        let ny = schedule("30 2 * * *", Some("0 6 * * *"), New_York);
        assert!(ny.asleep_at(at(&New_York, 2026, 3, 8, 3, 0)));
    }

    #[test]
    fn fall_back_a_repeated_hour_counts_once() {
        // Berlin repeats 02:00-03:00 on 2026-10-25: 00:00-01:00 UTC as CEST, 01:00-02:00 UTC as CET.
        let nightly = schedule("30 2 * * *", Some("45 2 * * *"), Berlin);
        let first_0230 = Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap();
        assert!(nightly.asleep_at(first_0230));
        assert!(
            !nightly.asleep_at(Utc.with_ymd_and_hms(2026, 10, 25, 0, 45, 0).unwrap()),
            "first 02:45 wakes"
        );
        // The second 02:30 (CET) does not put it to sleep again.
        assert!(!nightly.asleep_at(Utc.with_ymd_and_hms(2026, 10, 25, 1, 35, 0).unwrap()));
        // New York repeats 01:00-02:00 on 2026-11-01.
        let ny = schedule("30 1 * * *", Some("0 5 * * *"), New_York);
        assert!(ny.asleep_at(at(&New_York, 2026, 11, 1, 4, 0)));
    }

    #[test]
    fn six_fields_descriptors_and_zone_prefixes() {
        let seconds = schedule("0,20,40 * * * * *", Some("10,30,50 * * * * *"), Tz::UTC);
        assert!(seconds.asleep_at(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 5).unwrap()));
        assert!(!seconds.asleep_at(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 15).unwrap()));
        let daily = schedule("@daily", Some("0 6 * * *"), Tz::UTC);
        assert!(daily.asleep_at(Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap()));
        let prefixed = schedule(
            "CRON_TZ=America/New_York 0 22 * * *",
            Some("CRON_TZ=America/New_York 0 7 * * *"),
            Berlin,
        );
        assert!(prefixed.asleep_at(at(&New_York, 2026, 6, 10, 23, 0)));
        assert!(
            !prefixed.asleep_at(at(&Berlin, 2026, 6, 10, 23, 0)),
            "23:00 in Berlin is 17:00 in New York"
        );
    }

    #[test]
    fn without_a_wake_schedule_it_stays_asleep() {
        let once = schedule("0 22 * * *", None, Tz::UTC);
        assert!(once.asleep_at(Utc.with_ymd_and_hms(2026, 1, 2, 12, 0, 0).unwrap()));
    }

    #[test]
    fn bad_schedules_name_their_field() {
        let parse = |sleep: &str, wake: Option<&str>, zone: Option<&str>| {
            let auto = AutoHibernation {
                enabled: true,
                schedule: Some(sleep.into()),
                wake_schedule: wake.map(Into::into),
                timezone: zone.map(Into::into),
            };
            Schedule::parse(&auto, Tz::UTC).unwrap_err()
        };
        let same = parse("0 22 * * *", Some("0  22 * * *"), None);
        assert_eq!(
            same,
            vec![(
                ".wakeSchedule".to_owned(),
                "is the same as schedule: the workspace would never stay asleep".to_owned()
            )]
        );
        let bad = parse("61 * * * *", None, None);
        assert_eq!(bad[0].0, ".schedule");
        assert!(
            bad[0]
                .1
                .starts_with("\"61 * * * *\" is not a cron schedule"),
            "{}",
            bad[0].1
        );
        assert_eq!(
            parse("* * * *", Some("nope"), None).len(),
            2,
            "both fields reported"
        );
        assert_eq!(
            parse("0 22 * * *", None, Some("Mars/Olympus")),
            vec![(
                ".timezone".to_owned(),
                "\"Mars/Olympus\" is not an IANA time zone (e.g. Europe/Berlin)".to_owned()
            )]
        );
        let disabled = AutoHibernation {
            enabled: false,
            schedule: None,
            wake_schedule: None,
            timezone: None,
        };
        assert_eq!(Schedule::parse(&disabled, Tz::UTC).unwrap(), None);
    }
}
