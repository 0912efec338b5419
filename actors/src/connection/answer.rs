//! The guarantee that every request is answered.
//!
//! Each request's [`ReplyTo`](super::ReplyTo) shares one [`AnswerGuard`] among its clones. The
//! guard notes when a reply for the request is built or sent; when the last clone goes away
//! without that having happened — the message was dropped with the mailbox of an actor that
//! crashed, or sent to one that had just stopped — the guard itself answers with a retryable
//! error. So a client never waits on silence, whatever happens to the actor that had its request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix::Recipient;

use super::Deliver;
use crate::directory::lock_ignoring_poison;
use crate::error::ApiError;
use crate::idempotency::{IdempotencyKey, IdempotencyStore};
use crate::protocol::frame::error_frame;
use crate::protocol::Frame;

pub(crate) struct AnswerGuard {
    recipient: Recipient<Deliver>,
    id: Option<String>,
    answered: AtomicBool,
    /// Where the reply of a request with an `idempotency_key` is stored before it is sent.
    store: Mutex<Option<(Arc<IdempotencyStore>, IdempotencyKey)>>,
}

impl AnswerGuard {
    pub(crate) fn new(recipient: Recipient<Deliver>, id: Option<String>) -> Self {
        AnswerGuard {
            recipient,
            id,
            answered: AtomicBool::new(false),
            store: Mutex::new(None),
        }
    }

    /// A reply for the request exists (it may travel by another actor, as `project_joined`
    /// does through the broadcast actor).
    pub(crate) fn answered(&self) {
        self.answered.store(true, Ordering::Release);
    }

    pub(crate) fn store_in(&self, store: Arc<IdempotencyStore>, key: IdempotencyKey) {
        *lock_ignoring_poison(&self.store) = Some((store, key));
    }

    /// The reply is about to be sent: store it first if the request had a key.
    pub(crate) fn settle(&self, frame: &Frame) {
        self.answered();
        let stored = lock_ignoring_poison(&self.store).take();
        if let Some((store, key)) = stored {
            store.settle(&key, frame);
        }
    }
}

impl Drop for AnswerGuard {
    fn drop(&mut self) {
        if let Some((store, key)) = lock_ignoring_poison(&self.store).take() {
            store.abandon(&key);
        }
        if !self.answered.load(Ordering::Acquire) {
            let e = ApiError::retryable(
                "the request was not carried out: the actor handling it stopped (it crashed or is restarting); send it again",
            );
            self.recipient
                .do_send(Deliver::plain(error_frame(self.id.as_deref(), None, &e)));
        }
    }
}
