//! The `codex exec --json` grammar, including `codex exec resume`.
//!
//! Codex parses its argv with clap: unknown options are usage errors (exit 2),
//! an option value never starts with `-`, short options may carry their value
//! attached (`-mgpt-5`), and `resume` is a subcommand whose first positional
//! is the thread id. The daemon relies on all of this, so the mock follows it.

use super::{is_word, split_inline, Argv, Command, Flavour, Invocation};
use crate::error::Failure;

pub const USAGE: &str = "\
Usage: codex exec --json --skip-git-repo-check [OPTIONS] [--] <PROMPT>
       codex exec resume --json --skip-git-repo-check [OPTIONS] <THREAD_ID> <PROMPT>

mock-agent imitating the Codex CLI. Options:
  --json                                      JSONL events on stdout (required)
  --skip-git-repo-check                       allow running outside a git repo
  -m, --model <MODEL>
  -c, --config <key=value>                    repeatable
  -s, --sandbox <MODE>
  -p, --profile <PROFILE>
  --color <always|never|auto>
  --full-auto
  --dangerously-bypass-approvals-and-sandbox
  -V, --version
  -h, --help";

/// What real codex says when run outside a git repository without
/// `--skip-git-repo-check`.
pub const UNTRUSTED_DIR: &str =
    "Not inside a trusted directory and --skip-git-repo-check was not specified.";

/// Options that take a value and whose value the mock does not use.
const IGNORED_VALUE_OPTIONS: &[&str] = &[
    "-m",
    "--model",
    "-c",
    "--config",
    "-s",
    "--sandbox",
    "-p",
    "--profile",
    "--color",
];

/// Flags without a value that the mock accepts and ignores.
const IGNORED_FLAGS: &[&str] = &["--full-auto", "--dangerously-bypass-approvals-and-sandbox"];

/// `codex <args>` when argv does not start with `exec`: only `--version` and
/// `--help` are imitated (bare `codex` is an interactive TUI).
pub fn parse_top_level(args: &[String]) -> Result<Command, Failure> {
    match args.first().map(String::as_str) {
        Some("-V" | "--version") => Ok(Command::Version(Flavour::Codex)),
        Some("-h" | "--help") => Ok(Command::Help(Flavour::Codex)),
        _ => Err(Failure::new(
            2,
            "mock-agent: the codex flavour only imitates `codex exec ...` and `codex --version`",
        )),
    }
}

/// Parses the arguments after `exec`.
pub fn parse_exec(args: &[String]) -> Result<Command, Failure> {
    let mut json = false;
    let mut skip_git_repo_check = false;
    let mut resume_mode = false;
    let mut positionals: Vec<&str> = Vec::new();

    let mut argv = Argv::new(args);
    while let Some(token) = argv.next_token(&mut positionals) {
        if token == "resume" && !resume_mode && positionals.is_empty() {
            resume_mode = true;
            continue;
        }
        if is_word(token) {
            positionals.push(token);
            continue;
        }
        let (name, inline) = split_short(token);
        let is_flag = inline.is_none();
        match name {
            "--json" if is_flag => json = true,
            "--skip-git-repo-check" if is_flag => skip_git_repo_check = true,
            "-V" | "--version" if is_flag => return Ok(Command::Version(Flavour::Codex)),
            "-h" | "--help" if is_flag => return Ok(Command::Help(Flavour::Codex)),
            _ if is_flag && IGNORED_FLAGS.contains(&name) => {}
            _ if IGNORED_VALUE_OPTIONS.contains(&name) => {
                take_value(&mut argv, name, inline)?;
            }
            _ => return Err(unexpected(token)),
        }
    }

    if !json {
        return Err(Failure::new(
            1,
            "mock-agent: only `codex exec --json` (JSONL events) is imitated; pass --json",
        ));
    }
    let mut positionals = positionals.into_iter();
    let resume = if resume_mode {
        match positionals.next() {
            Some(id) if !id.trim().is_empty() => Some(id.to_owned()),
            _ => {
                return Err(Failure::new(
                    2,
                    "error: the following required arguments were not provided:\n  <SESSION_ID>\n\nUsage: codex exec resume <SESSION_ID> [PROMPT]",
                ))
            }
        }
    } else {
        None
    };
    let prompt = positionals.collect::<Vec<_>>().join(" ");
    if prompt.trim().is_empty() {
        return Err(Failure::new(
            1,
            "No prompt provided. Either specify one as an argument or pipe the prompt into stdin.",
        ));
    }
    Ok(Command::Run(Invocation {
        flavour: Flavour::Codex,
        prompt,
        resume,
        stdin_json: false,
        permission_prompt_tool: None,
        allowed_tools: Vec::new(),
        skip_git_repo_check,
    }))
}

/// Like [`split_inline`], plus clap's attached short values: `-mgpt-5` and
/// `-m=gpt-5` both mean `-m gpt-5`.
fn split_short(token: &str) -> (&str, Option<&str>) {
    if token.starts_with("--") {
        return split_inline(token);
    }
    match token.char_indices().nth(2) {
        Some((at, _)) => {
            let rest = &token[at..];
            (&token[..at], Some(rest.strip_prefix('=').unwrap_or(rest)))
        }
        None => (token, None),
    }
}

/// The value of option `name`: inline, else the next argument unless that
/// looks like an option (clap does not take `-x` as a value by default).
fn take_value<'a>(
    argv: &mut Argv<'a>,
    name: &str,
    inline: Option<&'a str>,
) -> Result<&'a str, Failure> {
    argv.value(inline, |v| !v.starts_with('-')).ok_or_else(|| {
        Failure::new(
            2,
            format!("error: a value is required for '{name} <VALUE>' but none was supplied\n\nFor more information, try '--help'."),
        )
    })
}

fn unexpected(token: &str) -> Failure {
    Failure::new(
        2,
        format!(
            "error: unexpected argument '{token}' found\n\nUsage: codex exec [OPTIONS] [PROMPT]\n\nFor more information, try '--help'."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{expect_run, strings};

    fn run(args: &[&str]) -> Result<Invocation, Failure> {
        expect_run(parse_exec(&strings(args)))
    }

    #[test]
    fn plain_exec() {
        let inv = run(&["--json", "--skip-git-repo-check", "--", "say", "hi"]).unwrap();
        assert_eq!(inv.flavour, Flavour::Codex);
        assert_eq!(inv.prompt, "say hi");
        assert_eq!(inv.resume, None);
        assert!(inv.skip_git_repo_check);
    }

    #[test]
    fn prompt_starting_with_dash_after_double_dash() {
        let inv = run(&["--json", "--skip-git-repo-check", "--", "-rf", "/"]).unwrap();
        assert_eq!(inv.prompt, "-rf /");
    }

    #[test]
    fn model_and_config_forms() {
        let inv = run(&[
            "--json",
            "-m",
            "gpt-5",
            "--model=o3",
            "-mgpt-5",
            "-c",
            "model_reasoning_effort=high",
            "-c",
            "sandbox_mode=\"workspace-write\"",
            "--config=a=b",
            "--skip-git-repo-check",
            "--",
            "go",
        ])
        .unwrap();
        assert_eq!(inv.prompt, "go");
    }

    #[test]
    fn missing_skip_git_repo_check_is_recorded() {
        let inv = run(&["--json", "--", "go"]).unwrap();
        assert!(!inv.skip_git_repo_check);
    }

    #[test]
    fn resume_takes_thread_id_then_prompt() {
        let inv = run(&[
            "resume",
            "--json",
            "--skip-git-repo-check",
            "01a1fc46-1bc3-7543-9c57-19700593d3b1",
            "and",
            "again",
        ])
        .unwrap();
        assert_eq!(
            inv.resume.as_deref(),
            Some("01a1fc46-1bc3-7543-9c57-19700593d3b1")
        );
        assert_eq!(inv.prompt, "and again");
    }

    #[test]
    fn resume_with_double_dash() {
        let inv = run(&[
            "resume",
            "--json",
            "--skip-git-repo-check",
            "--",
            "tid",
            "-x",
        ])
        .unwrap();
        assert_eq!(inv.resume.as_deref(), Some("tid"));
        assert_eq!(inv.prompt, "-x");
        let inv = run(&["resume", "--json", "tid", "--", "--json"]).unwrap();
        assert_eq!(inv.resume.as_deref(), Some("tid"));
        assert_eq!(inv.prompt, "--json");
    }

    #[test]
    fn options_before_resume_are_accepted() {
        let inv = run(&["--json", "--skip-git-repo-check", "resume", "tid", "p"]).unwrap();
        assert_eq!(inv.resume.as_deref(), Some("tid"));
        assert_eq!(inv.prompt, "p");
    }

    #[test]
    fn resume_as_a_prompt_word_is_not_the_subcommand() {
        let inv = run(&["--json", "--", "resume", "work"]).unwrap();
        assert_eq!(inv.resume, None);
        assert_eq!(inv.prompt, "resume work");
    }

    #[test]
    fn resume_needs_an_id_and_a_prompt() {
        assert_eq!(run(&["resume", "--json"]).unwrap_err().code, 2);
        assert_eq!(run(&["resume", "--json", "tid"]).unwrap_err().code, 1);
    }

    #[test]
    fn json_is_required() {
        let err = run(&["--skip-git-repo-check", "--", "go"]).unwrap_err();
        assert_eq!(err.code, 1);
    }

    #[test]
    fn unknown_option_is_a_usage_error() {
        let err = run(&["--json", "--frobnicate", "--", "go"]).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(err
            .message
            .starts_with("error: unexpected argument '--frobnicate' found"));
    }

    #[test]
    fn option_value_cannot_look_like_an_option() {
        let err = run(&["--json", "-m", "--", "go"]).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(run(&["--json", "--model"]).is_err());
    }

    #[test]
    fn no_prompt_is_refused() {
        assert_eq!(
            run(&["--json", "--skip-git-repo-check"]).unwrap_err().code,
            1
        );
        assert_eq!(run(&["--json", "--", ""]).unwrap_err().code, 1);
    }

    #[test]
    fn top_level_only_knows_version_and_help() {
        assert_eq!(
            parse_top_level(&strings(&["--version"])),
            Ok(Command::Version(Flavour::Codex))
        );
        assert_eq!(
            parse_top_level(&strings(&["-h"])),
            Ok(Command::Help(Flavour::Codex))
        );
        assert!(parse_top_level(&strings(&["hi"])).is_err());
        assert!(parse_top_level(&[]).is_err());
    }

    #[test]
    fn short_values_split() {
        assert_eq!(split_short("-mgpt-5"), ("-m", Some("gpt-5")));
        assert_eq!(split_short("-m=gpt-5"), ("-m", Some("gpt-5")));
        assert_eq!(split_short("-m"), ("-m", None));
        assert_eq!(split_short("--model=x"), ("--model", Some("x")));
    }
}
