//! Approvals: a run's tool calls that need permission, asked of every client.
//!
//! The agent (Claude Code on its control protocol, see [`crate::executor::control`]) asks; the
//! project stores and broadcasts a `permission_request` with an id of its own; the first
//! `permission_respond` wins and every subscriber gets the `permission_resolved`. A request no
//! one answers in time, or whose run stops, is denied: nothing is ever left waiting.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use actix::prelude::*;
use serde_json::{json, Value};

use super::ProjectActor;
use crate::connection::ReplyTo;
use crate::error::{ApiError, Code};
use crate::events::{PermissionRequest, PermissionResolved};
use crate::executor::control::{self, ControlRequest, ToolRequest};
use crate::executor::{CloseStdin, WriteStdin};

/// The most requests one run may have open; more are denied at once.
const MAX_OPEN_PER_RUN: usize = 32;
/// How many answered request ids are kept to explain a late answer.
const REMEMBERED_ANSWERS: usize = 256;
/// The most rules `remember` keeps for a session.
const MAX_REMEMBERED_RULES: usize = 64;

pub use crate::events::Decision;

/// A request waiting for its answer.
struct Open {
    run_id: String,
    /// The agent's own id for it.
    agent_request_id: String,
    input: Value,
    suggestions: Value,
    timer: SpawnHandle,
}

/// How a request was resolved, for the error a late answer gets.
struct Closed {
    decision: Decision,
    by: String,
    at: String,
}

/// The project's permission requests.
#[derive(Default)]
pub struct Approvals {
    open: HashMap<String, Open>,
    closed: VecDeque<(String, Closed)>,
    /// Rules allowed with `remember`, as `--allowedTools` entries, and the agent session they
    /// belong to: later runs that resume that session start with them.
    remembered: Option<(String, Vec<String>)>,
}

/// The `--allowedTools` entries of the CLI's "allow from now on" suggestions
/// (`{"type":"addRules","behavior":"allow","rules":[{"toolName":…,"ruleContent":…}]}`); entries
/// that could not be passed safely as one are left out.
fn allow_rules(suggestions: &Value) -> Vec<String> {
    let Some(list) = suggestions.as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter(|s| s["type"] == "addRules" && s["behavior"] == "allow")
        .filter_map(|s| s["rules"].as_array())
        .flatten()
        .filter_map(|r| {
            let tool = r["toolName"].as_str()?;
            Some(match r["ruleContent"].as_str() {
                Some(c) => format!("{tool}({c})"),
                None => tool.to_string(),
            })
        })
        .filter(|t| {
            !t.is_empty()
                && t.len() <= 256
                && !t.starts_with('-')
                && !t.contains(',')
                && !t.chars().any(char::is_control)
        })
        .collect()
}

/// An answer as a client or the daemon gives it.
pub struct Answer {
    pub decision: Decision,
    /// Who answered: `client:<connection>`, `timeout`, `run_stopped`, `shutdown`, `run_ended`.
    pub by: String,
    /// For a denial, what the agent is told.
    pub message: Option<String>,
    /// Allow the same call for the rest of the agent's session, as the agent suggested.
    pub remember: bool,
}

/// One line saying what the tool call would do, for a notification or a prompt.
fn summarize(t: &ToolRequest) -> String {
    let field = |k: &str| t.input.get(k).and_then(Value::as_str);
    let what = match t.tool.as_str() {
        "Bash" => field("command").map(|c| format!("Run: {c}")),
        "Edit" | "MultiEdit" | "Write" | "NotebookEdit" | "Read" => field("file_path")
            .or_else(|| field("notebook_path"))
            .map(|p| format!("{}: {p}", t.tool)),
        "WebFetch" => field("url").map(|u| format!("Fetch: {u}")),
        _ => None,
    };
    let what = what
        .or_else(|| t.description.clone())
        .unwrap_or_else(|| t.tool.clone());
    crate::logfmt::sanitize(&what, 300)
}

/// A duration as a person reads it: "90s", "10m".
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl ProjectActor {
    /// Handles a `control_request` line of a run that asks for approvals.
    pub(super) fn on_control_request(&mut self, run_id: &str, line: &str, ctx: &mut Context<Self>) {
        let Some(request) = control::parse_request(line) else {
            return;
        };
        let t = match request {
            ControlRequest::Other { request_id } => {
                self.to_agent(control::unsupported(&request_id));
                return;
            }
            ControlRequest::CanUseTool(t) => t,
        };
        let open_here = self
            .approvals
            .open
            .values()
            .filter(|o| o.run_id == run_id)
            .count();
        if open_here >= MAX_OPEN_PER_RUN {
            let why = "too many permission requests are open for this run; ask again later";
            self.to_agent(control::deny(&t.request_id, why));
            return;
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        let timeout = self.engine.config.approval_timeout;
        let expires_at = chrono::Utc::now()
            + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        self.emit_event(&PermissionRequest {
            expires_at: &expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            input: &t.input,
            request_id: &request_id,
            run_id,
            suggestions: &t.suggestions,
            summary: &summarize(&t),
            tool: &t.tool,
        });
        log::info!(project = &*self.id, run = run_id, request = request_id.as_str(); "permission requested");
        let id = request_id.clone();
        let timer = ctx.run_later(timeout, move |act, ctx| {
            let message = format!(
                "No one answered this permission request within {}; the tool call was denied.",
                human(timeout)
            );
            act.resolve(&id, Answer::deny("timeout", message), ctx);
        });
        self.approvals.open.insert(
            request_id,
            Open {
                run_id: run_id.to_string(),
                agent_request_id: t.request_id,
                input: t.input,
                suggestions: t.suggestions,
                timer,
            },
        );
    }

    /// `permission_respond` from a client: the first answer wins.
    pub(super) fn permission_respond(
        &mut self,
        reply: &ReplyTo,
        request_id: &str,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        if !self.approvals.open.contains_key(request_id) {
            let shown = crate::logfmt::sanitize(request_id, 128);
            return Err(
                match self
                    .approvals
                    .closed
                    .iter()
                    .find(|(id, _)| id == request_id)
                {
                    Some((_, c)) => ApiError::new(
                        Code::AlreadyResolved,
                        format!(
                            "permission request {shown} was already resolved: {} by {} at {}",
                            match c.decision {
                                Decision::Allow => "allowed",
                                Decision::Deny => "denied",
                            },
                            c.by,
                            c.at
                        ),
                    ),
                    None => ApiError::new(
                        Code::RequestNotFound,
                        format!("project {} has no permission request {shown}", self.id),
                    ),
                },
            );
        }
        let decision = answer.decision;
        self.resolve(request_id, answer, ctx);
        reply.ok(
            "permission_responded",
            Some(&self.id),
            &json!({"request_id": request_id, "decision": decision}),
        );
        Ok(())
    }

    /// Answers the agent, then stores and broadcasts the resolution.
    fn resolve(&mut self, request_id: &str, answer: Answer, ctx: &mut Context<Self>) {
        let Some(open) = self.approvals.open.remove(request_id) else {
            return;
        };
        ctx.cancel_future(open.timer);
        let remember = answer.remember && answer.decision == Decision::Allow;
        let line = match answer.decision {
            Decision::Allow => control::allow(
                &open.agent_request_id,
                &open.input,
                remember.then_some(&open.suggestions),
            ),
            Decision::Deny => control::deny(
                &open.agent_request_id,
                answer
                    .message
                    .as_deref()
                    .unwrap_or("The operator denied this tool call."),
            ),
        };
        self.to_agent(line);
        if remember {
            self.remember_rules(&open.suggestions);
        }
        let at = crate::time::now_rfc3339();
        self.emit_event(&PermissionResolved {
            at: &at,
            by: &answer.by,
            decision: answer.decision,
            message: answer.message.as_deref(),
            remember,
            request_id,
            run_id: &open.run_id,
        });
        log::info!(project = &*self.id, request = request_id, by = answer.by.as_str(); "permission request resolved");
        if self.approvals.closed.len() >= REMEMBERED_ANSWERS {
            self.approvals.closed.pop_front();
        }
        let closed = Closed {
            decision: answer.decision,
            by: answer.by,
            at,
        };
        self.approvals
            .closed
            .push_back((request_id.to_string(), closed));
    }

    /// Keeps the rules of a `remember` for later runs of the current agent session.
    fn remember_rules(&mut self, suggestions: &Value) {
        let Some(session) = self.meta.session_id.clone() else {
            return;
        };
        let rules = match &mut self.approvals.remembered {
            Some((s, rules)) if *s == session => rules,
            other => &mut other.insert((session, Vec::new())).1,
        };
        for rule in allow_rules(suggestions) {
            if !rules.contains(&rule) && rules.len() < MAX_REMEMBERED_RULES {
                rules.push(rule);
            }
        }
    }

    /// The rules remembered for the session the next run resumes.
    pub(super) fn remembered_rules(&self) -> &[String] {
        match (&self.approvals.remembered, &self.meta.session_id) {
            (Some((s, rules)), Some(current)) if s == current => rules,
            _ => &[],
        }
    }

    /// Denies every open request of a run (it is stopping or has ended); `by` says why.
    pub(super) fn deny_open_requests(&mut self, run_id: &str, by: &str, ctx: &mut Context<Self>) {
        let ids: Vec<String> = self
            .approvals
            .open
            .iter()
            .filter(|(_, o)| o.run_id == run_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let message = "The run was stopped before anyone answered; the tool call was denied.";
            self.resolve(&id, Answer::deny(by, message.into()), ctx);
        }
    }

    /// A line for the active run's agent, on its stdin.
    fn to_agent(&self, line: String) {
        if let Some(exec) = self.active.as_ref().and_then(|r| r.executor.as_ref()) {
            exec.do_send(WriteStdin(line));
        }
    }

    /// The agent has said its last word (`result`): its stdin is closed, so it exits.
    pub(super) fn close_agent_stdin(&self) {
        if let Some(exec) = self.active.as_ref().and_then(|r| r.executor.as_ref()) {
            exec.do_send(CloseStdin);
        }
    }
}

impl Answer {
    fn deny(by: &str, message: String) -> Self {
        Answer {
            decision: Decision::Deny,
            by: by.to_string(),
            message: Some(message),
            remember: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(tool: &str, input: Value) -> ToolRequest {
        ToolRequest {
            request_id: "q".into(),
            tool: tool.into(),
            input,
            description: Some("Does a thing".into()),
            suggestions: json!([]),
        }
    }

    #[test]
    fn summaries_name_the_command_or_the_file() {
        assert_eq!(
            summarize(&req("Bash", json!({"command": "npm test"}))),
            "Run: npm test"
        );
        assert_eq!(
            summarize(&req("Edit", json!({"file_path": "/p/a.rs"}))),
            "Edit: /p/a.rs"
        );
        assert_eq!(summarize(&req("Other", json!({}))), "Does a thing");
        assert_eq!(
            summarize(&req("Bash", json!({"command": "a\nb"}))),
            "Run: a?b"
        );
    }

    #[test]
    fn suggestions_become_allowed_tools_entries() {
        let s = json!([
            {"type": "addRules", "behavior": "allow", "destination": "session",
             "rules": [{"toolName": "Bash", "ruleContent": "npm test:*"}, {"toolName": "Read"}]},
            {"type": "addRules", "behavior": "deny", "rules": [{"toolName": "Write"}]},
            {"type": "addRules", "behavior": "allow", "rules": [{"toolName": "Bash", "ruleContent": "a,b"}]},
            {"type": "setMode", "mode": "acceptEdits"}
        ]);
        assert_eq!(allow_rules(&s), ["Bash(npm test:*)", "Read"]);
        assert!(allow_rules(&json!("x")).is_empty());
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
    }
}
