//! Where forkletd's log goes and in what shape: text for a terminal, JSON
//! lines for a log shipper, or the systemd journal natively, with levels
//! and fields (`module`, `workspace`, `phase`, ...) kept as journal fields.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// The journal when stderr is the journal (systemd's `JOURNAL_STREAM`),
    /// text otherwise.
    Auto,
    Text,
    /// One JSON object per line on stderr.
    Json,
    Journald,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("--log-format journald: cannot reach the journal: {0}")]
    Journal(std::io::Error),
}

/// Sets up the global subscriber; `FORKLET_LOG` filters (default `info`).
pub fn init(format: LogFormat) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_from_env("FORKLET_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let auto = format == LogFormat::Auto;
    let format = match format {
        LogFormat::Auto if stderr_is_the_journal() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        other => other,
    };
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(journal) => {
                // `MODULE=default/app`, not `F_MODULE=...`: fields as users
                // write them in `journalctl MODULE=default/app`.
                let journal = journal
                    .with_field_prefix(None)
                    .with_syslog_identifier("forkletd".to_owned());
                registry.with(journal).init();
            }
            // Asked for by name, the journal must be there; found by
            // `auto`, stderr still goes to it as text.
            Err(err) if !auto => return Err(LoggingError::Journal(err)),
            Err(_) => registry.with(text()).init(),
        },
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Text | LogFormat::Auto => registry.with(text()).init(),
    }
    Ok(())
}

/// Text on stderr, coloured only on a terminal and never with `NO_COLOR`.
fn text<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .with_writer(std::io::stderr)
}

/// Whether stderr is the stream systemd connected to the journal: its
/// device and inode are the ones `JOURNAL_STREAM` names (systemd.exec(5)).
/// A child that inherited the variable but writes elsewhere says no.
fn stderr_is_the_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(stderr).metadata() else {
        return false;
    };
    names(&stream.to_string_lossy(), meta.dev(), meta.ino())
}

/// `JOURNAL_STREAM` is `DEVICE:INODE`, both decimal.
fn names(stream: &str, dev: u64, ino: u64) -> bool {
    stream
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_names_a_device_and_an_inode() {
        assert!(names("64768:1234", 64768, 1234));
        assert!(!names("64768:1234", 64768, 1235));
        assert!(!names("garbage", 64768, 1234));
        assert!(!names("", 0, 0));
    }
}
