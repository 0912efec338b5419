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
}

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
