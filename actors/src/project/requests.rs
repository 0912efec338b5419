//! Client requests addressed to a project.

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
use crate::protocol::request::HistoryQuery;
use crate::protocol::{Frame, FrameBuilder};
use crate::storage::metadata::ProjectState;

/// The most events replayed on one join; a client further behind gets `recovered: false` and
/// pages the rest with `get_messages`.
pub const MAX_REPLAY: usize = 10_000;

impl ProjectActor {
    /// Answers a request whose handler failed: an `error` naming the project.
    fn refused(&self, reply: &ReplyTo, result: Result<(), ApiError>) {
        if let Err(e) = result {
            reply.err(Some(&self.id), &e);
        }
    }
}

impl Handler<Join> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Join, _: &mut Context<Self>) {
        let result = self.join(&m.reply, m.since_seq);
        self.refused(&m.reply, result);
    }
}

impl Handler<Leave> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Leave, _: &mut Context<Self>) {
        self.leave(&m.reply);
    }
}

impl Handler<Execute> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Execute, ctx: &mut Context<Self>) {
        let result = self.execute(&m.reply, m.prompt, m.options, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<Consult> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Consult, ctx: &mut Context<Self>) {
        let result = self.consult(&m.reply, m.consult, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<NewSession> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: NewSession, _: &mut Context<Self>) {
        let result = self.new_session(&m.reply);
        self.refused(&m.reply, result);
    }
}

impl Handler<Kill> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: Kill, ctx: &mut Context<Self>) {
        let result = self.kill(&m.reply, m.clear_queue, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<GetMessages> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: GetMessages, _: &mut Context<Self>) {
        let result = self.get_messages(&m.reply, &m.query);
        self.refused(&m.reply, result);
    }
}

impl Handler<RunDiff> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: RunDiff, ctx: &mut Context<Self>) {
        let result = self.run_diff(&m.reply, m.run_id, m.path, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<PermissionRespond> for ProjectActor {
    type Result = ();

    fn handle(&mut self, m: PermissionRespond, ctx: &mut Context<Self>) {
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
        let result = self.delete(&m.reply, ctx);
        self.refused(&m.reply, result);
    }
}

impl Handler<Panic> for ProjectActor {
    type Result = ();

    /// `fault_inject` on the project: panics inside this handler, after replying.
    fn handle(&mut self, m: Panic, _: &mut Context<Self>) {
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
        let result = self.fault_executor(&m.reply);
        self.refused(&m.reply, result);
    }
}

/// Drops the oldest replay records until the rest fit in `budget` bytes; returns whether all
/// were kept. The replay enters the connection's outbound queue at once, and that queue is
/// bounded (`max_backlog_bytes`): a replay as big as the bound would close the client with 4008
/// before it could read anything, and again on every reconnect. Keeping half the bound leaves
/// room for live events; what is left out is reported as `recovered: false` and the client pages
/// it with `get_messages`, as after retention.
fn keep_newest_within(records: &mut Vec<(u64, String)>, budget: usize) -> bool {
    let mut bytes = 0usize;
    let keep = records
        .iter()
        .rev()
        .take_while(|(_, line)| {
            bytes = bytes.saturating_add(line.len());
            bytes <= budget
        })
        .count();
    let cut = records.len() - keep;
    records.drain(..cut);
    cut == 0
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

    /// Subscribes the requester, replaying what it missed first. `since_seq: None` subscribes
    /// from now on.
    fn join(&mut self, reply: &ReplyTo, since_seq: Option<u64>) -> Result<(), ApiError> {
        let last = self.history.last_seq();
        let (replay, recovered) = match since_seq {
            None => (Vec::new(), true),
            Some(n) if n > last => (Vec::new(), false),
            Some(n) => {
                let mut r = self.history.replay_after(n, MAX_REPLAY).map_err(|e| {
                    log::error!(project = &*self.id; "could not read history for replay: {e}");
                    ApiError::storage("read the project's history")
                })?;
                let budget = self.engine.config.max_backlog_bytes / 2;
                let recovered = keep_newest_within(&mut r.records, budget) && r.recovered;
                crate::metrics::METRICS.replay(recovered);
                (r.records, recovered)
            }
        };
        let joined = reply.frame(
            "project_joined",
            Some(&self.id),
            &json!({"project": self.view(), "recovered": recovered, "replayed": replay.len()}),
        );
        let mut lead = Vec::with_capacity(replay.len() + 1);
        lead.push(Deliver::marked(
            joined,
            Mark::Joined {
                project: self.id.clone(),
                since: since_seq.unwrap_or(last).min(last),
            },
        ));
        lead.extend(replay.into_iter().map(|(seq, line)| {
            Deliver::plain(Frame {
                text: line.into(),
                project: Some(self.id.clone()),
                seq: Some(seq),
            })
        }));
        self.subscribe(reply, lead)
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

    fn get_messages(&mut self, reply: &ReplyTo, q: &HistoryQuery) -> Result<(), ApiError> {
        let page = self.history.query(q).map_err(|e| {
            log::error!(project = &*self.id; "could not read history: {e}");
            ApiError::storage("read the project's history")
        })?;
        /// The page as stored: records go out byte for byte, never re-parsed (a stored agent
        /// line may hold numbers that a `serde_json::Value` cannot represent).
        #[derive(serde::Serialize)]
        struct Messages<'a> {
            messages: &'a [Box<serde_json::value::RawValue>],
            has_more: bool,
            next_seq: u64,
        }
        reply.ok(
            "messages",
            Some(&self.id),
            &Messages {
                messages: &page.records,
                has_more: page.has_more,
                next_seq: page.next_seq,
            },
        );
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

#[cfg(test)]
mod tests {
    use super::keep_newest_within;

    fn recs(lens: &[usize]) -> Vec<(u64, String)> {
        lens.iter()
            .enumerate()
            .map(|(i, n)| (i as u64 + 1, "x".repeat(*n)))
            .collect()
    }

    #[test]
    fn a_replay_within_budget_is_kept_whole() {
        let mut r = recs(&[10, 10, 10]);
        assert!(keep_newest_within(&mut r, 30));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn a_replay_over_budget_keeps_the_newest() {
        let mut r = recs(&[10, 10, 10, 10]);
        assert!(!keep_newest_within(&mut r, 25));
        assert_eq!(r.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4]);
        let mut r = recs(&[10, 50]);
        assert!(!keep_newest_within(&mut r, 25));
        assert!(r.is_empty());
    }
}
