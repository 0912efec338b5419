//! Storing and publishing a project's events.

use actix::prelude::*;
use serde::Serialize;

use super::ProjectActor;
use crate::api::broadcast::Publish;
use crate::error::ApiError;
use crate::events::{self, Event, RunFinished, RunStatus};
use crate::protocol::frame::error_frame;
use crate::protocol::{Direction, Frame, FrameBuilder};
use crate::storage::history::Stamp;
use crate::storage::metadata::ProjectState;

impl ProjectActor {
    /// Stores an event in history and then broadcasts it (in that order: a seq a client has seen
    /// is never reused). An event that cannot be stored is still broadcast live, without a seq,
    /// and subscribers are told storage is failing. Inside [`Self::batch`] the event is only
    /// staged; the batch is stored with one write and published together.
    pub(super) fn emit<D: Serialize>(&mut self, kind: &str, dir: Direction, data: &D) {
        let ahead = self.staged.as_ref().map_or(0, |s| s.len() as u64);
        let stamp = self.history.stamp_ahead(chrono::Utc::now(), ahead);
        let frame = FrameBuilder::new(kind)
            .project(&self.id)
            .stored(stamp.seq, &stamp.ts, dir)
            .encode(data);
        match self.staged.as_mut() {
            Some(staged) => staged.push((stamp, frame)),
            None => self.store_and_publish(vec![(stamp, frame)]),
        }
    }

    /// Stores and publishes a typed event.
    pub(super) fn emit_event<E: Event>(&mut self, event: &E) {
        self.emit(E::KIND, E::DIRECTION, event);
    }

    /// `run_finished`, stored and broadcast, and counted; `timed` is the duration for the
    /// histogram, `None` for a run that never ran.
    pub(super) fn emit_run_finished(&mut self, event: RunFinished<'_>, timed: Option<u64>) {
        self.emit_event(&event);
        self.engine.run_finished(event.status.as_str(), timed);
    }

    /// Runs `f` with every event it emits stored in one history write and published as one
    /// batch: the per-event costs (a write, a message to the broadcast actor and one to each
    /// subscriber) are paid once per burst of agent output instead of once per line.
    pub(super) fn batch(&mut self, f: impl FnOnce(&mut Self)) {
        self.staged = Some(Vec::new());
        f(self);
        if let Some(staged) = self.staged.take() {
            self.store_and_publish(staged);
        }
    }

    fn store_and_publish(&mut self, events: Vec<(Stamp, Frame)>) {
        if events.is_empty() {
            return;
        }
        let records: Vec<(&Stamp, &[u8])> = events
            .iter()
            .map(|(s, f)| (s, f.text.as_bytes().as_ref()))
            .collect();
        let (stored, error) = self.history.append_batch(&records);
        drop(records);
        let m = &crate::metrics::METRICS;
        m.history_appends.inc_by(stored as u64);
        let mut frames: Vec<Frame> = events.into_iter().map(|(_, f)| f).collect();
        if stored > 0 {
            self.shared.last_seq.store(
                frames[stored - 1].seq.unwrap_or(0),
                std::sync::atomic::Ordering::Relaxed,
            );
            if self.storage_failing {
                self.storage_failing = false;
                log::info!(project = &*self.id; "history writes work again");
            }
        }
        if let Some(e) = error {
            m.history_append_errors
                .inc_by((frames.len() - stored) as u64);
            for f in &mut frames[stored..] {
                *f = f.without_seq();
            }
            if !self.storage_failing {
                self.storage_failing = true;
                log::error!(project = &*self.id; "could not append to history: {e}");
                let err = ApiError::storage("store this project's history");
                frames.insert(stored, error_frame(None, Some(&self.id), &err));
            }
        }
        self.publish_all(frames);
    }

    fn publish_all(&self, frames: Vec<Frame>) {
        if let Some(b) = self.engine.directory.broadcast() {
            b.do_send(Publish(frames.into()));
        }
    }

    /// `project_state`, stored and broadcast.
    pub(super) fn emit_state(&mut self) {
        let id = self.id.clone();
        let session_id = self.meta.session_id.clone();
        self.emit_event(&events::ProjectState {
            project_id: &id,
            queue_len: self.queue.len(),
            session_id: session_id.as_deref(),
            state: self.meta.state,
        });
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

    /// Every run that was accepted and never finished when the daemon (or this actor) died is
    /// closed now (see [`super::recovery`]), so that clients waiting for it get an answer and
    /// the state is true again: a run that had started as `failed` (the project goes to
    /// `ERROR`), one that was queued or waiting for a slot as `interrupted`.
    pub(super) fn recover_interrupted_run(&mut self) {
        // The queue did not survive: nothing waits in it any more.
        self.shared
            .queue_len
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let mut runs = super::recovery::open_runs(&self.history.view()).unwrap_or_else(|e| {
            log::error!(project = &*self.id; "could not read history to close interrupted runs: {e}");
            Vec::new()
        });
        let active = self.meta.active_run.clone();
        if let Some(a) = &active {
            if !runs.iter().any(|r| &r.run_id == a) {
                runs.insert(
                    0,
                    super::recovery::OpenRun {
                        run_id: a.clone(),
                        started: true,
                    },
                );
            }
        }
        let mut any_started = false;
        for run in &runs {
            let started = run.started || active.as_ref() == Some(&run.run_id);
            any_started |= started;
            self.close_interrupted(&run.run_id, started);
        }
        if any_started || self.meta.state == ProjectState::Executing {
            let _ = self.update_meta(|m| {
                m.active_run = None;
                m.state = ProjectState::Error;
            });
            self.emit_state();
        }
    }

    fn close_interrupted(&mut self, run_id: &str, started: bool) {
        log::warn!(project = &*self.id, run = run_id; "closing a run interrupted by a crash or restart");
        let (status, error) = if started {
            // Tools that escaped the agent's process group survive even a kill -9 of the
            // daemon; they still carry the run's id, so they can be found and stopped now.
            crate::executor::process::sweep(run_id, 0);
            (
                RunStatus::Failed,
                "the run was interrupted: the daemon or the project's actor stopped during it",
            )
        } else {
            (
                RunStatus::Interrupted,
                "the run was interrupted before it started: the daemon or the project's actor stopped while it waited; send the prompt again to run it",
            )
        };
        let session_id = self.meta.session_id.clone();
        self.emit_run_finished(
            RunFinished {
                cost_usd: None,
                duration_ms: None,
                error: Some(error.into()),
                exit_code: None,
                run_id,
                session_id: session_id.as_deref(),
                status,
                changes: None,
            },
            None,
        );
    }
}
