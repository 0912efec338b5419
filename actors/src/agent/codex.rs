//! Codex: `exec --json` mode.

use super::{unsupported, Agent, AgentLine, Observation};
use crate::error::ApiError;
use crate::options::RunOptions;

pub struct Codex;

/// Why Codex runs cannot ask for approvals.
fn approvals_refused() -> ApiError {
    ApiError::validation(
        "option 'approvals' is not supported by the codex agent: `codex exec` never asks for permission, its 'sandbox' option alone decides what it may do",
    )
}

impl Agent for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn title(&self) -> &'static str {
        "Codex"
    }

    fn npm_package(&self) -> &'static str {
        "@openai/codex"
    }

    /// The read-only sandbox.
    fn read_only(&self) -> RunOptions {
        RunOptions {
            sandbox: Some("read-only".into()),
            ..Default::default()
        }
    }

    fn approvals_refused(&self) -> Option<ApiError> {
        Some(approvals_refused())
    }

    fn args(
        &self,
        options: &RunOptions,
        resume: Option<&str>,
        prompt: &str,
    ) -> Result<Vec<String>, ApiError> {
        if options.asks_approval() {
            return Err(approvals_refused());
        }
        for (set, name) in [
            (options.permission_mode.is_some(), "permission_mode"),
            (!options.allowed_tools.is_empty(), "allowed_tools"),
            (!options.disallowed_tools.is_empty(), "disallowed_tools"),
            (options.max_turns.is_some(), "max_turns"),
            (
                options.append_system_prompt.is_some(),
                "append_system_prompt",
            ),
            (!options.add_dirs.is_empty(), "add_dirs"),
        ] {
            if set {
                return Err(unsupported(self.name(), name));
            }
        }
        let mut args: Vec<String> = vec!["exec".into()];
        if resume.is_some() {
            args.push("resume".into());
        }
        args.extend(["--json", "--skip-git-repo-check"].map(String::from));
        if let Some(m) = &options.model {
            args.push(format!("--model={m}"));
        }
        if let Some(s) = &options.sandbox {
            args.push("-c".into());
            args.push(format!("sandbox_mode=\"{s}\""));
        }
        args.push("--".into());
        if let Some(id) = resume {
            args.push(id.into());
        }
        args.push(prompt.into());
        Ok(args)
    }

    /// The thread id comes with `thread.started`. Codex reports retries as `error` events and
    /// only gives up with `turn.failed`: an `error` alone is remembered as the likely reason,
    /// and the exit code decides.
    fn observe(&self, line: &AgentLine) -> Observation {
        let mut seen = Observation::default();
        match line.kind.as_deref() {
            Some("thread.started") => seen.session = line.thread_id.clone(),
            Some(kind @ ("error" | "turn.failed")) => {
                seen.failed = kind == "turn.failed";
                let what = line
                    .message
                    .as_ref()
                    .and_then(|m| m.as_str().map(String::from))
                    .or_else(|| {
                        line.error.as_ref().and_then(|e| {
                            e.get("message").and_then(|m| m.as_str()).map(String::from)
                        })
                    })
                    .unwrap_or_else(|| "unknown error".into());
                seen.error = Some(what);
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
        Codex.observe(&serde_json::from_str(line).unwrap())
    }

    #[test]
    fn an_error_is_a_likely_reason_and_turn_failed_a_failure() {
        let started = observe(r#"{"type":"thread.started","thread_id":"t-1"}"#);
        assert_eq!(started.session.as_deref(), Some("t-1"));
        let retry = observe(r#"{"type":"error","message":"retrying"}"#);
        assert!(!retry.failed);
        assert_eq!(retry.error.as_deref(), Some("retrying"));
        let failed = observe(r#"{"type":"turn.failed","error":{"message":"gave up"}}"#);
        assert!(failed.failed);
        assert_eq!(failed.error.as_deref(), Some("gave up"));
        let result = observe(r#"{"type":"result","is_error":true,"session_id":"s"}"#);
        assert_eq!(result, Observation::default());
    }
}
