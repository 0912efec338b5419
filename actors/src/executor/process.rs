//! Agent processes: starting them so they can be stopped, and making sure none outlives its run.
//!
//! Each run's agent is the leader of a new process group, joins the run's own cgroup before it
//! execs where the daemon may create one (see [`super::cgroup`]), and carries `AGENTVISOR_RUN_ID`
//! in its environment, which its descendants inherit. Stopping signals the group; the sweep
//! afterwards kills the run's cgroup, then, pass after pass, anything still in the group or
//! carrying the run's id — that catches tools that moved to their own session (Claude's Bash
//! tool does). The daemon is a child subreaper, so escapees are re-parented to it rather than
//! to init, and their zombies are reaped here; one that also dropped the run's id from its
//! environment is recognised as the daemon's orphan, which the sweep kills when no other run is
//! live to claim it.
//!
//! Tokio reaps the children it spawned itself; to never steal one of those exit statuses, every
//! pid tokio manages is registered in [`MANAGED`] and the orphan reaper leaves it alone.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cgroup::{self, RunCgroup};
use crate::sync::lock;

/// The variable that marks every process of a run.
pub const RUN_ID_ENV: &str = "AGENTVISOR_RUN_ID";

/// Pids that tokio spawned and will reap itself.
static MANAGED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
/// Live runs by run id.
static LIVE_RUNS: Mutex<Option<HashMap<String, LiveRun>>> = Mutex::new(None);

/// What finds a live run's processes.
struct LiveRun {
    /// Its process group; 0 once the leader was reaped (the number may be reused then).
    pgid: i32,
    /// Its cgroup, in cgroup mode; removed when the run is forgotten.
    cgroup: Option<Arc<RunCgroup>>,
}

/// Makes this process a child subreaper: orphaned descendants are re-parented to it.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Starts an agent: own process group, own cgroup (in cgroup mode, joined before exec), stdin
/// closed (a pipe with approvals), stdout and stderr piped, exactly the environment of its spec
/// (which carries the run id), and killed by the kernel if the daemon dies.
pub fn spawn_agent(spec: &super::RunSpec) -> std::io::Result<tokio::process::Child> {
    let run_id = &spec.run_id;
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        // A pipe only for a run that talks to its agent on stdin (approvals).
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    let cgroup = RunCgroup::for_run(run_id);
    if let Some(fd) = cgroup.as_ref().map(|c| c.entry_fd()) {
        // SAFETY: `join` is a single write(2), async-signal-safe; a failure fails the spawn.
        unsafe { cmd.pre_exec(move || cgroup::join(fd)) };
    }
    let mut managed = lock(&MANAGED);
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        managed.get_or_insert_with(HashSet::new).insert(pid as i32);
        let run = LiveRun {
            pgid: pid as i32,
            cgroup: cgroup.map(Arc::new),
        };
        lock(&LIVE_RUNS)
            .get_or_insert_with(HashMap::new)
            .insert(run_id.to_string(), run);
    }
    Ok(child)
}

/// Spawns a helper command (not an agent) whose exit tokio reaps, so the orphan reaper leaves
/// it alone. The caller calls [`forget_managed`] once it has waited for it.
pub fn spawn_managed(cmd: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    let mut managed = lock(&MANAGED);
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        managed.get_or_insert_with(HashSet::new).insert(pid as i32);
    }
    Ok(child)
}

/// Runs a short command (like `--version`) under the same bookkeeping and returns its stdout.
pub async fn managed_output(mut cmd: tokio::process::Command, limit: Duration) -> Option<Vec<u8>> {
    cmd.stdout(Stdio::piped());
    let child = spawn_managed(&mut cmd).ok()?;
    let pid = child.id();
    let out = tokio::time::timeout(limit, child.wait_with_output()).await;
    if let Some(pid) = pid {
        forget_managed(pid as i32);
    }
    out.ok()?.ok().map(|o| o.stdout)
}

/// Tokio has reaped `pid`.
pub fn forget_managed(pid: i32) {
    if let Some(m) = lock(&MANAGED).as_mut() {
        m.remove(&pid);
    }
}

/// The run's leader has been reaped: its group number may be reused from now on, so the group
/// is never signalled again (what is left is found by [`sweep`]).
pub fn leader_reaped(run_id: &str) {
    if let Some(run) = lock(&LIVE_RUNS).as_mut().and_then(|m| m.get_mut(run_id)) {
        run.pgid = 0;
    }
}

/// The run is over: its cgroup (emptied by the sweep) is removed.
pub fn forget_run(run_id: &str) {
    let run = lock(&LIVE_RUNS).as_mut().and_then(|m| m.remove(run_id));
    drop(run);
}

/// Sends `sig` to a process group.
pub fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// A process as /proc shows it.
struct ProcInfo {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    zombie: bool,
}

fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    let state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgrp,
        zombie: state == "Z",
    })
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn carries_run_id(pid: i32, marker: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|kv| kv == marker))
        .unwrap_or(false)
}

/// Passes of a sweep at most: each pass catches what the previous one's victims forked while
/// they were being killed; a sweep ends with the first pass that finds nothing.
const SWEEP_PASSES: usize = 50;

/// Kills every process left of a run: its cgroup (in cgroup mode), then, pass after pass until
/// nothing is left, its group (when `pgid > 0`), anything carrying its id and, when no other
/// run is live, the daemon's orphans (escapees that dropped the id are re-parented to the
/// daemon and cannot be told apart otherwise). A group member or orphan is killed only when it
/// descends from the daemon: once the group's leader is reaped its number can be reused, and a
/// stranger that got it is never signalled. Returns how many the passes killed.
pub fn sweep(run_id: &str, pgid: i32) -> usize {
    let (cgroup, alone) = {
        let runs = lock(&LIVE_RUNS);
        let runs = runs.as_ref();
        let cgroup = runs.and_then(|m| m.get(run_id)?.cgroup.clone());
        (cgroup, runs.is_none_or(|m| m.keys().all(|k| k == run_id)))
    };
    if let Some(held) = cgroup.map(|cg| cg.kill()).filter(|n| *n > 0) {
        log::info!(run = run_id; "killed the run's cgroup with {held} process(es) in it");
    }
    let marker = format!("{RUN_ID_ENV}={run_id}").into_bytes();
    let mut killed = 0;
    for _ in 0..SWEEP_PASSES {
        let now = sweep_pass(&marker, pgid, alone);
        if now == 0 {
            break;
        }
        killed += now;
        // Give the kernel a moment to turn them into zombies we can reap.
        std::thread::sleep(Duration::from_millis(5));
        reap_orphans();
    }
    if killed > 0 {
        log::info!(run = run_id; "swept {killed} leftover process(es) of the run");
    }
    reap_orphans();
    killed
}

/// One pass of [`sweep`]: SIGKILL to every live process of the run (with `orphans`, to every
/// descendant of the daemon that no child it manages leads to); returns how many.
fn sweep_pass(marker: &[u8], pgid: i32, orphans: bool) -> usize {
    let me = std::process::id() as i32;
    let procs: HashMap<i32, ProcInfo> = all_pids()
        .into_iter()
        .filter_map(|pid| Some((pid, proc_info(pid)?)))
        .collect();
    let managed = lock(&MANAGED).clone().unwrap_or_default();
    let mut killed = 0;
    for info in procs.values() {
        if info.pid == me || info.zombie {
            continue;
        }
        let child = daemon_child(info.pid, &procs, me);
        let in_group = pgid > 0 && info.pgrp == pgid && child.is_some();
        let orphan = orphans && child.is_some_and(|c| !managed.contains(&c));
        if in_group || orphan || carries_run_id(info.pid, marker) {
            // SAFETY: kill(2) on a pid; no memory is involved.
            unsafe {
                libc::kill(info.pid, libc::SIGKILL);
            }
            killed += 1;
        }
    }
    killed
}

/// The daemon's child that `pid` is or descends from (the parent chain in `procs`).
fn daemon_child(mut pid: i32, procs: &HashMap<i32, ProcInfo>, me: i32) -> Option<i32> {
    for _ in 0..4096 {
        let info = procs.get(&pid)?;
        if info.ppid == me {
            return Some(pid);
        }
        if info.ppid <= 1 {
            return None;
        }
        pid = info.ppid;
    }
    None
}

/// Reaps zombies re-parented to the daemon (it is a subreaper), leaving tokio's own alone.
pub fn reap_orphans() {
    let me = std::process::id() as i32;
    let managed = lock(&MANAGED);
    for pid in all_pids() {
        let Some(info) = proc_info(pid) else { continue };
        let mine = managed.as_ref().is_some_and(|m| m.contains(&info.pid));
        if info.zombie && info.ppid == me && !mine {
            let mut status = 0;
            // SAFETY: waitpid on a specific zombie child of ours with WNOHANG.
            unsafe {
                libc::waitpid(info.pid, &mut status, libc::WNOHANG);
            }
        }
    }
}

/// Kills every live run at once (the daemon is exiting without a graceful stop).
pub fn kill_all_runs() {
    let runs: Vec<(String, i32)> = lock(&LIVE_RUNS)
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.pgid)).collect())
        .unwrap_or_default();
    for (run, pgid) in runs {
        if pgid > 0 {
            signal_group(pgid, libc::SIGKILL);
        }
        sweep(&run, pgid);
        forget_run(&run);
    }
}

/// The number of live runs with a process.
pub fn live_runs() -> usize {
    lock(&LIVE_RUNS).as_ref().map_or(0, |m| m.len())
}
