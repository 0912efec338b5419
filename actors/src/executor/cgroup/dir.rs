//! A cgroup directory: killing what is in it (`cgroup.kill`, or freeze and SIGKILL where the
//! kernel predates it), waiting for it to empty, removing it.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a cgroup may take to empty after it was killed before it is given up on.
const EMPTY_WITHIN: Duration = Duration::from_secs(10);

/// A cgroup directory.
pub(super) struct Cgroup {
    pub(super) dir: PathBuf,
}

impl Cgroup {
    /// Kills every process in the cgroup and waits up to `within` until it is empty; returns
    /// whether it is. New processes cannot escape: `cgroup.kill` takes forks in flight along,
    /// and without it the cgroup is frozen first, so nothing in it runs (or forks) while its
    /// pids are killed (it stays frozen: a process that outlives the kill cannot run).
    pub(super) fn kill(&self, within: Duration) -> bool {
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
    pub(super) fn remove(&self) {
        if !self.dir.exists() {
            return; // removed already (by the daemon's exit, racing a removal thread)
        }
        if !self.kill(EMPTY_WITHIN) && self.dir.exists() {
            log::warn!(
                "cgroup {} still has processes {EMPTY_WITHIN:?} after being killed",
                self.dir.display()
            );
        }
        match std::fs::remove_dir(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                log::warn!("cannot remove cgroup {}: {e}", self.dir.display());
            }
            _ => {}
        }
    }

    /// The pids `cgroup.procs` lists.
    pub(super) fn pids(&self) -> Vec<i32> {
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
    use super::super::{join, own_cgroup_dir};
    use super::*;
    use std::os::fd::AsRawFd;

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
}
