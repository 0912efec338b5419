//! The command-line client: `agentvisor projects`, `run`, `watch`, … in the daemon's own binary.
//!
//! Each command opens a [`session::Session`] (which survives drops, restarts and lost replies),
//! does its requests, prints through [`render::Render`], and ends with an exit code a script can
//! act on: 0 done, 1 the request or the run failed, 2 usage, 3 the daemon cannot be reached or
//! refuses the token, 130 interrupted.

mod ask;
mod backoff;
mod commands;
mod dial;
mod gaps;
mod pending;
mod render;
mod resolve;
mod session;
mod settings;
mod tls;

use clap::{CommandFactory, Parser};

pub use commands::Command;

/// A client command line, parsed without the daemon's flags: a daemon setting in the
/// environment (`AGENTVISOR_LISTEN`, …) is none of the client's business and must not break it.
#[derive(Parser)]
#[command(name = "agentvisor", version)]
struct ClientCli {
    #[command(subcommand)]
    command: Command,
}

/// Runs the client, and exits with its code, when the first argument names a client command.
pub fn run_if_asked() {
    let first = std::env::args().nth(1);
    let commands = ClientCli::command();
    if first.is_some_and(|a| commands.get_subcommands().any(|c| c.get_name() == a)) {
        std::process::exit(main(ClientCli::parse().command));
    }
}

/// Why a command did not succeed; each maps to an exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or environment.
    Usage(String),
    /// The daemon could not be reached within the give-up time.
    Unreachable(String),
    /// The daemon refused the connection (the token).
    Refused(String),
    /// The daemon answered with an error.
    Api { code: String, message: String },
    /// Anything else that failed (a run that did not complete, a project not found).
    Failed(String),
    /// Ctrl-C.
    Interrupted,
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) | Failure::Refused(_) => 3,
            Failure::Api { .. } | Failure::Failed(_) => 1,
            Failure::Interrupted => 130,
        }
    }

    fn sentence(&self) -> Option<String> {
        match self {
            Failure::Usage(s)
            | Failure::Unreachable(s)
            | Failure::Refused(s)
            | Failure::Failed(s) => Some(s.clone()),
            Failure::Api { code, message } => Some(format!("{} ({code})", render::clean(message))),
            Failure::Interrupted => None,
        }
    }
}

/// Runs a client command to its end; returns the process exit code.
pub fn main(command: Command) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agentvisor: cannot start: {e}");
            return 1;
        }
    };
    match runtime.block_on(commands::run(command)) {
        Ok(code) => code,
        Err(f) => {
            if let Some(s) = f.sentence() {
                eprintln!("agentvisor: {s}");
            }
            f.exit_code()
        }
    }
}
