//! What an executor accepts, and the description of the run it starts.

use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;

/// Why a run was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Killed,
    Timeout,
    Shutdown,
}

/// Everything needed to start a run.
pub struct RunSpec {
    pub run_id: String,
    pub project_id: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The agent's whole environment (see [`crate::executor::environment`]).
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    /// The first line for the agent's stdin; with it, stdin stays open for [`WriteStdin`]
    /// until [`CloseStdin`] (otherwise it is `/dev/null`).
    pub stdin: Option<String>,
}

/// One more line for the agent's stdin (dropped when stdin is not open).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WriteStdin(pub String);

/// Closes the agent's stdin.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseStdin;

/// Stop the run.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRun {
    pub reason: StopReason,
    pub grace: Duration,
}

/// Fault injection: panic inside a handler.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Panic;
