//! What every actor shares: settings, the directory of live actors, counters, and the daemon's
//! lifecycle. One `Arc<Engine>` is handed to each actor when it starts.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::api::cluster::Cluster;
use crate::api::idempotency::IdempotencyStore;
use crate::auth::AuthThrottle;
use crate::breaker::Breakers;
use crate::capability::Capabilities;
use crate::config::EngineConfig;
use crate::directory::Directory;
use crate::limits::ConnectionLimiter;
use crate::metrics;
use crate::storage::metadata::AgentKind;

/// History reads (pages, replays) that may run at once, across all projects: half the cores, at
/// least one. Each is bounded by its budget; bounding how many run together keeps clients that
/// loop heavy queries from taking every core from the actors' thread and the connections (on two
/// cores, one reader keeps another project's live output within a few milliseconds where two
/// did not). More wait their turn, without blocking anything else.
pub fn history_readers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() / 2)
        .max(1)
}

/// Where the daemon is in its life, as `/ready` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Starting = 0,
    Ready = 1,
    ShuttingDown = 2,
}

/// Counters read by `server_stats` and health. (Counters only the metrics show live in
/// [`crate::metrics::METRICS`].)
#[derive(Default)]
pub struct Stats {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub runs_total: AtomicU64,
    pub runs_active: AtomicU64,
}

pub struct Engine {
    pub config: EngineConfig,
    pub directory: Directory,
    pub stats: Stats,
    /// Bounds concurrent agent processes across all projects: each is hundreds of MB.
    pub run_slots: Arc<Semaphore>,
    /// Bounds the history reads running at once on the blocking pool (see [`history_readers`]).
    pub history_readers: Arc<Semaphore>,
    pub started: Instant,
    pub limiter: Arc<ConnectionLimiter>,
    /// Connections that have not authenticated yet: a small share of `limiter`'s.
    pub unauthenticated: Arc<ConnectionLimiter>,
    pub auth_throttle: AuthThrottle,
    /// One circuit breaker per agent backend.
    pub breakers: Breakers,
    /// The consult tokens of live runs.
    pub capabilities: Capabilities,
    lifecycle: AtomicU8,
    /// The latest health sample, as JSON, published by the health actor so that a health call
    /// never waits on anything.
    pub health: RwLock<serde_json::Value>,
    /// Stored replies of requests with an `idempotency_key`.
    pub idempotency: Arc<IdempotencyStore>,
    /// The cluster this daemon is a node of, when it joined one (`AGENTVISOR_NATS_URL`).
    cluster: OnceLock<Arc<dyn Cluster>>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Arc<Self> {
        let slots = config.max_concurrent_runs.max(1);
        Arc::new(Engine {
            limiter: ConnectionLimiter::new(config.max_connections, config.max_connections_per_ip),
            unauthenticated: ConnectionLimiter::unauthenticated(
                config.max_unauthenticated,
                config.max_unauthenticated_per_ip,
            ),
            auth_throttle: AuthThrottle::default(),
            breakers: Breakers::new(config.breaker),
            capabilities: Capabilities::default(),
            directory: Directory::default(),
            stats: Stats::default(),
            run_slots: Arc::new(Semaphore::new(slots)),
            history_readers: Arc::new(Semaphore::new(history_readers())),
            started: Instant::now(),
            lifecycle: AtomicU8::new(Lifecycle::Starting as u8),
            health: RwLock::new(serde_json::json!({"status": "starting"})),
            idempotency: Arc::new(IdempotencyStore::open(&config.data_dir)),
            config,
            cluster: OnceLock::new(),
        })
    }

    /// Makes this daemon a node of `cluster`; done once, before the first connection.
    pub fn join_cluster(&self, cluster: Arc<dyn Cluster>) {
        if self.cluster.set(cluster).is_err() {
            log::warn!("the daemon is already a node of a cluster");
        }
    }

    /// The cluster this daemon is a node of, if any.
    pub fn cluster(&self) -> Option<&Arc<dyn Cluster>> {
        self.cluster.get()
    }

    pub fn lifecycle(&self) -> Lifecycle {
        match self.lifecycle.load(Ordering::Acquire) {
            0 => Lifecycle::Starting,
            1 => Lifecycle::Ready,
            _ => Lifecycle::ShuttingDown,
        }
    }

    pub fn set_lifecycle(&self, l: Lifecycle) {
        self.lifecycle.store(l as u8, Ordering::Release);
    }

    /// Counts a finished run, in `server_stats` and in the metrics alike (see
    /// [`metrics::run_finished`]).
    pub fn run_finished(&self, status: &str, duration_ms: Option<u64>) {
        self.stats.runs_total.fetch_add(1, Ordering::Relaxed);
        metrics::run_finished(status, duration_ms);
    }

    /// The scrape-time gauges for [`metrics::Metrics::render`].
    pub fn gauges(&self) -> metrics::Gauges {
        metrics::Gauges {
            connections: self.directory.connection_count(),
            runs_active: self.stats.runs_active.load(Ordering::Relaxed),
            queued_runs: self.directory.queued_runs(),
            projects: self.directory.project_count(),
            breakers: AgentKind::all()
                .map(|a| (a.as_str(), self.breakers.level(a)))
                .collect(),
        }
    }

    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The latest health sample, with live actor statuses.
    pub fn health_report(&self) -> serde_json::Value {
        let mut report = self
            .health
            .read()
            .map(|h| h.clone())
            .unwrap_or_else(|_| serde_json::json!({"status": "degraded"}));
        let actors = self.directory.actor_statuses();
        let degraded = actors.iter().any(|a| a.status != "running")
            || self.breakers.any_tripped()
            || self.cluster().is_some_and(|c| c.degraded());
        if let Some(obj) = report.as_object_mut() {
            if degraded && obj.get("status").and_then(|s| s.as_str()) == Some("ok") {
                obj.insert("status".into(), "degraded".into());
            }
            obj.insert(
                "actors".into(),
                serde_json::to_value(actors).unwrap_or_default(),
            );
            obj.insert("breakers".into(), self.breakers.views());
            if let Some(cluster) = self.cluster() {
                obj.insert("cluster".into(), cluster.health());
            }
            obj.insert("uptime_s".into(), self.uptime_s().into());
            obj.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        }
        report
    }
}
