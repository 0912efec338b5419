//! Claude Code's stdin/stdout control protocol, as far as approvals need it (see
//! `docs/agents.md`): the prompt as a `user` message, `control_request`/`can_use_tool` lines on
//! stdout, and the `control_response` lines that answer them on stdin.
//!
//! Everything read here comes from the agent and is untrusted: fields of the wrong type or
//! size make the request unusable, never a panic.

use serde::Deserialize;
use serde_json::{json, Value};

/// The longest request id taken from the agent.
const MAX_REQUEST_ID: usize = 256;

/// The stdin line that carries the prompt.
pub fn user_message(prompt: &str) -> String {
    json!({
        "type": "user",
        "message": {"role": "user", "content": [{"type": "text", "text": prompt}]},
    })
    .to_string()
}

/// A `control_request` line from the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlRequest {
    /// Permission to run a tool.
    CanUseTool(ToolRequest),
    /// A request the daemon does not handle; it is answered with an error.
    Other { request_id: String },
}

/// What a `can_use_tool` request asks.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    pub request_id: String,
    pub tool: String,
    pub input: Value,
    pub description: Option<String>,
    /// The permission updates the CLI proposes for "allow from now on".
    pub suggestions: Value,
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    request_id: String,
    request: Value,
}

/// Reads a `control_request` line; `None` for any other line or a malformed one.
pub fn parse_request(line: &str) -> Option<ControlRequest> {
    let l: Line = serde_json::from_str(line).ok()?;
    if l.kind != "control_request" || l.request_id.is_empty() || l.request_id.len() > MAX_REQUEST_ID
    {
        return None;
    }
    let r = &l.request;
    if r["subtype"] != "can_use_tool" {
        return Some(ControlRequest::Other {
            request_id: l.request_id,
        });
    }
    let tool = r["tool_name"].as_str().filter(|t| !t.is_empty())?;
    Some(ControlRequest::CanUseTool(ToolRequest {
        request_id: l.request_id.clone(),
        tool: tool.to_string(),
        input: r.get("input").cloned().unwrap_or_else(|| json!({})),
        description: r["description"].as_str().map(String::from),
        suggestions: match &r["permission_suggestions"] {
            v @ Value::Array(_) => v.clone(),
            _ => json!([]),
        },
    }))
}

/// Allows the tool call with its input unchanged; `rules` (the CLI's own suggestions) keep it
/// allowed for the rest of the CLI's session.
pub fn allow(request_id: &str, input: &Value, rules: Option<&Value>) -> String {
    let mut answer = json!({"behavior": "allow", "updatedInput": input});
    if let Some(r) = rules {
        answer["updatedPermissions"] = r.clone();
    }
    success(request_id, answer)
}

/// Denies the tool call; the model sees `message` as the tool's error.
pub fn deny(request_id: &str, message: &str) -> String {
    success(request_id, json!({"behavior": "deny", "message": message}))
}

/// Refuses a control request the daemon does not handle.
pub fn unsupported(request_id: &str) -> String {
    json!({
        "type": "control_response",
        "response": {"subtype": "error", "request_id": request_id,
            "error": "agentvisor does not handle this control request"},
    })
    .to_string()
}

fn success(request_id: &str, answer: Value) -> String {
    json!({
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": answer},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_can_use_tool_request() {
        let line = r#"{"type":"control_request","request_id":"q1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"ls"},"description":"List","permission_suggestions":[{"type":"addRules"}]}}"#;
        let Some(ControlRequest::CanUseTool(t)) = parse_request(line) else {
            panic!("not parsed");
        };
        assert_eq!(t.tool, "Bash");
        assert_eq!(t.input["command"], "ls");
        assert_eq!(t.suggestions[0]["type"], "addRules");
    }

    #[test]
    fn other_lines_and_bad_requests_are_not_requests() {
        assert_eq!(parse_request(r#"{"type":"assistant"}"#), None);
        assert_eq!(parse_request("not json"), None);
        let long = format!(
            r#"{{"type":"control_request","request_id":"{}","request":{{}}}}"#,
            "x".repeat(300)
        );
        assert_eq!(parse_request(&long), None);
        assert_eq!(
            parse_request(r#"{"type":"control_request","request_id":7,"request":{}}"#),
            None
        );
        assert_eq!(
            parse_request(
                r#"{"type":"control_request","request_id":"a","request":{"subtype":"interrupt"}}"#
            ),
            Some(ControlRequest::Other {
                request_id: "a".into()
            })
        );
    }

    #[test]
    fn answers_have_the_cli_shape() {
        let a: Value = serde_json::from_str(&allow("q", &json!({"x": 1}), None)).unwrap();
        assert_eq!(a["response"]["response"]["behavior"], "allow");
        assert_eq!(a["response"]["response"]["updatedInput"]["x"], 1);
        let d: Value = serde_json::from_str(&deny("q", "no")).unwrap();
        assert_eq!(d["response"]["request_id"], "q");
        assert_eq!(d["response"]["response"]["message"], "no");
    }
}
