//! Agent processes: starting them so they can be stopped, and making sure none outlives its run.
//!
//! Each run's agent is the leader of a new process group, and carries `AGENTVISOR_RUN_ID` in its
//! environment, which its descendants inherit. Stopping signals the group; the sweep afterwards
//! kills anything still in the group *or* carrying the run's id — that catches tools that moved
//! to their own session (Claude's Bash tool does). The daemon is a child subreaper, so such
//! escapees are re-parented to it rather than to init, and their zombies are reaped here.
//!
//! Tokio reaps the children it spawned itself; to never steal one of those exit statuses, every
//! pid tokio manages is registered in [`MANAGED`] and the orphan reaper leaves it alone.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use crate::sync::lock;

/// The variable that marks every process of a run.
pub const RUN_ID_ENV: &str = "AGENTVISOR_RUN_ID";

/// Pids that tokio spawned and will reap itself.
static MANAGED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
/// Live runs: run id → process group.
static LIVE_RUNS: Mutex<Option<HashMap<String, i32>>> = Mutex::new(None);

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

/// Starts an agent: own process group, stdin closed (a pipe with approvals), stdout and stderr piped, exactly the
/// environment of its spec (which carries the run id), and killed by the kernel if the daemon
/// dies.
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
    let mut managed = lock(&MANAGED);
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        managed.get_or_insert_with(HashSet::new).insert(pid as i32);
        lock(&LIVE_RUNS)
            .get_or_insert_with(HashMap::new)
            .insert(run_id.to_string(), pid as i32);
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
    if let Some(pgid) = lock(&LIVE_RUNS).as_mut().and_then(|m| m.get_mut(run_id)) {
        *pgid = 0;
    }
}

/// The run is over.
pub fn forget_run(run_id: &str) {
    if let Some(m) = lock(&LIVE_RUNS).as_mut() {
        m.remove(run_id);
    }
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

/// Kills every process left of a run: its group (when `pgid > 0`) and anything carrying its id,
/// pass after pass until nothing is left. A group member is killed only when it descends from
/// the daemon: once the group's leader is reaped its number can be reused, and a stranger that
/// got it is never signalled. Returns how many were killed.
pub fn sweep(run_id: &str, pgid: i32) -> usize {
    let marker = format!("{RUN_ID_ENV}={run_id}").into_bytes();
    let mut killed = 0;
    for _ in 0..SWEEP_PASSES {
        let now = sweep_pass(&marker, pgid);
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

/// One pass of [`sweep`]: SIGKILL to every live process of the run; returns how many.
fn sweep_pass(marker: &[u8], pgid: i32) -> usize {
    let me = std::process::id() as i32;
    let mut killed = 0;
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let Some(info) = proc_info(pid) else { continue };
        if info.zombie {
            continue;
        }
        let in_group = pgid > 0 && info.pgrp == pgid && descends_from(pid, me);
        if in_group || carries_run_id(pid, marker) {
            // SAFETY: kill(2) on a pid; no memory is involved.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            killed += 1;
        }
    }
    killed
}

/// Whether `ancestor` is an ancestor of `pid` (the parent chain in /proc).
fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    for _ in 0..4096 {
        match proc_info(pid) {
            Some(info) if info.ppid == ancestor => return true,
            Some(info) if info.ppid > 1 => pid = info.ppid,
            _ => return false,
        }
    }
    false
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
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    for (run, pgid) in runs {
        if pgid > 0 {
            signal_group(pgid, libc::SIGKILL);
        }
        sweep(&run, pgid);
    }
}

/// The number of live runs with a process.
pub fn live_runs() -> usize {
    lock(&LIVE_RUNS).as_ref().map_or(0, |m| m.len())
}
