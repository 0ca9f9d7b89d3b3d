//! Output for people (aligned tables) and for programs (JSON, YAML).

use chrono::{DateTime, Utc};
use forklet_state::api::ScheduleView;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML; `None` for `Format::Table`.
pub fn structured<T: Serialize>(format: Format, value: &T) -> Option<String> {
    match format {
        Format::Table => None,
        Format::Json => Some(serde_json::to_string_pretty(value).expect("API types serialize")),
        Format::Yaml => Some(serde_yaml::to_string(value).expect("API types serialize")),
    }
}

/// Columns padded to their widest cell; the last column is not padded.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `kubectl`-style age: 45s, 12m, 3h, 5d.
pub fn age(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(since) = since else {
        return "-".into();
    };
    let secs = (now - since).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A workspace's schedule on one line: both crons (they hold blanks, so
/// quoted) and the time zone they are read in.
pub fn schedule(schedule: &ScheduleView) -> String {
    let wake = schedule.wake.as_deref().unwrap_or("-");
    format!(
        "sleep {:?}, wake {wake:?} ({})",
        schedule.sleep, schedule.timezone
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_is_free() {
        let rows = vec![
            vec!["a".into(), "long-value".into(), "x".into()],
            vec!["bbb".into(), "v".into(), "".into()],
        ];
        assert_eq!(
            render(&["N", "V", "MESSAGE"], &rows),
            "N     V            MESSAGE\na     long-value   x\nbbb   v"
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now = Utc::now();
        assert_eq!(age(Some(now - chrono::Duration::seconds(5)), now), "5s");
        assert_eq!(age(Some(now - chrono::Duration::minutes(30)), now), "30m");
        assert_eq!(age(Some(now - chrono::Duration::hours(5)), now), "5h");
        assert_eq!(age(Some(now - chrono::Duration::days(3)), now), "3d");
        assert_eq!(age(None, now), "-");
    }
}
