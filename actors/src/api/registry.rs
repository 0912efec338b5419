//! What the registry accepts: project creation.

use actix::prelude::*;

use super::connection::ReplyTo;

/// `project_create`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CreateProject {
    pub reply: ReplyTo,
    pub path: String,
    pub name: Option<String>,
    pub agent: Option<String>,
    /// Runs ask for approvals unless their `execute` says otherwise.
    pub approvals: bool,
}

/// Fault injection: panic inside a handler.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Panic;

super::handle!(
    /// The registry as connections reach it.
    RegistryHandle {
        create: CreateProject,
        panic: Panic,
    }
);
