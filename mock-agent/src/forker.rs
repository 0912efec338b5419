//! A tool process that does everything to escape the daemon's clean-up.
//!
//! The `forker` scenario starts it: it leaves the agent's process group and
//! session (`setsid`), re-executes this binary with an empty environment (so
//! no `AGENTVISOR_RUN_ID` marks it), double-forks so that it is re-parented
//! away from the agent, and then keeps forking: sleepers that stay, children
//! that exit at once, and every few rounds a successor that takes over while
//! the current forker exits (so its pid keeps changing). Every one of them
//! has the scenario's `tag` on its command line, which is how a test finds
//! them. All of them end by themselves after [`LIFETIME`], so a failed test
//! leaves nothing behind for long.

use std::ffi::CString;
use std::time::{Duration, Instant};

use crate::error::Failure;
use crate::signals;

/// The first argument that turns this binary into the forker.
pub const FLAG: &str = "--forker";

/// How long the forker and its children live at most.
const LIFETIME: Duration = Duration::from_secs(120);
/// Sleepers kept at once; beyond, children exit at once.
const SLEEPERS: u32 = 64;
/// Rounds between two changes of the forker's pid.
const ROUNDS_PER_MOVE: u32 = 16;
/// Pause between rounds.
const ROUND: Duration = Duration::from_millis(2);

/// Forks the escaping child: `setsid`, then this binary again as
/// `--forker <tag>` with an empty environment. Returns its pid.
pub fn spawn(tag: &str) -> Result<libc::pid_t, Failure> {
    let bad = || Failure::new(2, "mock-agent: the forker's tag has a NUL byte");
    let exe = CString::new("/proc/self/exe").map_err(|_| bad())?;
    let args = [
        CString::new("mock-agent").map_err(|_| bad())?,
        CString::new(FLAG).map_err(|_| bad())?,
        CString::new(tag).map_err(|_| bad())?,
    ];
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the mock is single-threaded, and the child only calls
    // async-signal-safe functions (setsid, signal, execve, _exit) on data
    // prepared before the fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(Failure::new(
            1,
            format!(
                "mock-agent: fork failed: {}",
                std::io::Error::last_os_error()
            ),
        )),
        0 => unsafe {
            libc::setsid();
            signals::reset_for_exec();
            libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127)
        },
        pid => Ok(pid),
    }
}

/// The forker itself (`mock-agent --forker <tag>`): never returns.
pub fn run() -> ! {
    let until = Instant::now() + LIFETIME;
    // The double fork: whoever started us sees us exit at once.
    if fork() != 0 {
        exit();
    }
    let mut sleepers = 0;
    let mut round = 0u32;
    while Instant::now() < until {
        round += 1;
        match fork() {
            0 if sleepers < SLEEPERS => sleep_until(until),
            0 => exit(),
            _ => sleepers += 1,
        }
        reap();
        if round.is_multiple_of(ROUNDS_PER_MOVE) && fork() != 0 {
            // The successor carries on; its sleepers are re-parented.
            exit();
        }
        std::thread::sleep(ROUND);
    }
    exit()
}

fn fork() -> libc::pid_t {
    // SAFETY: the forker is single-threaded; a failed fork (-1) just counts
    // as a round in the parent.
    unsafe { libc::fork() }
}

fn exit() -> ! {
    // SAFETY: _exit ends the process without running anything else.
    unsafe { libc::_exit(0) }
}

fn sleep_until(until: Instant) -> ! {
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    exit()
}

/// Reaps the children that exited at once.
fn reap() {
    // SAFETY: waitpid with WNOHANG on any child of ours.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}
