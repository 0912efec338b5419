//! The directory of live actors: where each project, core actor and connection can be reached
//! now. The supervisor writes it when it starts or restarts an actor — that is how peers are
//! re-pointed at a new address — and everyone else reads it when sending. Project snapshots
//! live here too, so that `project_list` needs no messages at all.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use actix::Recipient;

use crate::api::broadcast::BroadcastHandle;
use crate::api::connection::ConnectionSignal;
use crate::api::health::HealthHandle;
use crate::api::project::ProjectHandle;
use crate::api::registry::RegistryHandle;
use crate::api::supervisor::ActorStatus;
use crate::storage::metadata::{ProjectMeta, ProjectState};
use crate::sync::{lock, read, write};

/// What other actors may read of a project without asking it.
pub struct ProjectShared {
    pub meta: Mutex<ProjectMeta>,
    pub last_seq: AtomicU64,
    pub queue_len: AtomicUsize,
    /// The project's metadata writer. It outlives the project's actor, so that a background
    /// write of a crashed actor can never land after a newer one of its successor.
    pub meta_writer: Arc<crate::storage::metadata::MetaWriter>,
}

impl ProjectShared {
    pub fn new(meta: ProjectMeta, last_seq: u64) -> Arc<Self> {
        Arc::new(ProjectShared {
            meta: Mutex::new(meta),
            last_seq: AtomicU64::new(last_seq),
            queue_len: AtomicUsize::new(0),
            meta_writer: Arc::default(),
        })
    }
}

/// A project as the directory knows it.
pub struct ProjectEntry {
    pub path: PathBuf,
    pub created_at: String,
    pub shared: Arc<ProjectShared>,
    /// `None` while the project's actor is restarting or errored.
    pub addr: Option<ProjectHandle>,
    /// Why the project cannot be reached, when `addr` is `None`.
    pub down: Option<String>,
}

#[derive(Default)]
struct Core {
    registry: Option<RegistryHandle>,
    broadcast: Option<BroadcastHandle>,
    health: Option<HealthHandle>,
}

#[derive(Default)]
pub struct Directory {
    projects: RwLock<HashMap<String, ProjectEntry>>,
    core: RwLock<Core>,
    connections: Mutex<HashMap<u64, Recipient<ConnectionSignal>>>,
    subscribers: Mutex<HashMap<Arc<str>, usize>>,
    actors: Mutex<BTreeMap<String, ActorStatus>>,
    next_conn: AtomicU64,
}

/// Where a project request should go.
pub enum ProjectRoute {
    Up(ProjectHandle),
    /// Errored: down until an `actor_reset` or a daemon restart.
    Down(String),
    /// Crashed and waiting for its restart (or not registered yet).
    Restarting,
    Missing,
}

impl Directory {
    pub fn next_connection_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    // --- projects -------------------------------------------------------------------------

    pub fn insert_project(&self, entry: ProjectEntry, id: String) {
        write(&self.projects).insert(id, entry);
    }

    pub fn remove_project(&self, id: &str) {
        write(&self.projects).remove(id);
        lock(&self.subscribers).remove(id);
    }

    pub fn set_project_addr(&self, id: &str, addr: Option<ProjectHandle>, down: Option<String>) {
        if let Some(e) = write(&self.projects).get_mut(id) {
            e.addr = addr;
            e.down = down;
        }
    }

    pub fn route(&self, id: &str) -> ProjectRoute {
        match read(&self.projects).get(id) {
            None => ProjectRoute::Missing,
            Some(ProjectEntry { addr: Some(a), .. }) if a.connected() => {
                ProjectRoute::Up(a.clone())
            }
            Some(ProjectEntry {
                down: Some(why), ..
            }) => ProjectRoute::Down(why.clone()),
            Some(_) => ProjectRoute::Restarting,
        }
    }

    /// Runs waiting in all project queues.
    pub fn queued_runs(&self) -> usize {
        read(&self.projects)
            .values()
            .map(|e| e.shared.queue_len.load(Ordering::Relaxed))
            .sum()
    }

    /// Every project actor that is up.
    pub fn project_addrs(&self) -> Vec<ProjectHandle> {
        read(&self.projects)
            .values()
            .filter_map(|e| e.addr.clone())
            .collect()
    }

    pub fn project_count(&self) -> usize {
        read(&self.projects).len()
    }

    /// `(id, path)` of every project, for nesting checks.
    pub fn project_paths(&self) -> Vec<(String, PathBuf)> {
        read(&self.projects)
            .iter()
            .map(|(id, e)| (id.clone(), e.path.clone()))
            .collect()
    }

    /// The latest `created_at` of any project (RFC 3339 strings of one format sort as times).
    pub fn latest_created_at(&self) -> Option<String> {
        read(&self.projects)
            .values()
            .map(|e| e.created_at.clone())
            .max()
    }

    pub fn project_shared(&self, id: &str) -> Option<Arc<ProjectShared>> {
        read(&self.projects).get(id).map(|e| e.shared.clone())
    }

    /// Every project as the protocol shows it, oldest first.
    pub fn project_views(&self) -> Vec<serde_json::Value> {
        let projects = read(&self.projects);
        let mut all: Vec<_> = projects.iter().collect();
        all.sort_by(|a, b| a.1.created_at.cmp(&b.1.created_at).then(a.0.cmp(b.0)));
        all.into_iter()
            .map(|(id, e)| self.view_of(id, &e.shared))
            .collect()
    }

    /// One project as the protocol shows it.
    pub fn view_of(&self, id: &str, shared: &ProjectShared) -> serde_json::Value {
        let meta = lock(&shared.meta);
        serde_json::json!({
            "id": id,
            "path": meta.path,
            "name": meta.name,
            "state": meta.state,
            "session_id": meta.session_id,
            "created_at": meta.created_at,
            "last_active": meta.last_active,
            "subscribers": self.subscriber_count(id),
            "last_seq": shared.last_seq.load(Ordering::Relaxed),
            "queue_len": shared.queue_len.load(Ordering::Relaxed),
            "agent": meta.agent,
            "approvals": meta.approvals,
        })
    }

    /// Counts projects by state, for `server_stats`.
    pub fn projects_by_state(&self) -> serde_json::Value {
        let (mut idle, mut executing, mut error) = (0u64, 0u64, 0u64);
        for e in read(&self.projects).values() {
            match lock(&e.shared.meta).state {
                ProjectState::Idle => idle += 1,
                ProjectState::Executing => executing += 1,
                ProjectState::Error => error += 1,
            }
        }
        serde_json::json!({"total": idle + executing + error, "IDLE": idle, "EXECUTING": executing, "ERROR": error})
    }

    // --- subscribers ----------------------------------------------------------------------

    pub fn set_subscriber_count(&self, project: &Arc<str>, n: usize) {
        let mut subs = lock(&self.subscribers);
        if n == 0 {
            subs.remove(project);
        } else {
            subs.insert(project.clone(), n);
        }
    }

    pub fn clear_subscriber_counts(&self) {
        lock(&self.subscribers).clear();
    }

    pub fn subscriber_count(&self, project: &str) -> usize {
        lock(&self.subscribers).get(project).copied().unwrap_or(0)
    }

    // --- core actors ----------------------------------------------------------------------

    pub fn set_registry(&self, a: Option<RegistryHandle>) {
        write(&self.core).registry = a;
    }

    pub fn set_broadcast(&self, a: Option<BroadcastHandle>) {
        write(&self.core).broadcast = a;
    }

    pub fn set_health(&self, a: Option<HealthHandle>) {
        write(&self.core).health = a;
    }

    pub fn registry(&self) -> Option<RegistryHandle> {
        read(&self.core).registry.clone().filter(|a| a.connected())
    }

    pub fn broadcast(&self) -> Option<BroadcastHandle> {
        read(&self.core).broadcast.clone().filter(|a| a.connected())
    }

    pub fn health(&self) -> Option<HealthHandle> {
        read(&self.core).health.clone().filter(|a| a.connected())
    }

    // --- connections ----------------------------------------------------------------------

    pub fn add_connection(&self, id: u64, r: Recipient<ConnectionSignal>) {
        lock(&self.connections).insert(id, r);
    }

    pub fn remove_connection(&self, id: u64) {
        lock(&self.connections).remove(&id);
    }

    pub fn connection_count(&self) -> usize {
        lock(&self.connections).len()
    }

    /// Sends a signal to every connection.
    pub fn signal_connections(&self, make: impl Fn() -> ConnectionSignal) {
        let conns: Vec<_> = lock(&self.connections).values().cloned().collect();
        for c in conns {
            c.do_send(make());
        }
    }

    // --- supervision report ---------------------------------------------------------------

    pub fn set_actor_status(&self, s: ActorStatus) {
        lock(&self.actors).insert(s.name.clone(), s);
    }

    pub fn remove_actor_status(&self, name: &str) {
        lock(&self.actors).remove(name);
    }

    pub fn actor_statuses(&self) -> Vec<ActorStatus> {
        lock(&self.actors).values().cloned().collect()
    }
}
