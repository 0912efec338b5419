//! `mock-agent`: a stand-in for the `claude` and `codex` CLIs.
//!
//! agentvisor's tests and benchmarks need an agent that behaves like the real
//! ones (same argv, same stdout stream, same reaction to signals and errors)
//! but is deterministic, free, offline and can be told to misbehave. This
//! binary replays recorded real output and acts out scripted scenarios chosen
//! through the prompt (`mock:<scenario> key=value ...`) or the environment.
//!
//! Environment:
//! - `MOCK_AGENT_FLAVOUR=codex`: treat `--version` as `codex --version`.
//! - `MOCK_AGENT_SCENARIO`, `MOCK_AGENT_PARAMS`: scenario when the prompt
//!   names none.
//! - `MOCK_AGENT_ARGV_LOG`: append one JSON line describing the invocation.
//! - `MOCK_AGENT_PIDFILE`: where `escape` and `forker` record their grandchild's pid.
//! - `AGENTVISOR_RUN_ID`: reported by the `env` scenario (with every other variable).
//!
//! stdin is read only with `--input-format stream-json` (Claude): the prompt,
//! then the answers to permission requests (`--permission-prompt-tool stdio`),
//! until it is closed.

mod args;
mod argv_log;
mod consult;
mod control;
mod error;
mod escape;
mod events;
mod fixtures;
mod forker;
mod git_repo;
mod ids;
mod json;
mod output;
mod play;
mod scenario;
mod session;
mod signals;

use std::env;
use std::process;

use args::{Command, Flavour};
use error::Failure;
use output::Out;
use session::Session;

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(failure) => {
            output::stderr_line(&failure.message);
            failure.code
        }
    };
    process::exit(code)
}

fn run() -> Result<i32, Failure> {
    signals::ignore_sigpipe()?;
    let argv: Vec<String> = env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if argv.first().map(String::as_str) == Some(forker::FLAG) {
        forker::run();
    }
    let flavour_env = env::var("MOCK_AGENT_FLAVOUR").ok();

    let invocation = match args::parse(&argv, flavour_env.as_deref())? {
        Command::Version(flavour) => {
            Out::new().line(flavour.version_line());
            return Ok(0);
        }
        Command::Help(flavour) => {
            Out::new().line(flavour.usage());
            return Ok(0);
        }
        Command::Run(invocation) => invocation,
    };
    let mut invocation = invocation;
    if invocation.stdin_json {
        invocation.prompt = control::read_prompt()?;
    }

    let cwd_path = env::current_dir().ok();
    let cwd = cwd_path.as_ref().map(|p| p.to_string_lossy().into_owned());
    if invocation.flavour == Flavour::Codex
        && !invocation.skip_git_repo_check
        && !cwd_path.as_deref().is_some_and(git_repo::is_inside)
    {
        return Err(Failure::new(1, args::codex::UNTRUSTED_DIR));
    }

    if let Some(path) = env::var_os("MOCK_AGENT_ARGV_LOG") {
        let line = argv_log::render(&argv, cwd.as_deref(), process::id(), &invocation);
        argv_log::append(&path, &line)?;
    }

    let selection = scenario::select(
        &invocation.prompt,
        env::var("MOCK_AGENT_SCENARIO").ok().as_deref(),
        env::var("MOCK_AGENT_PARAMS").ok().as_deref(),
    )?;
    let params = &selection.params;
    signals::install(
        invocation.flavour,
        params.ignore_sigint,
        params.ignore_sigterm,
    )?;

    let id = match &invocation.resume {
        Some(id) => id.clone(),
        None => ids::random_uuid_v4()?,
    };
    let mut session = Session::new(invocation.flavour, id, invocation.resume.is_some(), cwd);
    session.stdio_permissions = invocation.permission_prompt_tool.as_deref() == Some("stdio");
    session.allowed_tools = invocation.allowed_tools.clone();
    session.pause(params.delay_ms);
    let natural = play::play(&mut session, &selection, &invocation.prompt)?;
    session.flush();
    if invocation.stdin_json {
        control::wait_for_eof()?;
    }
    Ok(params.exit.unwrap_or(natural))
}
