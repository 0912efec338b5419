//! What the broadcast actor accepts: events to fan out, subscriptions, and the notices that end
//! them.

use std::sync::Arc;

use actix::prelude::*;

use super::connection::Deliver;
use crate::protocol::Frame;

/// Send project events (all of one project, in order) to its subscribers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Arc<[Frame]>);

/// Subscribe a connection, sending it `lead` first (the join reply and the replay).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub project: Arc<str>,
    pub conn: u64,
    pub recipient: Recipient<Deliver>,
    pub lead: Vec<Deliver>,
}

/// Unsubscribe a connection, then send it `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub project: Arc<str>,
    pub conn: u64,
    pub reply: Option<(Recipient<Deliver>, Deliver)>,
}

/// A connection closed: drop all its subscriptions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect(pub u64);

/// A project was deleted: tell its subscribers and drop them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProjectGone {
    pub project: Arc<str>,
    pub notice: Frame,
}

/// Fault injection: panic inside a handler.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Panic;

super::handle!(
    /// The broadcast actor as its peers reach it.
    BroadcastHandle {
        publish: Publish,
        subscribe: Subscribe,
        unsubscribe: Unsubscribe,
        disconnect: Disconnect,
        project_gone: ProjectGone,
        panic: Panic,
    }
);
