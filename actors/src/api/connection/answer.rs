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
use crate::api::idempotency::{IdempotencyKey, IdempotencyStore};
use crate::error::ApiError;
use crate::protocol::frame::error_frame;
use crate::protocol::Frame;
use crate::sync::lock as lock_ignoring_poison;

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix::prelude::*;

    use super::super::{Payload, ReplyTo};
    use super::*;

    /// Stands in for a connection: keeps the text of every frame it is given.
    struct Collector(Arc<Mutex<Vec<Value>>>);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Collector {
        type Result = ();

        fn handle(&mut self, d: Deliver, _: &mut Context<Self>) {
            if let Payload::One(f) = d.frames {
                let v = serde_json::from_str(&f.text).unwrap_or(Value::Null);
                lock_ignoring_poison(&self.0).push(v);
            }
        }
    }

    /// An actor whose handler panics on `crash`, like a project actor with a bug.
    struct Crashy;

    impl Actor for Crashy {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Work {
        reply: ReplyTo,
        crash: bool,
    }

    impl Handler<Work> for Crashy {
        type Result = ();

        fn handle(&mut self, w: Work, _: &mut Context<Self>) {
            if w.crash {
                // Long enough for the next request to be waiting in the mailbox.
                std::thread::sleep(Duration::from_millis(100));
                panic!("a bug in a handler");
            }
            w.reply.ok("done", None, &serde_json::json!({}));
        }
    }

    use serde_json::Value;

    #[actix_rt::test]
    async fn requests_lost_with_a_crashed_actor_are_answered_retryable() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let conn = Collector(seen.clone()).start().recipient();
        let arbiter = Arbiter::new();
        let crashy = Crashy::start_in_arbiter(&arbiter.handle(), |_| Crashy);
        let reply = |id: &str| ReplyTo::new(1, conn.clone(), Some(id.to_string()));
        crashy.do_send(Work {
            reply: reply("handled"),
            crash: true,
        });
        crashy.do_send(Work {
            reply: reply("queued"),
            crash: false,
        });
        let answered = reply("answered");
        answered.ok("done", None, &serde_json::json!({}));
        drop(answered);
        for _ in 0..200 {
            if lock_ignoring_poison(&seen).len() >= 3 {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        let seen = lock_ignoring_poison(&seen).clone();
        assert_eq!(seen.len(), 3, "one answer per request, no more: {seen:?}");
        for id in ["handled", "queued"] {
            let e = seen.iter().find(|m| m["id"] == id).expect("answered");
            assert_eq!(e["type"], "error");
            assert_eq!(e["data"]["code"], "INTERNAL_ERROR");
            assert_eq!(e["data"]["details"]["retryable"], true);
        }
        assert!(seen
            .iter()
            .any(|m| m["id"] == "answered" && m["type"] == "done"));
        arbiter.stop();
    }
}
