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
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
/// How long a cgroup may take to empty after it was killed before it is given up on.
const EMPTY_WITHIN: Duration = Duration::from_secs(10);

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

/// The daemon's own cgroup directory on the cgroup v2 mount.
fn own_cgroup_dir(mountinfo: &str, proc_cgroup: &str) -> Result<PathBuf, String> {
    let own = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("the daemon is in no cgroup v2 (no 0:: line in /proc/self/cgroup)")?;
    // The last of several mounts on one point is the one visible there.
    let (root, mountpoint) = mountinfo
        .lines()
        .rev()
        .filter_map(cgroup2_mount)
        .find(|(root, _)| Path::new(own).starts_with(root))
        .ok_or("no cgroup v2 mount shows the daemon's cgroup (see /proc/self/mountinfo)")?;
    let rel = Path::new(own)
        .strip_prefix(&root)
        .map_err(|_| "the daemon's cgroup is outside the mount")?;
    Ok(mountpoint.join(rel))
}

/// `(root, mount point)` of a mountinfo line of a cgroup2 file system.
fn cgroup2_mount(line: &str) -> Option<(PathBuf, PathBuf)> {
    let (mount, fs) = line.split_once(" - ")?;
    if fs.split_whitespace().next()? != "cgroup2" {
        return None;
    }
    let mut f = mount.split_whitespace();
    let root = unescape(f.nth(3)?);
    let mountpoint = unescape(f.next()?);
    Some((root.into(), mountpoint.into()))
}

/// Mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (b[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// A cgroup directory.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// Kills every process in the cgroup and waits up to `within` until it is empty; returns
    /// whether it is. New processes cannot escape: `cgroup.kill` takes forks in flight along,
    /// and without it the cgroup is frozen first, so nothing in it runs (or forks) while its
    /// pids are killed (it stays frozen: a process that outlives the kill cannot run).
    fn kill(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        if !self.write("cgroup.kill", "1") {
            self.freeze_and_kill(until);
        }
        self.wait_for("populated", "0", until)
    }

    /// Freezes the cgroup and SIGKILLs every pid in `cgroup.procs` until it lists none (a
    /// frozen process still dies of SIGKILL) or `until` has passed.
    fn freeze_and_kill(&self, until: Instant) {
        self.write("cgroup.freeze", "1");
        self.wait_for("frozen", "1", until);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() >= until {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) on a pid; no memory is involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills what is left, waiting up to [`EMPTY_WITHIN`], and removes the cgroup.
    fn remove(&self) {
        if !self.kill(EMPTY_WITHIN) {
            log::warn!(
                "cgroup {} still has processes {EMPTY_WITHIN:?} after being killed",
                self.dir.display()
            );
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            log::warn!("cannot remove cgroup {}: {e}", self.dir.display());
        }
    }

    /// The pids `cgroup.procs` lists.
    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn write(&self, file: &str, value: &str) -> bool {
        OpenOptions::new()
            .write(true)
            .open(self.dir.join(file))
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .is_ok()
    }

    /// Waits until `cgroup.events` shows `key value`; false if it did not by `until` (or the
    /// cgroup is gone).
    fn wait_for(&self, key: &str, value: &str, until: Instant) -> bool {
        let want = format!("{key} {value}");
        loop {
            let Ok(events) = std::fs::read_to_string(self.dir.join("cgroup.events")) else {
                return false;
            };
            if events.lines().any(|l| l == want) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
33 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";

    #[test]
    fn finds_the_v2_mount_of_a_hybrid_hierarchy() {
        let cgroup = "4:memory:/x\n0::/system.slice/agentvisor.service\n";
        assert_eq!(
            own_cgroup_dir(HYBRID, cgroup).unwrap(),
            Path::new("/sys/fs/cgroup/unified/system.slice/agentvisor.service")
        );
    }

    #[test]
    fn a_mount_of_a_subtree_and_escaped_paths_are_followed() {
        let info = "50 1 0:40 /lxc/a\\040b /mnt/cg\\040v2 rw - cgroup2 none rw\n";
        assert_eq!(
            own_cgroup_dir(info, "0::/lxc/a b/inner\n").unwrap(),
            Path::new("/mnt/cg v2/inner")
        );
        assert!(own_cgroup_dir(info, "0::/other\n").is_err());
    }

    /// A cgroup of this test's own below its process's cgroup, where cgroup v2 is writable.
    fn test_cgroup(name: &str) -> Option<Cgroup> {
        let read = |p| std::fs::read_to_string(p).ok();
        let own =
            own_cgroup_dir(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?).ok()?;
        let dir = own.join(format!("agentvisor-unit-{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).ok().map(|()| Cgroup { dir })
    }

    /// The kill of kernels without `cgroup.kill`: a shell that forks a sleeper every 10 ms is
    /// frozen and emptied, pid by pid, with nothing forked past it.
    #[test]
    fn freezing_and_killing_empties_a_cgroup_that_forks() {
        let Some(cg) = test_cgroup("freeze") else {
            eprintln!("cgroup v2 is not writable here: the freeze path is proved where it is");
            return;
        };
        let entry = OpenOptions::new()
            .write(true)
            .open(cg.dir.join("cgroup.procs"))
            .unwrap();
        let fd = entry.as_raw_fd();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "while :; do sleep 30 & sleep 0.01; done"]);
        // SAFETY: `join` is a single write(2).
        unsafe { std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || join(fd)) };
        let mut shell = cmd.spawn().unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while cg.pids().len() < 10 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(cg.pids().len() >= 10, "the shell forks: {:?}", cg.pids());
        cg.freeze_and_kill(Instant::now() + EMPTY_WITHIN);
        assert_eq!(cg.pids(), [] as [i32; 0]);
        assert!(shell.wait().is_ok());
        std::fs::remove_dir(&cg.dir).unwrap();
    }

    #[test]
    fn without_v2_there_is_no_own_cgroup() {
        assert!(own_cgroup_dir(HYBRID, "4:memory:/x\n").is_err());
        let v1_only = "33 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(own_cgroup_dir(v1_only, "0::/\n").is_err());
    }
}
