//! The `claude -p --output-format stream-json --verbose` grammar.
//!
//! Claude Code parses its argv with commander.js: unknown options are fatal
//! (`error: unknown option '...'`), `--flag=value` and `--flag value` are
//! equivalent, and everything after `--` is positional. The daemon passes the
//! prompt after `--` precisely so a prompt such as `-rf /` is not read as an
//! option, and the mock must get that right too.

use super::{is_word, split_inline, Argv, Command, Flavour, Invocation};
use crate::error::Failure;

pub const USAGE: &str = "\
Usage: claude -p --output-format stream-json --verbose [options] -- <prompt>

mock-agent imitating Claude Code. Options:
  -p, --print                      non-interactive mode (required)
  --output-format <format>         must be stream-json
  --input-format <format>          text (prompt in argv) or stream-json (on stdin)
  --permission-prompt-tool <tool>  stdio: ask the parent over stdin/stdout
  --verbose                        required with stream-json
  -r, --resume <session_id>        continue a session
  --model <model>
  --permission-mode <mode>
  --allowedTools, --allowed-tools <tools>
  --disallowedTools, --disallowed-tools <tools>
  --max-turns <n>
  --append-system-prompt <text>
  --add-dir <dir>
  --include-partial-messages
  --dangerously-skip-permissions
  -v, --version
  -h, --help";

/// The real CLI's complaint when stream-json output is asked for without
/// `--verbose`.
pub const NEEDS_VERBOSE: &str =
    "Error: When using --print, --output-format=stream-json requires --verbose";

/// The real CLI's complaint when `-p` is given no prompt (and stdin, which the
/// mock never reads, has none).
pub const NO_PROMPT: &str =
    "Error: Input must be provided either through stdin or as a prompt argument when using --print";

/// Options that take a value and whose value the mock does not use.
const IGNORED_VALUE_OPTIONS: &[&str] = &[
    "--model",
    "--permission-mode",
    "--disallowedTools",
    "--disallowed-tools",
    "--max-turns",
    "--append-system-prompt",
    "--add-dir",
];

/// Flags without a value that the mock accepts and ignores.
const IGNORED_FLAGS: &[&str] = &[
    "--include-partial-messages",
    "--dangerously-skip-permissions",
];

/// Parses a claude command line (argv without the program name).
pub fn parse(args: &[String]) -> Result<Command, Failure> {
    let mut print = false;
    let mut verbose = false;
    let mut format: Option<String> = None;
    let mut resume: Option<String> = None;
    let mut input: Option<String> = None;
    let mut permission_prompt_tool: Option<String> = None;
    let mut allowed_tools: Vec<String> = Vec::new();
    let mut words: Vec<&str> = Vec::new();

    let mut argv = Argv::new(args);
    while let Some(token) = argv.next_token(&mut words) {
        if is_word(token) {
            // A bare word before `--` is the prompt too, as `claude -p hi` is.
            words.push(token);
            continue;
        }
        let (name, inline) = split_inline(token);
        let is_flag = inline.is_none();
        match name {
            "-p" | "--print" if is_flag => print = true,
            "--verbose" if is_flag => verbose = true,
            "-v" | "--version" if is_flag => return Ok(Command::Version(Flavour::Claude)),
            "-h" | "--help" if is_flag => return Ok(Command::Help(Flavour::Claude)),
            _ if is_flag && IGNORED_FLAGS.contains(&name) => {}
            "--output-format" => format = Some(take_value(&mut argv, name, inline)?.to_owned()),
            "-r" | "--resume" => resume = Some(take_value(&mut argv, name, inline)?.to_owned()),
            "--input-format" => input = Some(take_value(&mut argv, name, inline)?.to_owned()),
            "--allowedTools" | "--allowed-tools" => allowed_tools.extend(
                take_value(&mut argv, name, inline)?
                    .split(',')
                    .map(|t| t.trim().to_owned()),
            ),
            "--permission-prompt-tool" => {
                permission_prompt_tool = Some(take_value(&mut argv, name, inline)?.to_owned())
            }
            _ if IGNORED_VALUE_OPTIONS.contains(&name) => {
                take_value(&mut argv, name, inline)?;
            }
            _ => return Err(Failure::new(1, format!("error: unknown option '{token}'"))),
        }
    }

    if !print {
        return Err(Failure::new(
            1,
            "mock-agent: only print mode is imitated; pass -p/--print (interactive claude needs a terminal)",
        ));
    }
    match format.as_deref() {
        Some("stream-json") => {}
        Some(f @ ("text" | "json")) => {
            return Err(Failure::new(
                1,
                format!("mock-agent: only --output-format stream-json is imitated, not {f}"),
            ))
        }
        Some(f) => {
            return Err(Failure::new(
                1,
                format!(
                    "error: option '--output-format <format>' argument '{f}' is invalid. Allowed choices are text, json, stream-json."
                ),
            ))
        }
        None => {
            return Err(Failure::new(
                1,
                "mock-agent: only --output-format stream-json is imitated; the default text output is not",
            ))
        }
    }
    if !verbose {
        return Err(Failure::new(1, NEEDS_VERBOSE));
    }
    if resume.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(Failure::new(
            1,
            "Error: --resume requires a valid session ID when used with --print",
        ));
    }
    let stdin_json = match input.as_deref() {
        None | Some("text") => false,
        Some("stream-json") => true,
        Some(f) => {
            return Err(Failure::new(
                1,
                format!(
                    "error: option '--input-format <format>' argument '{f}' is invalid. Allowed choices are text, stream-json."
                ),
            ))
        }
    };
    if permission_prompt_tool.as_deref() == Some("stdio") && !stdin_json {
        return Err(Failure::new(
            1,
            "Error: --permission-prompt-tool stdio requires --input-format stream-json",
        ));
    }
    let prompt = words.join(" ");
    if stdin_json && !prompt.is_empty() {
        return Err(Failure::new(
            1,
            "mock-agent: with --input-format stream-json the prompt comes on stdin, not in argv",
        ));
    }
    if !stdin_json && prompt.trim().is_empty() {
        return Err(Failure::new(1, NO_PROMPT));
    }
    Ok(Command::Run(Invocation {
        flavour: Flavour::Claude,
        prompt,
        resume,
        stdin_json,
        permission_prompt_tool,
        allowed_tools,
        skip_git_repo_check: true,
    }))
}

/// The value of option `name`: the inline `=value`, else the next argument.
/// Like commander, the next argument is taken even if it starts with `-`
/// (`--append-system-prompt "-be terse"`), except the `--` separator.
fn take_value<'a>(
    argv: &mut Argv<'a>,
    name: &str,
    inline: Option<&'a str>,
) -> Result<&'a str, Failure> {
    argv.value(inline, |v| v != "--").ok_or_else(|| {
        Failure::new(
            1,
            format!("error: option '{name} <value>' argument missing"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{expect_run, strings};

    const BASE: &[&str] = &["-p", "--output-format", "stream-json", "--verbose"];

    fn run(extra: &[&str]) -> Result<Invocation, Failure> {
        let mut args = strings(BASE);
        args.extend(strings(extra));
        expect_run(parse(&args))
    }

    #[test]
    fn stream_json_input_takes_the_prompt_from_stdin() {
        let stdio = [
            "--input-format",
            "stream-json",
            "--permission-prompt-tool",
            "stdio",
        ];
        let inv = run(&stdio).unwrap();
        assert!(inv.stdin_json);
        assert_eq!(inv.permission_prompt_tool.as_deref(), Some("stdio"));
        assert!(run(&["--input-format", "stream-json", "--", "hi"]).is_err());
        assert!(run(&["--permission-prompt-tool", "stdio", "--", "hi"]).is_err());
        assert!(run(&["--input-format", "xml", "--", "hi"]).is_err());
        let inv = run(&["--allowedTools=Read,Bash(echo approved)", "--", "hi"]).unwrap();
        assert_eq!(inv.allowed_tools, ["Read", "Bash(echo approved)"]);
    }

    #[test]
    fn prompt_after_double_dash() {
        let inv = run(&["--", "hello", "world"]).unwrap();
        assert_eq!(inv.prompt, "hello world");
        assert_eq!(inv.resume, None);
        assert_eq!(inv.flavour, Flavour::Claude);
    }

    #[test]
    fn prompt_starting_with_dash_is_a_prompt() {
        assert_eq!(run(&["--", "-rf", "/"]).unwrap().prompt, "-rf /");
        assert_eq!(run(&["--", "--verbose"]).unwrap().prompt, "--verbose");
        assert_eq!(run(&["--", "--"]).unwrap().prompt, "--");
    }

    #[test]
    fn bare_words_before_double_dash_are_prompt() {
        assert_eq!(run(&["hi", "--", "there"]).unwrap().prompt, "hi there");
    }

    #[test]
    fn resume_in_both_forms() {
        assert_eq!(
            run(&["--resume", "abc-123", "--", "x"])
                .unwrap()
                .resume
                .as_deref(),
            Some("abc-123")
        );
        assert_eq!(
            run(&["--resume=abc-123", "--", "x"])
                .unwrap()
                .resume
                .as_deref(),
            Some("abc-123")
        );
        assert_eq!(
            run(&["-r", "s1", "--", "x"]).unwrap().resume.as_deref(),
            Some("s1")
        );
    }

    #[test]
    fn every_value_option_in_both_forms() {
        for opt in IGNORED_VALUE_OPTIONS {
            assert_eq!(run(&[opt, "v", "--", "p"]).unwrap().prompt, "p", "{opt} v");
            let inline = format!("{opt}=v");
            assert_eq!(run(&[&inline, "--", "p"]).unwrap().prompt, "p", "{inline}");
        }
        let inv = run(&[
            "--model=claude-opus",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            "Bash,Read",
            "--max-turns=3",
            "--append-system-prompt",
            "-be terse",
            "--include-partial-messages",
            "--",
            "go",
        ])
        .unwrap();
        assert_eq!(inv.prompt, "go");
    }

    #[test]
    fn equals_form_of_output_format() {
        let args = strings(&[
            "--print",
            "--output-format=stream-json",
            "--verbose",
            "--",
            "x",
        ]);
        assert!(matches!(parse(&args), Ok(Command::Run(_))));
    }

    #[test]
    fn unknown_option_is_refused() {
        let err = run(&["--frobnicate", "--", "x"]).unwrap_err();
        assert_eq!(err, Failure::new(1, "error: unknown option '--frobnicate'"));
        let err = run(&["--verbose=yes", "--", "x"]).unwrap_err();
        assert_eq!(err.message, "error: unknown option '--verbose=yes'");
    }

    #[test]
    fn missing_value_is_refused() {
        let err = run(&["--model"]).unwrap_err();
        assert_eq!(err.code, 1);
        assert!(err.message.contains("--model"), "{}", err.message);
        assert!(run(&["--resume", "--", "x"]).is_err());
        assert!(run(&["--resume=", "--", "x"]).is_err());
    }

    #[test]
    fn verbose_is_required_with_stream_json() {
        let args = strings(&["-p", "--output-format", "stream-json", "--", "x"]);
        assert_eq!(parse(&args), Err(Failure::new(1, NEEDS_VERBOSE)));
    }

    #[test]
    fn print_and_stream_json_are_required() {
        assert!(parse(&strings(&[
            "--output-format",
            "stream-json",
            "--verbose",
            "--",
            "x"
        ]))
        .is_err());
        assert!(parse(&strings(&["-p", "--verbose", "--", "x"])).is_err());
        assert!(parse(&strings(&[
            "-p",
            "--output-format",
            "json",
            "--verbose",
            "--",
            "x"
        ]))
        .is_err());
        let err = parse(&strings(&[
            "-p",
            "--output-format",
            "xml",
            "--verbose",
            "--",
            "x",
        ]));
        assert!(err.unwrap_err().message.contains("Allowed choices"));
    }

    #[test]
    fn no_prompt_is_refused() {
        assert_eq!(run(&[]), Err(Failure::new(1, NO_PROMPT)));
        assert_eq!(run(&["--"]), Err(Failure::new(1, NO_PROMPT)));
        assert_eq!(run(&["--", ""]), Err(Failure::new(1, NO_PROMPT)));
    }

    #[test]
    fn version_and_help() {
        assert_eq!(
            parse(&strings(&["--version"])),
            Ok(Command::Version(Flavour::Claude))
        );
        assert_eq!(
            parse(&strings(&["-v"])),
            Ok(Command::Version(Flavour::Claude))
        );
        assert_eq!(
            parse(&strings(&["--help"])),
            Ok(Command::Help(Flavour::Claude))
        );
        // After `--` it is just the prompt.
        assert_eq!(run(&["--", "--version"]).unwrap().prompt, "--version");
    }
}
