//! Client requests addressed to a project.

use std::collections::VecDeque;

use actix::prelude::*;
use serde_json::json;

use super::ProjectActor;
use crate::api::broadcast::{ProjectGone, Subscribe, Unsubscribe};
use crate::api::connection::{Deliver, Mark, ReplyTo};
use crate::api::project::{ProjectOp, ProjectRequest};
use crate::api::supervisor::{ChildId, Forget};
use crate::error::{ApiError, Code};
use crate::protocol::FrameBuilder;
use crate::storage::metadata::ProjectState;

impl Handler<ProjectRequest> for ProjectActor {
    type Result = ();

    fn handle(&mut self, msg: ProjectRequest, ctx: &mut Self::Context) {
        if let Some(held) = &mut self.held {
            held.push_back(msg);
            return;
        }
        let ProjectRequest { reply, op } = msg;
        let result = match op {
            ProjectOp::Join { since_seq } => self.join(reply.clone(), since_seq, ctx),
            ProjectOp::Leave => self.leave(&reply),
            ProjectOp::Execute { prompt, options } => self.execute(&reply, prompt, options, ctx),
            ProjectOp::Consult(c) => self.consult(&reply, c, ctx),
            ProjectOp::NewSession => self.new_session(&reply),
            ProjectOp::Kill { clear_queue } => self.kill(&reply, clear_queue, ctx),
            ProjectOp::GetMessages(q) => self.get_messages(reply.clone(), q, ctx),
            ProjectOp::RunDiff { run_id, path } => self.run_diff(&reply, run_id, path, ctx),
            ProjectOp::PermissionRespond {
                request_id,
                allow,
                message,
                remember,
            } => {
                let answer = super::Answer {
                    decision: if allow {
                        super::Decision::Allow
                    } else {
                        super::Decision::Deny
                    },
                    by: format!("client:{}", reply.conn),
                    message,
                    remember,
                };
                self.permission_respond(&reply, &request_id, answer, ctx)
            }
            ProjectOp::Delete => self.delete(&reply, ctx),
            ProjectOp::Panic => self.fault(&reply),
            ProjectOp::PanicExecutor => self.fault_executor(&reply),
        };
        if let Err(e) = result {
            reply.err(Some(&self.id), &e);
        }
    }
}

impl ProjectActor {
    /// Holds the requests that arrive from now on until [`Self::release_requests`] (while a
    /// replay is read off the actor's thread).
    pub(super) fn hold_requests(&mut self) {
        self.held.get_or_insert_with(VecDeque::new);
    }

    /// Handles the held requests in the order they came; a `project_join` among them that
    /// replays holds the rest again.
    pub(super) fn release_requests(&mut self, ctx: &mut Context<Self>) {
        for msg in self.held.take().into_iter().flatten() {
            self.handle(msg, ctx);
        }
    }

    /// `fault_inject` on the project: panics inside this handler, after replying.
    fn fault(&mut self, reply: &ReplyTo) -> Result<(), ApiError> {
        reply.ok(
            "fault_injected",
            Some(&self.id),
            &json!({"actor": "project"}),
        );
        panic!("fault injected into project actor {}", self.id);
    }

    /// `fault_inject` on the project's executor: makes the running executor panic.
    fn fault_executor(&mut self, reply: &ReplyTo) -> Result<(), ApiError> {
        let exec = self
            .active
            .as_ref()
            .and_then(|r| r.executor.clone())
            .ok_or_else(|| {
                ApiError::new(
                    Code::NoActiveRun,
                    "the project has no running executor to fault",
                )
            })?;
        exec.do_send(crate::api::executor::Panic);
        reply.ok(
            "fault_injected",
            Some(&self.id),
            &json!({"actor": "executor"}),
        );
        Ok(())
    }

    pub(super) fn subscribe(&self, reply: &ReplyTo, lead: Vec<Deliver>) -> Result<(), ApiError> {
        let b = self.engine.directory.broadcast().ok_or_else(|| {
            ApiError::internal("the broadcast actor is restarting; try again shortly")
        })?;
        b.do_send(Subscribe {
            project: self.id.clone(),
            conn: reply.conn,
            recipient: reply.recipient.clone(),
            lead,
        });
        Ok(())
    }

    fn leave(&mut self, reply: &ReplyTo) -> Result<(), ApiError> {
        let left = Deliver::marked(
            reply.frame(
                "project_left",
                Some(&self.id),
                &json!({"project_id": &*self.id}),
            ),
            Mark::Left(self.id.clone()),
        );
        match self.engine.directory.broadcast() {
            Some(b) => b.do_send(Unsubscribe {
                project: self.id.clone(),
                conn: reply.conn,
                reply: Some((reply.recipient.clone(), left)),
            }),
            None => reply.recipient.do_send(left),
        }
        Ok(())
    }

    fn new_session(&mut self, reply: &ReplyTo) -> Result<(), ApiError> {
        if self.active.is_some() {
            return Err(ApiError::new(
                Code::ProjectBusy,
                "the project is executing: stop the run (agent_kill) before starting a new session",
            ));
        }
        let old = self.meta.session_id.clone();
        self.update_meta(|m| m.session_id = None)
            .map_err(|_| ApiError::storage("reset the session"))?;
        let at = crate::time::now_rfc3339();
        log::info!(project = &*self.id, old_session = old.as_deref().unwrap_or("none"), at = at.as_str(); "session reset");
        let id = self.id.clone();
        let event = crate::events::SessionReset {
            old_session_id: old.as_deref(),
            project_id: &id,
            reset_at: &at,
        };
        self.emit_event(&event);
        reply.ok("session_reset", Some(&self.id), &event);
        Ok(())
    }

    fn delete(&mut self, reply: &ReplyTo, ctx: &mut Context<Self>) -> Result<(), ApiError> {
        if self.active.is_some()
            || !self.queue.is_empty()
            || self.state() == ProjectState::Executing
        {
            return Err(ApiError::new(
                Code::ProjectBusy,
                format!(
                    "project {} is executing: stop the run (agent_kill) before deleting it",
                    self.id
                ),
            ));
        }
        let data_dir = self.engine.config.data_dir.clone();
        if let Err(e) = crate::storage::remove_project_dir(&data_dir, &self.id) {
            log::error!(project = &*self.id; "could not delete the project's data: {e}");
            return Err(ApiError::storage("delete the project"));
        }
        log::info!(project = &*self.id; "project deleted");
        self.engine.directory.remove_project(&self.id);
        if let Some(s) = &self.supervisor {
            s.do_send(Forget(ChildId::Project(self.id.to_string())));
        }
        let notice = FrameBuilder::new("project_deleted")
            .project(&self.id)
            .encode(&json!({"project_id": &*self.id, "reason": "deleted by a client"}));
        if let Some(b) = self.engine.directory.broadcast() {
            b.do_send(ProjectGone {
                project: self.id.clone(),
                notice,
            });
        }
        reply.ok(
            "project_deleted",
            Some(&self.id),
            &json!({"project_id": &*self.id}),
        );
        self.guard.stop_expected();
        ctx.stop();
        Ok(())
    }
}
