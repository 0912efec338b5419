//! A connection's outbound queue, bounded in bytes.
//!
//! The connection actor pushes encoded frames; a writer task drains them into the WebSocket,
//! waiting whenever the socket does (actix-ws' session channel is bounded, and the HTTP layer
//! stops taking frames while its write buffer is full). The queue counts the unsent bytes of
//! every frame in it, pings and pongs included (each frame also costs [`FRAME_COST`] for its
//! bookkeeping); when a client stops reading and the count passes the limit, the queue is
//! emptied and replaced by a close frame (4008), so a slow client can never grow the server's
//! memory without bound, whatever kind of frame it makes the server queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_ws::{CloseCode, CloseReason, Session};
use bytestring::ByteString;
use tokio::sync::Notify;

/// Something to write to the socket.
pub enum Out {
    Text(ByteString),
    Ping,
    Pong(bytes::Bytes),
    Close(CloseReason),
}

/// What a queued frame costs besides its payload: the queue entry and the frame header.
pub const FRAME_COST: usize = 32;

impl Out {
    /// The bytes this frame holds while it waits.
    fn cost(&self) -> usize {
        FRAME_COST
            + match self {
                Out::Text(t) => t.len(),
                Out::Pong(p) => p.len(),
                Out::Ping | Out::Close(_) => 0,
            }
    }
}

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<Out>>,
    backlog: AtomicUsize,
    closed: AtomicBool,
    notify: Notify,
}

/// The actor's end of the queue.
pub struct Outbox {
    shared: Arc<Shared>,
    max_backlog: usize,
}

/// The queue is over its byte limit.
#[derive(Debug)]
pub struct Overflow;

pub fn close_reason(code: u16, description: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: Some(description.to_string()),
    }
}

impl Outbox {
    /// Creates the queue and spawns its writer on the current arbiter.
    pub fn start(session: Session, max_backlog: usize) -> (Self, actix_rt::task::JoinHandle<()>) {
        let shared = Arc::new(Shared::default());
        let writer = actix_rt::spawn(write_loop(session, shared.clone()));
        (
            Outbox {
                shared,
                max_backlog,
            },
            writer,
        )
    }

    fn push(&self, out: Out) {
        crate::sync::lock(&self.shared.queue).push_back(out);
        self.shared.notify.notify_one();
    }

    /// Queues a frame under the byte bound (a closed queue quietly takes nothing).
    fn push_counted(&self, out: Out) -> Result<(), Overflow> {
        if self.is_closed() {
            return Ok(());
        }
        let len = out.cost();
        let before = self.shared.backlog.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_backlog && before > 0 {
            self.shared.backlog.fetch_sub(len, Ordering::AcqRel);
            return Err(Overflow);
        }
        self.push(out);
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Queues a text frame, or reports that the client is too far behind.
    pub fn text(&self, text: ByteString) -> Result<(), Overflow> {
        self.push_counted(Out::Text(text))
    }

    /// Queues a heartbeat ping, or reports that the client is too far behind.
    pub fn ping(&self) -> Result<(), Overflow> {
        self.push_counted(Out::Ping)
    }

    /// Queues the answer to a client's ping, or reports that the client is too far behind.
    pub fn pong(&self, payload: bytes::Bytes) -> Result<(), Overflow> {
        self.push_counted(Out::Pong(payload))
    }

    /// Closes after what is already queued.
    pub fn close(&self, code: u16, description: &str) {
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            self.push(Out::Close(close_reason(code, description)));
        }
    }

    /// Drops everything unsent and closes at once (a slow consumer).
    pub fn abort(&self, code: u16, description: &str) {
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            let mut q = crate::sync::lock(&self.shared.queue);
            q.clear();
            q.push_back(Out::Close(close_reason(code, description)));
            self.shared.backlog.store(0, Ordering::Release);
            drop(q);
            self.shared.notify.notify_one();
        }
    }

    /// Bytes queued and not yet handed to the socket.
    pub fn backlog(&self) -> usize {
        self.shared.backlog.load(Ordering::Acquire)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // The actor is gone; if it did not say goodbye, it died.
        if std::thread::panicking() {
            self.close(1011, "internal error");
        } else {
            self.close(1000, "");
        }
    }
}

async fn next(shared: &Shared) -> Out {
    loop {
        if let Some(out) = crate::sync::lock(&shared.queue).pop_front() {
            return out;
        }
        shared.notify.notified().await;
    }
}

async fn write_loop(mut session: Session, shared: Arc<Shared>) {
    loop {
        let out = next(&shared).await;
        let len = out.cost();
        let sent = match out {
            Out::Text(t) => session.text(t).await,
            Out::Ping => session.ping(b"").await,
            Out::Pong(p) => session.pong(&p).await,
            Out::Close(reason) => {
                let _ = session.close(Some(reason)).await;
                return;
            }
        };
        // `abort` may have reset the count meanwhile: never wrap below zero.
        let _ = shared
            .backlog
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(len))
            });
        if sent.is_err() {
            return;
        }
    }
}
