//! A grandchild that escapes the agent's process group.
//!
//! Claude's Bash tool can start background commands that call `setsid()` and
//! so leave the process group the daemon signals. The `escape` scenario
//! reproduces that, so the daemon's clean-up of such strays can be tested.
//! The grandchild keeps the inherited stdout/stderr, as a real background
//! job would, so the pipe stays open after the agent itself exits.

use std::fs::OpenOptions;
use std::io::{self, Write};

use crate::error::Failure;
use crate::signals;

/// Forks a child that calls `setsid()` and execs `sleep 3600`. Returns its
/// pid.
pub fn spawn_detached_sleeper() -> Result<libc::pid_t, Failure> {
    // NUL-terminated by hand (no `c""` literals, so plain `rustfmt` parses
    // this file whatever edition it assumes).
    const PROGRAM: &[u8] = b"sleep\0";
    const SECONDS: &[u8] = b"3600\0";
    let program = PROGRAM.as_ptr().cast::<libc::c_char>();
    let argv = [program, SECONDS.as_ptr().cast(), std::ptr::null()];

    // SAFETY: the mock is single-threaded, and the child only calls
    // async-signal-safe functions (setsid, signal, execvp, _exit) on data
    // prepared before the fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(Failure::new(
            1,
            format!("mock-agent: fork failed: {}", io::Error::last_os_error()),
        )),
        0 => unsafe {
            libc::setsid();
            signals::reset_for_exec();
            libc::execvp(program, argv.as_ptr());
            libc::_exit(127)
        },
        pid => Ok(pid),
    }
}

/// Lets the kernel reap a child that dies while we are still running, so a
/// test probing its pid does not find a zombie.
pub fn reap_children_automatically() {
    // SAFETY: setting a signal disposition has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
}

/// Appends `pid` and a newline to `MOCK_AGENT_PIDFILE`, so a test can clean
/// up the stray even if it never parsed stdout.
pub fn record_pid(path: &std::ffi::OsStr, pid: libc::pid_t) -> Result<(), Failure> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{pid}\n").as_bytes()))
        .map_err(|e| {
            Failure::new(
                1,
                format!(
                    "mock-agent: cannot append to MOCK_AGENT_PIDFILE {}: {e}",
                    path.to_string_lossy()
                ),
            )
        })
}
