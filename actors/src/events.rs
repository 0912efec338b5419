//! The typed events a project stores and publishes, each built in one place.
//!
//! Field order is alphabetical, as the untyped `json!` maps these replaced wrote them, so the
//! bytes on the wire and in history are unchanged.

use serde::Serialize;

use crate::protocol::Direction;
use crate::storage::metadata::ProjectState as State;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
