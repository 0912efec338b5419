//! What a project accepts: one message per client request, its run's output and end, and
//! shutdown. All of them enter the project's one mailbox, so requests and run events keep
//! their order.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::connection::ReplyTo;
use super::executor::StopReason;
use crate::lines::Line;
use crate::protocol::request::{ConsultRequest, HistoryQuery};
use crate::protocol::RunOptions;
use crate::storage::metadata::AgentKind;

/// Declares the client requests a project accepts: one message type each, carrying where its
/// answer goes (`reply`) and the request's own fields. Each has its own `Handler` in the project
/// actor; an `Err` from it is answered as an `error` for the project.
macro_rules! requests {
    ($($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? })+) => {
        $($(#[$doc])*
        #[derive(Message)]
        #[rtype(result = "()")]
        pub struct $name {
            pub reply: ReplyTo,
            $($(#[$fdoc])* pub $field: $ty,)*
        })+
    };
}

requests! {
    /// `project_join`: subscribe, replaying what came after `since_seq` first (`None`: from now).
    Join { since_seq: Option<u64> }
    /// `project_leave`.
    Leave {}
    /// `execute`: run (or queue) the agent with `prompt`.
    Execute { prompt: String, options: RunOptions }
    /// `consult`: ask the other agent for a second opinion, read-only.
    Consult { consult: ConsultRequest }
    /// `agent_new_session`: the next run starts a new agent session.
    NewSession {}
    /// `agent_kill`: stop the active run, and the queue with it if `clear_queue`.
    Kill { clear_queue: bool }
    /// `get_messages`: a page of the project's history.
    GetMessages { query: HistoryQuery }
    /// `run_diff`: what a finished run changed, as a git diff.
    RunDiff { run_id: String, path: Option<String> }
    /// `permission_respond`: a client's answer to an open permission request.
    PermissionRespond {
        request_id: String,
        allow: bool,
        message: Option<String>,
        remember: bool,
    }
    /// `project_delete`.
    Delete {}
    /// `fault_inject` on the project (tests only): panic after replying.
    Panic {}
    /// `fault_inject` on the project's running executor (tests only).
    PanicExecutor {}
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
        join: Join,
        leave: Leave,
        execute: Execute,
        consult: Consult,
        new_session: NewSession,
        kill: Kill,
        get_messages: GetMessages,
        run_diff: RunDiff,
        permission_respond: PermissionRespond,
        delete: Delete,
        panic: Panic,
        panic_executor: PanicExecutor,
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
