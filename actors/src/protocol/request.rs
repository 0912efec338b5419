//! Decoding client frames into typed requests.
//!
//! Decoding happens in two steps: a loose envelope first (so that the request `id` can be echoed
//! on an error even when the rest is wrong), then the typed `data` of the named request.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::key::{IdempotencyKey, KEYED_REQUESTS, MAX_KEY_BYTES};
use super::options::RunOptions;
use crate::agent::AgentKind;
use crate::consult::Kind;
use crate::error::{ApiError, Code};

/// The longest request `id` a client may use.
pub const MAX_ID_BYTES: usize = 128;
/// The most records one `get_messages` page may ask for.
pub const MAX_PAGE: usize = 1000;
/// The page size when a client names none.
pub const DEFAULT_PAGE: usize = 100;

/// A decoded request and the `id` to echo on its reply.
#[derive(Debug)]
pub struct Inbound {
    pub id: Option<String>,
    pub request: Request,
    /// The `idempotency_key` of a request that changes something.
    pub idempotency: Option<IdempotencyKey>,
}

/// A frame that could not be decoded, with whatever could be salvaged for the reply.
#[derive(Debug)]
pub struct DecodeError {
    pub id: Option<String>,
    pub project_id: Option<String>,
    pub error: ApiError,
}

/// Every request of protocol v1.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    ProjectCreate {
        path: String,
        name: Option<String>,
        agent: Option<String>,
        /// The project's runs ask for approvals unless `execute` says otherwise.
        approvals: bool,
        /// The node of the cluster that creates it (the one that can see `path`).
        node: Option<String>,
    },
    ProjectList,
    ProjectDelete {
        project_id: String,
    },
    ProjectJoin {
        project_id: String,
        since_seq: Option<u64>,
    },
    ProjectLeave {
        project_id: String,
    },
    Execute {
        project_id: String,
        prompt: String,
        options: RunOptions,
    },
    AgentNewSession {
        project_id: String,
    },
    AgentKill {
        project_id: String,
        clear_queue: bool,
    },
    GetMessages {
        project_id: String,
        query: HistoryQuery,
    },
    /// The diff of what a run changed (git projects).
    RunDiff {
        project_id: String,
        run_id: String,
        path: Option<String>,
    },
    /// An answer to a run's permission request.
    PermissionRespond {
        project_id: String,
        request_id: String,
        allow: bool,
        message: Option<String>,
        remember: bool,
    },
    HealthCheck,
    Ping,
    Auth {
        token: String,
    },
    FaultInject {
        actor: String,
        project_id: Option<String>,
    },
    /// Brings an errored actor back (an operator's reset after a crash loop).
    ActorReset {
        actor: String,
    },
    /// Asks the other agent for a second opinion, read-only (see `docs/consult.md`).
    Consult {
        project_id: String,
        consult: ConsultRequest,
    },
    /// Closes an agent backend's circuit breaker (an operator who knows the backend is back).
    BreakerReset {
        agent: AgentKind,
    },
}

impl Request {
    /// The project a request is about, for the requests a project answers.
    pub fn project(&self) -> Option<&str> {
        match self {
            Request::ProjectDelete { project_id }
            | Request::ProjectJoin { project_id, .. }
            | Request::ProjectLeave { project_id }
            | Request::Execute { project_id, .. }
            | Request::AgentNewSession { project_id }
            | Request::AgentKill { project_id, .. }
            | Request::GetMessages { project_id, .. }
            | Request::RunDiff { project_id, .. }
            | Request::PermissionRespond { project_id, .. }
            | Request::Consult { project_id, .. } => Some(project_id),
            _ => None,
        }
    }

    /// The request's `type`, as metrics and logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::ProjectCreate { .. } => "project_create",
            Request::ProjectList => "project_list",
            Request::ProjectDelete { .. } => "project_delete",
            Request::ProjectJoin { .. } => "project_join",
            Request::ProjectLeave { .. } => "project_leave",
            Request::Execute { .. } => "execute",
            Request::AgentNewSession { .. } => "agent_new_session",
            Request::AgentKill { .. } => "agent_kill",
            Request::GetMessages { .. } => "get_messages",
            Request::RunDiff { .. } => "run_diff",
            Request::PermissionRespond { .. } => "permission_respond",
            Request::HealthCheck => "health_check",
            Request::Ping => "ping",
            Request::Auth { .. } => "auth",
            Request::FaultInject { .. } => "fault_inject",
            Request::ActorReset { .. } => "actor_reset",
            Request::BreakerReset { .. } => "breaker_reset",
            Request::Consult { .. } => "consult",
        }
    }
}

/// Which records of a project's history a client wants (`get_messages`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub cursor: Cursor,
    pub limit: usize,
    pub direction: Option<crate::protocol::Direction>,
}

/// Where a history page starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Cursor {
    /// The latest records.
    Latest,
    /// Records with `seq > n`.
    SinceSeq(u64),
    /// Records with `ts > t`.
    Since(chrono::DateTime<chrono::Utc>),
    /// The records just before `seq n`.
    BeforeSeq(u64),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<Value>,
    id: Option<Value>,
    project_id: Option<Value>,
    data: Option<Value>,
    idempotency_key: Option<Value>,
}

/// Decodes one text frame. `fault_injection` says whether `fault_inject` exists on this server.
pub fn decode(text: &str, fault_injection: bool) -> Result<Inbound, DecodeError> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| DecodeError {
        id: None,
        project_id: None,
        error: ApiError::new(
            Code::InvalidMessage,
            format!(
                "the message is not a JSON object: {}",
                describe_json_error(&e)
            ),
        ),
    })?;
    let id = match envelope.id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_ID_BYTES => Some(s),
        Some(Value::String(_)) => {
            return Err(DecodeError {
                id: None,
                project_id: None,
                error: ApiError::validation(format!(
                    "the request id is longer than {MAX_ID_BYTES} bytes"
                )),
            })
        }
        Some(_) => {
            return Err(DecodeError {
                id: None,
                project_id: None,
                error: ApiError::validation("the request id must be a string"),
            })
        }
    };
    let fail = |error: ApiError, project_id: Option<String>| DecodeError {
        id: id.clone(),
        project_id,
        error,
    };
    let kind = match envelope.kind {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(fail(
                ApiError::new(Code::InvalidMessage, "the field 'type' must be a string"),
                None,
            ))
        }
        None => {
            return Err(fail(
                ApiError::new(Code::InvalidMessage, "the message has no 'type' field"),
                None,
            ))
        }
    };
    let data = match envelope.data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(fail(
                ApiError::validation("the field 'data' must be an object"),
                None,
            ))
        }
    };
    let project_id = resolve_project_id(envelope.project_id, data.get("project_id"))
        .map_err(|e| fail(e, None))?;
    let idempotency = idempotency_key(
        envelope.idempotency_key,
        &kind,
        project_id.as_deref(),
        &data,
    )
    .map_err(|e| fail(e, project_id.clone()))?;
    let request = typed(&kind, data, project_id.clone(), fault_injection)
        .map_err(|e| fail(e, project_id.clone()))?;
    Ok(Inbound {
        id,
        request,
        idempotency,
    })
}

/// The `idempotency_key`, on the requests that take one, with the fingerprint of the request.
fn idempotency_key(
    key: Option<Value>,
    kind: &str,
    project_id: Option<&str>,
    data: &Map<String, Value>,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let key = match key {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KEY_BYTES => k,
        Some(_) => {
            return Err(ApiError::validation(format!(
                "'idempotency_key' must be a non-empty string of at most {MAX_KEY_BYTES} bytes"
            )))
        }
    };
    if !KEYED_REQUESTS.contains(&kind) {
        return Err(ApiError::validation(format!(
            "'{kind}' takes no 'idempotency_key' (only {} do)",
            KEYED_REQUESTS.join(", ")
        )));
    }
    // `project_id` may be in `data` or at the top level: the fingerprint sees it once.
    let mut data = data.clone();
    data.remove("project_id");
    Ok(Some(IdempotencyKey::new(
        key,
        kind,
        project_id,
        &Value::Object(data),
    )))
}

/// The request `id` of a frame that will not be decoded further (a refused one), so that its
/// error can still be correlated. `None` when the frame has no usable id.
pub fn peek_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<Value>,
    }
    match serde_json::from_str::<IdOnly>(text).ok()?.id? {
        Value::String(s) if s.len() <= MAX_ID_BYTES => Some(s),
        _ => None,
    }
}

/// A project may be named at the top level or in `data`; both at once must agree.
fn resolve_project_id(
    top: Option<Value>,
    inner: Option<&Value>,
) -> Result<Option<String>, ApiError> {
    let as_id = |v: &Value| match v {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_ID_BYTES => Ok(Some(s.clone())),
        Value::Null => Ok(None),
        _ => Err(ApiError::validation(
            "'project_id' must be a non-empty string of at most 128 bytes",
        )),
    };
    let top = top.as_ref().map(as_id).transpose()?.flatten();
    let inner = inner.map(as_id).transpose()?.flatten();
    match (top, inner) {
        (Some(a), Some(b)) if a != b => Err(ApiError::validation(
            "'project_id' at the top level and in 'data' name different projects",
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

fn need_project(kind: &str, project_id: Option<String>) -> Result<String, ApiError> {
    project_id.ok_or_else(|| {
        ApiError::validation(format!(
            "'{kind}' needs a 'project_id' (top level or in 'data')"
        ))
    })
}

fn fields<T: DeserializeOwned>(kind: &str, data: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(data)).map_err(|e| {
        ApiError::validation(format!(
            "invalid 'data' for '{kind}': {}",
            describe_json_error(&e)
        ))
    })
}

#[derive(Deserialize)]
struct CreateData {
    path: String,
    name: Option<String>,
    agent: Option<String>,
    #[serde(default)]
    approvals: bool,
    node: Option<String>,
}

#[derive(Deserialize)]
struct JoinData {
    since_seq: Option<u64>,
}

#[derive(Deserialize)]
struct ExecuteData {
    prompt: String,
    options: Option<Value>,
}

#[derive(Deserialize)]
struct KillData {
    #[serde(default)]
    clear_queue: bool,
}

#[derive(Deserialize)]
struct MessagesData {
    since: Option<String>,
    since_seq: Option<u64>,
    before_seq: Option<u64>,
    limit: Option<u64>,
    direction: Option<String>,
}

#[derive(Deserialize)]
struct RunDiffData {
    run_id: String,
    path: Option<String>,
}

#[derive(Deserialize)]
struct RespondData {
    request_id: String,
    decision: String,
    message: Option<String>,
    #[serde(default)]
    remember: bool,
}

/// The longest denial message a client may give the agent.
const MAX_DENY_MESSAGE: usize = 4096;

fn permission_respond(project_id: String, d: RespondData) -> Result<Request, ApiError> {
    if d.request_id.is_empty() || d.request_id.len() > MAX_ID_BYTES {
        return Err(ApiError::validation(
            "'request_id' must be a non-empty string of at most 128 bytes",
        ));
    }
    let allow = match d.decision.as_str() {
        "allow" => true,
        "deny" => false,
        _ => return Err(ApiError::validation("'decision' must be 'allow' or 'deny'")),
    };
    if d.remember && !allow {
        return Err(ApiError::validation(
            "'remember' only goes with 'decision': 'allow'",
        ));
    }
    if d.message
        .as_ref()
        .is_some_and(|m| m.len() > MAX_DENY_MESSAGE || m.contains('\0'))
    {
        return Err(ApiError::validation(
            "'message' must be at most 4 KiB of text",
        ));
    }
    Ok(Request::PermissionRespond {
        project_id,
        request_id: d.request_id,
        allow,
        message: d.message,
        remember: d.remember,
    })
}

#[derive(Deserialize)]
struct AuthData {
    token: String,
}

/// The longest consult a client may ask for, in seconds.
pub const MAX_CONSULT_TIMEOUT_S: u64 = 3600;

/// A validated `consult` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsultRequest {
    pub to: AgentKind,
    pub kind: Kind,
    pub question: String,
    pub context: Option<String>,
    pub timeout: Option<std::time::Duration>,
    pub consult_id: Option<String>,
}

#[derive(Deserialize)]
struct ConsultData {
    to: String,
    kind: String,
    question: String,
    context: Option<String>,
    timeout_s: Option<u64>,
    consult_id: Option<String>,
}

fn consult_request(d: ConsultData) -> Result<ConsultRequest, ApiError> {
    let to = AgentKind::parse(&d.to)
        .ok_or_else(|| ApiError::validation(format!("'to' must be {}", AgentKind::choices('"'))))?;
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let kind = Kind::parse(&d.kind).ok_or_else(|| {
        ApiError::validation(format!("'kind' must be one of {}", kinds.join(", ")))
    })?;
    if d.question.trim().is_empty() {
        return Err(ApiError::validation("'question' must not be empty"));
    }
    if d.question.contains('\0') || d.context.as_deref().is_some_and(|c| c.contains('\0')) {
        return Err(ApiError::validation(
            "'question' and 'context' must not contain NUL characters",
        ));
    }
    let timeout = match d.timeout_s {
        Some(s) if s == 0 || s > MAX_CONSULT_TIMEOUT_S => {
            return Err(ApiError::validation(format!(
                "'timeout_s' must be between 1 and {MAX_CONSULT_TIMEOUT_S}"
            )))
        }
        s => s.map(std::time::Duration::from_secs),
    };
    if let Some(id) = &d.consult_id {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(ApiError::validation(format!(
                "'consult_id' must be 1 to {MAX_ID_BYTES} bytes"
            )));
        }
    }
    Ok(ConsultRequest {
        to,
        kind,
        question: d.question,
        context: d.context,
        timeout,
        consult_id: d.consult_id,
    })
}

/// Names an agent backend (`breaker_reset`).
#[derive(Deserialize)]
struct BreakerData {
    agent: String,
}

/// Names an actor (`fault_inject`, `actor_reset`).
#[derive(Deserialize)]
struct FaultData {
    actor: String,
}

fn typed(
    kind: &str,
    data: Map<String, Value>,
    project_id: Option<String>,
    fault_injection: bool,
) -> Result<Request, ApiError> {
    Ok(match kind {
        "project_create" => {
            let d: CreateData = fields(kind, data)?;
            Request::ProjectCreate {
                path: d.path,
                name: d.name,
                agent: d.agent,
                approvals: d.approvals,
                node: d.node,
            }
        }
        "project_list" => Request::ProjectList,
        "project_delete" => Request::ProjectDelete {
            project_id: need_project(kind, project_id)?,
        },
        "project_join" => {
            let d: JoinData = fields(kind, data)?;
            Request::ProjectJoin {
                project_id: need_project(kind, project_id)?,
                since_seq: d.since_seq,
            }
        }
        "project_leave" => Request::ProjectLeave {
            project_id: need_project(kind, project_id)?,
        },
        "execute" => {
            let project_id = need_project(kind, project_id)?;
            let d: ExecuteData = fields(kind, data)?;
            if d.prompt.trim().is_empty() {
                return Err(ApiError::validation("'prompt' must not be empty"));
            }
            Request::Execute {
                project_id,
                prompt: d.prompt,
                options: RunOptions::from_value(d.options)?,
            }
        }
        "agent_new_session" => Request::AgentNewSession {
            project_id: need_project(kind, project_id)?,
        },
        "agent_kill" => {
            let d: KillData = fields(kind, data)?;
            Request::AgentKill {
                project_id: need_project(kind, project_id)?,
                clear_queue: d.clear_queue,
            }
        }
        "get_messages" => {
            let project_id = need_project(kind, project_id)?;
            let d: MessagesData = fields(kind, data)?;
            Request::GetMessages {
                project_id,
                query: history_query(d)?,
            }
        }
        "run_diff" => {
            let project_id = need_project(kind, project_id)?;
            let d: RunDiffData = fields(kind, data)?;
            if d.run_id.is_empty() || d.run_id.len() > MAX_ID_BYTES {
                return Err(ApiError::validation(
                    "'run_id' must be a non-empty string of at most 128 bytes",
                ));
            }
            Request::RunDiff {
                project_id,
                run_id: d.run_id,
                path: d.path,
            }
        }
        "permission_respond" => {
            let project_id = need_project(kind, project_id)?;
            permission_respond(project_id, fields(kind, data)?)?
        }
        "health_check" => Request::HealthCheck,
        "ping" => Request::Ping,
        "auth" => {
            let d: AuthData = fields(kind, data)?;
            Request::Auth { token: d.token }
        }
        "actor_reset" => {
            let d: FaultData = fields(kind, data)?;
            Request::ActorReset { actor: d.actor }
        }
        "consult" => Request::Consult {
            project_id: need_project(kind, project_id)?,
            consult: consult_request(fields(kind, data)?)?,
        },
        "breaker_reset" => {
            let d: BreakerData = fields(kind, data)?;
            let agent = AgentKind::parse(&d.agent).ok_or_else(|| {
                ApiError::validation(format!("'agent' must be {}", AgentKind::choices('"')))
            })?;
            Request::BreakerReset { agent }
        }
        "fault_inject" if fault_injection => {
            let d: FaultData = fields(kind, data)?;
            Request::FaultInject {
                actor: d.actor,
                project_id,
            }
        }
        other => {
            return Err(ApiError::new(
                Code::UnknownType,
                format!(
                    "unknown message type '{}'",
                    crate::logfmt::sanitize(other, 64)
                ),
            ))
        }
    })
}

fn history_query(d: MessagesData) -> Result<HistoryQuery, ApiError> {
    let limit = match d.limit {
        None => DEFAULT_PAGE,
        Some(0) => return Err(ApiError::validation("'limit' must be at least 1")),
        Some(n) if n as usize > MAX_PAGE || n > MAX_PAGE as u64 => {
            return Err(ApiError::validation(format!(
                "'limit' may be at most {MAX_PAGE}"
            )))
        }
        Some(n) => n as usize,
    };
    let direction = match d.direction.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(crate::protocol::Direction::parse(s).ok_or_else(|| {
            ApiError::validation("'direction' must be 'client', 'agent', 'system' or 'all'")
        })?),
    };
    let cursors = [
        d.since.is_some(),
        d.since_seq.is_some(),
        d.before_seq.is_some(),
    ];
    if cursors.iter().filter(|c| **c).count() > 1 {
        return Err(ApiError::validation(
            "give at most one of 'since', 'since_seq' and 'before_seq'",
        ));
    }
    let cursor = if let Some(s) = d.since {
        Cursor::Since(crate::time::parse_ts(&s).ok_or_else(|| {
            ApiError::validation("'since' must be an RFC 3339 time, like 2026-11-21T10:00:00Z")
        })?)
    } else if let Some(n) = d.since_seq {
        Cursor::SinceSeq(n)
    } else if let Some(n) = d.before_seq {
        Cursor::BeforeSeq(n)
    } else {
        Cursor::Latest
    };
    Ok(HistoryQuery {
        cursor,
        limit,
        direction,
    })
}

/// A client-facing account of a JSON error: its category and position, never the input.
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax => format!("syntax error at line {} column {}", e.line(), e.column()),
        Category::Eof => "the JSON ends too early".to_string(),
        Category::Io => "it could not be read".to_string(),
        Category::Data => {
            // serde's data messages name the field and the expected type: useful and safe.
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg);
            crate::logfmt::sanitize(msg, 200)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_id_finds_a_usable_id_only() {
        assert_eq!(
            peek_id(r#"{"type":"ping","id":"c-1","data":{"x":[1,2]}}"#).as_deref(),
            Some("c-1")
        );
        assert_eq!(peek_id(r#"{"type":"ping"}"#), None);
        assert_eq!(peek_id(r#"{"id":7}"#), None);
        assert_eq!(peek_id("{not json"), None);
        assert_eq!(peek_id(&format!(r#"{{"id":"{}"}}"#, "x".repeat(129))), None);
    }

    fn code_of(text: &str) -> Code {
        decode(text, false).unwrap_err().error.code
    }

    #[test]
    fn decodes_project_id_in_either_place() {
        for text in [
            r#"{"type":"project_join","project_id":"p1"}"#,
            r#"{"type":"project_join","data":{"project_id":"p1"}}"#,
            r#"{"type":"project_join","project_id":"p1","data":{"project_id":"p1"}}"#,
        ] {
            let r = decode(text, false).unwrap();
            assert_eq!(
                r.request,
                Request::ProjectJoin {
                    project_id: "p1".into(),
                    since_seq: None
                }
            );
        }
        assert_eq!(
            code_of(r#"{"type":"project_join","project_id":"p1","data":{"project_id":"p2"}}"#),
            Code::ValidationFailed
        );
    }

    #[test]
    fn echoes_id_on_errors() {
        let e = decode(r#"{"type":"nope","id":"c-1"}"#, false).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("c-1"));
        assert_eq!(e.error.code, Code::UnknownType);
        let e = decode(r#"{"type":"execute","id":"c-2","project_id":"p"}"#, false).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("c-2"));
        assert_eq!(e.error.code, Code::ValidationFailed);
        assert!(e.error.error.contains("prompt"), "{}", e.error.error);
    }

    #[test]
    fn classifies_bad_frames() {
        assert_eq!(code_of("not json"), Code::InvalidMessage);
        assert_eq!(code_of("[1,2]"), Code::InvalidMessage);
        assert_eq!(code_of(r#"{"id":"x"}"#), Code::InvalidMessage);
        assert_eq!(code_of(r#"{"type":5}"#), Code::InvalidMessage);
        assert_eq!(
            code_of(r#"{"type":"project_create","data":{}}"#),
            Code::ValidationFailed
        );
        assert_eq!(
            code_of(r#"{"type":"project_create","data":[]}"#),
            Code::ValidationFailed
        );
        assert_eq!(
            code_of(&format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(129))),
            Code::ValidationFailed
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            code_of(&format!(r#"{{"type":"ping","data":{deep}}}"#)),
            Code::InvalidMessage
        );
        assert_eq!(
            code_of(r#"{"type":"ping","id":1e999}"#),
            Code::InvalidMessage
        );
    }

    #[test]
    fn fault_inject_exists_only_when_enabled() {
        let text = r#"{"type":"fault_inject","data":{"actor":"health"}}"#;
        assert_eq!(code_of(text), Code::UnknownType);
        assert!(decode(text, true).is_ok());
    }

    #[test]
    fn history_queries_are_validated() {
        let q = |data: &str| {
            decode(
                &format!(r#"{{"type":"get_messages","project_id":"p","data":{data}}}"#),
                false,
            )
        };
        match q(r#"{"since_seq":5,"limit":10,"direction":"agent"}"#)
            .unwrap()
            .request
        {
            Request::GetMessages { query, .. } => {
                assert_eq!(query.cursor, Cursor::SinceSeq(5));
                assert_eq!(query.limit, 10);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            q(r#"{"limit":1001}"#).unwrap_err().error.code,
            Code::ValidationFailed
        );
        assert_eq!(
            q(r#"{"limit":0}"#).unwrap_err().error.code,
            Code::ValidationFailed
        );
        assert_eq!(
            q(r#"{"since":"noon"}"#).unwrap_err().error.code,
            Code::ValidationFailed
        );
        assert_eq!(
            q(r#"{"since_seq":-1}"#).unwrap_err().error.code,
            Code::ValidationFailed
        );
        assert_eq!(
            q(r#"{"since_seq":1,"before_seq":3}"#)
                .unwrap_err()
                .error
                .code,
            Code::ValidationFailed
        );
        assert_eq!(
            q(r#"{"direction":"up"}"#).unwrap_err().error.code,
            Code::ValidationFailed
        );
    }

    #[test]
    fn prompt_starting_with_dash_is_a_prompt() {
        let r = decode(
            r#"{"type":"execute","project_id":"p","data":{"prompt":"--help"}}"#,
            false,
        )
        .unwrap();
        assert!(matches!(r.request, Request::Execute { ref prompt, .. } if prompt == "--help"));
    }
}
