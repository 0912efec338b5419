//! The supervisor: owns the actor tree, restarts crashed children with backoff, and reports.
//!
//! ```text
//! Supervisor
//! ├── RegistryActor    project create/delete, one at a time
//! ├── BroadcastActor   subscriptions and fan-out
//! ├── HealthActor      background sampling
//! └── ProjectActor ×N  (each may run one ExecutorActor at a time)
//! ```
//!
//! Each child is rebuilt from durable state: a project from its `metadata.json` and history, the
//! core actors from nothing (they keep no state that is not also elsewhere). A restart re-points
//! peers by replacing the address in the [`Directory`](crate::directory::Directory). Past the
//! restart limit a project goes `errored` and stays down; a core actor's crash loop ends the
//! process with [`EXIT_CRASH_LOOP`] so that PM2 or systemd restart the whole daemon.

mod backoff;

pub use crate::api::supervisor::{
    install_panic_hook, ActorStatus, Adopt, ChildExited, ChildGuard, ChildId, Forget, ResetActor,
    SupervisorHandle,
};
pub use backoff::{Decision, RestartTracker};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::api::broadcast::BroadcastHandle;
use crate::api::connection::ConnectionSignal;
use crate::api::health::HealthHandle;
use crate::api::registry::RegistryHandle;
use crate::broadcast::BroadcastActor;
use crate::engine::{Engine, Lifecycle};
use crate::health::HealthActor;
use crate::project::spawn_project;
use crate::registry::RegistryActor;
use crate::storage::metadata::{self, ProjectMeta};

/// The exit code when a core actor keeps crashing: distinct, so operators can tell it apart.
pub const EXIT_CRASH_LOOP: i32 = 70;

/// Brings a child back after its backoff delay.
#[derive(Message)]
#[rtype(result = "()")]
struct Restart(ChildId);

#[derive(PartialEq, Clone, Copy)]
enum Status {
    Running,
    Restarting,
    Errored,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Errored => "errored",
        }
    }
}

struct Record {
    tracker: RestartTracker,
    status: Status,
}

pub struct Supervisor {
    engine: Arc<Engine>,
    children: HashMap<ChildId, Record>,
}

impl Supervisor {
    /// Starts the supervisor on the current arbiter; it starts the tree and loads every project.
    pub fn boot(engine: Arc<Engine>) -> Addr<Supervisor> {
        Supervisor {
            engine,
            children: HashMap::new(),
        }
        .start()
    }

    fn record(&mut self, child: &ChildId) -> &mut Record {
        self.children
            .entry(child.clone())
            .or_insert_with(|| Record {
                tracker: RestartTracker::new(Instant::now()),
                status: Status::Running,
            })
    }

    fn report(&mut self, child: &ChildId) {
        let r = self.record(child);
        let status = ActorStatus {
            name: child.name(),
            kind: child.kind(),
            status: r.status.as_str(),
            restarts: r.tracker.restarts,
            backoff_ms: r.tracker.backoff.as_millis() as u64,
        };
        self.engine.directory.set_actor_status(status);
    }

    /// Starts (or restarts) a child. Returns an error sentence when it cannot be rebuilt.
    fn start_child(&mut self, child: &ChildId, ctx: &mut Context<Self>) -> Result<(), String> {
        let me = Some(SupervisorHandle::of(&ctx.address()));
        let engine = self.engine.clone();
        match child {
            ChildId::Registry => {
                let a = RegistryActor::new(engine.clone(), me).start();
                engine.directory.set_registry(Some(RegistryHandle::of(&a)));
            }
            ChildId::Broadcast => {
                engine.directory.clear_subscriber_counts();
                let a = BroadcastActor::new(engine.clone(), me).start();
                engine
                    .directory
                    .set_broadcast(Some(BroadcastHandle::of(&a)));
                // Subscriptions died with the old actor: every connection re-joins its projects
                // from the last seq it saw, and replay fills the gap.
                engine
                    .directory
                    .signal_connections(|| ConnectionSignal::Rejoin);
            }
            ChildId::Health => {
                let mut health = HealthActor::new(engine.clone(), me);
                // The first sample is taken now, so /health has its checks from the moment
                // the daemon reports ready.
                health.sample();
                let a = health.start();
                engine.directory.set_health(Some(HealthHandle::of(&a)));
            }
            ChildId::Project(id) => {
                let meta = ProjectMeta::load(&engine.config.data_dir, id)
                    .map_err(|e| format!("its metadata cannot be loaded: {e}"))?;
                spawn_project(&engine, meta, me)
                    .map_err(|e| format!("its history cannot be opened: {e}"))?;
            }
            ChildId::Executor(_) | ChildId::Connection => {}
        }
        let r = self.record(child);
        r.status = Status::Running;
        r.tracker.started(Instant::now());
        self.report(child);
        Ok(())
    }

    fn give_up(&mut self, child: &ChildId, why: &str) {
        log::error!(
            actor = child.name().as_str();
            "{} actor errored, staying down: {why}",
            child.kind()
        );
        self.record(child).status = Status::Errored;
        self.report(child);
        if let ChildId::Project(id) = child {
            self.engine.directory.set_project_addr(
                id,
                None,
                // `why` may hold OS error text: it goes to the log above, not to clients.
                Some(format!(
                    "project {id} is unavailable: its actor crashed too often and was stopped; an operator can bring it back with actor_reset, or by restarting the daemon"
                )),
            );
        }
        if child.is_core() {
            log::error!(
                "core actor {} is in a crash loop; exiting with code {EXIT_CRASH_LOOP} so the process manager restarts the daemon",
                child.kind()
            );
            crate::executor::process::kill_all_runs();
            crate::executor::cgroup::release();
            std::process::exit(EXIT_CRASH_LOOP);
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for core in [ChildId::Broadcast, ChildId::Health, ChildId::Registry] {
            if let Err(e) = self.start_child(&core, ctx) {
                log::error!("could not start the {} actor: {e}", core.kind());
            }
        }
        match metadata::load_all(&self.engine.config.data_dir) {
            Ok(metas) => {
                let n = metas.len();
                for meta in metas {
                    let child = ChildId::Project(meta.id.clone());
                    match spawn_project(
                        &self.engine,
                        meta,
                        Some(SupervisorHandle::of(&ctx.address())),
                    ) {
                        Ok(_) => {
                            self.record(&child);
                            self.report(&child);
                        }
                        Err(e) => log::error!(
                            project = child.name().as_str();
                            "skipping project: its history cannot be opened: {e}"
                        ),
                    }
                }
                log::info!("loaded {n} project(s); ready");
            }
            Err(e) => log::error!("could not read the projects directory: {e}"),
        }
        self.engine.set_lifecycle(Lifecycle::Ready);
    }
}

impl Handler<ChildExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildExited, ctx: &mut Self::Context) {
        let child = msg.child;
        let Some(reason) = msg.crashed else {
            return;
        };
        if self.engine.lifecycle() == Lifecycle::ShuttingDown {
            return;
        }
        if matches!(self.children.get(&child), Some(r) if r.status == Status::Errored) {
            return;
        }
        if matches!(child, ChildId::Executor(_) | ChildId::Connection) {
            // Nothing to rebuild (the run ends as failed, the client reconnects): count it.
            let r = self.record(&child);
            r.tracker.restarts += 1;
            crate::metrics::METRICS.restart(child.kind());
            log::warn!(actor = child.name().as_str(), restarts = r.tracker.restarts; "{} actor crashed ({reason})", child.kind());
            self.report(&child);
            return;
        }
        let policy = self.engine.config.backoff.clone();
        let decision = self.record(&child).tracker.crashed(Instant::now(), &policy);
        match decision {
            Decision::GiveUp => self.give_up(&child, &reason),
            Decision::Restart(delay) => {
                let restarts = self.record(&child).tracker.restarts;
                crate::metrics::METRICS.restart(child.kind());
                log::warn!(
                    actor = child.name().as_str(), restarts = restarts, backoff_ms = delay.as_millis() as u64;
                    "{} actor crashed ({reason}); restarting in {} ms",
                    child.kind(),
                    delay.as_millis()
                );
                if let ChildId::Project(ref id) = child {
                    // No reason: the directory routes it as restarting (a retryable error).
                    self.engine.directory.set_project_addr(id, None, None);
                }
                self.record(&child).status = Status::Restarting;
                self.report(&child);
                ctx.notify_later(Restart(child), delay);
            }
        }
    }
}

impl Handler<Restart> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Restart, ctx: &mut Self::Context) {
        if self.engine.lifecycle() == Lifecycle::ShuttingDown {
            return;
        }
        let child = msg.0;
        if !self.children.contains_key(&child) {
            return; // forgotten meanwhile (deleted)
        }
        match self.start_child(&child, ctx) {
            Ok(()) => log::info!(actor = child.name().as_str(); "{} actor restarted", child.kind()),
            Err(e) => self.give_up(&child, &e),
        }
    }
}

impl Handler<Adopt> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Adopt, _: &mut Self::Context) {
        self.record(&msg.0);
        self.report(&msg.0);
    }
}

impl Handler<Forget> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Self::Context) {
        self.children.remove(&msg.0);
        self.engine.directory.remove_actor_status(&msg.0.name());
    }
}

impl Handler<ResetActor> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ResetActor, ctx: &mut Self::Context) {
        let errored = self
            .children
            .iter()
            .find(|(id, r)| id.name() == msg.name && r.status == Status::Errored)
            .map(|(id, _)| id.clone());
        let Some(child) = errored else {
            let e = crate::error::ApiError::validation(format!(
                "no errored actor is named '{}'",
                crate::logfmt::sanitize(&msg.name, 128)
            ));
            return msg.reply.err(None, &e);
        };
        log::info!(actor = msg.name.as_str(); "operator reset of an errored actor");
        self.record(&child).tracker = RestartTracker::new(Instant::now());
        match self.start_child(&child, ctx) {
            Ok(()) => msg.reply.ok(
                "actor_reset",
                None,
                &serde_json::json!({"actor": msg.name, "status": "running"}),
            ),
            Err(e) => {
                log::error!(actor = msg.name.as_str(); "reset failed: {e}");
                self.record(&child).status = Status::Errored;
                self.report(&child);
                msg.reply.err(
                    None,
                    &crate::error::ApiError::internal(
                        "the actor could not be restarted; the server's log says why",
                    ),
                )
            }
        }
    }
}
