//! The project actor: one per project, the only owner of its metadata, state machine, run
//! queue and history log. Every change to a project is a message handled here, one at a time —
//! which is what lets a join replay history and then subscribe without a gap or a lock.

mod approvals;
mod backend;
mod changes;
mod consult;
mod events;
mod reads;
mod recovery;
mod requests;
mod runs;

pub use crate::api::project::{
    Consult, Delete, Execute, GetMessages, Join, Kill, Leave, NewSession, Panic, PanicExecutor,
    PermissionRespond, RunDiff, Shutdown,
};
pub use approvals::{Answer, Decision};

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;

use crate::api::project::ProjectHandle;
use crate::api::supervisor::{ChildGuard, ChildId, SupervisorHandle};
use crate::directory::{ProjectEntry, ProjectShared};
use crate::engine::Engine;
use crate::storage::history::{HistoryConfig, HistoryLog};
use crate::storage::metadata::{MetaWriter, ProjectMeta, ProjectState};
use crate::storage::project_dir;
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
    supervisor: Option<SupervisorHandle>,
    sync_in_flight: bool,
    /// Serialises metadata writes so the newest state wins (see [`MetaWriter`]).
    meta_writer: Arc<MetaWriter>,
    /// The number of the current metadata state.
    meta_version: u64,
    /// Events emitted inside [`ProjectActor::batch`], waiting to be stored together.
    staged: Option<Vec<(crate::storage::history::Stamp, crate::protocol::Frame)>>,
    /// The last append failed; cleared by the next one that works.
    storage_failing: bool,
    /// Consult conversations, so that a `consult_id` can continue one.
    consults: consult::Consults,
    /// Snapshots of recent runs, for `run_diff`.
    changes: changes::ChangeLog,
    /// Permission requests of the runs that ask for approvals.
    approvals: approvals::Approvals,
    /// Requests that came while a replay was being read, handled once it is done.
    held: Option<VecDeque<requests::HeldRequest>>,
    guard: ChildGuard,
}

/// Opens a project from its metadata and starts its actor on the current arbiter, registering it
/// in the directory. Used at start-up, on create, and by the supervisor on restart.
pub fn spawn_project(
    engine: &Arc<Engine>,
    meta: ProjectMeta,
    supervisor: Option<SupervisorHandle>,
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
            *crate::sync::lock(&s.meta) = meta.clone();
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
    let meta_writer = shared.meta_writer.clone();
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
        meta_writer,
        meta_version: 0,
        staged: None,
        storage_failing: false,
        consults: consult::Consults::default(),
        changes: changes::ChangeLog::default(),
        approvals: approvals::Approvals::default(),
        held: None,
    };
    // Before the actor is registered, not in `started`: `/ready` and `project_list` must never
    // show a run that died with the daemon as still executing.
    actor.recover_interrupted_run();
    let addr = actor.start();
    engine
        .directory
        .set_project_addr(&id_string, Some(ProjectHandle::of(&addr)), None);
    Ok(addr)
}

impl ProjectActor {
    /// Applies a change to the metadata, publishes it to the directory and stores it durably
    /// before returning.
    /// The change is applied in memory only once it is on disk: when the write fails, the
    /// project keeps the state that is stored.
    fn update_meta(&mut self, change: impl FnOnce(&mut ProjectMeta)) -> std::io::Result<()> {
        let mut next = self.meta.clone();
        change(&mut next);
        let version = self.meta_writer.next_version();
        self.meta_writer
            .write(version, &next, &self.engine.config.data_dir)
            .inspect_err(|e| {
                log::error!(project = &*self.id; "could not store metadata: {e}");
            })?;
        self.set_meta(next, version);
        Ok(())
    }

    /// Applies a change to the metadata, publishes it, and stores it off the actor's thread.
    /// Used on the run path: the fsyncs of an atomic write take milliseconds that would
    /// otherwise delay the agent's start and its output. The writer keeps the newest state on
    /// disk whatever order the writes finish in; shutdown writes it synchronously.
    fn update_meta_soon(&mut self, ctx: &mut Context<Self>, change: impl FnOnce(&mut ProjectMeta)) {
        let version = self.change_meta(change);
        let (meta, writer) = (self.meta.clone(), self.meta_writer.clone());
        let dir = self.engine.config.data_dir.clone();
        let job = async move {
            tokio::task::spawn_blocking(move || writer.write(version, &meta, &dir)).await
        };
        ctx.spawn(job.into_actor(self).map(|res, act, _| match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!(project = &*act.id; "could not store metadata: {e}"),
            Err(e) => log::error!(project = &*act.id; "metadata write task failed: {e}"),
        }));
    }

    /// Writes the current state now unless it is already on disk.
    fn flush_meta(&mut self) {
        if self.meta_writer.is_behind(self.meta_version) {
            let _ = self.update_meta(|_| {});
        }
    }

    /// Applies a change in memory and in the directory; returns the new state's version.
    fn change_meta(&mut self, change: impl FnOnce(&mut ProjectMeta)) -> u64 {
        let mut next = self.meta.clone();
        change(&mut next);
        let version = self.meta_writer.next_version();
        self.set_meta(next, version);
        version
    }

    /// Makes `meta` (state number `version`) the project's, here and in the directory.
    fn set_meta(&mut self, meta: ProjectMeta, version: u64) {
        *crate::sync::lock(&self.shared.meta) = meta.clone();
        self.meta = meta;
        self.meta_version = version;
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
        // The newest state goes to disk now, if a background write has not put it there yet.
        self.flush_meta();
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
