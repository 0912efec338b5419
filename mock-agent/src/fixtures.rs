//! The recorded stdout of real `claude` / `codex` runs, replayed verbatim.
//!
//! Replaying real recordings (rather than hand-written approximations) is the
//! point of the mock: the daemon is tested against the exact bytes the CLIs
//! emit. The only edits are the ones that make a replay coherent with the
//! invocation: the session/thread id becomes this run's id, and Claude's init
//! line reports the real working directory.

use crate::args::Flavour;
use crate::json;

/// Which recorded run to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    Success,
    Resume,
    Tool,
    Http500,
    ApiDown,
}

/// The recordings of one flavour: its file names under `tests/fixtures/agents/` share a prefix,
/// and each recording adds the same suffix to it in both flavours.
macro_rules! recordings {
    ($recording:expr, $prefix:literal) => {
        match $recording {
            Recording::Success => fixture!($prefix, ""),
            Recording::Resume => fixture!($prefix, ".resume"),
            Recording::Tool => fixture!($prefix, ".tool"),
            Recording::Http500 => fixture!($prefix, ".http-500"),
            Recording::ApiDown => fixture!($prefix, ".api-down"),
        }
    };
}

macro_rules! fixture {
    ($prefix:literal, $suffix:literal) => {
        include_str!(concat!(
            "../../tests/fixtures/agents/",
            $prefix,
            $suffix,
            ".sample.jsonl"
        ))
    };
}

/// The raw text of a recording.
pub fn text(flavour: Flavour, recording: Recording) -> &'static str {
    match flavour {
        Flavour::Claude => recordings!(recording, "claude-stream-json"),
        Flavour::Codex => recordings!(recording, "codex-exec-json"),
    }
}

/// The JSON key that carries the conversation id in this flavour's output.
pub fn id_key(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::Claude => "session_id",
        Flavour::Codex => "thread_id",
    }
}

/// The string value of `"key":"..."` in the first line of `text`. Fixture
/// values contain no escapes, so scanning to the next quote is exact.
fn first_value<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    let line = text.lines().next()?;
    let needle = format!("\"{key}\":\"");
    let start = line.find(&needle)? + needle.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// The recording's lines with its own id replaced by `session_id` and (for
/// Claude) the init line's `cwd` replaced by `cwd`, if known.
pub fn lines(
    flavour: Flavour,
    recording: Recording,
    session_id: &str,
    cwd: Option<&str>,
) -> Vec<String> {
    let raw = text(flavour, recording);
    let mut text = match first_value(raw, id_key(flavour)) {
        Some(own_id) => raw.replace(own_id, session_id),
        None => raw.to_owned(),
    };
    if let (Flavour::Claude, Some(cwd)) = (flavour, cwd) {
        if let Some(recorded) = first_value(&text, "cwd") {
            let from = format!("\"cwd\":\"{recorded}\"");
            let to = format!("\"cwd\":{}", json::string(cwd));
            text = text.replacen(&from, &to, 1);
        }
    }
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Recording; 5] = [
        Recording::Success,
        Recording::Resume,
        Recording::Tool,
        Recording::Http500,
        Recording::ApiDown,
    ];

    #[test]
    fn every_fixture_has_an_id_in_its_first_line() {
        for flavour in [Flavour::Claude, Flavour::Codex] {
            for rec in ALL {
                let id = first_value(text(flavour, rec), id_key(flavour));
                assert!(id.is_some_and(|id| id.len() >= 32), "{flavour:?} {rec:?}");
            }
        }
    }

    #[test]
    fn id_is_replaced_everywhere() {
        for flavour in [Flavour::Claude, Flavour::Codex] {
            for rec in ALL {
                let own = first_value(text(flavour, rec), id_key(flavour)).unwrap();
                let lines = lines(flavour, rec, "NEW-ID", None);
                assert!(!lines.is_empty());
                let joined = lines.join("\n");
                assert!(!joined.contains(own), "{flavour:?} {rec:?}");
                let key = format!("\"{}\":\"NEW-ID\"", id_key(flavour));
                assert!(lines[0].contains(&key), "{flavour:?} {rec:?}");
            }
        }
    }

    #[test]
    fn claude_init_reports_the_real_cwd() {
        let lines = lines(
            Flavour::Claude,
            Recording::Success,
            "x",
            Some("/tmp/a \"b\""),
        );
        assert!(lines[0].contains(r#""cwd":"/tmp/a \"b\"""#), "{}", lines[0]);
        assert!(!lines[0].contains("/home/dev/work/demo\""));
    }

    #[test]
    fn recordings_end_as_expected() {
        let last = |f, r| lines(f, r, "x", None).pop().unwrap();
        assert!(last(Flavour::Claude, Recording::Success).contains("\"is_error\":false"));
        assert!(last(Flavour::Claude, Recording::Http500).contains("\"is_error\":true"));
        assert!(last(Flavour::Claude, Recording::ApiDown).contains("\"is_error\":true"));
        assert!(last(Flavour::Codex, Recording::Success).contains("turn.completed"));
        assert!(last(Flavour::Codex, Recording::Http500).contains("turn.failed"));
    }
}
