//! Claude Code: print mode with stream-json output.

use super::{unsupported, Agent, AgentLine, Observation};
use crate::error::ApiError;
use crate::options::RunOptions;

pub struct Claude;

impl Agent for Claude {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn title(&self) -> &'static str {
        "Claude Code"
    }

    fn npm_package(&self) -> &'static str {
        "@anthropic-ai/claude-code"
    }

    /// Plan mode: Claude Code reads and answers, and changes nothing.
    fn read_only(&self) -> RunOptions {
        RunOptions {
            permission_mode: Some("plan".into()),
            ..Default::default()
        }
    }

    fn args(
        &self,
        options: &RunOptions,
        resume: Option<&str>,
        prompt: &str,
    ) -> Result<Vec<String>, ApiError> {
        let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--verbose"]
            .map(String::from)
            .into();
        if options.asks_approval() {
            // The prompt and the permission answers go on stdin (see `executor::control`).
            args.extend(
                [
                    "--input-format",
                    "stream-json",
                    "--permission-prompt-tool",
                    "stdio",
                ]
                .map(String::from),
            );
        }
        if let Some(id) = resume {
            args.push(format!("--resume={id}"));
        }
        if options.sandbox.is_some() {
            return Err(unsupported(self.name(), "sandbox"));
        }
        if let Some(m) = &options.model {
            args.push(format!("--model={m}"));
        }
        if let Some(p) = &options.permission_mode {
            args.push(format!("--permission-mode={p}"));
        }
        if !options.allowed_tools.is_empty() {
            args.push(format!(
                "--allowedTools={}",
                options.allowed_tools.join(",")
            ));
        }
        if !options.disallowed_tools.is_empty() {
            args.push(format!(
                "--disallowedTools={}",
                options.disallowed_tools.join(",")
            ));
        }
        if let Some(n) = options.max_turns {
            args.push(format!("--max-turns={n}"));
        }
        if let Some(s) = &options.append_system_prompt {
            args.push(format!("--append-system-prompt={s}"));
        }
        for d in &options.add_dirs {
            args.push(format!("--add-dir={d}"));
        }
        if !options.asks_approval() {
            args.push("--".into());
            args.push(prompt.into());
        }
        Ok(args)
    }

    /// The session id comes with `system/init` and again with `result`, which also carries the
    /// cost and whether the run failed.
    fn observe(&self, line: &AgentLine) -> Observation {
        let mut seen = Observation::default();
        match line.kind.as_deref() {
            Some("system") if line.subtype.as_deref() == Some("init") => {
                seen.session = line.session_id.clone();
            }
            Some("result") => {
                seen.session = line.session_id.clone();
                seen.cost_usd = line.total_cost_usd;
                if line.is_error == Some(true) {
                    seen.failed = true;
                    let what = line
                        .result
                        .as_ref()
                        .and_then(|r| r.as_str())
                        .or(line.subtype.as_deref())
                        .unwrap_or("unknown error");
                    seen.error = Some(what.to_string());
                }
            }
            _ => {}
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(line: &str) -> Observation {
        Claude.observe(&serde_json::from_str(line).unwrap())
    }

    #[test]
    fn reads_the_session_cost_and_error_of_its_own_events_only() {
        let init = observe(r#"{"type":"system","subtype":"init","session_id":"s-1"}"#);
        assert_eq!(init.session.as_deref(), Some("s-1"));
        let failed = observe(
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"session_id":"s-1","total_cost_usd":0.5}"#,
        );
        assert!(failed.failed);
        assert_eq!(failed.cost_usd, Some(0.5));
        assert_eq!(failed.error.as_deref(), Some("error_max_turns"));
        assert_eq!(observe(r#"{"type":"turn.failed"}"#), Observation::default());
    }
}
