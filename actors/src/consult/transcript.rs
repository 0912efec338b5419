//! What a consultant's output says: its conversation id and its final answer.
//!
//! Both CLIs print JSON lines; the answer is the last assistant text (Claude's `assistant`
//! messages, Codex's `agent_message` items), the conversation id is Claude's `session_id` or
//! Codex's `thread_id`. Lines of any other shape are ignored: the output is untrusted.

use serde_json::Value;

/// The longest conversation id kept (a longer one is not an id).
const MAX_ID: usize = 256;

#[derive(Debug, Default, Clone)]
pub struct Transcript {
    session_id: Option<String>,
    answer: Option<String>,
    error: Option<String>,
}

impl Transcript {
    /// Reads one stdout line.
    pub fn feed(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            return;
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        let id = match kind {
            "system" | "result" => v.get("session_id"),
            "thread.started" => v.get("thread_id"),
            _ => None,
        };
        if let Some(id) = id.and_then(Value::as_str) {
            if !id.is_empty() && id.len() <= MAX_ID {
                self.session_id = Some(id.to_string());
            }
        }
        match kind {
            "assistant" => {
                let text = claude_text(&v);
                if !text.is_empty() {
                    self.answer = Some(text);
                }
            }
            "item.completed" => {
                let item = &v["item"];
                if item["type"] == "agent_message" {
                    if let Some(t) = item["text"].as_str() {
                        self.answer = Some(t.to_string());
                    }
                }
            }
            "result" if v["is_error"] == true => {
                self.error = v["result"].as_str().map(String::from);
            }
            "error" => self.error = v["message"].as_str().map(String::from),
            "turn.failed" => self.error = v["error"]["message"].as_str().map(String::from),
            _ => {}
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The consultant's final answer, if it gave one.
    pub fn answer(&self) -> Option<&str> {
        self.answer.as_deref()
    }

    /// The last error the CLI reported.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// The text blocks of one Claude assistant message, joined.
fn claude_text(v: &Value) -> String {
    v["message"]["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/agents/");

    fn read(name: &str) -> Transcript {
        let text = std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap();
        let mut t = Transcript::default();
        text.lines().for_each(|l| t.feed(l));
        t
    }

    #[test]
    fn the_real_clis_answers_and_ids() {
        for name in [
            "claude-stream-json.sample.jsonl",
            "codex-exec-json.sample.jsonl",
        ] {
            let t = read(name);
            assert!(t.session_id().is_some(), "{name}");
            assert!(t.answer().is_some_and(|a| !a.is_empty()), "{name}");
            assert!(t.error().is_none(), "{name}");
        }
        let t = read("claude-stream-json.api-down.sample.jsonl");
        assert!(t.error().unwrap().contains("Unable to connect"));
        let t = read("codex-exec-json.http-500.sample.jsonl");
        assert!(t.error().unwrap().contains("high demand"));
        assert!(t.answer().is_none());
    }

    #[test]
    fn odd_lines_are_ignored() {
        let mut t = Transcript::default();
        for l in [
            "not json",
            r#"{"type":7}"#,
            r#"{"type":"assistant","message":{"content":"x"}}"#,
            r#"{"type":"thread.started","thread_id":""}"#,
        ] {
            t.feed(l);
        }
        assert!(t.answer().is_none() && t.session_id().is_none());
    }
}
