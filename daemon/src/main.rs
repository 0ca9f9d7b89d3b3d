use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use forklet_state::paths;
use forkletd::Config;
use forkletd::backoff::Backoff;
use forkletd::logging::LogFormat;
use forkletd::protocol::{Limits, Operation};
use tokio_util::sync::CancellationToken;

/// Runs Forkspacer Custom modules from a directory of manifests on Docker.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory of Module and Workspace manifests (*.yaml, *.yml).
    #[arg(long, env = "FORKLET_MANIFESTS")]
    manifests: Option<PathBuf>,
    /// Directory for the state database and runner files.
    #[arg(long, env = "FORKLET_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Unix socket of the control API.
    #[arg(long, env = "FORKLET_SOCKET")]
    socket: Option<PathBuf>,
    /// Make the control socket 0660 with this group (a name or a number),
    /// as Docker's group works; default: the owner only (0600).
    #[arg(long, env = "FORKLET_SOCKET_GROUP")]
    socket_group: Option<String>,
    /// How many modules may be acted on at once.
    #[arg(long, env = "FORKLET_MAX_CONCURRENT", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent: u16,
    /// Seconds a new runner may take to answer GET /health.
    #[arg(long, env = "FORKLET_HEALTH_TIMEOUT", value_parser = seconds(), default_value_t = 60)]
    health_timeout: u64,
    /// Seconds one lifecycle call (install, uninstall, sleep, resume) may take.
    #[arg(long, env = "FORKLET_CALL_TIMEOUT", value_parser = seconds(), default_value_t = 300)]
    call_timeout: u64,
    /// Seconds POST /install may take (default: --call-timeout).
    #[arg(long, env = "FORKLET_INSTALL_TIMEOUT", value_parser = seconds())]
    install_timeout: Option<u64>,
    /// Seconds POST /uninstall may take (default: --call-timeout).
    #[arg(long, env = "FORKLET_UNINSTALL_TIMEOUT", value_parser = seconds())]
    uninstall_timeout: Option<u64>,
    /// Seconds POST /sleep may take (default: --call-timeout).
    #[arg(long, env = "FORKLET_SLEEP_TIMEOUT", value_parser = seconds())]
    sleep_timeout: Option<u64>,
    /// Seconds POST /resume may take (default: --call-timeout).
    #[arg(long, env = "FORKLET_RESUME_TIMEOUT", value_parser = seconds())]
    resume_timeout: Option<u64>,
    /// Longest wait, in seconds, between retries of a failed step (the
    /// wait doubles from one second up to this).
    #[arg(long, env = "FORKLET_RETRY_MAX", value_parser = seconds(), default_value_t = 300)]
    retry_max: u64,
    /// Seconds a runner that belongs to no module is left before removal.
    #[arg(long, env = "FORKLET_ORPHAN_GRACE", value_parser = seconds(), default_value_t = 60)]
    orphan_grace: u64,
    /// Seconds a module must stay absent from every manifest before it is
    /// uninstalled (a file that vanishes for a moment uninstalls nothing).
    #[arg(long, env = "FORKLET_REMOVAL_GRACE", value_parser = seconds(), default_value_t = 5)]
    removal_grace: u64,
    /// Seconds an image pull may go without progress before it fails.
    #[arg(long, env = "FORKLET_PULL_TIMEOUT", value_parser = seconds(), default_value_t = 120)]
    pull_timeout: u64,
    /// Serve Prometheus/OpenMetrics metrics at http://ADDRESS/metrics:
    /// PORT or :PORT (loopback), or IP:PORT. Default: not served.
    #[arg(long, env = "FORKLET_METRICS_ADDRESS", value_name = "ADDRESS",
          value_parser = forkletd::metrics::parse_address)]
    metrics_address: Option<std::net::SocketAddr>,
    /// Log as text, as JSON lines, or to the systemd journal with fields;
    /// auto: the journal when stderr is the journal, else text.
    #[arg(long, env = "FORKLET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// Keep a module's runner running while it is asleep (by default it is
    /// stopped after /sleep and started again before /resume).
    #[arg(long, env = "FORKLET_KEEP_RUNNERS_WHILE_ASLEEP")]
    keep_runners_while_asleep: bool,
}

/// Durations in seconds, at most a year: far beyond any sensible setting,
/// and far from the overflow of a clock plus a duration.
fn seconds() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(..=365 * 24 * 3600)
}

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads exist.
    forkletd::resources::limit_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    forkletd::logging::init(args.log_format)?;
    forkletd::resources::raise_open_files_limit();
    if cfg!(not(feature = "testing")) && std::env::var_os("FORKLET_CRASH_AT").is_some() {
        tracing::warn!(
            "FORKLET_CRASH_AT is set, but this forkletd is built without the testing feature: ignored"
        );
    }
    // Absolute, as Docker wants bind mounts and as messages read best.
    let absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
    let state_dir = absolute(args.state_dir.unwrap_or_else(paths::default_state_dir));
    let config = Config {
        manifests_dir: absolute(args.manifests.unwrap_or_else(paths::default_manifests_dir)),
        socket: absolute(args.socket.unwrap_or_else(paths::default_socket)),
        socket_group: args.socket_group.as_deref().map(group_id).transpose()?,
        state_dir,
        limits: Limits {
            health_deadline: Duration::from_secs(args.health_timeout),
            call_timeout: Duration::from_secs(args.call_timeout),
            per_call: [
                (Operation::Install, args.install_timeout),
                (Operation::Uninstall, args.uninstall_timeout),
                (Operation::Sleep, args.sleep_timeout),
                (Operation::Resume, args.resume_timeout),
            ]
            .into_iter()
            .filter_map(|(op, secs)| Some((op, Duration::from_secs(secs?))))
            .collect(),
            ..Limits::default()
        },
        max_concurrent: args.max_concurrent.into(),
        orphan_grace: Duration::from_secs(args.orphan_grace),
        removal_grace: Duration::from_secs(args.removal_grace),
        pull_stall: Duration::from_secs(args.pull_timeout.max(1)),
        rescan_every: forkletd::watcher::RESYNC,
        keep_runners_while_asleep: args.keep_runners_while_asleep,
        metrics_address: args.metrics_address,
        retry: Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(args.retry_max.max(1)),
        },
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    forkletd::run(config, shutdown).await.context("forkletd")
}

/// A group's id, from its number or its name in `/etc/group` (a group
/// known only to a directory service: give its number).
fn group_id(name: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    let groups = forklet_state::bounded::read_text(std::path::Path::new("/etc/group"), 16 << 20)
        .map_err(|e| anyhow::anyhow!("--socket-group {name:?}: /etc/group: {e}"))?;
    groups
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some(name)).then(|| fields.nth(1)?.parse().ok())?
        })
        .ok_or_else(|| anyhow::anyhow!("--socket-group {name:?}: no such group in /etc/group"))
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping");
    shutdown.cancel();
}
