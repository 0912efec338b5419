//! Storing and publishing a project's events.

use actix::prelude::*;
use serde::Serialize;

use super::ProjectActor;
use crate::broadcast::Publish;
use crate::error::ApiError;
use crate::protocol::frame::error_frame;
use crate::protocol::{Direction, Frame, FrameBuilder};
use crate::storage::metadata::ProjectState;

impl ProjectActor {
    /// Stores an event in history and then broadcasts it (in that order: a seq a client has seen
    /// is never reused). Returns the seq, or `None` when the event could not be stored — it is
    /// then still broadcast live, without a seq, and subscribers are told storage is failing.
    pub(super) fn emit<D: Serialize>(
        &mut self,
        kind: &str,
        dir: Direction,
        data: &D,
    ) -> Option<u64> {
        let stamp = self.history.stamp(chrono::Utc::now());
        let frame = FrameBuilder::new(kind)
            .project(&self.id)
            .stored(stamp.seq, &stamp.ts, dir)
            .encode(data);
        match self.history.append(&stamp, frame.text.as_bytes()) {
            Ok(()) => {
                crate::metrics::METRICS.history_appends.inc();
                self.shared
                    .last_seq
                    .store(stamp.seq, std::sync::atomic::Ordering::Relaxed);
                if self.storage_failing {
                    self.storage_failing = false;
                    log::info!(project = &*self.id; "history writes work again");
                }
                self.publish(frame);
                Some(stamp.seq)
            }
            Err(e) => {
                crate::metrics::METRICS.history_append_errors.inc();
                if !self.storage_failing {
                    self.storage_failing = true;
                    log::error!(project = &*self.id; "could not append to history: {e}");
                    let err = ApiError::storage("store this project's history");
                    self.publish(error_frame(None, Some(&self.id), &err));
                }
                self.publish(FrameBuilder::new(kind).project(&self.id).encode(data));
                None
            }
        }
    }

    pub(super) fn publish(&self, frame: Frame) {
        if let Some(b) = self.engine.directory.broadcast() {
            b.do_send(Publish(frame));
        }
    }

    /// `project_state`, stored and broadcast.
    pub(super) fn emit_state(&mut self) {
        let data = serde_json::json!({
            "project_id": &*self.id,
            "state": self.meta.state,
            "session_id": self.meta.session_id,
            "queue_len": self.queue.len(),
        });
        self.emit("project_state", Direction::System, &data);
    }

    /// Batch durability: fsync what was written since the last commit, off this thread.
    pub(super) fn group_commit(&mut self, ctx: &mut Context<Self>) {
        if self.sync_in_flight {
            return;
        }
        let Some(file) = self.history.take_sync_handle() else {
            return;
        };
        self.sync_in_flight = true;
        let id = self.id.clone();
        let job = async move {
            let started = std::time::Instant::now();
            let synced = tokio::task::spawn_blocking(move || file.sync_data()).await;
            crate::metrics::METRICS.fsync(started.elapsed());
            match synced {
                Ok(Err(e)) => log::error!(project = &*id; "history fsync failed: {e}"),
                Err(e) => log::error!(project = &*id; "history fsync task failed: {e}"),
                Ok(Ok(())) => {}
            }
        };
        ctx.spawn(
            job.into_actor(self)
                .map(|(), act, _| act.sync_in_flight = false),
        );
    }

    /// A run that was active when the daemon (or this actor) died is closed as failed, so that
    /// clients waiting for it get an answer and the state is true again.
    pub(super) fn recover_interrupted_run(&mut self) {
        let Some(run_id) = self.meta.active_run.clone() else {
            if self.meta.state == ProjectState::Executing {
                let _ = self.update_meta(|m| m.state = ProjectState::Error);
            }
            return;
        };
        log::warn!(project = &*self.id, run = run_id.as_str(); "closing a run interrupted by a crash or restart");
        // Tools that escaped the agent's process group survive even a kill -9 of the daemon;
        // they still carry the run's id, so they can be found and stopped now.
        crate::executor::process::sweep(&run_id, 0);
        let data = serde_json::json!({
            "run_id": run_id,
            "status": "failed",
            "exit_code": null,
            "duration_ms": null,
            "session_id": self.meta.session_id,
            "error": "the run was interrupted: the daemon or the project's actor stopped during it",
        });
        self.emit("run_finished", Direction::System, &data);
        crate::metrics::run_finished(&self.engine, "failed", None);
        let _ = self.update_meta(|m| {
            m.active_run = None;
            m.state = ProjectState::Error;
        });
        self.emit_state();
    }
}
