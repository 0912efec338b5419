//! The typed events a project stores and publishes, each built in one place.
//!
//! Field order is alphabetical, as the untyped `json!` maps these replaced wrote them, so the
//! bytes on the wire and in history are unchanged.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::consult::issues::Issue;
use crate::consult::sections::Sections;
use crate::consult::{Kind, Outcome, Status};
use crate::protocol::Direction;
use crate::storage::metadata::{AgentKind, ProjectState as State};

/// An event a project emits: its wire `type` and who it comes from.
pub trait Event: Serialize {
    const KIND: &'static str;
    const DIRECTION: Direction;
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Completed,
    Failed,
    Killed,
    Timeout,
    /// Accepted, but the daemon stopped before it started.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Killed => "killed",
            RunStatus::Timeout => "timeout",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// The project's state after a run that ended so: a completed or stopped run (or one that
    /// never started) leaves it idle, a failed one in error.
    pub fn project_state(self) -> State {
        match self {
            RunStatus::Completed | RunStatus::Killed | RunStatus::Interrupted => State::Idle,
            RunStatus::Failed | RunStatus::Timeout => State::Error,
        }
    }
}

/// `run_finished`: the end of a run, whether it ran, was stopped, or never started.
#[derive(Debug, Serialize)]
pub struct RunFinished<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// `None` for a run interrupted by a restart, whose length is unknown.
    pub duration_ms: Option<u64>,
    /// Why the run did not complete; absent for a completed run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub run_id: &'a str,
    pub session_id: Option<&'a str>,
    pub status: RunStatus,
    /// Git projects only: the snapshots around the run and what changed between them.
    #[serde(flatten)]
    pub changes: Option<crate::gitsnap::RunChanges>,
}

impl Event for RunFinished<'_> {
    const KIND: &'static str = "run_finished";
    const DIRECTION: Direction = Direction::System;
}

/// `run_started`: the agent is being started for a run.
#[derive(Debug, Serialize)]
pub struct RunStarted<'a> {
    pub prompt: &'a str,
    pub resumed_session_id: Option<&'a str>,
    pub run_id: &'a str,
}

impl Event for RunStarted<'_> {
    const KIND: &'static str = "run_started";
    const DIRECTION: Direction = Direction::System;
}

/// `project_state`: the project's state, session and queue after a change.
#[derive(Debug, Serialize)]
pub struct ProjectState<'a> {
    pub project_id: &'a str,
    pub queue_len: usize,
    pub session_id: Option<&'a str>,
    pub state: State,
}

impl Event for ProjectState<'_> {
    const KIND: &'static str = "project_state";
    const DIRECTION: Direction = Direction::System;
}

/// `session_reset`: the next run starts a new agent session.
#[derive(Debug, Serialize)]
pub struct SessionReset<'a> {
    pub old_session_id: Option<&'a str>,
    pub project_id: &'a str,
    pub reset_at: &'a str,
}

impl Event for SessionReset<'_> {
    const KIND: &'static str = "session_reset";
    const DIRECTION: Direction = Direction::System;
}

/// An answer to a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// `permission_request`: a run's agent asks to use a tool; a client answers it.
#[derive(Debug, Serialize)]
pub struct PermissionRequest<'a> {
    pub expires_at: &'a str,
    pub input: &'a Value,
    pub request_id: &'a str,
    pub run_id: &'a str,
    pub suggestions: &'a Value,
    /// What the tool call would do, in a line a person reads.
    pub summary: &'a str,
    pub tool: &'a str,
}

impl Event for PermissionRequest<'_> {
    const KIND: &'static str = "permission_request";
    const DIRECTION: Direction = Direction::Agent;
}

/// `permission_resolved`: a permission request was answered (by a client or its time limit).
#[derive(Debug, Serialize)]
pub struct PermissionResolved<'a> {
    pub at: &'a str,
    pub by: &'a str,
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
    pub remember: bool,
    pub request_id: &'a str,
    pub run_id: &'a str,
}

impl Event for PermissionResolved<'_> {
    const KIND: &'static str = "permission_resolved";
    const DIRECTION: Direction = Direction::System;
}

/// `consult_started`: the question a consult asks, as the client (or a run's agent) put it.
#[derive(Debug, Serialize)]
pub struct ConsultStarted<'a> {
    pub consult_id: &'a str,
    pub context: Option<&'a str>,
    pub kind: &'static str,
    pub question: &'a str,
    pub to: &'static str,
}

impl Event for ConsultStarted<'_> {
    const KIND: &'static str = "consult_started";
    const DIRECTION: Direction = Direction::Client;
}

/// `consult_attempt`: one attempt of a consult begins; `after` says why it follows another.
#[derive(Debug, Serialize)]
pub struct ConsultAttempt<'a> {
    pub after: Option<&'static str>,
    pub attempt: u32,
    pub consult_id: &'a str,
    pub prompt: &'a str,
}

impl Event for ConsultAttempt<'_> {
    const KIND: &'static str = "consult_attempt";
    const DIRECTION: Direction = Direction::System;
}

/// `consult_output`: one line the consultant printed: its JSON as printed (`message`), or the
/// text of a line that is not a whole JSON object (`raw`).
#[derive(Debug, Serialize)]
pub struct ConsultOutput<'a> {
    pub consult_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<&'a str>,
}

impl Event for ConsultOutput<'_> {
    const KIND: &'static str = "consult_output";
    const DIRECTION: Direction = Direction::Agent;
}

/// `consult_result`: how a consult ended and what the consultant answered.
#[derive(Debug, Serialize)]
pub struct ConsultResult<'a> {
    pub attempts: u32,
    pub consult_id: &'a str,
    /// Why the consult could not run; absent when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub issues: Vec<Issue>,
    pub kind: &'static str,
    pub sections: Sections,
    pub status: Status,
    pub text: String,
    pub to: &'static str,
}

impl<'a> ConsultResult<'a> {
    /// The result of consult `consult_id`: its outcome, or a failure with nothing answered.
    pub fn new(
        consult_id: &'a str,
        to: AgentKind,
        kind: Kind,
        result: Result<Outcome, String>,
    ) -> Self {
        let (outcome, error) = match result {
            Ok(outcome) => (outcome, None),
            Err(error) => (
                Outcome {
                    status: Status::Failed,
                    attempts: 0,
                    sections: Sections::new(),
                    issues: Vec::new(),
                    text: String::new(),
                },
                Some(error),
            ),
        };
        ConsultResult {
            attempts: outcome.attempts,
            consult_id,
            error,
            issues: outcome.issues,
            kind: kind.as_str(),
            sections: outcome.sections,
            status: outcome.status,
            text: outcome.text,
            to: to.as_str(),
        }
    }
}

impl Event for ConsultResult<'_> {
    const KIND: &'static str = "consult_result";
    const DIRECTION: Direction = Direction::System;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::testing::codex;

    #[test]
    fn run_finished_writes_what_the_untyped_map_wrote() {
        let e = RunFinished {
            cost_usd: None,
            duration_ms: Some(5),
            error: Some("x".into()),
            exit_code: None,
            run_id: "r",
            session_id: None,
            status: RunStatus::Killed,
            changes: None,
        };
        let typed = serde_json::to_string(&e).unwrap();
        let untyped = serde_json::json!({"run_id": "r", "status": "killed", "exit_code": null,
            "duration_ms": 5, "session_id": null, "error": "x"});
        assert_eq!(typed, untyped.to_string());
    }

    #[test]
    fn project_state_writes_what_the_untyped_map_wrote() {
        let e = ProjectState {
            project_id: "p",
            queue_len: 2,
            session_id: Some("s"),
            state: State::Executing,
        };
        let untyped = serde_json::json!({"project_id": "p", "state": "EXECUTING",
            "session_id": "s", "queue_len": 2});
        assert_eq!(serde_json::to_string(&e).unwrap(), untyped.to_string());
    }

    #[test]
    fn a_failed_consult_result_writes_what_the_untyped_map_wrote() {
        let e = ConsultResult::new("c", codex(), Kind::Review, Err("gone".into()));
        let untyped = serde_json::json!({"consult_id": "c", "to": "codex", "kind": "review",
            "status": "failed", "attempts": 0, "sections": {}, "issues": [], "text": "",
            "error": "gone"});
        assert_eq!(serde_json::to_string(&e).unwrap(), untyped.to_string());
    }

    #[test]
    fn permission_resolved_writes_what_the_untyped_map_wrote() {
        let e = PermissionResolved {
            at: "t",
            by: "client:1",
            decision: Decision::Deny,
            message: Some("no"),
            remember: false,
            request_id: "q",
            run_id: "r",
        };
        let untyped = serde_json::json!({"run_id": "r", "request_id": "q", "decision": "deny",
            "by": "client:1", "at": "t", "remember": false, "message": "no"});
        assert_eq!(serde_json::to_string(&e).unwrap(), untyped.to_string());
    }
}
