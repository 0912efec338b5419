//! The executor actor: one per running agent process.
//!
//! It starts the agent, forwards its stdout and stderr to the project line by line, enforces the
//! run's time limit, and stops the agent on request by escalating SIGINT → SIGTERM → SIGKILL to
//! its process group, each after a grace period (SIGINT lets Claude Code stop its tools and
//! still print a result). When the agent has exited, a sweep removes anything the run left
//! behind. If the actor itself dies, its `Drop` kills the run's processes and reports the run as
//! failed, so a crash never leaks an agent.

pub mod attempt;
pub mod cgroup;
pub mod control;
pub mod environment;
pub mod process;

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::io::BufReader;

pub use crate::api::executor::{CloseStdin, Panic, RunSpec, StopReason, StopRun, WriteStdin};

use crate::api::project::{RunExited, RunOutput, RunReport};
use crate::api::supervisor::{ChildGuard, ChildId, SupervisorHandle};
use crate::lines::read_batch;

pub struct ExecutorActor {
    spec: RunSpec,
    project: RunReport,
    pgid: Option<i32>,
    spawned_at: Option<Instant>,
    status: Option<std::process::ExitStatus>,
    streams_done: bool,
    stop: Option<StopReason>,
    reported: bool,
    /// Lines for the agent's stdin; dropping it closes stdin.
    stdin: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    guard: ChildGuard,
}

impl ExecutorActor {
    pub fn new(spec: RunSpec, project: RunReport, sup: Option<SupervisorHandle>) -> Self {
        let guard = ChildGuard::new(ChildId::Executor(spec.project_id.clone()), sup);
        ExecutorActor {
            spec,
            project,
            pgid: None,
            spawned_at: None,
            status: None,
            streams_done: false,
            stop: None,
            reported: false,
            stdin: None,
            guard,
        }
    }

    fn report(&mut self, failure: Option<String>, ctx: &mut Context<Self>) {
        if self.reported {
            return;
        }
        self.reported = true;
        use std::os::unix::process::ExitStatusExt;
        self.project.do_send(RunExited {
            run_id: self.spec.run_id.clone(),
            exit_code: self.status.and_then(|s| s.code()),
            signal: self.status.and_then(|s| s.signal()),
            stop: self.stop,
            failure,
            spawned_at: self.spawned_at,
        });
        process::forget_run(&self.spec.run_id);
        self.guard.stop_expected();
        ctx.stop();
    }

    fn maybe_finish(&mut self, ctx: &mut Context<Self>) {
        if self.status.is_some() && self.streams_done {
            self.report(None, ctx);
        }
    }

    fn begin_stop(&mut self, reason: StopReason, grace: Duration, ctx: &mut Context<Self>) {
        let Some(pgid) = self.pgid else { return };
        if self.status.is_some() {
            return;
        }
        if self.stop.is_some() {
            // A second stop request: no more patience.
            process::signal_group(pgid, libc::SIGKILL);
            return;
        }
        self.stop = Some(reason);
        log::info!(run = self.spec.run_id.as_str(), project = self.spec.project_id.as_str(); "stopping run ({reason:?}): SIGINT");
        process::signal_group(pgid, libc::SIGINT);
        ctx.run_later(grace, move |act, ctx| {
            if act.status.is_none() {
                log::info!(run = act.spec.run_id.as_str(); "run still alive after {grace:?}: SIGTERM");
                process::signal_group(pgid, libc::SIGTERM);
                ctx.run_later(grace, move |act, _| {
                    if act.status.is_none() {
                        log::warn!(run = act.spec.run_id.as_str(); "run still alive: SIGKILL");
                        process::signal_group(pgid, libc::SIGKILL);
                        process::sweep(&act.spec.run_id, pgid);
                    }
                });
            }
        });
    }
}

impl Actor for ExecutorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let spec = &self.spec;
        let mut child = match process::spawn_agent(spec) {
            Ok(c) => c,
            Err(e) => {
                log::error!(run = spec.run_id.as_str(); "could not start the agent: {e}");
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "the agent executable was not found",
                    std::io::ErrorKind::PermissionDenied => {
                        "the agent executable could not be run (permission denied)"
                    }
                    _ => "the agent could not be started",
                };
                self.report(Some(why.into()), ctx);
                return;
            }
        };
        self.spawned_at = Some(Instant::now());
        let pid = child.id().map(|p| p as i32);
        self.pgid = pid;
        log::info!(run = spec.run_id.as_str(), project = spec.project_id.as_str(), pid = pid.unwrap_or(0); "agent started");

        if let (Some(first), Some(pipe)) = (self.spec.stdin.clone(), child.stdin.take()) {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let _ = tx.send(first);
            self.stdin = Some(tx);
            actix_rt::spawn(feed_stdin(pipe, rx));
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let project = self.project.clone();
        let run_id = spec.run_id.clone();
        let streams = async move {
            futures_util::future::join(
                pump(stdout, false, project.clone(), run_id.clone()),
                pump(stderr, true, project, run_id),
            )
            .await;
        };
        ctx.spawn(streams.into_actor(self).map(|(), act, ctx| {
            act.streams_done = true;
            act.maybe_finish(ctx);
        }));
        let run_id_reaped = self.spec.run_id.clone();
        let wait = async move {
            let status = child.wait().await;
            if let Some(pid) = pid {
                process::forget_managed(pid);
            }
            process::leader_reaped(&run_id_reaped);
            status
        };
        ctx.spawn(wait.into_actor(self).map(|status, act, ctx| {
            act.status = Some(status.unwrap_or_else(|_| {
                use std::os::unix::process::ExitStatusExt;
                std::process::ExitStatus::from_raw(1 << 8)
            }));
            if let Some(pgid) = act.pgid {
                // Nothing of the run may outlive it; this also closes pipes held by escapees.
                process::sweep(&act.spec.run_id, pgid);
            }
            ctx.run_later(Duration::from_secs(2), |act, ctx| {
                if !act.streams_done {
                    log::warn!(run = act.spec.run_id.as_str(); "output did not end after the agent exited; finishing the run");
                    act.streams_done = true;
                    act.maybe_finish(ctx);
                }
            });
            act.maybe_finish(ctx);
        }));
        if let Some(t) = self.spec.timeout {
            let grace = self.spec.grace;
            ctx.run_later(t, move |act, ctx| {
                log::warn!(run = act.spec.run_id.as_str(); "run timed out after {t:?}");
                act.begin_stop(StopReason::Timeout, grace, ctx);
            });
        }
    }
}

/// Forwards one output stream to the project, batch by batch.
async fn pump<R: tokio::io::AsyncRead + Unpin>(
    reader: Option<R>,
    stderr: bool,
    project: RunReport,
    run_id: String,
) {
    let Some(reader) = reader else { return };
    let mut r = BufReader::with_capacity(64 * 1024, reader);
    while let Ok(Some(lines)) = read_batch(&mut r).await {
        let out = RunOutput {
            run_id: run_id.clone(),
            stderr,
            lines,
        };
        // Waiting here is the backpressure: the agent's pipe fills meanwhile.
        if project.send(out).await.is_err() {
            break;
        }
    }
}

/// Writes lines to the agent's stdin until the sender is dropped (then stdin closes) or the
/// agent stops reading.
async fn feed_stdin(
    mut pipe: tokio::process::ChildStdin,
    mut lines: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::AsyncWriteExt;
    while let Some(mut line) = lines.recv().await {
        line.push('\n');
        if pipe.write_all(line.as_bytes()).await.is_err() || pipe.flush().await.is_err() {
            break;
        }
    }
}

impl Handler<WriteStdin> for ExecutorActor {
    type Result = ();

    fn handle(&mut self, msg: WriteStdin, _: &mut Self::Context) {
        if let Some(tx) = &self.stdin {
            let _ = tx.send(msg.0);
        }
    }
}

impl Handler<CloseStdin> for ExecutorActor {
    type Result = ();

    fn handle(&mut self, _: CloseStdin, _: &mut Self::Context) {
        self.stdin = None;
    }
}

impl Drop for ExecutorActor {
    fn drop(&mut self) {
        if self.reported {
            return;
        }
        // The actor died without finishing its run (a panic): the run's processes go with it.
        // A group whose leader was reaped is never signalled (its number may be reused).
        if let Some(pgid) = self.pgid {
            if self.status.is_none() {
                process::signal_group(pgid, libc::SIGKILL);
            }
            process::sweep(&self.spec.run_id, pgid);
        }
        process::forget_run(&self.spec.run_id);
        let why = self
            .guard
            .crash_reason()
            .unwrap_or_else(|| "stopped unexpectedly".into());
        self.project.do_send(RunExited {
            run_id: self.spec.run_id.clone(),
            exit_code: None,
            signal: None,
            stop: self.stop,
            failure: Some(format!(
                "the run's executor crashed ({why}); its processes were killed"
            )),
            spawned_at: self.spawned_at,
        });
    }
}

impl Handler<StopRun> for ExecutorActor {
    type Result = ();

    fn handle(&mut self, msg: StopRun, ctx: &mut Self::Context) {
        self.begin_stop(msg.reason, msg.grace, ctx);
    }
}

impl Handler<Panic> for ExecutorActor {
    type Result = ();

    fn handle(&mut self, _: Panic, _: &mut Self::Context) {
        panic!(
            "fault injected into the executor of run {}",
            self.spec.run_id
        );
    }
}
