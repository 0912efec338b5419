//! What a project accepts: client requests, its run's output and end, and shutdown.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::connection::ReplyTo;
use super::executor::StopReason;
use crate::lines::Line;
use crate::protocol::request::{ConsultRequest, HistoryQuery};
use crate::protocol::RunOptions;
use crate::storage::metadata::AgentKind;

/// A client request for a project.
#[derive(Debug)]
pub enum ProjectOp {
    Join {
        since_seq: Option<u64>,
    },
    Leave,
    Execute {
        prompt: String,
        options: RunOptions,
    },
    Consult(ConsultRequest),
    NewSession,
    Kill {
        clear_queue: bool,
    },
    GetMessages(HistoryQuery),
    RunDiff {
        run_id: String,
        path: Option<String>,
    },
    PermissionRespond {
        request_id: String,
        allow: bool,
        message: Option<String>,
        remember: bool,
    },
    Delete,
    Panic,
    PanicExecutor,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct ProjectRequest {
    pub reply: ReplyTo,
    pub op: ProjectOp,
}

/// Output for the project.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunOutput {
    pub run_id: String,
    pub stderr: bool,
    pub lines: Vec<Line>,
}

/// How a run's process ended.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RunExited {
    pub run_id: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stop: Option<StopReason>,
    /// Set when the agent could not be started or the executor failed.
    pub failure: Option<String>,
    /// When the agent process started, for the overhead figures.
    pub spawned_at: Option<Instant>,
}

/// An agent backend's breaker opened: runs queued for `agent` end with `error`.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct BackendUnavailable {
    pub agent: AgentKind,
    pub error: String,
}

/// The daemon is shutting down: stop the run, drop the queue, flush history.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub grace: Duration,
}

super::handle!(
    /// A project as connections, the SSE stream and shutdown reach it.
    ProjectHandle {
        request: ProjectRequest,
        shutdown: Shutdown,
        backend_unavailable: BackendUnavailable,
    }
);

super::handle!(
    /// Where an executor reports its run: the project that started it.
    RunReport {
        output: RunOutput,
        exited: RunExited,
    }
);
