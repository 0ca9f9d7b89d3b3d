//! forklet: the command line for forkletd.

mod client;
mod colour;
mod completion;
mod describe;
mod doctor;
mod events;
mod export;
mod get;
mod hibernate;
mod logs;
mod manpage;
mod secret;
mod table;
mod test_module;
mod validate;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use forklet_state::paths;

use crate::client::{Client, object_path};
use crate::table::Format;

#[derive(Parser)]
#[command(
    version,
    about = "Drive forkletd, the local runtime for Forkspacer Custom modules",
    after_long_help = "Colour: tables are coloured only when standard output is a terminal, \
                       and never when NO_COLOR is set (to anything but the empty string) or \
                       TERM is dumb. CLICOLOR_FORCE=1 colours them in a pipe too (for less -R); \
                       -o json, yaml and name are never coloured."
)]
struct Cli {
    /// forkletd's control socket.
    #[arg(long, global = true, env = "FORKLET_SOCKET")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show modules or workspaces.
    Get {
        #[command(subcommand)]
        what: get::What,
        /// Only this namespace (for one object: its namespace, default "default").
        #[arg(short, long, global = true)]
        namespace: Option<String>,
        /// Output format.
        #[arg(short, long, global = true, value_enum, default_value_t = get::Output::Table)]
        output: get::Output,
        /// After the table, a row per change (modules).
        #[arg(short, long, global = true)]
        watch: bool,
    },
    /// Put a module (or with --workspace a workspace) to sleep by hand.
    Sleep(hibernate::Target),
    /// Wake a module (or with --workspace a workspace) by hand.
    Resume(hibernate::Target),
    /// Fetch every httpURL definition again; modules whose definition
    /// changed are installed again.
    Refresh,
    /// Try a failed module's step now instead of at its next retry.
    Retry {
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Forget a module whose manifest is gone but whose /uninstall keeps
    /// failing: its runner is removed without /uninstall. Needs --force.
    Delete {
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Yes, forget it without a successful /uninstall.
        #[arg(long)]
        force: bool,
    },
    /// Manage secrets: registry credentials for imagePullSecrets, kubeconfigs for secretReference.
    Secret {
        #[command(subcommand)]
        action: secret::Action,
    },
    /// Ask each workspace's API server for /version the way its modules'
    /// runners reach it, with their kubeconfig, and print every step.
    ///
    /// Exit status: 0 when every check passed, 1 when any failed.
    Doctor {
        /// One workspace (default: every workspace whose modules get a kubeconfig).
        workspace: Option<String>,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show one module or workspace in full, with its events.
    Describe(describe::Args),
    /// Print a module runner's output (stdout and stderr, each to its own).
    Logs(logs::Args),
    /// Print the modules' events (phase changes, calls, failures); -w follows.
    Events(events::Args),
    /// Wait until a module reaches a phase (--for=phase=ready) or is gone
    /// (--for=delete). Exit status: 0 met, 1 timed out or failed.
    Wait(wait::Args),
    /// The CLI's and the daemon's versions, and whether they fit.
    Version,
    /// Run a module image as forkletd would, with no daemon, and check that
    /// it honours the module contract (health, install twice, sleep, resume,
    /// uninstall, SIGTERM).
    ///
    /// Exit status: 0 when every required check passed, 1 when any failed,
    /// 2 on usage errors.
    TestModule(test_module::Args),
    /// Print the manifests as the Forkspacer operator reads them, every
    /// forklet extension carried over (definition files inlined,
    /// kubeconfig files as Secrets, time zones as CRON_TZ=).
    ///
    /// Exit status: 0 exported, 1 when a manifest is invalid or uses
    /// something with no operator form, 2 on usage errors.
    Export(export::Args),
    /// Check manifest files or directories offline, as the daemon would.
    ///
    /// Exit status: 0 when everything is valid, 1 when anything is not,
    /// 2 on usage errors.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also fetch httpURL definitions and check them.
        #[arg(long)]
        fetch: bool,
        /// Also refuse forklet extensions: only what the Forkspacer
        /// operator reads passes.
        #[arg(long)]
        operator: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print a shell's completion script.
    ///
    /// Install it where the shell looks, e.g.
    /// `forklet completion bash > ~/.local/share/bash-completion/completions/forklet`,
    /// `forklet completion zsh > ~/.zfunc/_forklet` (with ~/.zfunc in $fpath),
    /// `forklet completion fish > ~/.config/fish/completions/forklet.fish`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page forklet(1), or a subcommand's, in roff.
    ///
    /// `forklet man | man -l -` shows it; `forklet man >
    /// ~/.local/share/man/man1/forklet.1` installs it for `man forklet`.
    /// forklet(1) lists the subcommands' pages: `forklet man get` is forklet-get(1).
    Man(manpage::Args),
}

/// Usage errors exit 2, as clap's own do.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Get {
        what,
        output,
        watch,
        ..
    } = &cli.command
        && let Some(why) = get::refusal(what, *output, *watch)
    {
        return fail(why, ExitCode::from(USAGE));
    }
    let socket = cli.socket.unwrap_or_else(paths::client_socket);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let client = || Client::new(&socket);
    let answer = match cli.command {
        Command::Get {
            what,
            namespace,
            output,
            watch: true,
        } => match runtime.block_on(get::watch(&client(), what, namespace, output)) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(err) => Err(err),
        },
        Command::Get {
            what,
            namespace,
            output,
            watch: false,
        } => runtime.block_on(get::run(&client(), what, namespace, output)),
        Command::Sleep(target) => runtime.block_on(hibernate::run(&client(), "sleep", target)),
        Command::Resume(target) => runtime.block_on(hibernate::run(&client(), "resume", target)),
        Command::Refresh => runtime
            .block_on(client().trigger("/v1/definitions/refresh"))
            .map(|()| "fetching httpURL definitions again".to_owned()),
        Command::Retry { name, namespace } => object_path("modules", &namespace, &name, "/retry")
            .and_then(|path| runtime.block_on(client().trigger(&path)))
            .map(|()| format!("module {namespace}/{name}: retrying now")),
        Command::Delete { force: false, .. } => {
            let why = "modules are deleted by deleting their manifest; --force forgets one whose manifest is gone \
                       but whose /uninstall keeps failing, without calling /uninstall";
            return fail(why, ExitCode::from(USAGE));
        }
        Command::Delete {
            name,
            namespace,
            force: true,
        } => object_path("modules", &namespace, &name, "/forget")
            .and_then(|path| runtime.block_on(client().trigger(&path)))
            .map(|()| format!("module {namespace}/{name} forgotten; its runner is removed")),
        Command::Secret { action } => runtime.block_on(secret::run(&client(), action)),
        Command::Events(args) => match runtime.block_on(events::run(&client(), args)) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(err) => Err(err),
        },
        Command::Wait(args) => match runtime.block_on(wait::run(&client(), args)) {
            Ok((text, true)) => Ok(text),
            Ok((text, false)) => return fail(&text, ExitCode::FAILURE),
            Err(err) => Err(err),
        },
        Command::Describe(args) => runtime.block_on(describe::run(&client(), args)),
        Command::TestModule(args) => match runtime.block_on(test_module::run(args)) {
            Ok((text, true)) => Ok(text),
            Ok((text, false)) => {
                print_out(&text);
                return ExitCode::FAILURE;
            }
            Err(err) => Err(err),
        },
        Command::Version => {
            let (text, fits) = runtime.block_on(versions(&client()));
            print_out(&text);
            return if fits {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::Logs(args) => match runtime.block_on(logs::run(&client(), args)) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(err) => Err(err),
        },
        Command::Doctor {
            workspace,
            namespace,
            output,
        } => match runtime.block_on(doctor::run(&client(), workspace, &namespace, output)) {
            Ok((text, ok)) => {
                print_out(&text);
                return if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                };
            }
            Err(err) => Err(err),
        },
        Command::Completion { shell } => {
            write_out(&completion::script(shell, Cli::command()));
            return ExitCode::SUCCESS;
        }
        Command::Man(args) => match manpage::render(Cli::command(), &args) {
            Ok(page) => {
                write_out(&page);
                return ExitCode::SUCCESS;
            }
            Err(why) => return fail(&why, ExitCode::from(USAGE)),
        },
        Command::Export(args) => return export::run(args),
        Command::Validate {
            paths,
            fetch,
            operator,
            output,
        } => {
            let files = match validate::expand(&paths) {
                Ok(files) => files,
                Err(err) => return fail(&err, ExitCode::from(USAGE)),
            };
            let report = runtime.block_on(validate::run(&files, fetch, operator));
            print_out(&validate::render(&report, output, colour::Paint::stdout()));
            return if report.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match answer {
        Ok(text) => {
            print_out(&text);
            ExitCode::SUCCESS
        }
        Err(err @ client::ClientError::Usage(_)) => fail(&err.to_string(), ExitCode::from(USAGE)),
        Err(err @ client::ClientError::Interrupted(_)) => {
            fail(&err.to_string(), ExitCode::from(130))
        }
        Err(err) => fail(&err.to_string(), ExitCode::FAILURE),
    }
}

/// `forklet version`: both sides, and whether they speak the same API.
async fn versions(client: &Client) -> (String, bool) {
    use forklet_state::api::{API_VERSION, VersionView};
    let mine = format!("forklet {} (API {API_VERSION})", env!("CARGO_PKG_VERSION"));
    match client.get::<VersionView>("/v1/version").await {
        Ok(daemon) if daemon.api == API_VERSION => (
            format!("{mine}\nforkletd {} (API {})", daemon.version, daemon.api),
            true,
        ),
        Ok(daemon) => (
            format!(
                "{mine}\nforkletd {} (API {}): they do not fit; use a forklet of the daemon's release",
                daemon.version, daemon.api
            ),
            false,
        ),
        Err(err) => (format!("{mine}\nforkletd: {err}"), false),
    }
}

/// `text` and a newline on standard output; nothing at all for no text, so
/// that `-o name` of no objects is no lines rather than an empty one.
fn print_out(text: &str) {
    if !text.is_empty() {
        write_out(format!("{text}\n").as_bytes());
    }
}

/// Standard output, where a reader that went away (`| head`, `| grep -q`)
/// ends the command quietly rather than in a panic.
fn write_out(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_all(bytes).and_then(|()| out.flush())
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("forklet: writing the output: {err}");
    }
}

fn fail(message: &str, code: ExitCode) -> ExitCode {
    eprintln!("forklet: {message}");
    code
}
