//! What the supervisor accepts: children's ends, adoptions and resets; and [`ChildGuard`], which
//! every supervised actor owns to report its end.

mod guard;

pub use guard::{install_panic_hook, ChildGuard};

use actix::prelude::*;
use serde::Serialize;

/// How a supervised actor is doing, as `health` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ActorStatus {
    pub name: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub restarts: u32,
    pub backoff_ms: u64,
}

/// A supervised child.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChildId {
    Registry,
    Broadcast,
    Health,
    Project(String),
    /// The executor of a project's current run. It is not rebuilt (its run ends as failed), but
    /// its crashes are counted.
    Executor(String),
    /// A connection's actor. Not rebuilt (the client reconnects), but counted.
    Connection,
}

impl ChildId {
    pub fn kind(&self) -> &'static str {
        match self {
            ChildId::Registry => "registry",
            ChildId::Broadcast => "broadcast",
            ChildId::Health => "health",
            ChildId::Project(_) => "project",
            ChildId::Executor(_) => "executor",
            ChildId::Connection => "connection",
        }
    }

    pub fn name(&self) -> String {
        match self {
            ChildId::Project(id) => id.clone(),
            ChildId::Executor(id) => format!("executor:{id}"),
            other => other.kind().to_string(),
        }
    }

    pub fn is_core(&self) -> bool {
        matches!(
            self,
            ChildId::Registry | ChildId::Broadcast | ChildId::Health
        )
    }
}

/// A child ended; `crashed` says why, or `None` for a stop on purpose.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChildExited {
    pub child: ChildId,
    pub crashed: Option<String>,
}

/// A child was started by someone else (a project created by the registry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt(pub ChildId);

/// A child is gone for good (a deleted project): forget its record.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forget(pub ChildId);

/// `actor_reset`: an operator brings an errored actor back.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResetActor {
    pub name: String,
    pub reply: super::connection::ReplyTo,
}

super::handle!(
    /// The supervisor as its children and connections reach it.
    SupervisorHandle {
        exited: ChildExited,
        adopt: Adopt,
        forget: Forget,
        reset: ResetActor,
    }
);
