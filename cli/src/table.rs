//! Output for people (aligned tables) and for programs (JSON, YAML).

use chrono::{DateTime, Utc};
use forklet_state::api::ScheduleView;
use serde::Serialize;

use crate::colour::{Paint, Tone};

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
    render_toned(header, rows, Paint::Plain, |_, _| None)
}

/// As [`render`], each cell in the colour `tone` gives it (by column and
/// text) when `paint` colours. Widths are of the text alone, and padding
/// goes outside the colour, so a coloured table lines up as a plain one.
pub fn render_toned(
    header: &[&str],
    rows: &[Vec<String>],
    paint: Paint,
    tone: impl Fn(usize, &str) -> Option<Tone>,
) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>, tone: &dyn Fn(usize, &str) -> Option<Tone>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&paint.text(cell, tone(i, cell)));
            } else {
                out.push_str(&paint.padded(cell, widths[i], tone(i, cell)));
                out.push_str("   ");
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec(), &|_, _| None);
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect(), &tone));
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
    fn colour_never_moves_a_column() {
        let rows: Vec<Vec<String>> = [
            ["hello", "ready", "", ""],
            ["app-installer", "failed", "x", "boom"],
            ["b", "installing", "", "last"],
            ["gone", "deleted", "", ""],
        ]
        .iter()
        .map(|row| row.iter().map(|cell| cell.to_string()).collect())
        .collect();
        let header = ["NAME", "PHASE", "X", "MESSAGE"];
        let phase = |column: usize, text: &str| match column {
            1 => crate::colour::phase_tone(text),
            _ => None,
        };
        let plain = render_toned(&header, &rows, Paint::Plain, phase);
        let coloured = render_toned(&header, &rows, Paint::Colour, phase);
        assert_eq!(plain, render(&header, &rows), "plain paint is no paint");
        assert!(coloured.contains("\x1b[32mready\x1b[0m"), "{coloured}");
        assert!(coloured.contains("\x1b[31mfailed\x1b[0m"), "{coloured}");
        assert!(
            !coloured.contains(" \x1b[0m"),
            "no blank is coloured: {coloured:?}"
        );
        assert_eq!(anstream::adapter::strip_str(&coloured).to_string(), plain);
    }

    #[test]
    fn a_coloured_last_column_is_not_padded() {
        let rows = vec![
            vec!["a".into(), "ready".into()],
            vec!["bbbb".into(), "failed".into()],
        ];
        let coloured = render_toned(&["N", "PHASE"], &rows, Paint::Colour, |column, text| {
            (column == 1)
                .then(|| crate::colour::phase_tone(text))
                .flatten()
        });
        assert_eq!(
            coloured,
            "N      PHASE\na      \x1b[32mready\x1b[0m\nbbbb   \x1b[31mfailed\x1b[0m"
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
