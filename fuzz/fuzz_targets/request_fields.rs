//! Every field of every request, filled with arbitrary values: the decoder must answer with a
//! request or a clean error, never panic, and an `execute` it accepts must become a command line
//! that any program can be given (no NUL, no argument over the kernel's limit) or a clean refusal.
#![no_main]

use agentvisor_actors::agent::{build_args, MAX_ARG_BYTES};
use agentvisor_actors::protocol::request::Request;
use agentvisor_actors::storage::metadata::AgentKind;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// Each request type with the fields its `data` may carry.
const REQUESTS: &[(&str, &[&str])] = &[
    ("project_create", &["path", "name", "agent", "approvals"]),
    ("project_list", &[]),
    ("project_delete", &[]),
    ("project_join", &["since_seq"]),
    ("project_leave", &[]),
    ("execute", &["prompt", "options"]),
    ("agent_new_session", &[]),
    ("agent_kill", &["clear_queue"]),
    (
        "get_messages",
        &["since", "since_seq", "before_seq", "limit", "direction"],
    ),
    ("run_diff", &["run_id", "path"]),
    (
        "permission_respond",
        &["request_id", "decision", "message", "remember"],
    ),
    (
        "consult",
        &["to", "kind", "question", "context", "timeout_s", "consult_id"],
    ),
    ("breaker_reset", &["agent"]),
    ("health_check", &[]),
    ("ping", &[]),
    ("auth", &["token"]),
    ("actor_reset", &["actor"]),
    ("fault_inject", &["actor", "project_id"]),
];

/// The fields of `execute`'s `options`.
const OPTIONS: &[&str] = &[
    "model",
    "permission_mode",
    "allowed_tools",
    "disallowed_tools",
    "max_turns",
    "append_system_prompt",
    "add_dirs",
    "sandbox",
    "approvals",
];

/// A value from a chunk of input: JSON when it parses, else the chunk as a string (lossy),
/// repeated to a long one when its first byte asks for that.
fn value(chunk: &[u8]) -> Value {
    if let Ok(v) = serde_json::from_slice::<Value>(chunk) {
        return v;
    }
    let s = String::from_utf8_lossy(chunk).into_owned();
    match chunk.first() {
        // Up to 256 KiB: on both sides of the single-argument limit.
        Some(&n) if n >= 0xf0 => {
            let len = usize::from(n - 0xef) * 16 * 1024;
            Value::String(s.chars().cycle().take(len).collect())
        }
        _ => Value::String(s),
    }
}

/// Fills `fields` from the `;`-separated chunks, in order.
fn object<'a>(fields: &[&str], chunks: &mut impl Iterator<Item = &'a [u8]>) -> Map<String, Value> {
    let mut m = Map::new();
    for f in fields {
        if let Some(c) = chunks.next() {
            m.insert((*f).to_string(), value(c));
        }
    }
    m
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (kind, fields) = REQUESTS[usize::from(which) % REQUESTS.len()];
    let mut chunks = rest.split(|b| *b == b';');
    let mut payload = object(fields, &mut chunks);
    if kind == "execute" && which & 0x80 != 0 {
        payload.insert(
            "options".into(),
            Value::Object(object(OPTIONS, &mut chunks)),
        );
    }
    let mut msg = Map::new();
    msg.insert("type".into(), kind.into());
    msg.insert("id".into(), "f".into());
    msg.insert("project_id".into(), "p".into());
    msg.insert("data".into(), Value::Object(payload));
    // The envelope's own field: any request may carry it, only change requests take it.
    if which & 0x40 != 0 {
        if let Some(c) = chunks.next() {
            msg.insert("idempotency_key".into(), value(c));
        }
    }
    let text = Value::Object(msg).to_string();
    match agentvisor_actors::protocol::decode(&text, true) {
        Err(e) => assert!(e.error.error.len() < 1024),
        Ok(inbound) => {
            if let Request::Execute {
                prompt, options, ..
            } = inbound.request
            {
                for agent in AgentKind::all() {
                    for resume in [None, Some("s-1")] {
                        match build_args(agent, &options, resume, &prompt) {
                            Ok(args) => assert!(args
                                .iter()
                                .all(|a| !a.contains('\0') && a.len() <= MAX_ARG_BYTES)),
                            Err(e) => assert!(e.error.len() < 1024),
                        }
                    }
                }
            }
        }
    }
});
