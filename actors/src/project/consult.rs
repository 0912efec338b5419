//! `consult`: the other agent gives a second opinion in this project, read-only.
//!
//! A consult does not wait behind the project's run queue (it reads, it does not write) but
//! takes one of the global agent slots like a run. It runs in a conversation of its own, never
//! the project's session; its events (`consult_started`, `consult_attempt`, `consult_output`,
//! `consult_result`) are stored in the project's history like a run's. The protocol itself
//! (prompts, parsing, follow-ups) is [`crate::consult`]; this module runs it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::json;
use serde_json::value::RawValue;

use super::ProjectActor;
use crate::agent::{build_args, not_found, resolve_program};
use crate::backends::announce;
use crate::breaker::{classify, RunEnd, Verdict};
use crate::capability;
use crate::connection::ReplyTo;
use crate::consult::{Exchange, Kind, Next, Outcome, Reply};
use crate::engine::Engine;
use crate::error::{ApiError, Code};
use crate::events::{ConsultAttempt, ConsultOutput, ConsultResult, ConsultStarted};
use crate::executor::attempt::{self, AttemptEnd};
use crate::executor::{environment, RunSpec};
use crate::lines::Line;
use crate::protocol::request::ConsultRequest;

use crate::storage::metadata::AgentKind;

/// How long one attempt may take when neither the request nor the settings say.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// The most consult conversations a project remembers; the oldest idle one is forgotten first.
const MAX_THREADS: usize = 256;

/// A consult's conversation, kept so that `consult_id` can continue it.
#[derive(Default)]
pub struct Consults {
    threads: HashMap<String, Thread>,
    opened: u64,
}

struct Thread {
    to: AgentKind,
    session_id: Option<String>,
    busy: bool,
    /// When it was opened, in consults of this project: the oldest idle one goes first.
    number: u64,
}

/// What a consult in progress reports to its project.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ConsultUpdate {
    Attempt {
        consult_id: Arc<str>,
        attempt: u32,
        after: Option<&'static str>,
        prompt: String,
    },
    Output {
        consult_id: Arc<str>,
        lines: Vec<Line>,
    },
    Done {
        consult_id: Arc<str>,
        to: AgentKind,
        kind: Kind,
        session_id: Option<String>,
        result: Result<Outcome, String>,
    },
}

/// Everything the consult's task needs.
struct Job {
    consult_id: Arc<str>,
    project_id: String,
    to: AgentKind,
    kind: Kind,
    question: String,
    context: Option<String>,
    program: std::path::PathBuf,
    cwd: std::path::PathBuf,
    timeout: Duration,
    session_id: Option<String>,
}

impl ProjectActor {
    pub(super) fn consult(
        &mut self,
        reply: &ReplyTo,
        req: ConsultRequest,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        let to = req.to;
        if self.engine.lifecycle() == crate::engine::Lifecycle::ShuttingDown {
            return Err(ApiError::new(
                Code::ExecutionFailed,
                "the server is shutting down: ask again once it is back",
            ));
        }
        let program = resolve_program(self.agent_bin(to)).ok_or_else(|| not_found(to))?;
        // Built once now, so that a question no command line can carry is refused up front.
        let first = Exchange::new(req.kind, &req.question, req.context.as_deref(), 1);
        build_args(to, &to.agent().read_only(), None, &first.first_prompt())?;
        self.check_backend_of(to)?;
        if !self.meta.path.is_dir() {
            return Err(ApiError::new(
                Code::ExecutionFailed,
                "the project directory no longer exists on the server",
            ));
        }
        let (consult_id, session_id) = self.consults.open(req.consult_id, to)?;
        self.subscribe(reply, Vec::new())?;
        self.emit_event(&ConsultStarted {
            consult_id: &consult_id,
            context: req.context.as_deref(),
            kind: req.kind.as_str(),
            question: &req.question,
            to: to.as_str(),
        });
        log::info!(project = &*self.id, consult = &*consult_id, to = to.as_str(); "consult accepted");
        reply.ok(
            "consult_accepted",
            Some(&self.id),
            &json!({"consult_id": &*consult_id}),
        );
        let job = Job {
            consult_id,
            project_id: self.id.to_string(),
            to,
            kind: req.kind,
            question: req.question,
            context: req.context,
            program,
            cwd: self.meta.path.clone(),
            timeout: req
                .timeout
                .or(self.engine.config.run_timeout)
                .unwrap_or(DEFAULT_ATTEMPT_TIMEOUT),
            session_id,
        };
        actix_rt::spawn(run_consult(self.engine.clone(), ctx.address(), job));
        Ok(())
    }

    /// What a run's agent needs to consult by itself: the daemon's address, the project, and a
    /// capability for this run only (see [`crate::capability`]).
    pub(super) fn lead_env(&self, run_id: &str) -> Vec<(OsString, OsString)> {
        let Some(url) = &self.engine.config.daemon_url else {
            return Vec::new();
        };
        let token = self.engine.capabilities.issue(&self.id, run_id);
        vec![
            (capability::URL_ENV.into(), url.into()),
            (capability::PROJECT_ENV.into(), (*self.id).into()),
            (capability::TOKEN_ENV.into(), token.into()),
        ]
    }

    fn on_consult_output(&mut self, consult_id: &str, lines: Vec<Line>) {
        self.batch(|act| {
            for line in lines {
                let text = String::from_utf8_lossy(&line.bytes);
                let trimmed = text.trim();
                if trimmed.is_empty() {
                    continue;
                }
                let json = (!line.cut && trimmed.starts_with('{'))
                    .then(|| RawValue::from_string(trimmed.to_string()).ok())
                    .flatten();
                act.emit_event(&ConsultOutput {
                    consult_id,
                    raw: json.is_none().then_some(&*text),
                    message: json.as_deref(),
                });
            }
        });
    }
}

impl Consults {
    /// Starts a consult, or continues the conversation `consult_id` names. Returns its id and
    /// the conversation to resume.
    fn open(
        &mut self,
        consult_id: Option<String>,
        to: AgentKind,
    ) -> Result<(Arc<str>, Option<String>), ApiError> {
        let Some(id) = consult_id else {
            let id = uuid::Uuid::new_v4().to_string();
            self.forget_oldest_idle();
            self.opened += 1;
            self.threads.insert(
                id.clone(),
                Thread {
                    to,
                    session_id: None,
                    busy: true,
                    number: self.opened,
                },
            );
            return Ok((Arc::from(id), None));
        };
        let shown = crate::logfmt::sanitize(&id, 128);
        let thread = self.threads.get_mut(&id).ok_or_else(|| {
            ApiError::validation(format!("this project has no consult {shown} to continue"))
        })?;
        if thread.to != to {
            return Err(ApiError::validation(format!(
                "consult {shown} is a conversation with {}, not {}",
                thread.to.as_str(),
                to.as_str()
            )));
        }
        if thread.busy {
            return Err(ApiError::new(
                Code::ProjectBusy,
                format!("consult {shown} is still answering; continue it once it has ended"),
            ));
        }
        thread.busy = true;
        Ok((Arc::from(id), thread.session_id.clone()))
    }

    /// Makes room for one more conversation.
    fn forget_oldest_idle(&mut self) {
        if self.threads.len() < MAX_THREADS {
            return;
        }
        let oldest = self
            .threads
            .iter()
            .filter(|(_, t)| !t.busy)
            .min_by_key(|(_, t)| t.number)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            self.threads.remove(&id);
        }
    }

    fn close(&mut self, consult_id: &str, session_id: Option<String>) {
        if let Some(t) = self.threads.get_mut(consult_id) {
            t.busy = false;
            if session_id.is_some() {
                t.session_id = session_id;
            }
        }
    }
}

impl Handler<ConsultUpdate> for ProjectActor {
    type Result = ();

    fn handle(&mut self, msg: ConsultUpdate, _: &mut Self::Context) {
        match msg {
            ConsultUpdate::Attempt {
                consult_id,
                attempt,
                after,
                prompt,
            } => self.emit_event(&ConsultAttempt {
                after,
                attempt,
                consult_id: &consult_id,
                prompt: &prompt,
            }),
            ConsultUpdate::Output { consult_id, lines } => {
                self.on_consult_output(&consult_id, lines)
            }
            ConsultUpdate::Done {
                consult_id,
                to,
                kind,
                session_id,
                result,
            } => {
                self.consults.close(&consult_id, session_id);
                let event = ConsultResult::new(&consult_id, to, kind, result);
                log::info!(project = &*self.id, consult = &*consult_id, status = event.status.as_str(); "consult finished");
                self.emit_event(&event);
            }
        }
    }
}

/// Runs a consult to its end: a global slot, the breaker's leave, then attempts until the
/// exchange is done.
async fn run_consult(engine: Arc<Engine>, project: Addr<ProjectActor>, job: Job) {
    let mut session_id = job.session_id.clone();
    let result = consult_attempts(&engine, &project, &job, &mut session_id).await;
    project.do_send(ConsultUpdate::Done {
        consult_id: job.consult_id.clone(),
        to: job.to,
        kind: job.kind,
        session_id,
        result,
    });
}

async fn consult_attempts(
    engine: &Arc<Engine>,
    project: &Addr<ProjectActor>,
    job: &Job,
    session_id: &mut Option<String>,
) -> Result<Outcome, String> {
    let _slot = engine
        .run_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| "the server is shutting down".to_string())?;
    let (admitted, change) = engine.breakers.admit(job.to);
    announce(engine, change);
    let admission = admitted.map_err(|e| e.error)?;
    let mut exchange = Exchange::new(
        job.kind,
        &job.question,
        job.context.as_deref(),
        crate::consult::exchange::DEFAULT_ATTEMPTS,
    );
    let mut prompt = exchange.first_prompt();
    let mut after = None;
    // The exchange bounds the attempts: it answers `Done` at the last one.
    let mut number = 0;
    loop {
        number += 1;
        project.do_send(ConsultUpdate::Attempt {
            consult_id: job.consult_id.clone(),
            attempt: number,
            after,
            prompt: prompt.clone(),
        });
        let end = match attempt_once(engine, project, job, session_id.as_deref(), &prompt, number)
            .await
        {
            Ok(end) => end,
            Err(e) => {
                // A trial must not stay taken by a consult that never ran.
                announce(
                    engine,
                    engine.breakers.record(job.to, admission, Verdict::Neutral),
                );
                return Err(e);
            }
        };
        if end.stopped {
            announce(
                engine,
                engine.breakers.record(job.to, admission, Verdict::Neutral),
            );
            return Err("the server shut down before the consultant answered".into());
        }
        if let Some(s) = end.transcript.session_id() {
            *session_id = Some(s.to_string());
        }
        let reply = match (end.timed_out, end.transcript.answer()) {
            (true, _) => Reply::TimedOut,
            (false, Some(text)) if end.transcript.error().is_none() => Reply::Text(text),
            _ => {
                let error = end.transcript.error().unwrap_or("it printed no answer");
                let verdict = classify(&RunEnd {
                    could_not_start: end.could_not_start,
                    error: Some(error),
                    stdout_lines: end.stdout_lines,
                    ..Default::default()
                });
                announce(engine, engine.breakers.record(job.to, admission, verdict));
                return Err(format!(
                    "the {} consultant failed: {}",
                    job.to.as_str(),
                    crate::logfmt::sanitize(error, 500)
                ));
            }
        };
        match exchange.answer(reply) {
            Next::Ask { failure, prompt: p } => {
                after = Some(failure.name());
                prompt = p;
            }
            Next::Done(outcome) => {
                let end = RunEnd {
                    completed: true,
                    ..Default::default()
                };
                announce(
                    engine,
                    engine.breakers.record(job.to, admission, classify(&end)),
                );
                return Ok(outcome);
            }
        }
    }
}

/// Resolves once the daemon has begun to shut down: a consult must not hold shutdown up.
async fn shutting_down(engine: Arc<Engine>) {
    while engine.lifecycle() != crate::engine::Lifecycle::ShuttingDown {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn attempt_once(
    engine: &Arc<Engine>,
    project: &Addr<ProjectActor>,
    job: &Job,
    session_id: Option<&str>,
    prompt: &str,
    number: u32,
) -> Result<AttemptEnd, String> {
    let args =
        build_args(job.to, &job.to.agent().read_only(), session_id, prompt).map_err(|e| e.error)?;
    let run_id = format!("consult-{}-{number}", job.consult_id);
    let spec = RunSpec {
        // The consultant gets the allowed environment, never a capability of its own.
        env: environment::for_run(&run_id, &engine.config.agent_env),
        run_id,
        project_id: job.project_id.clone(),
        program: job.program.clone(),
        args,
        cwd: job.cwd.clone(),
        timeout: Some(job.timeout),
        grace: engine.config.kill_grace,
        // A consultant is never asked for approvals: it is read-only.
        stdin: None,
    };
    let consult_id = job.consult_id.clone();
    Ok(
        attempt::run(spec, job.timeout, shutting_down(engine.clone()), |lines| {
            project.do_send(ConsultUpdate::Output {
                consult_id: consult_id.clone(),
                lines,
            })
        })
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::testing::{claude, codex};

    #[test]
    fn conversations_continue_and_the_oldest_idle_one_is_forgotten_first() {
        let mut c = Consults::default();
        let (first, _) = c.open(None, codex()).unwrap();
        assert_eq!(
            c.open(Some(first.to_string()), codex()).unwrap_err().code,
            Code::ProjectBusy
        );
        c.close(&first, Some("s-1".into()));
        let (again, session) = c.open(Some(first.to_string()), codex()).unwrap();
        assert_eq!((&*again, session.as_deref()), (&*first, Some("s-1")));
        c.close(&first, None);
        assert!(c.open(Some(first.to_string()), claude()).is_err());
        for _ in 1..MAX_THREADS {
            let (id, _) = c.open(None, claude()).unwrap();
            c.close(&id, None);
        }
        assert_eq!(c.threads.len(), MAX_THREADS);
        c.open(None, claude()).unwrap();
        assert_eq!(c.threads.len(), MAX_THREADS);
        assert!(c.open(Some(first.to_string()), codex()).is_err());
    }
}
