//! Synthetic output lines that no recording contains.
//!
//! Scenarios such as `lines`, `huge` or `hang` need lines the recordings do
//! not have (a final result after synthetic traffic, the interrupted result,
//! marker lines for tests). They are shaped like the real CLI's so that the
//! daemon's parser treats them as it would real ones.

use crate::args::Flavour;
use crate::json;

/// The closing line of a successful turn: Claude's `result` or Codex's
/// `turn.completed`.
pub fn success_result(flavour: Flavour, session_id: &str, duration_ms: u128) -> String {
    match flavour {
        Flavour::Claude => format!(
            r#"{{"type":"result","subtype":"success","is_error":false,"duration_ms":{duration_ms},"num_turns":1,"result":"done","session_id":{},"total_cost_usd":0.0001}}"#,
            json::string(session_id)
        ),
        Flavour::Codex => r#"{"type":"turn.completed","usage":{"input_tokens":12,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":2,"reasoning_output_tokens":0}}"#.to_owned(),
    }
}

/// Claude's closing line after SIGINT.
pub fn interrupted_result(session_id: &str, duration_ms: u128) -> String {
    format!(
        r#"{{"type":"result","subtype":"error_during_execution","is_error":true,"duration_ms":{duration_ms},"session_id":{},"result":"Interrupted"}}"#,
        json::string(session_id)
    )
}

/// Codex's opening line (Claude's is the recorded init line).
pub fn thread_started(thread_id: &str) -> String {
    format!(
        r#"{{"type":"thread.started","thread_id":{}}}"#,
        json::string(thread_id)
    )
}

/// One assistant text message whose JSON text is exactly `bytes` long (or
/// as short as possible when `bytes` is smaller than the envelope).
pub fn huge_message(flavour: Flavour, session_id: &str, bytes: usize) -> String {
    let (head, tail) = match flavour {
        Flavour::Claude => (
            r#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":""#
                .to_owned(),
            format!(r#""}}]}},"session_id":{}}}"#, json::string(session_id)),
        ),
        Flavour::Codex => (
            r#"{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":""#
                .to_owned(),
            r#""}}"#.to_owned(),
        ),
    };
    let fill = bytes.saturating_sub(head.len() + tail.len());
    let mut line = String::with_capacity(head.len() + fill + tail.len());
    line.push_str(&head);
    line.push_str(&"a".repeat(fill));
    line.push_str(&tail);
    line
}

/// An assistant message with one text block.
pub fn text_message(flavour: Flavour, session_id: &str, text: &str) -> String {
    match flavour {
        Flavour::Claude => format!(
            r#"{{"type":"assistant","message":{{"role":"assistant","content":[{{"type":"text","text":{}}}]}},"session_id":{}}}"#,
            json::string(text),
            json::string(session_id)
        ),
        Flavour::Codex => format!(
            r#"{{"type":"item.completed","item":{{"id":"item_echo_text","type":"agent_message","text":{}}}}}"#,
            json::string(text)
        ),
    }
}

/// A shell tool call running `command`, and its result `output`.
pub fn tool_call(flavour: Flavour, session_id: &str, command: &str, output: &str) -> [String; 2] {
    match flavour {
        Flavour::Claude => [
            format!(
                r#"{{"type":"assistant","message":{{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_echo","name":"Bash","input":{{"command":{}}}}}]}},"session_id":{}}}"#,
                json::string(command),
                json::string(session_id)
            ),
            claude_tool_result(session_id, output, false),
        ],
        Flavour::Codex => {
            let item = |status: &str, out: &str, code: &str| {
                format!(
                    r#"{{"id":"item_echo_tool","type":"command_execution","command":{},"aggregated_output":{},"exit_code":{code},"status":"{status}"}}"#,
                    json::string(command),
                    json::string(out)
                )
            };
            [
                format!(
                    r#"{{"type":"item.started","item":{}}}"#,
                    item("in_progress", "", "null")
                ),
                format!(
                    r#"{{"type":"item.completed","item":{}}}"#,
                    item("completed", output, "0")
                ),
            ]
        }
    }
}

/// Claude's `user` line carrying the result of the tool call of [`tool_call`].
pub fn claude_tool_result(session_id: &str, output: &str, is_error: bool) -> String {
    format!(
        r#"{{"type":"user","message":{{"role":"user","content":[{{"tool_use_id":"toolu_echo","type":"tool_result","content":{},"is_error":{is_error}}}]}},"session_id":{}}}"#,
        json::string(output),
        json::string(session_id)
    )
}

/// The `env` scenario's report: the run id, the directory, and every variable as `NAME=value`
/// (so a test can tell exactly what an agent is given).
pub fn env_report(run_id: Option<&str>, cwd: Option<&str>, vars: &[String]) -> String {
    let vars: Vec<String> = vars.iter().map(|v| json::string(v)).collect();
    format!(
        r#"{{"type":"mock_env","run_id":{},"cwd":{},"vars":[{}]}}"#,
        json::string_or_null(run_id),
        json::string_or_null(cwd),
        vars.join(",")
    )
}

/// The `lead` scenario's report of the consult capability in its environment.
pub fn lead_report(url: Option<&str>, project_id: Option<&str>, token: Option<&str>) -> String {
    format!(
        r#"{{"type":"mock_lead","url":{},"project_id":{},"token":{}}}"#,
        json::string_or_null(url),
        json::string_or_null(project_id),
        json::string_or_null(token)
    )
}

/// The `lead_consult` scenario's report of the `agentvisor consult` it ran.
pub fn consult_report(exit: Option<i32>, stdout: &str, stderr: &str) -> String {
    format!(
        r#"{{"type":"mock_consult","exit":{},"stdout":{},"stderr":{}}}"#,
        exit.map_or("null".to_string(), |c| c.to_string()),
        json::string(stdout),
        json::string(stderr)
    )
}

/// The `escape` scenario's report of the grandchild it left behind.
pub fn grandchild(pid: i32) -> String {
    format!(r#"{{"type":"mock_grandchild","pid":{pid}}}"#)
}

/// Writes one `lines` scenario line (without newline) into `buf`:
/// `{"type":"mock_line","n":N,"t_ns":T,"pad":"xx…"}`, padded so that the JSON
/// text is `bytes` long when possible. `pad` must hold at least `bytes`
/// filler bytes. Built by hand into a reused buffer because this runs 10^5+
/// times per second.
pub fn mock_line(buf: &mut Vec<u8>, n: u64, t_ns: u128, bytes: usize, pad: &[u8]) {
    const TAIL: &[u8] = b"\"}";
    buf.clear();
    buf.extend_from_slice(b"{\"type\":\"mock_line\",\"n\":");
    json::push_decimal(buf, u128::from(n));
    buf.extend_from_slice(b",\"t_ns\":");
    json::push_decimal(buf, t_ns);
    buf.extend_from_slice(b",\"pad\":\"");
    let fill = bytes.saturating_sub(buf.len() + TAIL.len()).min(pad.len());
    buf.extend_from_slice(&pad[..fill]);
    buf.extend_from_slice(TAIL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_success_result_shape() {
        assert_eq!(
            success_result(Flavour::Claude, "sid", 42),
            r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":42,"num_turns":1,"result":"done","session_id":"sid","total_cost_usd":0.0001}"#
        );
        assert!(success_result(Flavour::Codex, "t", 1).starts_with(r#"{"type":"turn.completed""#));
    }

    #[test]
    fn interrupted_result_shape() {
        assert_eq!(
            interrupted_result("sid", 7),
            r#"{"type":"result","subtype":"error_during_execution","is_error":true,"duration_ms":7,"session_id":"sid","result":"Interrupted"}"#
        );
    }

    #[test]
    fn huge_message_has_exact_size() {
        for flavour in [Flavour::Claude, Flavour::Codex] {
            let line = huge_message(flavour, "sid", 1000);
            assert_eq!(line.len(), 1000);
            assert!(line.ends_with("}"));
            let tiny = huge_message(flavour, "sid", 1);
            assert!(tiny.contains(r#""text":"""#), "{tiny}");
        }
    }

    #[test]
    fn mock_line_has_exact_size_and_shape() {
        let pad = vec![b'x'; 300];
        let mut buf = Vec::new();
        mock_line(&mut buf, 17, 1_700_000_000_123_456_789, 100, &pad);
        let line = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(line.len(), 100);
        assert!(
            line.starts_with(r#"{"type":"mock_line","n":17,"t_ns":1700000000123456789,"pad":"xxx"#)
        );
        assert!(line.ends_with("x\"}"));
        mock_line(&mut buf, 1, 5, 10, &pad);
        assert_eq!(buf, br#"{"type":"mock_line","n":1,"t_ns":5,"pad":""}"#);
    }

    #[test]
    fn env_and_grandchild_lines() {
        assert_eq!(
            env_report(Some("r\"1"), Some("/w"), &["A=1".into(), "B=".into()]),
            r#"{"type":"mock_env","run_id":"r\"1","cwd":"/w","vars":["A=1","B="]}"#
        );
        assert_eq!(
            env_report(None, None, &[]),
            r#"{"type":"mock_env","run_id":null,"cwd":null,"vars":[]}"#
        );
        assert_eq!(grandchild(12), r#"{"type":"mock_grandchild","pid":12}"#);
    }
}
