//! Per-run options a client may pass to the agent, validated against an allow-list.
//!
//! Only the fields below exist; anything else is refused. Values are checked here so that the
//! executor can map them to flags without further thought (see `executor::command`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;

/// Permission modes Claude Code accepts for `--permission-mode`.
pub const PERMISSION_MODES: &[&str] = &["default", "acceptEdits", "plan", "bypassPermissions"];
/// Sandbox modes Codex accepts for `sandbox_mode`.
pub const SANDBOX_MODES: &[&str] = &["read-only", "workspace-write", "danger-full-access"];

const MAX_APPEND_PROMPT: usize = 64 * 1024;
const MAX_TOOLS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disallowed_tools: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub append_system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_dirs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Tool calls that need permission are asked of the clients (Claude only; see
    /// `docs/approvals.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<bool>,
}

impl RunOptions {
    /// Parses and validates `data.options` of an `execute`.
    pub fn from_value(v: Option<Value>) -> Result<Self, ApiError> {
        let v = match v {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(ApiError::validation("'options' must be an object")),
        };
        let opts: RunOptions = serde_json::from_value(v).map_err(|e| {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            ApiError::validation(format!(
                "invalid 'options': {}",
                crate::logfmt::sanitize(&msg, 300)
            ))
        })?;
        opts.validate()?;
        Ok(opts)
    }

    fn validate(&self) -> Result<(), ApiError> {
        if let Some(m) = &self.model {
            let ok = !m.is_empty()
                && m.len() <= 128
                && m.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:/-[]".contains(c))
                && !m.starts_with('-');
            if !ok {
                return Err(ApiError::validation(
                    "'options.model' must be a model name (letters, digits, . _ : / - [ ])",
                ));
            }
        }
        if let Some(p) = &self.permission_mode {
            if !PERMISSION_MODES.contains(&p.as_str()) {
                return Err(ApiError::validation(format!(
                    "'options.permission_mode' must be one of {}",
                    PERMISSION_MODES.join(", ")
                )));
            }
        }
        if let Some(s) = &self.sandbox {
            if !SANDBOX_MODES.contains(&s.as_str()) {
                return Err(ApiError::validation(format!(
                    "'options.sandbox' must be one of {}",
                    SANDBOX_MODES.join(", ")
                )));
            }
        }
        for (name, tools) in [
            ("allowed_tools", &self.allowed_tools),
            ("disallowed_tools", &self.disallowed_tools),
        ] {
            if tools.len() > MAX_TOOLS {
                return Err(ApiError::validation(format!(
                    "'options.{name}' may list at most {MAX_TOOLS} tools"
                )));
            }
            for t in tools {
                let ok = !t.is_empty()
                    && t.len() <= 256
                    && !t.starts_with('-')
                    && !t.contains(',')
                    && !t.chars().any(char::is_control);
                if !ok {
                    return Err(ApiError::validation(format!(
                        "'options.{name}' entries must be tool names like \"Read\" or \"Bash(git log:*)\""
                    )));
                }
            }
        }
        if let Some(n) = self.max_turns {
            if !(1..=1000).contains(&n) {
                return Err(ApiError::validation(
                    "'options.max_turns' must be between 1 and 1000",
                ));
            }
        }
        if let Some(p) = &self.append_system_prompt {
            if p.len() > MAX_APPEND_PROMPT || p.contains('\0') {
                return Err(ApiError::validation(
                    "'options.append_system_prompt' must be at most 64 KiB of text",
                ));
            }
        }
        if self.add_dirs.len() > 16 {
            return Err(ApiError::validation(
                "'options.add_dirs' may list at most 16 directories",
            ));
        }
        Ok(())
    }

    /// Whether the run asks the clients before tool calls that need permission.
    pub fn asks_approval(&self) -> bool {
        self.approvals == Some(true)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_the_allow_list() {
        let o = RunOptions::from_value(Some(json!({
            "model": "claude-sonnet-4-5", "permission_mode": "plan",
            "allowed_tools": ["Read", "Bash(git log:*)"], "max_turns": 3,
            "append_system_prompt": "-be brief", "add_dirs": ["/tmp"]
        })))
        .unwrap();
        assert_eq!(o.max_turns, Some(3));
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            json!({"dangerously_skip_permissions": true}),
            json!({"model": "--dangerously-skip-permissions"}),
            json!({"model": "a b"}),
            json!({"permission_mode": "yolo"}),
            json!({"allowed_tools": ["-x"]}),
            json!({"allowed_tools": ["a,b"]}),
            json!({"max_turns": 0}),
            json!({"max_turns": -1}),
            json!("string"),
        ] {
            assert!(RunOptions::from_value(Some(bad.clone())).is_err(), "{bad}");
        }
    }
}
