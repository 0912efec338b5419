//! What a connection accepts: frames to send (with the subscription marks that travel with
//! them) and signals from the rest of the daemon; and [`ReplyTo`], the way any actor answers a
//! client's request directly.

mod answer;

use std::sync::Arc;

use actix::prelude::*;
use serde::Serialize;

use super::idempotency::{IdempotencyKey, IdempotencyStore};
use crate::error::ApiError;
use crate::protocol::frame::{error_frame, FrameBuilder};
use crate::protocol::Frame;
use answer::AnswerGuard;

/// Frames for this connection, with what they mean for the per-project seq tracking.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    frames: Payload,
    mark: Mark,
}

/// One frame (a reply), or a batch shared by every subscriber (a burst of events).
#[derive(Clone)]
enum Payload {
    One(Frame),
    Many(Arc<[Frame]>),
}

impl Deliver {
    pub fn plain(frame: Frame) -> Self {
        Self::marked(frame, Mark::None)
    }

    /// A frame that changes the subscription state before it is sent.
    pub fn marked(frame: Frame, mark: Mark) -> Self {
        Deliver {
            frames: Payload::One(frame),
            mark,
        }
    }

    /// Events of one project, in order.
    pub fn batch(frames: Arc<[Frame]>) -> Self {
        Deliver {
            frames: Payload::Many(frames),
            mark: Mark::None,
        }
    }

    /// The frames to send, in order.
    pub fn frames(&self) -> &[Frame] {
        match &self.frames {
            Payload::One(f) => std::slice::from_ref(f),
            Payload::Many(fs) => fs,
        }
    }

    /// What the frames mean for the subscription (for subscribers other than WebSockets).
    pub fn mark(&self) -> &Mark {
        &self.mark
    }
}

/// Subscription changes that travel in order with the frames.
#[derive(Clone, Debug)]
pub enum Mark {
    None,
    /// The client joined: what follows starts after `since`.
    Joined {
        project: Arc<str>,
        since: u64,
    },
    /// The client is no longer subscribed.
    Left(Arc<str>),
}

/// Signals from the rest of the daemon.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum ConnectionSignal {
    /// A message for every client (`server_stats`).
    Push(Frame),
    /// The broadcast actor restarted: join every project again from the last seq seen.
    Rejoin,
    /// The daemon is shutting down: close with 1001.
    Shutdown,
}

/// Where and how to answer a request: the requester's address and the request id to echo.
#[derive(Clone)]
pub struct ReplyTo {
    pub conn: u64,
    pub recipient: Recipient<Deliver>,
    pub id: Option<String>,
    /// Answers the request with a retryable error if every clone is dropped unanswered.
    answer: Arc<AnswerGuard>,
}

impl ReplyTo {
    /// Where to answer the request `id` of connection `conn`.
    pub fn new(conn: u64, recipient: Recipient<Deliver>, id: Option<String>) -> Self {
        ReplyTo {
            conn,
            answer: Arc::new(AnswerGuard::new(recipient.clone(), id.clone())),
            recipient,
            id,
        }
    }

    /// Encodes a reply to this request.
    pub fn frame<D: Serialize>(&self, kind: &str, project: Option<&Arc<str>>, data: &D) -> Frame {
        self.answer.answered();
        FrameBuilder::new(kind)
            .reply_to(self.id.as_deref())
            .project_opt(project)
            .encode(data)
    }

    pub fn send(&self, frame: Frame) {
        self.answer.settle(&frame);
        self.recipient.do_send(Deliver::plain(frame));
    }

    /// Stores the reply under `key` before it is sent (see [`crate::api::idempotency`]).
    pub(crate) fn store_answer_in(&mut self, store: Arc<IdempotencyStore>, key: IdempotencyKey) {
        self.answer.store_in(store, key);
    }

    /// Sends a reply built elsewhere (by another daemon of the cluster) together with what it
    /// means for the subscription.
    pub fn send_marked(&self, frame: Frame, mark: Mark) {
        self.answer.settle(&frame);
        self.recipient.do_send(Deliver::marked(frame, mark));
    }

    pub fn ok<D: Serialize>(&self, kind: &str, project: Option<&Arc<str>>, data: &D) {
        self.send(self.frame(kind, project, data));
    }

    pub fn err(&self, project: Option<&Arc<str>>, e: &ApiError) {
        self.send(error_frame(self.id.as_deref(), project, e));
    }
}
