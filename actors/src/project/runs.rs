//! Runs: the queue, starting the agent, its output, and how a run ends.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::OwnedSemaphorePermit;

use super::ProjectActor;
use crate::agent::{build_args, not_found, resolve_program, AgentLine};
use crate::api::connection::ReplyTo;
use crate::api::executor::{RunSpec, StopReason, StopRun};
use crate::api::project::{RunExited, RunOutput, RunReport, Shutdown};
use crate::breaker::{Admission, RunEnd};
use crate::error::{ApiError, Code};
use crate::events::{RunFinished, RunStarted, RunStatus};
use crate::executor::ExecutorActor;
use crate::protocol::{Direction, RunOptions};
use crate::storage::metadata::{AgentKind, ProjectState};

/// A run waiting its turn.
pub struct QueuedRun {
    pub run_id: String,
    pub prompt: String,
    pub options: RunOptions,
}

/// The run in progress (possibly still waiting for a global run slot).
pub struct ActiveRun {
    pub run_id: String,
    pub executor: Option<Addr<ExecutorActor>>,
    pub started: Instant,
    pub permit: Option<OwnedSemaphorePermit>,
    pub stop: Option<StopReason>,
    /// How the backend's breaker let the run start (none before it has).
    admission: Option<Admission>,
    seen: Observed,
    /// The work tree when the run started (git projects only).
    tree_before: Option<String>,
    /// The run asks the clients before tool calls (`approvals: true`).
    asks_approval: bool,
    /// How the run ended, while the end snapshot is being taken.
    ending: Option<Ending>,
}

/// How a run ended, kept while the end snapshot is taken.
struct Ending {
    status: RunStatus,
    exit_code: Option<i32>,
    error: Option<String>,
}

/// What the agent's own output said about the run.
#[derive(Default)]
struct Observed {
    is_error: bool,
    cost_usd: Option<f64>,
    error: Option<String>,
    stdout_lines: u64,
}

/// A global run slot became free for this run.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SlotReady {
    run_id: String,
    permit: OwnedSemaphorePermit,
}

impl ProjectActor {
    pub(super) fn execute(
        &mut self,
        reply: &ReplyTo,
        prompt: String,
        mut options: RunOptions,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        if options.approvals.is_none() && self.meta.approvals {
            options.approvals = Some(true);
        }
        // A request still in flight when shutdown began must not start an agent that shutdown
        // has already stopped waiting for.
        if self.engine.lifecycle() == crate::engine::Lifecycle::ShuttingDown {
            return Err(ApiError::new(
                Code::ExecutionFailed,
                "the server is shutting down: send the prompt again once it is back",
            ));
        }
        let kind = self.meta.agent;
        if resolve_program(self.agent_bin(kind)).is_none() {
            return Err(not_found(kind));
        }
        self.check_backend()?;
        // Build the command once now, so a bad option is refused before anything is queued.
        build_args(kind, &options, None, &prompt)?;
        // The agent gets the directories in the form that was checked.
        options.add_dirs = self.checked_add_dirs(&options.add_dirs)?;
        let position = self.queue.len() + usize::from(self.active.is_some());
        if position > 0 && self.queue.len() >= self.engine.config.max_queue {
            return Err(ApiError::new(
                Code::QueueFull,
                format!(
                    "the project's queue is full ({} waiting); try again when a run has finished",
                    self.queue.len()
                ),
            ));
        }
        let run_id = uuid::Uuid::new_v4().to_string();
        // `execute` joins the requester, so it sees what it started.
        self.subscribe(reply, Vec::new())?;
        let mut prompt_event = json!({"run_id": run_id, "prompt": prompt});
        if !options.is_empty() {
            prompt_event["options"] = serde_json::to_value(&options).unwrap_or_default();
        }
        self.emit("prompt", Direction::Client, &prompt_event);
        log::info!(project = &*self.id, run = run_id.as_str(), position = position; "run accepted");
        let accepted = json!({"run_id": run_id, "queue_position": position});
        self.queue.push_back(QueuedRun {
            run_id,
            prompt,
            options,
        });
        self.shared
            .queue_len
            .store(self.queue.len(), Ordering::Relaxed);
        // Replied once the queue holds the run (a `project_list` sent on receipt must count
        // it), and before it starts (`execute_accepted` comes before its `project_state`).
        reply.ok("execute_accepted", Some(&self.id), &accepted);
        self.start_next(ctx);
        Ok(())
    }

    /// Extra directories follow the project rules: inside the roots, away from the data
    /// directory and from every other project. Returns their canonical forms (symlinks
    /// resolved), which are what was checked.
    fn checked_add_dirs(&self, dirs: &[String]) -> Result<Vec<String>, ApiError> {
        let others = self.engine.directory.project_paths();
        let cfg = &self.engine.config;
        dirs.iter()
            .map(|d| {
                let dir = crate::paths::check_project_dir(
                    d,
                    &cfg.project_roots,
                    &cfg.data_dir,
                    others
                        .iter()
                        .filter(|(id, _)| id.as_str() != &*self.id)
                        .map(|(id, p)| (id.as_str(), p.as_path())),
                )?;
                dir.into_os_string().into_string().map_err(|_| {
                    ApiError::new(Code::InvalidPath, "invalid project path: not valid UTF-8")
                })
            })
            .collect()
    }

    /// Checks a queued run's extra directories again as it starts: they may have changed (or
    /// become symlinks) while it waited.
    fn recheck_add_dirs(&self, dirs: &[String]) -> Result<(), String> {
        match self.checked_add_dirs(dirs) {
            Ok(now) if now == dirs => Ok(()),
            Ok(_) => Err(
                "an add_dirs directory changed while the run waited (it now resolves elsewhere)"
                    .into(),
            ),
            Err(e) => Err(format!(
                "add_dirs no longer passes the path rules: {}",
                e.error
            )),
        }
    }

    pub(super) fn agent_bin(&self, kind: AgentKind) -> &str {
        self.engine.config.agent_bin(kind)
    }

    /// Starts the next queued run when none is active and a global slot is free (or waits for
    /// one).
    fn start_next(&mut self, ctx: &mut Context<Self>) {
        if self.active.is_some() {
            return;
        }
        let Some(next) = self.queue.pop_front() else {
            return;
        };
        self.shared
            .queue_len
            .store(self.queue.len(), Ordering::Relaxed);
        let run_id = next.run_id.clone();
        self.active = Some(ActiveRun {
            run_id: run_id.clone(),
            executor: None,
            started: Instant::now(),
            permit: None,
            stop: None,
            admission: None,
            seen: Observed::default(),
            tree_before: None,
            asks_approval: next.options.asks_approval(),
            ending: None,
        });
        match self.engine.run_slots.clone().try_acquire_owned() {
            Ok(permit) => self.launch(next, permit, ctx),
            Err(_) => {
                log::info!(project = &*self.id, run = run_id.as_str(); "waiting for a free run slot");
                let slots = self.engine.run_slots.clone();
                let me = ctx.address();
                self.pending = Some(next);
                actix_rt::spawn(async move {
                    if let Ok(permit) = slots.acquire_owned().await {
                        me.do_send(SlotReady { run_id, permit });
                    }
                });
            }
        }
    }

    fn launch(&mut self, run: QueuedRun, permit: OwnedSemaphorePermit, ctx: &mut Context<Self>) {
        let kind = self.meta.agent;
        let resume = self.meta.session_id.clone();
        let Some(program) = resolve_program(self.agent_bin(kind)) else {
            let err = not_found(kind).error;
            self.finish(&run.run_id, RunStatus::Failed, None, Some(err), ctx);
            return;
        };
        // Rules a client allowed with `remember` hold for the rest of the session.
        let mut options = run.options.clone();
        for rule in self.remembered_rules() {
            if !options.allowed_tools.contains(rule) {
                options.allowed_tools.push(rule.clone());
            }
        }
        let args = match build_args(kind, &options, resume.as_deref(), &run.prompt) {
            Ok(a) => a,
            Err(e) => {
                self.finish(&run.run_id, RunStatus::Failed, None, Some(e.error), ctx);
                return;
            }
        };
        if !self.meta.path.is_dir() {
            let why = "the project directory no longer exists on the server".to_string();
            self.finish(&run.run_id, RunStatus::Failed, None, Some(why), ctx);
            return;
        }
        if let Err(why) = self.recheck_add_dirs(&run.options.add_dirs) {
            self.finish(&run.run_id, RunStatus::Failed, None, Some(why), ctx);
            return;
        }
        // Last, so that a trial run is only taken by a run that will really start.
        let admission = match self.admit_backend() {
            Ok(a) => a,
            Err(e) => {
                self.finish(&run.run_id, RunStatus::Failed, None, Some(e.error), ctx);
                return;
            }
        };
        let run_id = run.run_id.clone();
        self.update_meta_soon(ctx, |m| {
            m.state = ProjectState::Executing;
            m.active_run = Some(run_id.clone());
            m.last_active = crate::time::now_rfc3339();
        });
        self.emit_state();
        self.emit_event(&RunStarted {
            prompt: &run.prompt,
            resumed_session_id: resume.as_deref(),
            run_id: &run_id,
        });
        if let Some(active) = self.active.as_mut() {
            active.permit = Some(permit);
            active.admission = Some(admission);
        }
        let stdin = run
            .options
            .asks_approval()
            .then(|| crate::executor::control::user_message(&run.prompt));
        // The agent starts once the work tree is recorded, so the snapshot holds none of its
        // changes. A run stopped meanwhile has already been closed and is not started.
        self.snapshot_then(ctx, move |act, tree, ctx| {
            let Some(active) = act.active.as_mut().filter(|r| r.run_id == run_id) else {
                return;
            };
            active.tree_before = tree;
            act.start_executor(&run_id, program, args, stdin, ctx);
        });
    }

    fn start_executor(
        &mut self,
        run_id: &str,
        program: std::path::PathBuf,
        args: Vec<String>,
        stdin: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        self.engine
            .stats
            .runs_active
            .fetch_add(1, Ordering::Relaxed);
        let spec = RunSpec {
            run_id: run_id.to_string(),
            project_id: self.id.to_string(),
            program,
            args,
            cwd: self.meta.path.clone(),
            // The allowed part of the daemon's environment, and the run's consult capability.
            env: [
                crate::executor::environment::for_run(run_id, &self.engine.config.agent_env),
                self.lead_env(run_id),
            ]
            .concat(),
            timeout: self.engine.config.run_timeout,
            grace: self.engine.config.kill_grace,
            stdin,
        };
        let exec = ExecutorActor::new(spec, RunReport::of(&ctx.address()), self.supervisor.clone())
            .start();
        if let Some(active) = self.active.as_mut() {
            active.executor = Some(exec);
            active.started = Instant::now();
        }
    }

    /// Handles one stdout line: notes what matters, then stores and broadcasts it.
    fn on_stdout(&mut self, run_id: &str, line: Vec<u8>, cut: bool, ctx: &mut Context<Self>) {
        let text = match String::from_utf8(line) {
            Ok(t) => t,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return;
        }
        if let Some(run) = self.active.as_mut() {
            run.seen.stdout_lines += 1;
        }
        if cut || !trimmed.starts_with('{') {
            self.emit_raw(run_id, &text, cut);
            return;
        }
        // The fields the daemon reads are only interpreted when they have the expected types;
        // an object with, say, a numeric `type` is still the agent's output and is forwarded
        // as a message like any other (whether it is valid JSON at all is checked below).
        if let Ok(head) = serde_json::from_str::<AgentLine>(trimmed) {
            self.observe(&head);
            if self.asks_approval(run_id) {
                match head.kind.as_deref() {
                    // Control lines are the protocol, not output: they become permission
                    // requests.
                    Some("control_request") => {
                        return self.on_control_request(run_id, trimmed, ctx)
                    }
                    Some("result") => self.close_agent_stdin(),
                    _ => {}
                }
            }
        }
        // A line that parses as JSON and starts with `{` is one JSON object: out unchanged.
        match RawValue::from_string(trimmed.to_string()) {
            Ok(raw) => {
                #[derive(serde::Serialize)]
                struct Data<'a> {
                    run_id: &'a str,
                    message: &'a RawValue,
                }
                self.emit(
                    "agent_message",
                    Direction::Agent,
                    &Data {
                        run_id,
                        message: &raw,
                    },
                );
            }
            Err(_) => self.emit_raw(run_id, &text, false),
        }
    }

    /// Whether `run_id` is the active run and asks for approvals.
    fn asks_approval(&self, run_id: &str) -> bool {
        self.active
            .as_ref()
            .is_some_and(|r| r.run_id == run_id && r.asks_approval)
    }

    /// A stdout line that is not a JSON object: `{run_id, raw}`, plus `cut: true` when the line
    /// was longer than the daemon keeps (the field is absent otherwise, not `null`).
    fn emit_raw(&mut self, run_id: &str, text: &str, cut: bool) {
        let mut data = json!({"run_id": run_id, "raw": text});
        if cut {
            data["cut"] = json!(true);
        }
        self.emit("agent_message", Direction::Agent, &data);
    }

    fn observe(&mut self, head: &AgentLine) {
        let seen = self.meta.agent.agent().observe(head);
        if let Some(s) = seen.session.filter(|s| !s.is_empty() && s.len() <= 256) {
            if self.meta.session_id.as_deref() != Some(s.as_str()) {
                log::info!(project = &*self.id, session = s.as_str(); "agent session id saved");
                // Saved durably at once: a crash mid-run still resumes this conversation.
                // Stored before the line that carries it is broadcast: a client that has seen
                // the session id can count on the next run resuming it, even after a crash.
                let _ = self.update_meta(|m| m.session_id = Some(s));
            }
        }
        let Some(run) = self.active.as_mut() else {
            return;
        };
        if let Some(c) = seen.cost_usd {
            run.seen.cost_usd = Some(c);
        }
        if seen.failed {
            run.seen.is_error = true;
        }
        if let Some(what) = seen.error {
            run.seen.error = Some(format!(
                "the agent reported an error: {}",
                crate::logfmt::sanitize(&what, 500)
            ));
        }
    }

    /// Ends the active run (or the queued one named) and moves on.
    fn finish(
        &mut self,
        run_id: &str,
        status: RunStatus,
        exit_code: Option<i32>,
        error: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        if self.active.as_ref().is_some_and(|r| r.run_id == run_id) {
            self.deny_open_requests(run_id, "run_ended", ctx);
        }
        let Some(run) = self.active.take().filter(|r| r.run_id == run_id) else {
            return;
        };
        let had_process = run.executor.is_some();
        if let Some(admission) = run.admission {
            // Ended before its agent did (stopped while its work tree was recorded): it says
            // nothing about the backend, and a trial must not stay taken.
            self.record_backend(
                admission,
                &RunEnd {
                    stopped: true,
                    ..Default::default()
                },
            );
        }
        self.engine.capabilities.revoke_run(run_id);
        let duration_ms = run.started.elapsed().as_millis() as u64;
        let error = (status != RunStatus::Completed)
            .then(|| error.unwrap_or_else(|| "the run did not complete".into()));
        log::info!(project = &*self.id, run = run_id, status = status.as_str(), duration_ms = duration_ms; "run finished");
        let session_id = self.meta.session_id.clone();
        self.emit_run_finished(
            RunFinished {
                cost_usd: run.seen.cost_usd,
                duration_ms: Some(duration_ms),
                error,
                exit_code,
                run_id,
                session_id: session_id.as_deref(),
                status,
                changes: self.changes_of(run_id).cloned(),
            },
            Some(duration_ms),
        );
        let state = status.project_state();
        self.update_meta_soon(ctx, |m| {
            m.state = state;
            m.active_run = None;
            m.last_active = crate::time::now_rfc3339();
        });
        if had_process {
            self.engine
                .stats
                .runs_active
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.emit_state();
        drop(run.permit);
        self.start_next(ctx);
    }

    /// Finishes a run that ended while its end snapshot was being taken (now, or when shutdown
    /// cannot wait for git).
    fn finish_ending(&mut self, run_id: &str, ctx: &mut Context<Self>) {
        let ending = self
            .active
            .as_mut()
            .filter(|r| r.run_id == run_id)
            .and_then(|r| r.ending.take());
        if let Some(e) = ending {
            self.finish(run_id, e.status, e.exit_code, e.error, ctx);
        }
    }

    pub(super) fn kill(
        &mut self,
        reply: &ReplyTo,
        clear_queue: bool,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        let cleared = if clear_queue { self.clear_queue() } else { 0 };
        let Some(run) = self.active.as_mut() else {
            if cleared > 0 {
                self.emit_state();
                reply.ok(
                    "agent_killed",
                    Some(&self.id),
                    &json!({"run_id": null, "cleared": cleared}),
                );
                return Ok(());
            }
            return Err(ApiError::new(
                Code::NoActiveRun,
                format!("project {} has no active run", self.id),
            ));
        };
        let run_id = run.run_id.clone();
        reply.ok(
            "agent_killed",
            Some(&self.id),
            &json!({"run_id": run_id, "cleared": cleared}),
        );
        log::info!(project = &*self.id, run = run_id.as_str(); "kill requested");
        let grace = self.engine.config.kill_grace;
        self.stop_active(StopReason::Killed, grace, "killed before it started", ctx);
        Ok(())
    }

    /// Stops the active run: its executor escalates the signals; a run still waiting for a
    /// global slot has no process and is closed at once, with `why_unstarted`.
    fn stop_active(
        &mut self,
        reason: StopReason,
        grace: Duration,
        why_unstarted: &str,
        ctx: &mut Context<Self>,
    ) {
        let Some(run_id) = self.active.as_ref().map(|r| r.run_id.clone()) else {
            return;
        };
        // The agent hears the denials and sees its stdin close before the signals come.
        let by = match reason {
            StopReason::Shutdown => "shutdown",
            _ => "run_stopped",
        };
        self.deny_open_requests(&run_id, by, ctx);
        self.close_agent_stdin();
        let Some(run) = self.active.as_mut() else {
            return;
        };
        run.stop = Some(reason);
        match &run.executor {
            Some(exec) => exec.do_send(StopRun { reason, grace }),
            None => {
                let run_id = run.run_id.clone();
                self.pending = None;
                self.finish(
                    &run_id,
                    RunStatus::Killed,
                    None,
                    Some(why_unstarted.into()),
                    ctx,
                );
            }
        }
    }

    fn clear_queue(&mut self) -> usize {
        self.end_queued(
            RunStatus::Killed,
            "removed from the queue before it started",
        )
    }

    /// Ends every queued run with `status` and `why`, each with its `run_finished`, so that
    /// history says what became of it.
    pub(super) fn end_queued(&mut self, status: RunStatus, why: &str) -> usize {
        let queued: Vec<_> = self.queue.drain(..).collect();
        self.shared.queue_len.store(0, Ordering::Relaxed);
        for q in &queued {
            let session_id = self.meta.session_id.clone();
            self.emit_run_finished(
                RunFinished {
                    cost_usd: None,
                    duration_ms: Some(0),
                    error: Some(why.into()),
                    exit_code: None,
                    run_id: &q.run_id,
                    session_id: session_id.as_deref(),
                    status,
                    changes: None,
                },
                None,
            );
        }
        queued.len()
    }

    /// Stops the active run for shutdown and clears the queue (closing each queued run, so
    /// history says what became of it). A run still waiting for a global run slot is closed
    /// at once: otherwise the slot another project's stopping run frees would start it, and
    /// shutdown would wait for a run that began after it did.
    pub(super) fn stop_for_shutdown(&mut self, grace: Duration, ctx: &mut Context<Self>) {
        if self.clear_queue() > 0 {
            self.emit_state();
        }
        let why = "the server shut down before the run could start";
        let ending = self.active.as_ref().filter(|r| r.ending.is_some());
        match ending.map(|r| r.run_id.clone()) {
            Some(run_id) => self.finish_ending(&run_id, ctx),
            None => self.stop_active(StopReason::Shutdown, grace, why, ctx),
        }
    }
}

impl Handler<SlotReady> for ProjectActor {
    type Result = ();

    fn handle(&mut self, msg: SlotReady, ctx: &mut Self::Context) {
        let waiting = self
            .active
            .as_ref()
            .is_some_and(|r| r.run_id == msg.run_id && r.executor.is_none());
        // A slot acquired for a run that was killed while it waited is given back; the run
        // waiting now (if any) keeps its place and gets a slot of its own.
        match self.pending.take() {
            Some(run) if waiting && run.run_id == msg.run_id => self.launch(run, msg.permit, ctx),
            other => {
                self.pending = other;
                drop(msg.permit);
            }
        }
    }
}

impl Handler<RunOutput> for ProjectActor {
    type Result = ();

    fn handle(&mut self, msg: RunOutput, ctx: &mut Self::Context) {
        self.batch(|act| {
            for line in msg.lines {
                if msg.stderr {
                    let text = String::from_utf8_lossy(&line.bytes);
                    act.emit(
                        "agent_stderr",
                        Direction::Agent,
                        &json!({"run_id": msg.run_id, "line": text}),
                    );
                } else {
                    act.on_stdout(&msg.run_id, line.bytes, line.cut, ctx);
                }
            }
        });
    }
}

impl Handler<RunExited> for ProjectActor {
    type Result = ();

    fn handle(&mut self, msg: RunExited, ctx: &mut Self::Context) {
        let Some(run) = self.active.as_ref().filter(|r| r.run_id == msg.run_id) else {
            return;
        };
        let stop = msg.stop.or(run.stop);
        let seen_error = run.seen.error.clone();
        let is_error = run.seen.is_error;
        let broke = msg.failure.is_some();
        let (status, error) = if let Some(f) = msg.failure {
            (RunStatus::Failed, Some(f))
        } else {
            match stop {
                Some(StopReason::Killed) => {
                    (RunStatus::Killed, Some("stopped by agent_kill".to_string()))
                }
                Some(StopReason::Shutdown) => (
                    RunStatus::Killed,
                    Some("stopped because the server is shutting down".to_string()),
                ),
                Some(StopReason::Timeout) => (
                    RunStatus::Timeout,
                    // `Duration`'s Debug form keeps sub-second limits readable ("500ms").
                    Some(format!(
                        "the run exceeded its time limit of {:?} and was stopped",
                        self.engine.config.run_timeout.unwrap_or_default()
                    )),
                ),
                None if msg.exit_code == Some(0) && !is_error => (RunStatus::Completed, None),
                None => (
                    RunStatus::Failed,
                    Some(
                        seen_error.unwrap_or_else(|| match (msg.exit_code, msg.signal) {
                            (Some(c), _) => format!("the agent exited with code {c}"),
                            (None, Some(s)) => format!("the agent was killed by signal {s}"),
                            _ => "the agent ended abnormally".into(),
                        }),
                    ),
                ),
            }
        };
        let run_id = msg.run_id.clone();
        let stdout_lines = run.seen.stdout_lines;
        // Shutdown does not wait for git: the run is closed at once.
        let before = run
            .tree_before
            .clone()
            .filter(|_| stop != Some(StopReason::Shutdown));
        // Taken, so that `finish` knows the verdict is in.
        if let Some(admission) = self.active.as_mut().and_then(|r| r.admission.take()) {
            let executor_crashed = broke && msg.spawned_at.is_some();
            self.record_backend(
                admission,
                &RunEnd {
                    completed: status == RunStatus::Completed,
                    stopped: matches!(status, RunStatus::Killed | RunStatus::Interrupted)
                        || executor_crashed,
                    timed_out: status == RunStatus::Timeout,
                    could_not_start: broke && msg.spawned_at.is_none(),
                    error: error.as_deref(),
                    stdout_lines,
                },
            );
        }
        let Some(before) = before else {
            self.finish(&run_id, status, msg.exit_code, error, ctx);
            return;
        };
        if let Some(run) = self.active.as_mut() {
            run.ending = Some(Ending {
                status,
                exit_code: msg.exit_code,
                error,
            });
        }
        self.changes_then(run_id.clone(), before, ctx, move |act, ctx| {
            act.finish_ending(&run_id, ctx)
        });
    }
}

impl Handler<Shutdown> for ProjectActor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) {
        self.stop_for_shutdown(msg.grace, ctx);
        if let Err(e) = self.history.sync() {
            log::error!(project = &*self.id; "could not sync history: {e}");
        }
        // Whatever background metadata write is pending, the newest state goes to disk now.
        self.flush_meta();
    }
}
