//! What a person (or a script, with `--json`) sees.
//!
//! Human output: the agent's text, one line per tool call, stderr lines on stderr, and the end
//! of a run with its status, duration and cost. Colour only when stdout is a terminal (or
//! `CLICOLOR_FORCE` is set) and `NO_COLOR` is not set. Everything an agent prints is untrusted: control characters (escape
//! sequences that could rewrite the terminal) are removed before printing. `--json` prints each
//! event exactly as the daemon sent it, one per line.

use std::io::{IsTerminal, Write};

use serde_json::Value;

use super::session::Incoming;

pub struct Render {
    json: bool,
    colour: bool,
}

/// ANSI styles used.
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

impl Render {
    pub fn new(json: bool) -> Self {
        let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        // `CLICOLOR_FORCE` asks for colour on a pipe too (`| less -R`); `NO_COLOR` always wins.
        let wanted = std::io::stdout().is_terminal() || set("CLICOLOR_FORCE");
        Render {
            json,
            colour: !json && !set("NO_COLOR") && wanted,
        }
    }

    pub fn style(&self, style: &str, text: &str) -> String {
        if self.colour {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    /// Prints one event of a project.
    pub fn event(&self, m: &Incoming) {
        if self.json {
            out(&m.text);
            return;
        }
        let d = &m.value["data"];
        match m.kind() {
            "agent_message" => self.agent_message(d),
            "agent_stderr" => {
                let line = clean(d["line"].as_str().unwrap_or_default());
                let _ = writeln!(std::io::stderr(), "{}", self.style(DIM, &line));
            }
            "prompt" => out(&self.style(
                BOLD,
                &format!("> {}", clean(d["prompt"].as_str().unwrap_or_default())),
            )),
            "run_finished" => out(&self.finished(d)),
            "session_reset" => out(&self.style(DIM, "(the agent session was reset)")),
            "consult_started" => {
                let text = |k: &str| clean(d[k].as_str().unwrap_or_default());
                out(&self.style(
                    BOLD,
                    &format!(
                        "? consult {} ({}): {}",
                        text("to"),
                        text("kind"),
                        text("question")
                    ),
                ))
            }
            "consult_attempt" if d["after"].is_string() => out(&self.style(
                DIM,
                &format!(
                    "(consult asked again: {})",
                    clean(d["after"].as_str().unwrap_or_default())
                ),
            )),
            "consult_result" => self.consult_result(d),
            "permission_request" => out(&self.style(BOLD, &request_line(&m.value))),
            "permission_resolved" => out(&self.style(DIM, &resolved_line(d))),
            "project_deleted" => out(&self.style(RED, "the project was deleted")),
            // An error as an event (history could not be written): worth knowing, not output.
            "error" => {
                let why = clean(d["error"].as_str().unwrap_or_default());
                let _ = writeln!(
                    std::io::stderr(),
                    "{}",
                    self.style(RED, &format!("daemon: {why}"))
                );
            }
            _ => {}
        }
    }

    fn agent_message(&self, d: &Value) {
        if let Some(raw) = d["raw"].as_str() {
            out(&clean(raw));
            return;
        }
        let msg = &d["message"];
        match msg["type"].as_str().unwrap_or_default() {
            // Claude Code: text and tool calls of the assistant.
            "assistant" => {
                for part in msg["message"]["content"].as_array().into_iter().flatten() {
                    match part["type"].as_str() {
                        Some("text") => out(&clean(part["text"].as_str().unwrap_or_default())),
                        Some("tool_use") => {
                            self.tool(part["name"].as_str().unwrap_or("tool"), &part["input"])
                        }
                        _ => {}
                    }
                }
            }
            // Codex: messages and commands.
            "item.completed" if msg["item"]["type"] == "agent_message" => {
                out(&clean(msg["item"]["text"].as_str().unwrap_or_default()));
            }
            "item.started" if msg["item"]["type"] == "command_execution" => {
                self.tool("shell", &msg["item"]["command"]);
            }
            // Bookkeeping lines the run's end already summarises.
            "system" | "user" | "result" | "item.completed" | "item.started" | "item.updated"
            | "thread.started" | "turn.started" | "turn.completed" => {}
            // Anything else (new line types) is shown as it came, so nothing is hidden.
            _ => out(&clean(&msg.to_string())),
        }
    }

    fn tool(&self, name: &str, input: &Value) {
        let summary = match input {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("command")
                .or_else(|| o.get("file_path"))
                .or_else(|| o.get("pattern"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| input.to_string()),
            other => other.to_string(),
        };
        let line = format!("→ {}: {}", clean(name), clean(&summary).replace('\n', " "));
        out(&self.style(CYAN, &truncate(&line, 200)));
    }

    fn finished(&self, d: &Value) -> String {
        let status = d["status"].as_str().unwrap_or("unknown");
        let mut line = format!("{} {status}", if status == "completed" { "✓" } else { "✗" });
        if let Some(ms) = d["duration_ms"].as_u64() {
            line.push_str(&format!(" in {:.1}s", ms as f64 / 1000.0));
        }
        if let Some(cost) = d["cost_usd"].as_f64() {
            line.push_str(&format!(" · ${cost:.4}"));
        }
        if let Some(c) = d.get("changes") {
            line.push_str(&format!(
                " · {} file(s) changed, +{} -{}",
                c["files_changed"].as_u64().unwrap_or(0),
                c["insertions"].as_u64().unwrap_or(0),
                c["deletions"].as_u64().unwrap_or(0)
            ));
        }
        if let Some(e) = d["error"].as_str() {
            line.push_str(&format!(": {}", clean(e)));
        }
        self.style(if status == "completed" { GREEN } else { RED }, &line)
    }

    /// A consult's result: its status, the review's issues by severity, then each section.
    pub fn consult_result(&self, d: &Value) {
        let text = |v: &Value| clean(v.as_str().unwrap_or_default());
        let status = d["status"].as_str().unwrap_or("unknown");
        let head = format!(
            "{} {status} · {} answered the {} consult · {} attempt(s) · consult {}",
            if status == "complete" { "✓" } else { "✗" },
            text(&d["to"]),
            text(&d["kind"]),
            d["attempts"],
            text(&d["consult_id"])
        );
        out(&self.style(if status == "complete" { GREEN } else { RED }, &head));
        if let Some(e) = d["error"].as_str() {
            out(&clean(e));
        }
        let issues = d["issues"].as_array().cloned().unwrap_or_default();
        for severity in ["Critical", "Important", "Minor"] {
            for i in issues.iter().filter(|i| i["severity"] == severity) {
                out(&format!("  [{severity}] {}", text(&i["text"])));
            }
        }
        for (name, body) in d["sections"].as_object().into_iter().flatten() {
            out(&self.style(BOLD, &clean(name)));
            out(&text(body));
        }
    }

    /// A line of a result a person asked for (a list, a confirmation).
    pub fn line(&self, text: &str) {
        out(text);
    }
}

/// A permission request, with the commands that answer it.
fn request_line(m: &Value) -> String {
    let d = &m["data"];
    let text = |v: &Value| clean(v.as_str().unwrap_or_default()).replace('\n', " ");
    format!(
        "? {} asks for permission: {}  (agentvisor approve|deny {} {})",
        text(&d["tool"]),
        truncate(&text(&d["summary"]), 200),
        text(&m["project_id"]),
        text(&d["request_id"])
    )
}

/// How a permission request was resolved.
fn resolved_line(d: &Value) -> String {
    let text = |v: &Value| clean(v.as_str().unwrap_or_default());
    let mut line = format!(
        "  {} {} ({})",
        text(&d["request_id"]),
        if d["decision"] == "allow" {
            "allowed"
        } else {
            "denied"
        },
        text(&d["by"])
    );
    if let Some(m) = d["message"].as_str() {
        line.push_str(&format!(": {}", clean(m)));
    }
    line
}

/// Prints a line on stdout. When stdout is gone (`| head` has seen enough) there is no one to
/// print for: the client ends at once, with exit code 1, instead of panicking.
fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(1);
    }
}

/// Removes control characters except newline and tab.
pub fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_removed_but_lines_and_tabs_kept() {
        assert_eq!(clean("a\x1b[2Jb\tc\nd\u{7}"), "a[2Jb\tc\nd");
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("ab", 2), "ab");
    }
}
