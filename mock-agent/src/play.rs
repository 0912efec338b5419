//! Acting out a scenario on a [`Session`].
//!
//! Each scenario returns the exit status the real CLI would have had; `main`
//! applies the `exit=N` override. Scenarios that end by signal (`hang`) or by
//! crashing (`crash`) never return.

use std::env;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::args::Flavour;
use crate::consult;
use crate::control::{self, Verdict};
use crate::error::Failure;
use crate::escape;
use crate::events;
use crate::fixtures::Recording;
use crate::forker;
use crate::ids;
use crate::output;
use crate::scenario::{Params, Scenario, Selection, Then};
use crate::session::Session;

const DEFAULT_LINES: u64 = 1000;
const DEFAULT_LINE_BYTES: usize = 100;
const DEFAULT_HUGE_BYTES: usize = 10 * 1024 * 1024;
const DEFAULT_STDERR_LINES: u64 = 5;

/// Runs the selected scenario; returns its natural exit status.
pub fn play(s: &mut Session, selection: &Selection, prompt: &str) -> Result<i32, Failure> {
    let p = &selection.params;
    let success = s.success_recording();
    match selection.scenario {
        Scenario::Success => replay(s, success, Extras::None),
        Scenario::Tool => replay(s, Recording::Tool, Extras::None),
        Scenario::Error => replay(s, Recording::Http500, Extras::None).map(|_| 1),
        Scenario::ApiDown => replay(s, Recording::ApiDown, Extras::None).map(|_| 1),
        Scenario::Slow => replay(s, success, Extras::Interval(p.interval_ms)),
        Scenario::Stderr => replay(
            s,
            success,
            Extras::Stderr(p.count.unwrap_or(DEFAULT_STDERR_LINES)),
        ),
        Scenario::NonJson => replay(s, success, Extras::NonJson),
        Scenario::Crash => crash(s),
        Scenario::Hang => {
            let init = s.init_line();
            s.emit(&init);
            s.hang()
        }
        Scenario::Lines => lines(s, p),
        Scenario::Huge => huge(s, p.bytes.unwrap_or(DEFAULT_HUGE_BYTES)),
        Scenario::Escape => escape(s, p, 0, escape::spawn_detached_sleeper),
        Scenario::Forker => escape(s, p, p.interval_ms, || forker::spawn(&p.tag)),
        Scenario::Ask => ask(s, p.count.unwrap_or(1)),
        Scenario::Edit => {
            edit_files()?;
            replay(s, success, Extras::None)
        }
        Scenario::Echo => echo(s, &p.text),
        Scenario::Consult => consult(s, prompt, p.answer),
        Scenario::LeadConsult => lead_consult(s, p),
        Scenario::Lead => {
            let init = s.init_line();
            s.emit(&init);
            let var = |k: &str| env::var(k).ok();
            let report = events::lead_report(
                var("AGENTVISOR_URL").as_deref(),
                var("AGENTVISOR_PROJECT_ID").as_deref(),
                var("AGENTVISOR_CONSULT_TOKEN").as_deref(),
            );
            s.emit(&report);
            s.hang()
        }
        Scenario::Env => {
            let init = s.init_line();
            s.emit(&init);
            let run_id = env::var_os("AGENTVISOR_RUN_ID");
            let run_id = run_id.as_ref().map(|v| v.to_string_lossy());
            let vars: Vec<String> = env::vars_os()
                .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                .collect();
            let report = events::env_report(run_id.as_deref(), s.cwd.as_deref(), &vars);
            s.emit(&report);
            let result = s.success_result();
            s.emit(&result);
            Ok(0)
        }
    }
}

/// The shell command `ask` asks to run.
const ASK_COMMAND: &str = "echo approved";
/// What Claude Code tells the model when a tool needs permission and nobody can grant it.
const NOT_GRANTED: &str =
    "Claude requested permissions to use Bash, but you haven't granted it yet.";

/// `ask`: each tool call waits for the parent's verdict (unless a rule it sent earlier allows
/// it) and its result says what the verdict was: the command's output, or the denial.
fn ask(s: &mut Session, count: u64) -> Result<i32, Failure> {
    if s.flavour != Flavour::Claude {
        return Err(Failure::new(
            2,
            "mock-agent: 'ask' imitates Claude Code only",
        ));
    }
    let init = s.init_line();
    s.emit(&init);
    let input = serde_json::json!({"command": ASK_COMMAND, "description": "Print approved"});
    let suggestions = serde_json::json!([{"type": "addRules", "behavior": "allow",
        "destination": "session", "rules": [{"toolName": "Bash", "ruleContent": ASK_COMMAND}]}]);
    let mut rules: Vec<serde_json::Value> = Vec::new();
    let allowed_from_start = s
        .allowed_tools
        .iter()
        .any(|t| *t == format!("Bash({ASK_COMMAND})"));
    for _ in 0..count {
        let [tool_use, _] = events::tool_call(s.flavour, &s.id, ASK_COMMAND, "");
        s.emit(&tool_use);
        let verdict = if allowed_from_start
            || rules
                .iter()
                .any(|r| control::rule_allows(r, "Bash", ASK_COMMAND))
        {
            Verdict::Allow {
                input: input.clone(),
                rules: Vec::new(),
            }
        } else if s.stdio_permissions {
            let id = ids::random_uuid_v4()?;
            s.emit(&control::request_line(&id, "Bash", &input, &suggestions));
            control::await_verdict(&id)?
        } else {
            Verdict::Deny(NOT_GRANTED.into())
        };
        let (output, is_error) = match verdict {
            Verdict::Allow { input, rules: more } => {
                rules.extend(more);
                match input["command"].as_str() {
                    Some(c) => (c.trim_start_matches("echo ").to_string(), false),
                    None => ("the allow answer carried no updatedInput".to_string(), true),
                }
            }
            Verdict::Deny(message) => (message, true),
        };
        s.emit(&events::claude_tool_result(&s.id, &output, is_error));
    }
    let result = s.success_result();
    s.emit(&result);
    Ok(0)
}

/// The file changes of `edit`, in the working directory: one file edited, one added, one
/// removed (when it exists).
fn edit_files() -> Result<(), Failure> {
    use std::io::Write;
    let fail = |e: std::io::Error| Failure::new(1, format!("mock-agent: edit failed: {e}"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open("edit.txt")
        .map_err(fail)?;
    f.write_all(b"a line the agent added\n").map_err(fail)?;
    std::fs::write("added.txt", "a new file\n").map_err(fail)?;
    match std::fs::remove_file("remove.txt") {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(e)),
        _ => Ok(()),
    }
}

/// What is mixed into a replay.
enum Extras {
    None,
    /// Milliseconds between lines (`slow`).
    Interval(u64),
    /// Total stderr lines spread over the replay (`stderr`).
    Stderr(u64),
    /// A non-JSON stdout line before every recorded line (`nonjson`).
    NonJson,
}

fn replay(s: &mut Session, recording: Recording, extras: Extras) -> Result<i32, Failure> {
    let lines = s.recording(recording);
    let n = lines.len() as u64;
    let mut next_stderr = 1;
    for (i, line) in lines.iter().enumerate() {
        let i = i as u64;
        match extras {
            Extras::None => {}
            Extras::Interval(ms) => {
                if i > 0 {
                    s.pause(ms);
                }
            }
            Extras::Stderr(count) => {
                // Noise line k goes before recorded line (k-1)*n/count, which
                // spreads them evenly and puts them all before the result.
                while next_stderr <= count && (next_stderr - 1) * n / count <= i {
                    output::stderr_line(&format!("mock stderr line {next_stderr}"));
                    next_stderr += 1;
                }
            }
            Extras::NonJson => s.emit(&format!("this is not json {}", i + 1)),
        }
        s.emit(line);
    }
    Ok(0)
}

/// `text` everywhere an agent prints: its reply, a tool call's command and
/// output, a non-JSON stdout line and a stderr line; then a normal result.
fn echo(s: &mut Session, text: &str) -> Result<i32, Failure> {
    let init = s.init_line();
    s.emit(&init);
    for line in events::tool_call(s.flavour, &s.id, text, text) {
        s.emit(&line);
    }
    s.emit(&events::text_message(s.flavour, &s.id, text));
    // A raw line is one line: the text's own line breaks would split it.
    s.emit(&text.replace('\n', " "));
    output::stderr_line(text);
    let result = s.success_result();
    s.emit(&result);
    Ok(0)
}

/// Runs `agentvisor consult` as a lead agent would, as a shell command, and reports it.
fn lead_consult(s: &mut Session, p: &crate::scenario::Params) -> Result<i32, Failure> {
    let init = s.init_line();
    s.emit(&init);
    let bin = env::var_os("MOCK_AGENT_AGENTVISOR")
        .ok_or_else(|| Failure::new(2, "mock-agent: lead_consult needs MOCK_AGENT_AGENTVISOR"))?;
    let question = if p.text.is_empty() {
        "Is the plan sound?"
    } else {
        &p.text
    };
    let out = std::process::Command::new(bin)
        .args(["consult", p.project.as_deref().unwrap_or(".")])
        .args(["--to", "codex", "--kind", "design", "--json", question])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Failure::new(1, format!("mock-agent: cannot run agentvisor: {e}")))?;
    let report = events::consult_report(
        out.status.code(),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    );
    s.emit(&report);
    let result = s.success_result();
    s.emit(&result);
    Ok(0)
}

/// A consultant's answer as one assistant message, or (`slow`) nothing until stopped.
fn consult(s: &mut Session, prompt: &str, answer: consult::Answer) -> Result<i32, Failure> {
    let init = s.init_line();
    s.emit(&init);
    let Some(text) = consult::reply(prompt, consult::effective(prompt, answer)) else {
        s.hang()
    };
    s.emit(&events::text_message(s.flavour, &s.id, &text));
    let result = s.success_result();
    s.emit(&result);
    Ok(0)
}

/// Two lines, then SIGABRT: an agent dying mid-stream with no result.
fn crash(s: &mut Session) -> ! {
    for line in s.recording(s.success_recording()).iter().take(2) {
        s.emit(line);
    }
    s.flush();
    // A crash test should not litter the working directory with core files.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid struct; abort has no preconditions.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::abort()
    }
}

/// Synthetic traffic for throughput and latency measurements. Each line
/// carries its sequence number and the wall-clock time it was written, so a
/// reader can check ordering/loss and measure delivery latency.
fn lines(s: &mut Session, p: &Params) -> Result<i32, Failure> {
    let count = p.count.unwrap_or(DEFAULT_LINES);
    let bytes = p.bytes.unwrap_or(DEFAULT_LINE_BYTES);
    let paced = p.rate > 0.0;
    let init = s.init_line();
    s.emit(&init);

    let pad = vec![b'x'; bytes];
    let mut buf = Vec::with_capacity(bytes + 64);
    let start = Instant::now();
    for n in 1..=count {
        if paced {
            // Absolute schedule: line n is due at start + (n-1)/rate, so time
            // spent writing does not accumulate as drift.
            let due = Duration::try_from_secs_f64((n - 1) as f64 / p.rate)
                .ok()
                .and_then(|offset| start.checked_add(offset));
            s.pause_until(due);
        }
        events::mock_line(&mut buf, n, unix_nanos(), bytes, &pad);
        s.emit_buffered(&buf);
        if paced {
            s.flush();
        }
    }
    s.flush();
    let result = s.success_result();
    s.emit(&result);
    Ok(0)
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// One very long line, to test the daemon's line-length handling.
fn huge(s: &mut Session, bytes: usize) -> Result<i32, Failure> {
    let init = s.init_line();
    s.emit(&init);
    let message = events::huge_message(s.flavour, &s.id, bytes);
    s.emit(&message);
    let result = s.success_result();
    s.emit(&result);
    Ok(0)
}

/// Starts a process that escapes the agent's group (`spawn`), reports it,
/// and lets it run `linger_ms` before `then`.
fn escape(
    s: &mut Session,
    p: &Params,
    linger_ms: u64,
    spawn: impl FnOnce() -> Result<libc::pid_t, Failure>,
) -> Result<i32, Failure> {
    let init = s.init_line();
    s.emit(&init);
    s.flush();
    escape::reap_children_automatically();
    let pid = spawn()?;
    s.emit(&events::grandchild(pid));
    if let Some(path) = env::var_os("MOCK_AGENT_PIDFILE") {
        escape::record_pid(&path, pid)?;
    }
    s.pause(linger_ms);
    match p.then {
        Then::Hang => s.hang(),
        Then::Exit => {
            let result = s.success_result();
            s.emit(&result);
            Ok(0)
        }
    }
}
