//! Which behaviour a run acts out, and with which knobs.
//!
//! Tests drive the mock through the one channel the daemon passes through
//! untouched, the prompt: `mock:<scenario> key=value ...`. When a test cannot
//! control the prompt (e.g. a benchmark sending real-looking prompts), the
//! environment (`MOCK_AGENT_SCENARIO`, `MOCK_AGENT_PARAMS`) does the same job.
//! Unknown scenarios and parameters are refused rather than ignored, so a typo
//! in a test fails loudly instead of silently running `success`.

use crate::consult::Answer;
use crate::error::Failure;

/// A scripted behaviour of the fake agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Replay the recorded successful run (or resumed run).
    Success,
    /// Replay the recorded run with one tool call.
    Tool,
    /// Replay the recorded API HTTP 500 failure; exit 1.
    Error,
    /// Replay the recorded "API unreachable" failure; exit 1.
    ApiDown,
    /// Two lines, then SIGABRT with no result line.
    Crash,
    /// Init line, then wait for a signal.
    Hang,
    /// The success replay with `interval_ms` between lines.
    Slow,
    /// `count` synthetic lines of `bytes` bytes at `rate` lines/s.
    Lines,
    /// One JSON line of `bytes` bytes.
    Huge,
    /// The success replay with noise on stderr.
    Stderr,
    /// The success replay with non-JSON lines mixed in.
    NonJson,
    /// Start a grandchild in its own session, then hang (or exit).
    Escape,
    /// Start a grandchild that leaves the session, drops its environment,
    /// double-forks and keeps forking (see `forker.rs`; its command line
    /// carries `tag=`), let it run `interval_ms`, then hang (or exit).
    Forker,
    /// Report `AGENTVISOR_RUN_ID`, the cwd and the whole environment.
    Env,
    /// Change the working directory (append to `edit.txt`, write `added.txt`, remove
    /// `remove.txt`), then replay the successful run.
    Edit,
    /// Claude only: ask permission for a shell command `count` times (default once) over
    /// the stdio control protocol and act on each answer.
    Ask,
    /// Print `text` as the agent's reply, as a tool call's command, as a
    /// non-JSON line and on stderr (to test how clients show what an agent
    /// prints).
    Echo,
    /// Answer a consult prompt (`answer=complete|nomarker|incomplete|unrelated|slow`); chosen
    /// by itself for a prompt that asks for a consult response and names no scenario.
    Consult,
    /// Report the consult capability the daemon gave the run (`AGENTVISOR_URL`,
    /// `AGENTVISOR_PROJECT_ID`, `AGENTVISOR_CONSULT_TOKEN`), then wait for a signal: a lead
    /// whose run lives while a test consults with its capability.
    Lead,
    /// A lead that consults by itself: runs `$MOCK_AGENT_AGENTVISOR consult <project> --to codex
    /// --kind design --json <text>` with its run's capability (`project=`, default `.`: its own),
    /// and reports the command's exit code and output.
    LeadConsult,
}

/// Scenario names as written after `mock:`.
pub const NAMES: &[(&str, Scenario)] = &[
    ("success", Scenario::Success),
    ("tool", Scenario::Tool),
    ("error", Scenario::Error),
    ("api_down", Scenario::ApiDown),
    ("crash", Scenario::Crash),
    ("hang", Scenario::Hang),
    ("slow", Scenario::Slow),
    ("lines", Scenario::Lines),
    ("huge", Scenario::Huge),
    ("stderr", Scenario::Stderr),
    ("nonjson", Scenario::NonJson),
    ("escape", Scenario::Escape),
    ("forker", Scenario::Forker),
    ("env", Scenario::Env),
    ("edit", Scenario::Edit),
    ("ask", Scenario::Ask),
    ("echo", Scenario::Echo),
    ("consult", Scenario::Consult),
    ("lead", Scenario::Lead),
    ("lead_consult", Scenario::LeadConsult),
];

impl Scenario {
    fn named(name: &str) -> Result<Scenario, Failure> {
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                Failure::new(
                    2,
                    format!(
                        "mock-agent: unknown scenario '{name}' (known: {})",
                        known.join(", ")
                    ),
                )
            })
    }
}

/// What `escape` does once the grandchild is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Hang,
    Exit,
}

/// Parameters; every scenario accepts every key and uses those it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// `exit=N`: exit status on normal completion instead of the scenario's.
    pub exit: Option<i32>,
    /// `delay_ms=N`: sleep before the first line.
    pub delay_ms: u64,
    /// `ignore_sigint=1`: SIGINT is ignored (to test escalation).
    pub ignore_sigint: bool,
    /// `ignore_sigterm=1`: SIGTERM is ignored (to test escalation).
    pub ignore_sigterm: bool,
    /// `interval_ms=N`: gap between lines in `slow`.
    pub interval_ms: u64,
    /// `count=N`: lines in `lines`, stderr lines in `stderr`.
    pub count: Option<u64>,
    /// `bytes=N`: size of each JSON line in `lines` and `huge`.
    pub bytes: Option<usize>,
    /// `rate=R`: lines per second in `lines`; 0 means as fast as possible.
    pub rate: f64,
    /// `then=hang|exit`: what `escape` does after spawning the grandchild.
    pub then: Then,
    /// `text=…`: what `echo` prints, percent-encoded (`%20` for a space), so
    /// that it stays one token of the prompt.
    pub text: String,
    /// `answer=…`: how `consult` answers a first request.
    pub answer: Answer,
    /// `project=…`: the project `lead_consult` consults on.
    pub project: Option<String>,
    /// `tag=…`: the word on the command line of every process `forker` starts.
    pub tag: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            exit: None,
            delay_ms: 0,
            ignore_sigint: false,
            ignore_sigterm: false,
            interval_ms: 200,
            count: None,
            bytes: None,
            rate: 0.0,
            then: Then::Hang,
            text: String::new(),
            answer: Answer::default(),
            project: None,
            tag: String::new(),
        }
    }
}

/// The chosen scenario and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub scenario: Scenario,
    pub params: Params,
}

/// Picks the scenario: the first `mock:<name>` token of the prompt and the
/// `key=value` tokens after it; without such a token, `env_scenario`
/// (default `success`) and the `key=value` tokens of `env_params`.
pub fn select(
    prompt: &str,
    env_scenario: Option<&str>,
    env_params: Option<&str>,
) -> Result<Selection, Failure> {
    let mut tokens = prompt.split_whitespace();
    if let Some(name) = tokens.by_ref().find_map(|t| t.strip_prefix("mock:")) {
        return Ok(Selection {
            scenario: Scenario::named(name)?,
            params: parse_params(tokens)?,
        });
    }
    if crate::consult::requested(prompt) {
        return Ok(Selection {
            scenario: Scenario::Consult,
            params: Params::default(),
        });
    }
    let scenario = match env_scenario.map(str::trim) {
        None | Some("") => Scenario::Success,
        Some(name) => Scenario::named(name)?,
    };
    let params = parse_params(env_params.unwrap_or("").split_whitespace())?;
    Ok(Selection { scenario, params })
}

/// Reads `key=value` tokens; tokens without `=` are ordinary prompt words
/// and are skipped.
fn parse_params<'a>(tokens: impl Iterator<Item = &'a str>) -> Result<Params, Failure> {
    let mut p = Params::default();
    for token in tokens {
        let Some((key, value)) = token.split_once('=') else {
            continue;
        };
        let bad =
            |why: &str| Failure::new(2, format!("mock-agent: bad parameter '{token}': {why}"));
        let millis = || number(value).ok_or_else(|| bad("expected milliseconds"));
        let flag = || boolean(value).ok_or_else(|| bad("expected 0 or 1"));
        match key {
            "exit" => {
                let code: u8 = value.parse().map_err(|_| bad("expected 0..=255"))?;
                p.exit = Some(i32::from(code));
            }
            "delay_ms" => p.delay_ms = millis()?,
            "interval_ms" => p.interval_ms = millis()?,
            "count" => p.count = Some(number(value).ok_or_else(|| bad("expected a count"))?),
            "bytes" => p.bytes = Some(number(value).ok_or_else(|| bad("expected a byte size"))?),
            "rate" => {
                p.rate = value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && *r >= 0.0)
                    .ok_or_else(|| bad("expected lines per second >= 0"))?
            }
            "ignore_sigint" => p.ignore_sigint = flag()?,
            "ignore_sigterm" => p.ignore_sigterm = flag()?,
            "then" => {
                p.then = match value {
                    "hang" => Then::Hang,
                    "exit" => Then::Exit,
                    _ => return Err(bad("expected hang or exit")),
                }
            }
            "project" => p.project = Some(value.to_string()),
            "tag" => p.tag = value.to_string(),
            "answer" => {
                p.answer = Answer::named(value).ok_or_else(|| {
                    bad("expected complete, nomarker, incomplete, unrelated or slow")
                })?
            }
            "text" => p.text = percent_decode(value).ok_or_else(|| bad("expected percent-encoded UTF-8"))?,
            _ => {
                return Err(bad(
                    "unknown key (known: exit, delay_ms, interval_ms, count, bytes, rate, ignore_sigint, ignore_sigterm, then, text, answer, project, tag)",
                ))
            }
        }
    }
    Ok(p)
}

/// A non-negative integer; `_` separators allowed for readability
/// (`count=100_000`).
fn number<T: std::str::FromStr>(value: &str) -> Option<T> {
    value.replace('_', "").parse().ok()
}

/// `%XX` escapes decoded; anything else is kept as it is.
fn percent_decode(value: &str) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(prompt: &str) -> Selection {
        select(prompt, None, None).unwrap()
    }

    #[test]
    fn default_is_success() {
        let s = pick("fix the bug please");
        assert_eq!(s.scenario, Scenario::Success);
        assert_eq!(s.params, Params::default());
    }

    #[test]
    fn dash_prompt_is_success() {
        assert_eq!(pick("-rf /").scenario, Scenario::Success);
    }

    #[test]
    fn every_name_parses() {
        for (name, scenario) in NAMES {
            assert_eq!(pick(&format!("mock:{name}")).scenario, *scenario);
        }
    }

    #[test]
    fn token_may_follow_other_words_and_params_follow_it() {
        let s = pick("please mock:lines count=10 bytes=200 rate=50.5 and then stop");
        assert_eq!(s.scenario, Scenario::Lines);
        assert_eq!(s.params.count, Some(10));
        assert_eq!(s.params.bytes, Some(200));
        assert_eq!(s.params.rate, 50.5);
    }

    #[test]
    fn words_before_the_token_are_not_params() {
        let s = pick("a=b mock:success");
        assert_eq!(s.params, Params::default());
    }

    #[test]
    fn only_the_first_token_counts() {
        assert_eq!(pick("mock:hang mock:crash").scenario, Scenario::Hang);
    }

    #[test]
    fn common_and_signal_params() {
        let s = pick("mock:hang exit=3 delay_ms=1_000 ignore_sigint=1 ignore_sigterm=true");
        assert_eq!(s.params.exit, Some(3));
        assert_eq!(s.params.delay_ms, 1000);
        assert!(s.params.ignore_sigint);
        assert!(s.params.ignore_sigterm);
        let s = pick("mock:escape then=exit interval_ms=5");
        assert_eq!(s.params.then, Then::Exit);
        assert_eq!(s.params.interval_ms, 5);
    }

    #[test]
    fn bad_input_is_refused() {
        for prompt in [
            "mock:nope",
            "mock:",
            "mock:lines count=-1",
            "mock:lines count=many",
            "mock:success exit=256",
            "mock:lines rate=-2",
            "mock:lines rate=inf",
            "mock:hang ignore_sigint=maybe",
            "mock:escape then=later",
            "mock:success cont=5",
        ] {
            let err = select(prompt, None, None).unwrap_err();
            assert_eq!(err.code, 2, "{prompt}");
        }
    }

    #[test]
    fn echo_text_is_percent_decoded() {
        let s = pick("mock:echo text=%3Cscript%3Ea%3D1%3C/script%3E%20%E2%9C%93");
        assert_eq!(s.scenario, Scenario::Echo);
        assert_eq!(s.params.text, "<script>a=1</script> \u{2713}");
        for bad in [
            "mock:echo text=%4",
            "mock:echo text=%zz",
            "mock:echo text=%ff",
        ] {
            assert!(select(bad, None, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_is_used_without_a_token() {
        let s = select("hello", Some("lines"), Some("count=5 rate=0")).unwrap();
        assert_eq!(s.scenario, Scenario::Lines);
        assert_eq!(s.params.count, Some(5));
        let s = select("hello", None, Some("delay_ms=7")).unwrap();
        assert_eq!(s.scenario, Scenario::Success);
        assert_eq!(s.params.delay_ms, 7);
        assert!(select("hello", Some("bogus"), None).is_err());
        assert_eq!(
            select("hello", Some(""), None).unwrap().scenario,
            Scenario::Success
        );
    }

    #[test]
    fn prompt_token_overrides_env() {
        let s = select("mock:tool", Some("lines"), Some("count=5")).unwrap();
        assert_eq!(s.scenario, Scenario::Tool);
        assert_eq!(s.params.count, None);
    }
}
