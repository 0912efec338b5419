//! The project actor: one per project, the only owner of its metadata, state machine, run
//! queue and history log. Every change to a project is a message handled here, one at a time —
//! which is what lets a join replay history and then subscribe without a gap or a lock.

mod events;
mod requests;
mod runs;

pub use requests::{ProjectOp, ProjectRequest};
pub use runs::Shutdown;

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;

use crate::directory::{ProjectEntry, ProjectShared};
use crate::engine::Engine;
use crate::storage::history::{HistoryConfig, HistoryLog};
use crate::storage::metadata::{ProjectMeta, ProjectState};
use crate::storage::project_dir;
use crate::supervisor::{ChildGuard, ChildId, Supervisor};
use runs::{ActiveRun, QueuedRun};

pub struct ProjectActor {
    engine: Arc<Engine>,
    id: Arc<str>,
    meta: ProjectMeta,
    shared: Arc<ProjectShared>,
    history: HistoryLog,
    queue: VecDeque<QueuedRun>,
    active: Option<ActiveRun>,
    /// The active run while it waits for a global run slot.
    pending: Option<QueuedRun>,
    supervisor: Option<Addr<Supervisor>>,
    sync_in_flight: bool,
    /// A background metadata write is running.
    meta_write_in_flight: bool,
    /// The metadata changed since the last write started.
    meta_dirty: bool,
    /// Events emitted inside [`ProjectActor::batch`], waiting to be stored together.
    staged: Option<Vec<(crate::storage::history::Stamp, crate::protocol::Frame)>>,
    /// The last append failed; cleared by the next one that works.
    storage_failing: bool,
    guard: ChildGuard,
}

/// Opens a project from its metadata and starts its actor on the current arbiter, registering it
/// in the directory. Used at start-up, on create, and by the supervisor on restart.
pub fn spawn_project(
    engine: &Arc<Engine>,
    meta: ProjectMeta,
    supervisor: Option<Addr<Supervisor>>,
) -> std::io::Result<Addr<ProjectActor>> {
    let cfg = &engine.config;
    let history = HistoryLog::open(
        project_dir(&cfg.data_dir, &meta.id).join("history"),
        HistoryConfig {
            segment_records: cfg.history_segment_records,
            segment_bytes: cfg.history_segment_bytes,
            retention_bytes: cfg.history_retention_bytes,
            retention_segments: cfg.history_retention_segments,
            durability: cfg.durability,
        },
    )?;
    let id: Arc<str> = Arc::from(meta.id.as_str());
    let id_string = meta.id.clone();
    let shared = match engine.directory.project_shared(&meta.id) {
        Some(s) => {
            *crate::directory::lock_ignoring_poison(&s.meta) = meta.clone();
            s
        }
        None => {
            let s = ProjectShared::new(meta.clone(), history.last_seq());
            engine.directory.insert_project(
                ProjectEntry {
                    path: meta.path.clone(),
                    created_at: meta.created_at.clone(),
                    shared: s.clone(),
                    addr: None,
                    down: None,
                },
                meta.id.clone(),
            );
            s
        }
    };
    shared
        .last_seq
        .store(history.last_seq(), std::sync::atomic::Ordering::Relaxed);
    let mut actor = ProjectActor {
        engine: engine.clone(),
        guard: ChildGuard::new(ChildId::Project(meta.id.clone()), supervisor.clone()),
        id,
        meta,
        shared,
        history,
        queue: VecDeque::new(),
        active: None,
        pending: None,
        supervisor,
        sync_in_flight: false,
        meta_write_in_flight: false,
        meta_dirty: false,
        staged: None,
        storage_failing: false,
    };
    // Before the actor is registered, not in `started`: `/ready` and `project_list` must never
    // show a run that died with the daemon as still executing.
    actor.recover_interrupted_run();
    let addr = actor.start();
    engine
        .directory
        .set_project_addr(&id_string, Some(addr.clone()), None);
    Ok(addr)
}

impl ProjectActor {
    /// Applies a change to the metadata, publishes it to the directory and stores it durably
    /// before returning.
    fn update_meta(&mut self, change: impl FnOnce(&mut ProjectMeta)) -> std::io::Result<()> {
        change(&mut self.meta);
        *crate::directory::lock_ignoring_poison(&self.shared.meta) = self.meta.clone();
        if self.meta_write_in_flight {
            // A background write of an older state may land after this one: write again then.
            self.meta_dirty = true;
        }
        self.meta
            .save(&self.engine.config.data_dir)
            .inspect_err(|e| {
                log::error!(project = &*self.id; "could not store metadata: {e}");
            })
    }

    /// Applies a change to the metadata, publishes it, and stores it off the actor's thread.
    /// Used on the run path: the fsyncs of an atomic write take milliseconds that would
    /// otherwise delay the agent's start and its output. Writes are chained, so the newest
    /// state is always the last one written; shutdown writes it synchronously.
    fn update_meta_soon(&mut self, ctx: &mut Context<Self>, change: impl FnOnce(&mut ProjectMeta)) {
        change(&mut self.meta);
        *crate::directory::lock_ignoring_poison(&self.shared.meta) = self.meta.clone();
        self.meta_dirty = true;
        self.flush_meta(ctx);
    }

    fn flush_meta(&mut self, ctx: &mut Context<Self>) {
        if self.meta_write_in_flight || !self.meta_dirty {
            return;
        }
        self.meta_dirty = false;
        self.meta_write_in_flight = true;
        let meta = self.meta.clone();
        let dir = self.engine.config.data_dir.clone();
        let job = async move { tokio::task::spawn_blocking(move || meta.save(&dir)).await };
        ctx.spawn(job.into_actor(self).map(|res, act, ctx| {
            act.meta_write_in_flight = false;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::error!(project = &*act.id; "could not store metadata: {e}"),
                Err(e) => log::error!(project = &*act.id; "metadata write task failed: {e}"),
            }
            act.flush_meta(ctx);
        }));
    }

    fn view(&self) -> serde_json::Value {
        self.engine.directory.view_of(&self.id, &self.shared)
    }

    fn state(&self) -> ProjectState {
        self.meta.state
    }
}

impl Actor for ProjectActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.engine.config.durability == crate::config::Durability::Batch {
            ctx.run_interval(self.engine.config.history_flush_interval, |act, ctx| {
                act.group_commit(ctx)
            });
        }
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if let Err(e) = self.history.sync() {
            log::error!(project = &*self.id; "could not sync history: {e}");
        }
        if self.meta_dirty || self.meta_write_in_flight {
            let _ = self.update_meta(|_| {});
        }
        Running::Stop
    }
}

impl Drop for ProjectActor {
    fn drop(&mut self) {
        // A project that dies mid-run must not leave its agent running unsupervised.
        if let Some(run) = &self.active {
            if let Some(exec) = &run.executor {
                exec.do_send(crate::executor::StopRun {
                    reason: crate::executor::StopReason::Killed,
                    grace: std::time::Duration::ZERO,
                });
                // `finish` will never run for it: the run is no longer active here (the
                // restarted actor closes it from metadata), and shutdown must not wait for it.
                self.engine
                    .stats
                    .runs_active
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}
