//! forklet: the command line for forkletd.

mod client;
mod get;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use forklet_state::paths;

use crate::client::Client;
use crate::table::Format;

#[derive(Parser)]
#[command(
    version,
    about = "Drive forkletd, the local runtime for Forkspacer Custom modules"
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
        #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli.socket.unwrap_or_else(paths::default_socket);
    let client = Client::new(&socket);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Get {
                what,
                namespace,
                output,
            } => get::run(&client, what, namespace, output).await,
        }
    });
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("forklet: {err}");
            ExitCode::FAILURE
        }
    }
}
