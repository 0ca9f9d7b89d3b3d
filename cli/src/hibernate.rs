//! `forklet sleep|resume NAME [--workspace] [--for DURATION | --until TIME]`:
//! manual overrides that expire on their own. Without `--for` or `--until`
//! one lasts until the workspace's next scheduled transition; `--clear` ends
//! one now.

use chrono::{DateTime, Local, NaiveTime, TimeZone, Utc};
use forklet_state::api::{OverrideRequest, OverrideView};

use crate::client::{Client, ClientError, object_path};

#[derive(clap::Args)]
pub struct Target {
    /// A module's name, or with --workspace a workspace's.
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// NAME is a workspace: every module in it.
    #[arg(long)]
    pub workspace: bool,
    /// For how long: 90s, 45m, 2h, 1h30m, 1d.
    #[arg(long = "for", value_parser = parse_duration, conflicts_with = "until")]
    pub duration: Option<u64>,
    /// Until when: an RFC 3339 time, or HH:MM (local, the next one to come).
    #[arg(long, value_parser = parse_until)]
    pub until: Option<DateTime<Utc>>,
    /// End the manual sleep or resume now: manifests and schedules decide again.
    #[arg(long, conflicts_with_all = ["duration", "until"])]
    pub clear: bool,
}

pub async fn run(client: &Client, action: &str, target: Target) -> Result<String, ClientError> {
    let kind = if target.workspace {
        "workspaces"
    } else {
        "modules"
    };
    let what = if target.workspace {
        "workspace"
    } else {
        "module"
    };
    if target.clear {
        let path = object_path(kind, &target.namespace, &target.name, "/override")?;
        client.delete(&path).await?;
        return Ok(format!(
            "{what} {}/{}: override cleared",
            target.namespace, target.name
        ));
    }
    let path = object_path(kind, &target.namespace, &target.name, &format!("/{action}"))?;
    let request = OverrideRequest {
        for_seconds: target.duration,
        until: target.until,
    };
    let set: OverrideView = client.post(&path, &request).await?;
    let lasting = match set.until {
        Some(until) => format!(
            "until {}",
            until.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S %Z")
        ),
        None => "until another override replaces it".to_owned(),
    };
    Ok(format!(
        "{what} {}/{}: {} {lasting}",
        target.namespace, target.name, set.action
    ))
}

/// Seconds in `90s`, `45m`, `2h`, `1h30m`, `1d`.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration (e.g. 90s, 45m, 2h, 1h30m, 1d)");
    let (mut total, mut number) = (0u64, String::new());
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// An RFC 3339 time, or `HH:MM` meaning the next such local time.
pub fn parse_until(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let time = NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| format!("{text:?} is not a time (e.g. 18:30 or 2026-11-24T18:30:00+01:00)"))?;
    let now = Local::now();
    let today = now.date_naive().and_time(time);
    let candidate = Local
        .from_local_datetime(&today)
        .earliest()
        .ok_or_else(|| format!("{text} does not exist today"))?;
    let at = if candidate > now {
        candidate
    } else {
        candidate + chrono::Duration::days(1)
    };
    Ok(at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("45m"), Ok(2700));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        for bad in ["", "2", "h", "2x", "0m", "1h30"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn until_a_time_means_the_next_one() {
        let at = parse_until("2026-11-24T18:30:00Z").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-24T18:30:00+00:00");
        let next = parse_until("03:15").unwrap();
        assert!(next > Utc::now() && next <= Utc::now() + chrono::Duration::days(1));
        assert!(parse_until("25:00").is_err());
    }
}
