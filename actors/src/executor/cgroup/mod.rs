//! A cgroup v2 of its own for each run, where the daemon may create one.
//!
//! A process can leave its process group and its session and drop the run's marker from its
//! environment, but it cannot leave its cgroup without write access to another one. So when
//! the daemon may create cgroups, each run's agent joins a fresh one before it execs (nothing it
//! forks can be outside), and the end of the run kills the whole cgroup and removes it.
//!
//! Where: the daemon finds the cgroup v2 mount in `/proc/self/mountinfo` (on a hybrid
//! hierarchy it is not `/sys/fs/cgroup` but e.g. `/sys/fs/cgroup/unified`) and its own cgroup
//! in `/proc/self/cgroup`, and creates `agentvisor-<pid>/` inside its own cgroup, one
//! `run-<run id>/` per run below that. Under systemd that takes `Delegate=yes`; elsewhere any
//! own cgroup the daemon may write to. A probe child joining a test cgroup at start proves it.
//!
//! The daemon stays in its own cgroup: cgroup v2's "no internal processes" rule only forbids
//! *enabling controllers* for children of a cgroup that has processes, and the runs' cgroups
//! need no controller (`cgroup.procs`, `cgroup.kill` and `cgroup.freeze` are core files of every
//! non-root cgroup). Nothing is written to any `cgroup.subtree_control`.
//!
//! Elsewhere (cgroups unavailable or `AGENTVISOR_CGROUPS=off`) the process-group sweep of
//! [`super::process`] finds what is left alone; it also runs after the cgroup kill in cgroup mode.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

mod dir;
mod mount;

use dir::Cgroup;
use mount::own_cgroup_dir;

/// `AGENTVISOR_CGROUPS`: whether the daemon tries cgroups at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupSetting {
    /// A cgroup per run where the daemon may create one, the sweep elsewhere.
    Auto,
    /// The sweep only.
    Off,
}

/// How a run's escaped processes are found, as `/health` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Each run in a cgroup of its own, killed at the end of the run.
    Cgroup,
    /// The run's process group, its marker and the daemon's orphans, swept until none is left.
    Sweep,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Cgroup => "cgroup",
            Isolation::Sweep => "sweep",
        }
    }
}

/// The directory that holds this daemon's run cgroups.
struct Base {
    dir: PathBuf,
}

static BASE: OnceLock<Option<Base>> = OnceLock::new();

/// How long the actors' thread waits for a killed run cgroup to empty; what takes longer (a
/// process in uninterruptible sleep) is waited for, and the cgroup removed, by a thread of its
/// own.
const SETTLE: Duration = Duration::from_millis(100);

/// Chooses the isolation once, at start, and says in the log which it is.
pub fn init(setting: CgroupSetting) {
    let base = match setting {
        CgroupSetting::Off => {
            log::info!(
                "isolation: process-group sweep (cgroups turned off by AGENTVISOR_CGROUPS=off)"
            );
            None
        }
        CgroupSetting::Auto => match prepare() {
            Ok(b) => {
                log::info!(
                    "isolation: a cgroup per run under {}{}",
                    b.dir.display(),
                    if b.dir.join("cgroup.kill").exists() {
                        ""
                    } else {
                        " (killed by freeze and SIGKILL: this kernel has no cgroup.kill)"
                    }
                );
                Some(b)
            }
            Err(why) => {
                log::info!("isolation: process-group sweep (no cgroup for runs: {why})");
                None
            }
        },
    };
    let _ = BASE.set(base);
}

/// The isolation chosen at start (the sweep before [`init`]).
pub fn mode() -> Isolation {
    match BASE.get() {
        Some(Some(_)) => Isolation::Cgroup,
        _ => Isolation::Sweep,
    }
}

/// Removes this daemon's directory of run cgroups as it exits (with any run cgroup whose removal
/// was still under way).
pub fn release() {
    if let Some(Some(b)) = BASE.get() {
        if let Err(e) = remove_all(&b.dir) {
            log::warn!("cannot remove {}: {e}", b.dir.display());
        }
    }
}

/// Kills and removes every cgroup in `dir`, then `dir` itself.
fn remove_all(dir: &Path) -> std::io::Result<()> {
    for run in std::fs::read_dir(dir)?.flatten() {
        if run.path().join("cgroup.procs").exists() {
            Cgroup { dir: run.path() }.remove();
        }
    }
    std::fs::remove_dir(dir)
}

/// Finds the daemon's own cgroup v2 directory, clears what a dead daemon left there, creates
/// `agentvisor-<pid>` and proves a child can join a cgroup below it.
fn prepare() -> Result<Base, String> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"));
    let own = own_cgroup_dir(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?)?;
    clear_stale(&own);
    let dir = own.join(format!("agentvisor-{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let base = Base { dir };
    if let Err(e) = probe(&base) {
        let _ = std::fs::remove_dir(&base.dir);
        return Err(format!(
            "a child cannot join a cgroup under {}: {e}",
            base.dir.display()
        ));
    }
    Ok(base)
}
/// Kills and removes the run cgroups of a daemon that died without removing them (killed
/// with -9: its agents died with it, but what escaped them lives on in its cgroups). A
/// directory counts as dead when no process has its pid, or when the pid is ours (a daemon
/// restarted in a fresh pid namespace).
fn clear_stale(own: &Path) {
    let Ok(entries) = std::fs::read_dir(own) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("agentvisor-")) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = e.path();
        match remove_all(&dir) {
            Ok(()) => log::warn!(
                "removed {} left by a daemon that did not exit cleanly, with its runs' processes",
                dir.display()
            ),
            Err(err) => log::warn!(
                "cannot remove {} left by an earlier daemon: {err}",
                dir.display()
            ),
        }
    }
}

/// Forks a child that joins a test cgroup and exits: only this proves the daemon may move a
/// process (it needs write access to the cgroups on both sides).
fn probe(base: &Base) -> std::io::Result<()> {
    let cg = RunCgroup::create_in(&base.dir, "probe")?;
    let fd = cg.entry.as_raw_fd();
    // SAFETY: the child only calls the async-signal-safe write(2) and _exit(2).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = join(fd)
            .err()
            .map_or(0, |e| e.raw_os_error().unwrap_or(libc::EPERM));
        // SAFETY: _exit ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut status = 0;
    // SAFETY: waitpid on the child forked just above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    drop(cg);
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, errno) => Err(std::io::Error::from_raw_os_error(errno)),
        _ => Err(std::io::Error::other("the probe child was killed")),
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is open as `fd`. Only
/// async-signal-safe calls: it runs between fork and exec.
pub fn join(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: write(2) of a one-byte static buffer to a descriptor the caller holds open.
    let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The cgroup of one run: created empty, joined by its agent before exec, killed and removed
/// when the run is over (when it is dropped).
pub struct RunCgroup {
    cg: Cgroup,
    /// `cgroup.procs`, open for the agent to join (close-on-exec: the agent never holds it).
    entry: File,
}

impl RunCgroup {
    /// A new cgroup for `run_id`, in cgroup mode; `None` in sweep mode, or when it cannot be
    /// made (logged: the run then relies on the sweep).
    pub fn for_run(run_id: &str) -> Option<RunCgroup> {
        let base = BASE.get()?.as_ref()?;
        let name: String = run_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(100)
            .collect();
        match RunCgroup::create_in(&base.dir, &format!("run-{name}")) {
            Ok(cg) => Some(cg),
            Err(e) => {
                log::warn!(run = run_id; "no cgroup for the run ({e}); its processes are found by the sweep");
                None
            }
        }
    }

    fn create_in(base: &Path, name: &str) -> std::io::Result<RunCgroup> {
        let cg = Cgroup {
            dir: base.join(name),
        };
        std::fs::create_dir(&cg.dir)?;
        match OpenOptions::new()
            .write(true)
            .open(cg.dir.join("cgroup.procs"))
        {
            Ok(entry) => Ok(RunCgroup { cg, entry }),
            Err(e) => {
                let _ = std::fs::remove_dir(&cg.dir);
                Err(e)
            }
        }
    }

    /// The descriptor the agent writes itself into (see [`join`]).
    pub fn entry_fd(&self) -> RawFd {
        self.entry.as_raw_fd()
    }

    /// Kills every process of the run (see [`Cgroup::kill`]); returns how many it held.
    pub fn kill(&self) -> usize {
        let held = self.cg.pids().len();
        self.cg.kill(SETTLE);
        held
    }
}

impl Drop for RunCgroup {
    /// Kills what is left and removes the cgroup; when it does not empty at once, a thread of
    /// its own waits for that, so the actors' thread never does.
    fn drop(&mut self) {
        if self.cg.kill(SETTLE) && std::fs::remove_dir(&self.cg.dir).is_ok() {
            return;
        }
        let cg = Cgroup {
            dir: std::mem::take(&mut self.cg.dir),
        };
        let spawned = std::thread::Builder::new()
            .name("cgroup-remove".into())
            .spawn(move || cg.remove());
        if let Err(e) = spawned {
            log::warn!("cannot start a thread to remove a run's cgroup: {e}");
        }
    }
}
