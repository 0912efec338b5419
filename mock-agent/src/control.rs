//! Claude Code's stdin side in print mode with `--input-format stream-json`: the prompt arrives
//! as a `user` message line, permission requests go out as `control_request` lines and their
//! answers come back as `control_response` lines (`--permission-prompt-tool stdio`), and the
//! CLI exits only once stdin is closed after its `result` line.

use std::io::BufRead;

use serde_json::Value;

use crate::error::Failure;

/// The text of the first `user` message on stdin.
pub fn read_prompt() -> Result<String, Failure> {
    let line = next_line()?.ok_or_else(|| {
        Failure::new(
            1,
            "Error: Input must be provided either through stdin or as a prompt argument when using --print",
        )
    })?;
    let v: Value = serde_json::from_str(&line)
        .map_err(|e| Failure::new(1, format!("Error parsing streaming input line: {e}")))?;
    if v["type"] != "user" {
        return Err(Failure::new(
            1,
            "Error: Expected message type 'user' or 'control', got something else",
        ));
    }
    let content = &v["message"]["content"];
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    Ok(text)
}

/// The next stdin line, `None` at end of input.
fn next_line() -> Result<Option<String>, Failure> {
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(1, format!("mock-agent: reading stdin failed: {e}")))?;
    Ok((n > 0).then_some(line))
}

/// Waits for stdin to close, as the real CLI does after its `result` line.
pub fn wait_for_eof() -> Result<(), Failure> {
    while next_line()?.is_some() {}
    Ok(())
}

/// The parent's answer to one permission request.
pub enum Verdict {
    /// Allowed; `input` is the (possibly updated) tool input, `rules` the permission updates
    /// the parent asked to keep for the session.
    Allow {
        input: Value,
        rules: Vec<Value>,
    },
    Deny(String),
}

/// The `control_request` line asking to use `tool` with `input`.
pub fn request_line(request_id: &str, tool: &str, input: &Value, suggestions: &Value) -> String {
    serde_json::json!({
        "type": "control_request",
        "request_id": request_id,
        "request": {
            "subtype": "can_use_tool",
            "tool_name": tool,
            "display_name": tool,
            "input": input,
            "description": input["description"],
            "permission_suggestions": suggestions,
        }
    })
    .to_string()
}

/// Reads stdin until the `control_response` to `request_id`; other lines are skipped.
pub fn await_verdict(request_id: &str) -> Result<Verdict, Failure> {
    loop {
        let Some(line) = next_line()? else {
            return Err(Failure::new(
                1,
                "Error: stdin closed while a permission request was waiting for its answer",
            ));
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let response = &v["response"];
        if v["type"] != "control_response" || response["request_id"] != request_id {
            continue;
        }
        let answer = &response["response"];
        return Ok(match answer["behavior"].as_str() {
            Some("allow") => Verdict::Allow {
                input: answer["updatedInput"].clone(),
                rules: answer["updatedPermissions"]
                    .as_array()
                    .map(|a| a.to_vec())
                    .unwrap_or_default(),
            },
            _ => Verdict::Deny(answer["message"].as_str().unwrap_or("denied").to_string()),
        });
    }
}

/// Whether a permission update allows `tool` with rule content `content`.
pub fn rule_allows(update: &Value, tool: &str, content: &str) -> bool {
    update["behavior"] == "allow"
        && update["rules"].as_array().is_some_and(|rules| {
            rules
                .iter()
                .any(|r| r["toolName"] == tool && r["ruleContent"] == content)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_match_tool_and_content() {
        let u = json!({"type":"addRules","behavior":"allow","destination":"session",
            "rules":[{"toolName":"Bash","ruleContent":"echo approved"}]});
        assert!(rule_allows(&u, "Bash", "echo approved"));
        assert!(!rule_allows(&u, "Bash", "rm -rf /"));
        assert!(!rule_allows(&u, "Write", "echo approved"));
    }

    #[test]
    fn the_request_line_has_the_cli_shape() {
        let line = request_line("r-1", "Bash", &json!({"command": "ls"}), &json!([]));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "control_request");
        assert_eq!(v["request"]["subtype"], "can_use_tool");
        assert_eq!(v["request"]["tool_name"], "Bash");
    }
}
