//! Command-line parsing: which CLI is being imitated and what it was asked.
//!
//! The daemon builds a real `claude` or `codex` command line; the mock must
//! accept exactly those flags (and refuse what the real CLI refuses), so a
//! test that passes against the mock also says something about the real
//! invocation. Each flavour's grammar lives in its own submodule.

pub mod claude;
pub mod codex;

use crate::error::Failure;

/// Which real CLI the mock is standing in for. It decides the argv grammar,
/// the fixtures replayed, and the SIGINT behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Claude,
    Codex,
}

impl Flavour {
    /// The name used in the argv log.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Claude => "claude",
            Flavour::Codex => "codex",
        }
    }

    /// What the real CLI prints for `--version` (the versions the fixtures
    /// were recorded with).
    pub fn version_line(self) -> &'static str {
        match self {
            Flavour::Claude => "2.1.197 (Claude Code)",
            Flavour::Codex => "codex-cli 0.169.0",
        }
    }

    /// A short usage text for `--help`.
    pub fn usage(self) -> &'static str {
        match self {
            Flavour::Claude => claude::USAGE,
            Flavour::Codex => codex::USAGE,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Version(Flavour),
    Help(Flavour),
    Run(Invocation),
}

/// A validated request to run the agent on a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub flavour: Flavour,
    /// The prompt words joined with single spaces.
    pub prompt: String,
    /// `--resume <session_id>` (claude) or `exec resume <thread_id>` (codex).
    pub resume: Option<String>,
    /// Claude only: `--input-format stream-json`, the prompt (and permission
    /// answers) come on stdin.
    pub stdin_json: bool,
    /// Claude only: `--permission-prompt-tool`; `stdio` hands permission
    /// decisions to the parent over stdin/stdout.
    pub permission_prompt_tool: Option<String>,
    /// Claude only: the rules of `--allowedTools` (comma-separated).
    pub allowed_tools: Vec<String>,
    /// Codex only: whether `--skip-git-repo-check` was given (claude never
    /// checks, so it is `true` there).
    pub skip_git_repo_check: bool,
}

/// Parses `args` (argv without the program name). `flavour_env` is
/// `MOCK_AGENT_FLAVOUR`, which only matters when argv cannot tell: `exec` as
/// the first argument always means codex, anything else means claude unless
/// the environment forces codex (for `codex --version`).
pub fn parse(args: &[String], flavour_env: Option<&str>) -> Result<Command, Failure> {
    let forced = match flavour_env.map(str::trim) {
        None | Some("") => None,
        Some("claude") => Some(Flavour::Claude),
        Some("codex") => Some(Flavour::Codex),
        Some(other) => {
            return Err(Failure::new(
                2,
                format!("mock-agent: MOCK_AGENT_FLAVOUR must be claude or codex, not '{other}'"),
            ))
        }
    };
    match args.first().map(String::as_str) {
        Some("exec") => codex::parse_exec(&args[1..]),
        _ if forced == Some(Flavour::Codex) => codex::parse_top_level(args),
        _ => claude::parse(args),
    }
}

/// argv as both CLIs walk it: options one token at a time up to `--`, and everything after
/// `--` positional. The grammars differ in which options exist and in what may be an option's
/// value, not in this.
struct Argv<'a> {
    args: &'a [String],
    next: usize,
}

impl<'a> Argv<'a> {
    fn new(args: &'a [String]) -> Self {
        Argv { args, next: 0 }
    }

    /// The next token before `--`. At `--`, the arguments after it are added to `positionals`
    /// and the walk ends.
    fn next_token(&mut self, positionals: &mut Vec<&'a str>) -> Option<&'a str> {
        let token = self.args.get(self.next)?.as_str();
        self.next += 1;
        if token == "--" {
            positionals.extend(self.args[self.next..].iter().map(String::as_str));
            self.next = self.args.len();
            return None;
        }
        Some(token)
    }

    /// An option's value: its `inline` one, else the next argument if the grammar `accepts`
    /// it as a value; `None` when there is neither.
    fn value(
        &mut self,
        inline: Option<&'a str>,
        accepts: impl Fn(&str) -> bool,
    ) -> Option<&'a str> {
        if inline.is_some() {
            return inline;
        }
        let v = self.args.get(self.next).filter(|v| accepts(v))?;
        self.next += 1;
        Some(v)
    }
}

/// Whether a token before `--` is a word (part of the prompt, or a positional) rather than an
/// option; a lone `-` is a word.
fn is_word(token: &str) -> bool {
    !token.starts_with('-') || token == "-"
}

/// Splits `--flag=value` into the flag and its inline value. Only long
/// options take values this way; `-x=...` is left alone.
fn split_inline(token: &str) -> (&str, Option<&str>) {
    if token.starts_with("--") {
        if let Some((name, value)) = token.split_once('=') {
            return (name, Some(value));
        }
    }
    (token, None)
}

#[cfg(test)]
pub(crate) fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The invocation a parse asked to run; panics if it asked for something else.
#[cfg(test)]
pub(crate) fn expect_run(parsed: Result<Command, Failure>) -> Result<Invocation, Failure> {
    match parsed? {
        Command::Run(inv) => Ok(inv),
        other => panic!("expected a run, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_selects_codex_and_anything_else_claude() {
        let codex = parse(
            &strings(&["exec", "--json", "--skip-git-repo-check", "--", "hi"]),
            None,
        );
        assert!(matches!(
            codex,
            Ok(Command::Run(Invocation {
                flavour: Flavour::Codex,
                ..
            }))
        ));
        let claude = parse(
            &strings(&[
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--",
                "hi",
            ]),
            None,
        );
        assert!(matches!(
            claude,
            Ok(Command::Run(Invocation {
                flavour: Flavour::Claude,
                ..
            }))
        ));
    }

    #[test]
    fn version_flavour_comes_from_env() {
        let args = strings(&["--version"]);
        assert_eq!(parse(&args, None), Ok(Command::Version(Flavour::Claude)));
        assert_eq!(
            parse(&args, Some("claude")),
            Ok(Command::Version(Flavour::Claude))
        );
        assert_eq!(
            parse(&args, Some("codex")),
            Ok(Command::Version(Flavour::Codex))
        );
        assert_eq!(
            parse(&strings(&["exec", "--version"]), None),
            Ok(Command::Version(Flavour::Codex))
        );
    }

    #[test]
    fn bad_flavour_env_is_refused() {
        let err = parse(&strings(&["--version"]), Some("gemini")).unwrap_err();
        assert_eq!(err.code, 2);
    }

    #[test]
    fn inline_values_split_only_long_options() {
        assert_eq!(split_inline("--model=opus"), ("--model", Some("opus")));
        assert_eq!(split_inline("--model=a=b"), ("--model", Some("a=b")));
        assert_eq!(split_inline("--model="), ("--model", Some("")));
        assert_eq!(split_inline("--verbose"), ("--verbose", None));
        assert_eq!(split_inline("-m=x"), ("-m=x", None));
    }
}
