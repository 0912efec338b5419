//! Client requests addressed to a project.

use std::collections::VecDeque;

use actix::prelude::*;
use serde_json::json;

use super::ProjectActor;
use crate::api::broadcast::{ProjectGone, Subscribe, Unsubscribe};
use crate::api::connection::{Deliver, Mark, ReplyTo};
use crate::api::project::{
    Consult, Delete, Execute, GetMessages, Join, Kill, Leave, NewSession, Panic, PanicExecutor,
    PermissionRespond, RunDiff,
};
use crate::api::supervisor::{ChildId, Forget};
use crate::error::{ApiError, Code};
use crate::protocol::FrameBuilder;
use crate::storage::metadata::ProjectState;

/// A request that came while a replay was being read, to be handled once it is done.
pub(super) type HeldRequest = Box<dyn FnOnce(&mut ProjectActor, &mut Context<ProjectActor>)>;

impl ProjectActor {
    /// Answers a request whose handler failed: an `error` naming the project.
    fn refused(&self, reply: &ReplyTo, result: Result<(), ApiError>) {
        if let Err(e) = result {
            reply.err(Some(&self.id), &e);
        }
    }

    /// Keeps `m` to be handled after the replay being read, when requests are held; gives it
    /// back to be handled now otherwise. Every request handler starts here, so requests are
    /// handled in the order they came.
    fn unless_held<M>(&mut self, m: M) -> Option<M>
    where
        M: Message<Result = ()> + 'static,
        Self: Handler<M, Result = ()>,
    {
        match &mut self.held {
            Some(queue) => {
                queue.push_back(Box::new(move |act, ctx| act.handle(m, ctx)));
                None
            }
            None => Some(m),
        }
    }

    /// Holds the requests that arrive from now on until [`Self::release_requests`] (while a
    /// replay is read off the actor's thread).
    pub(super) fn hold_requests(&mut self) {
        self.held.get_or_insert_with(VecDeque::new);
    }

    /// Handles the held requests in the order they came; a `project_join` among them that
    /// replays holds the rest again.
    pub(super) fn release_requests(&mut self, ctx: &mut Context<Self>) {
        for request in self.held.take().into_iter().flatten() {
            request(self, ctx);
        }
    }
}

impl Handler<Join> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Join, ctx: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        let result = self.join(m.reply.clone(), m.since_seq, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<Leave> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Leave, _: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        self.leave(&m.reply);
    }
}

impl Handler<Execute> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Execute, ctx: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        let result = self.execute(&m.reply, m.prompt, m.options, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<Consult> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Consult, ctx: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        let result = self.consult(&m.reply, m.consult, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<NewSession> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: NewSession, _: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        let result = self.new_session(&m.reply);
        self.refused(&m.reply, result);
    }
}

impl Handler<Kill> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Kill, ctx: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        let result = self.kill(&m.reply, m.clear_queue, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<GetMessages> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: GetMessages, ctx: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        let result = self.get_messages(m.reply.clone(), m.query, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<RunDiff> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: RunDiff, ctx: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        let result = self.run_diff(&m.reply, m.run_id, m.path, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<PermissionRespond> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: PermissionRespond, ctx: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        let answer = super::Answer {
            decision: if m.allow {
                super::Decision::Allow
            } else {
                super::Decision::Deny
            },
            by: format!("client:{}", m.reply.conn),
            message: m.message,
            remember: m.remember,
        };
        let result = self.permission_respond(&m.reply, &m.request_id, answer, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<Delete> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Delete, ctx: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        let result = self.delete(&m.reply, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<Panic> for ProjectActor {
    type Result = ();

    /// `fault_inject` on the project: panics inside this handler, after replying.
    fn handle(&mut self, m: Panic, _: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        m.reply.ok(
            "fault_injected",
            Some(&self.id),
            &json!({"actor": "project"}),
        );
        panic!("fault injected into project actor {}", self.id);
    }
}

impl Handler<PanicExecutor> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: PanicExecutor, _: &mut Context<Self>) {
        let Some(m) = self.unless_held(m) else {
            return;
        };
        let result = self.fault_executor(&m.reply);
        self.refused(&m.reply, result);
    }
}

impl ProjectActor {
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

    fn leave(&mut self, reply: &ReplyTo) {
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
