//! How the supervisor learns that a child died.
//!
//! actix does not restart an actor whose handler panics: the task is dropped while the panic
//! unwinds, and the mailbox closes. Every supervised actor therefore owns a [`ChildGuard`];
//! dropping it — which happens whenever the actor goes away, also during an unwind — tells the
//! supervisor how the child ended, and the supervisor decides about a restart.

use std::cell::RefCell;

use actix::Recipient;

use super::{ChildExited, ChildId, SupervisorHandle};

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs a panic hook that logs each panic on one line and remembers its message for the
/// guard that is dropped during the unwind.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log::error!("panic at {at}: {msg}");
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
    }));
}

/// The message of the panic unwinding this thread. Read, not taken: an actor's own `Drop` (the
/// executor's) and its guard both ask during the same unwind; every panic overwrites it first.
fn take_panic_message() -> String {
    LAST_PANIC
        .with(|p| p.borrow().clone())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Owned by a supervised actor; reports the actor's end to the supervisor.
pub struct ChildGuard {
    child: ChildId,
    supervisor: Option<Recipient<ChildExited>>,
    expected: bool,
}

impl ChildGuard {
    pub fn new(child: ChildId, supervisor: Option<SupervisorHandle>) -> Self {
        ChildGuard {
            child,
            supervisor: supervisor.map(|s| s.exited),
            expected: false,
        }
    }

    /// The actor is stopping on purpose (deleted, shutting down): no restart.
    pub fn stop_expected(&mut self) {
        self.expected = true;
    }

    /// Why the actor is ending, if it did not end on purpose.
    pub fn crash_reason(&self) -> Option<String> {
        if std::thread::panicking() {
            Some(format!("panic: {}", take_panic_message()))
        } else if self.expected {
            None
        } else {
            Some("stopped unexpectedly".into())
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let crashed = self.crash_reason();
        if let Some(sup) = &self.supervisor {
            sup.do_send(ChildExited {
                child: self.child.clone(),
                crashed,
            });
        }
    }
}
