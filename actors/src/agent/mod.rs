//! The agent CLIs: one module per agent (its command line and the reading of its output) behind
//! the [`Agent`] trait, plus finding and probing the executables.
//!
//! Commands follow what the CLIs actually accept (see `docs/agents.md`). The prompt always comes
//! after `--`, so a prompt starting with `-` can never be read as an option, and every option
//! value is passed as `--flag=value` for the same reason.
//!
//! Adding an agent means one new module here and one line in [`AGENTS`]: its name (from
//! [`Agent::name`]) is then accepted on the wire and in `metadata.json`, its executable is the
//! setting `--<name>-bin` / `AGENTVISOR_<NAME>_BIN`, and it has a circuit breaker, a health probe
//! and a metrics label of its own. This module sits low in the engine's layers (it needs only the
//! run options and the error type), so that the protocol and storage can name agents through it.

mod claude;
mod codex;
mod kind;
mod line;

pub use kind::AgentKind;
pub use line::{AgentLine, Observation};

use std::path::{Path, PathBuf};

use crate::error::{ApiError, Code};
use crate::options::RunOptions;

/// What the daemon knows about one agent CLI.
pub trait Agent: Sync {
    /// Its name on the wire and in `metadata.json`, lowercase ASCII letters: also the default
    /// executable, and `<NAME>` in the setting `AGENTVISOR_<NAME>_BIN`.
    fn name(&self) -> &'static str;

    /// What the CLI is called, for people (`--help`).
    fn title(&self) -> &'static str;

    /// The npm package that installs the CLI.
    fn npm_package(&self) -> &'static str;

    /// The options that keep it from changing anything: how it runs as a consultant.
    fn read_only(&self) -> RunOptions;

    /// Why its runs cannot ask for approvals; `None` when they can.
    fn approvals_refused(&self) -> Option<ApiError> {
        None
    }

    /// The arguments for one run; an error for an option this CLI does not take.
    fn args(
        &self,
        options: &RunOptions,
        resume: Option<&str>,
        prompt: &str,
    ) -> Result<Vec<String>, ApiError>;

    /// What one line of the CLI's JSON output says about the run.
    fn observe(&self, line: &AgentLine) -> Observation;
}

/// The registry: every agent the daemon knows, one line each. The first is a new project's
/// agent when the request names none.
static AGENTS: [&dyn Agent; 2] = [&claude::Claude, &codex::Codex];

/// Finds an executable: a path as given when it contains `/`, otherwise on `PATH`.
pub fn resolve_program(bin: &str) -> Option<PathBuf> {
    if bin.is_empty() {
        return None;
    }
    if bin.contains('/') {
        let p = PathBuf::from(bin);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The error for a missing agent CLI, saying how to install it.
pub fn not_found(kind: AgentKind) -> ApiError {
    let pkg = kind.agent().npm_package();
    let var = kind.bin_variable();
    ApiError::new(
        Code::AgentNotFound,
        format!(
            "the {} agent CLI is not installed on the server: install it with `npm install -g {pkg}`, or point {var} at its executable",
            kind.as_str()
        ),
    )
}

/// The longest single argument the kernel passes to a program (`MAX_ARG_STRLEN`, 128 KiB,
/// counting the terminating NUL). A longer one makes `execve` fail, so the run could never start.
pub const MAX_ARG_BYTES: usize = 128 * 1024 - 1;

/// Refuses what no command line can carry: a NUL (it would end the argument early) or an
/// argument over [`MAX_ARG_BYTES`]. `what` names the argument for the client.
fn check_arg(what: &str, arg: &str) -> Result<(), ApiError> {
    if arg.contains('\0') {
        return Err(ApiError::validation(format!(
            "{what} must not contain a NUL character"
        )));
    }
    if arg.len() > MAX_ARG_BYTES {
        return Err(ApiError::validation(format!(
            "{what} is {} bytes; the agent's command line takes at most {MAX_ARG_BYTES} bytes in one argument",
            arg.len()
        )));
    }
    Ok(())
}

/// The arguments for one run; refused with `VALIDATION_FAILED` when an option is not supported
/// or any argument cannot be passed to a program.
pub fn build_args(
    kind: AgentKind,
    options: &RunOptions,
    resume: Option<&str>,
    prompt: &str,
) -> Result<Vec<String>, ApiError> {
    // With approvals the prompt goes on stdin, where any length and any character will do.
    let prompt_in_argv = !options.asks_approval();
    if prompt_in_argv {
        check_arg("'prompt'", prompt)?;
    }
    let args = kind.agent().args(options, resume, prompt)?;
    let flags = &args[..args.len() - usize::from(prompt_in_argv)];
    for arg in flags {
        let flag = crate::logfmt::sanitize(arg.split('=').next().unwrap_or_default(), 64);
        check_arg(&format!("the argument {flag}"), arg)?;
    }
    Ok(args)
}

/// The error for an option the agent `agent` does not take.
fn unsupported(agent: &str, name: &str) -> ApiError {
    ApiError::validation(format!(
        "option '{name}' is not supported by the {agent} agent"
    ))
}

/// The two agents every test names.
#[cfg(test)]
pub(crate) mod testing {
    use super::AgentKind;

    pub fn claude() -> AgentKind {
        AgentKind::parse("claude").unwrap()
    }

    pub fn codex() -> AgentKind {
        AgentKind::parse("codex").unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::testing::{claude, codex};

    #[test]
    fn the_registry_names_each_agent_once_and_derives_its_setting() {
        let names: Vec<&str> = AgentKind::all().map(AgentKind::as_str).collect();
        assert_eq!(names, ["claude", "codex"]);
        for kind in AgentKind::all() {
            let name = kind.as_str();
            assert!(name.bytes().all(|b| b.is_ascii_lowercase()), "{name}");
            assert_eq!(AgentKind::parse(name), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<AgentKind>(&json).unwrap(), kind);
        }
        assert_eq!(claude().bin_variable(), "AGENTVISOR_CLAUDE_BIN");
        assert_eq!(codex().bin_variable(), "AGENTVISOR_CODEX_BIN");
        assert_eq!(AgentKind::default(), claude());
        assert_eq!(AgentKind::choices('\''), "'claude' or 'codex'");
        assert!(AgentKind::parse("gemini").is_none());
        assert!(serde_json::from_str::<AgentKind>("\"gemini\"").is_err());
    }

    #[test]
    fn claude_prompt_goes_after_double_dash_and_resume_is_passed() {
        let o = RunOptions {
            model: Some("m1".into()),
            allowed_tools: vec!["Read".into(), "Bash(git:*)".into()],
            ..Default::default()
        };
        let a = build_args(claude(), &o, Some("s-1"), "--help").unwrap();
        assert_eq!(
            a,
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--resume=s-1",
                "--model=m1",
                "--allowedTools=Read,Bash(git:*)",
                "--",
                "--help"
            ]
        );
    }

    #[test]
    fn codex_new_and_resume() {
        let o = RunOptions::default();
        assert_eq!(
            build_args(codex(), &o, None, "hi").unwrap(),
            ["exec", "--json", "--skip-git-repo-check", "--", "hi"]
        );
        assert_eq!(
            build_args(codex(), &o, Some("t-1"), "-x").unwrap(),
            [
                "exec",
                "resume",
                "--json",
                "--skip-git-repo-check",
                "--",
                "t-1",
                "-x"
            ]
        );
        let o = RunOptions {
            max_turns: Some(2),
            ..Default::default()
        };
        assert!(build_args(codex(), &o, None, "hi").is_err());
    }

    #[test]
    fn approvals_put_claude_on_the_control_protocol_and_are_refused_for_codex() {
        let o = RunOptions {
            approvals: Some(true),
            ..Default::default()
        };
        let a = build_args(claude(), &o, None, "hi").unwrap();
        assert_eq!(
            a,
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--input-format",
                "stream-json",
                "--permission-prompt-tool",
                "stdio"
            ]
        );
        let e = build_args(codex(), &o, None, "hi").unwrap_err();
        assert!(e.error.contains("sandbox"), "{}", e.error);
        // The prompt goes on stdin: no argument limit applies to it.
        let long = "a".repeat(MAX_ARG_BYTES + 1);
        assert!(build_args(claude(), &o, None, &long).is_ok());
    }

    #[test]
    fn arguments_no_program_can_take_are_refused() {
        let o = RunOptions::default();
        let longest = "a".repeat(MAX_ARG_BYTES);
        assert!(build_args(claude(), &o, None, &longest).is_ok());
        for prompt in [format!("{longest}a"), "a\0b".to_string()] {
            let e = build_args(codex(), &o, None, &prompt).unwrap_err();
            assert_eq!(e.code, Code::ValidationFailed);
            assert!(e.error.contains("'prompt'"), "{}", e.error);
        }
        let e = build_args(claude(), &o, Some("s\0"), "hi").unwrap_err();
        assert!(e.error.contains("--resume"), "{}", e.error);
    }

    #[test]
    fn missing_binaries_are_not_found() {
        assert!(resolve_program("definitely-not-an-agent-cli").is_none());
        assert!(resolve_program("/nonexistent/claude").is_none());
        assert!(resolve_program("sh").is_some());
    }
}
