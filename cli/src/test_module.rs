//! `forklet test-module IMAGE`: does a module image honour the contract?
//! Run as forkletd would run it, with no daemon; a checklist comes back.

use std::path::PathBuf;
use std::time::Duration;

use forklet_state::bounded::{KUBECONFIG_MAX, read_text};
use forklet_state::definition::{Permission, parse_definition};
use forklet_state::schema::validate_config;
use forkletd::module_test::{ModuleTest, Options, Report, Verdict};
use serde_json::{Map, Value};

use crate::client::ClientError;
use crate::colour::{Paint, Tone};
use crate::table::Format;

/// Definitions and config files are small; a bigger one is a mistake.
const FILE_MAX: u64 = 1 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// The module image, as a definition's `spec.image` names it.
    image: String,
    /// A config value (repeatable); VALUE is read as YAML (`3`, `true`, `"3"`).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// A YAML or JSON mapping of config values (--config wins).
    #[arg(long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// The module's Custom definition: the config is checked against its
    /// schema (defaults applied) as the daemon would, and its resource
    /// usage and permissions are used.
    #[arg(long, value_name = "FILE")]
    definition: Option<PathBuf>,
    /// Run with this permission (repeatable); `workspace` needs --kubeconfig.
    #[arg(long, value_enum)]
    permission: Vec<PermissionArg>,
    /// The kubeconfig a module with the `workspace` permission receives
    /// (cut to one context, its files embedded, as forkletd gives it).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The context of --kubeconfig (default: its current one).
    #[arg(long)]
    context: Option<String>,
    /// How long the module may take to become healthy and to answer each
    /// call (default: forkletd's, 60 s and 300 s).
    #[arg(long)]
    timeout: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PermissionArg {
    Workspace,
    Controller,
}

/// The report, and whether every required check passed.
pub async fn run(args: Args) -> Result<(String, bool), ClientError> {
    let mut interrupts = Interrupts::register()?;
    let options = options(&args)?;
    let test = tokio::select! {
        test = ModuleTest::connect(options) => test.map_err(|err| ClientError::Api(err.to_string()))?,
        () = interrupts.recv() => return Err(ClientError::Interrupted("interrupted".into())),
    };
    let quiet = args.output != Format::Table;
    let progress = move |step: &str| {
        if !quiet {
            eprintln!("forklet: {step}");
        }
    };
    // A signal ends the walk, not the cleanup: the runner always goes.
    let report = tokio::select! {
        report = test.walk(&progress) => Some(report),
        () = interrupts.recv() => None,
    };
    if let Err(err) = test.clean().await {
        return Err(ClientError::Api(format!(
            "test-module: could not clean up: {err}"
        )));
    }
    let Some(report) = report else {
        return Err(ClientError::Interrupted(format!(
            "interrupted; runner {} removed",
            test.runner()
        )));
    };
    let passed = report.passed;
    let text = match args.output {
        Format::Table => render(&report, Paint::stdout()),
        Format::Json => serde_json::to_string_pretty(&report).expect("the report serializes"),
        Format::Yaml => serde_yaml::to_string(&report).expect("the report serializes"),
    };
    Ok((text, passed))
}

/// Ctrl-C, a closed terminal, or a polite kill: taken from the start, so
/// that none arrives unheard before the walk.
struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn register() -> Result<Self, ClientError> {
        use tokio::signal::unix::{SignalKind, signal};
        let failed = |err: std::io::Error| ClientError::Api(format!("signal handlers: {err}"));
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(failed)?,
            term: signal(SignalKind::terminate()).map_err(failed)?,
            hup: signal(SignalKind::hangup()).map_err(failed)?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

/// The longest --timeout: a day is already beyond any module.
const TIMEOUT_MAX: u64 = 86_400;

fn options(args: &Args) -> Result<Options, ClientError> {
    let usage = ClientError::Usage;
    if args.image.trim().is_empty() {
        return Err(usage(
            "give the module image, e.g. my-registry/my-module:v1".into(),
        ));
    }
    let timeout = match &args.timeout {
        Some(text) => {
            let secs = crate::hibernate::parse_duration(text)
                .map_err(|e| usage(format!("--timeout: {e}")))?;
            if secs > TIMEOUT_MAX {
                return Err(usage(format!("--timeout: at most {TIMEOUT_MAX} s (a day)")));
            }
            Some(Duration::from_secs(secs.max(1)))
        }
        None => None,
    };
    let mut input = match &args.config_file {
        Some(path) => mapping(path)?,
        None => Map::new(),
    };
    for pair in &args.config {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            let shown: String = pair.chars().take(80).collect();
            usage(format!("--config {shown}: give KEY=VALUE"))
        })?;
        let value: Value =
            serde_yaml::from_str(value).map_err(|e| usage(format!("--config {pair}: {e}")))?;
        input.insert(key.to_owned(), value);
    }
    let mut permissions: Vec<Permission> = args
        .permission
        .iter()
        .map(|p| match p {
            PermissionArg::Workspace => Permission::Workspace,
            PermissionArg::Controller => Permission::Controller,
        })
        .collect();
    let (mut cpu_shares, mut memory_reservation) = (None, None);
    let config = match &args.definition {
        None => input,
        Some(path) => {
            let text = read(path)?;
            let value: serde_json::Value = serde_yaml::from_str(&text)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
            let definition = parse_definition(&value).map_err(|errors| {
                let lines: Vec<String> = errors
                    .iter()
                    .map(|(field, message)| format!("{}: {field}: {message}", path.display()))
                    .collect();
                usage(lines.join("\n"))
            })?;
            cpu_shares = definition.cpu_shares();
            memory_reservation = definition.memory_reservation();
            permissions.extend(definition.spec.permissions.iter().copied());
            validate_config(definition.config.as_deref(), &input).map_err(|errors| {
                let lines: Vec<String> = errors
                    .into_iter()
                    .map(|(alias, message)| format!("config {alias}: {message}"))
                    .collect();
                ClientError::Api(lines.join("\n"))
            })?
        }
    };
    let kubeconfig = match (
        permissions.contains(&Permission::Workspace),
        &args.kubeconfig,
    ) {
        (true, Some(path)) => Some(kubeconfig(path, args.context.as_deref())?),
        (true, None) => {
            return Err(usage(
                "the workspace permission needs --kubeconfig FILE (what the module receives)"
                    .into(),
            ));
        }
        (false, Some(_)) => {
            return Err(usage(
                "--kubeconfig is for the workspace permission: add --permission workspace".into(),
            ));
        }
        (false, None) => None,
    };
    let defaults = forkletd::protocol::Limits::default();
    Ok(Options {
        image: args.image.clone(),
        config,
        cpu_shares,
        memory_reservation,
        kubeconfig,
        health_timeout: timeout.unwrap_or(defaults.health_deadline),
        call_timeout: timeout.unwrap_or(defaults.call_timeout),
        controller: permissions.contains(&Permission::Controller),
    })
}

/// The kubeconfig as forkletd gives it to a module: one context, its
/// certificate and key files embedded, nothing else of the file.
fn kubeconfig(path: &std::path::Path, context: Option<&str>) -> Result<String, ClientError> {
    use forkletd::kubeconfig::{Origin, minify};
    let shown = |e: &dyn std::fmt::Display| {
        ClientError::Usage(format!("--kubeconfig {}: {e}", path.display()))
    };
    let text = read_text(path, KUBECONFIG_MAX).map_err(|e| shown(&e))?;
    let key = forklet_state::ObjectKey::new("default", "test-module").expect("a valid name");
    let flat = minify(&key, Origin::File(path), &text, context).map_err(|e| shown(&e))?;
    Ok(serde_yaml::to_string(&flat).expect("a kubeconfig serializes"))
}

fn read(path: &std::path::Path) -> Result<String, ClientError> {
    read_text(path, FILE_MAX).map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))
}

fn mapping(path: &std::path::Path) -> Result<Map<String, Value>, ClientError> {
    // Read as manifests are: a key given twice is an error.
    let first = forklet_state::yaml::documents(&read(path)?).next();
    match first.unwrap_or(Ok(Value::Null)) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ClientError::Usage(format!(
            "{}: not a mapping of config values",
            path.display()
        ))),
        Err(e) => Err(ClientError::Usage(format!("{}: {e}", path.display()))),
    }
}

/// A line per check, then the verdict.
fn render(report: &Report, paint: Paint) -> String {
    let mut out = String::new();
    for check in &report.checks {
        let (word, tone) = match check.verdict {
            Verdict::Pass => ("PASS", Tone::Good),
            Verdict::Warn => ("WARN", Tone::Unsettled),
            Verdict::Fail => ("FAIL", Tone::Bad),
        };
        let took = check
            .millis
            .map_or(String::new(), |ms| format!(" ({ms} ms)"));
        out.push_str(&format!(
            "{}  {:<14}{}{took}\n",
            paint.text(word, Some(tone)),
            check.name,
            check.detail
        ));
    }
    if let Some(bytes) = report.image_bytes {
        out.push_str(&format!(
            "image {}: {:.1} MB\n",
            report.image,
            bytes as f64 / 1e6
        ));
    }
    let fails = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .count();
    let warns = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Warn)
        .count();
    out.push_str(&match report.passed {
        true => format!("passed, {warns} warning(s)"),
        false => format!("failed: {fails} check(s)"),
    });
    out
}
