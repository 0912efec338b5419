//! What a cluster of daemons offers the connections of this one (docs/scaling.md).
//!
//! The engine knows nothing of NATS: the daemon that joins a cluster puts a [`Cluster`] in the
//! engine, and each connection asks it first whether a request is for another node. A request
//! for another node travels as the client's own text and comes back as reply frames, so the
//! cluster depends on the wire protocol only, never on the actors' messages.

use super::connection::ReplyTo;
use crate::protocol::Request;

/// The cluster as a connection sees it.
pub trait Cluster: Send + Sync {
    /// Takes the request if the cluster answers it (a project another node owns, the
    /// cluster-wide project list, a project created on another node), or hands `reply` back
    /// for this daemon to answer. `text` is the request exactly as the client sent it.
    fn route(&self, request: &Request, text: &str, reply: ReplyTo) -> Option<ReplyTo>;

    /// Whether another node of the cluster owns `project` (so that a request for it would be
    /// forwarded).
    fn owns_elsewhere(&self, project: &str) -> bool;

    /// The cluster's part of the health report: this node, the others and their state, and the
    /// NATS connection.
    fn health(&self) -> serde_json::Value;

    /// Whether the cluster is impaired (NATS unreachable): the node still serves its own
    /// projects, and its health says `degraded`.
    fn degraded(&self) -> bool;
}
