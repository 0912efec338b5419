//! Signal behaviour of the real CLIs, which the daemon's stop/kill logic is
//! tested against.
//!
//! - Claude on SIGINT finishes cleanly: it prints an "Interrupted" result and
//!   exits 130. The handler only records the signal in an atomic flag (the
//!   only async-signal-safe thing to do); the output and sleep loops poll it.
//! - Codex on SIGINT exits 130 at once, without a closing event: its handler
//!   calls `_exit(130)` directly.
//! - SIGTERM keeps its default action (die at once).
//! - `ignore_sigint` / `ignore_sigterm` set SIG_IGN, so the daemon's
//!   SIGINT → SIGTERM → SIGKILL escalation can be exercised.
//! - SIGPIPE is ignored so a vanished reader shows up as EPIPE on write.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Flavour;
use crate::error::Failure;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How often sleeping code looks at the SIGINT flag.
const POLL: Duration = Duration::from_millis(10);

extern "C" fn record_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

extern "C" fn exit_on_sigint(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe and skips all user-space cleanup.
    unsafe { libc::_exit(130) }
}

/// Whether a SIGINT arrived (Claude flavour only; Codex never gets here).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn set_disposition(signal: libc::c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid value; the handlers installed
    // here only touch an atomic or call _exit, both async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn failure(what: &str, e: io::Error) -> Failure {
    Failure::new(1, format!("mock-agent: cannot set up {what}: {e}"))
}

/// Makes writes to a closed pipe fail with EPIPE instead of killing us.
pub fn ignore_sigpipe() -> Result<(), Failure> {
    set_disposition(libc::SIGPIPE, libc::SIG_IGN).map_err(|e| failure("SIGPIPE", e))
}

/// Installs the flavour's SIGINT behaviour and the SIGTERM disposition. The
/// dispositions are set explicitly (and both signals unblocked) because a
/// parent may have left them ignored or blocked, which exec inherits.
pub fn install(flavour: Flavour, ignore_sigint: bool, ignore_sigterm: bool) -> Result<(), Failure> {
    let on_sigint = if ignore_sigint {
        libc::SIG_IGN
    } else {
        match flavour {
            Flavour::Claude => record_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
            Flavour::Codex => exit_on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        }
    };
    set_disposition(libc::SIGINT, on_sigint).map_err(|e| failure("SIGINT", e))?;
    let on_sigterm = if ignore_sigterm {
        libc::SIG_IGN
    } else {
        libc::SIG_DFL
    };
    set_disposition(libc::SIGTERM, on_sigterm).map_err(|e| failure("SIGTERM", e))?;
    // SAFETY: plain sigset manipulation on a local value.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(failure("the signal mask", io::Error::from_raw_os_error(rc)));
    }
    Ok(())
}

/// Restores default dispositions in a forked child before exec: handlers are
/// reset by exec anyway, but SIG_IGN would be inherited by the new program.
///
/// # Safety
/// Meant for the child between fork and exec; uses only `signal(2)`, which is
/// async-signal-safe.
pub unsafe fn reset_for_exec() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGPIPE, libc::SIGCHLD] {
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// Sleeps until `deadline` (forever if `None`), waking every 10 ms to check
/// the SIGINT flag. Returns `true` if interrupted before the deadline.
pub fn sleep_until(deadline: Option<Instant>) -> bool {
    loop {
        if interrupted() {
            return true;
        }
        let step = match deadline {
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                (deadline - now).min(POLL)
            }
            None => POLL,
        };
        thread::sleep(step);
    }
}
