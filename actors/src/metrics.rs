//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Metrics are process-wide by nature, so they live in one global [`METRICS`] that any module
//! can count into without plumbing; gauges that describe current state (connections, queues,
//! memory) are read at scrape time instead of being kept up to date on every change.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabel {
    pub agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecoveredLabel {
    pub recovered: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub connections: Gauge,
    pub connections_opened: Counter,
    pub connections_refused: Family<ReasonLabel, Counter>,
    pub messages_in: Family<TypeLabel, Counter>,
    pub messages_out: Family<TypeLabel, Counter>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub deliveries: Counter,
    pub fanout: Histogram,
    pub fanout_seconds: Histogram,
    pub runs_active: Gauge,
    pub runs: Family<StatusLabel, Counter>,
    pub run_seconds: Histogram,
    pub queued_runs: Gauge,
    pub history_appends: Counter,
    pub history_append_errors: Counter,
    pub fsync_seconds: Histogram,
    pub slow_clients: Counter,
    pub replays: Family<RecoveredLabel, Counter>,
    pub restarts: Family<KindLabel, Counter>,
    pub auth_failures: Counter,
    pub projects: Gauge,
    pub resident_bytes: Gauge,
    pub open_fds: Gauge,
    pub breaker_state: Family<AgentLabel, Gauge>,
    pub breaker_opened: Family<AgentLabel, Counter>,
    pub cluster_forwarded: Counter,
    pub cluster_remote_deliveries: Counter,
    pub nats_reconnects: Counter,
}

/// The daemon's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("agentvisor")),
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            connections_refused: Family::default(),
            messages_in: Family::default(),
            messages_out: Family::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            deliveries: Counter::default(),
            fanout: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            fanout_seconds: Histogram::new(exponential_buckets(0.000_01, 4.0, 10)),
            runs_active: Gauge::default(),
            runs: Family::default(),
            run_seconds: Histogram::new(exponential_buckets(0.1, 3.0, 10)),
            queued_runs: Gauge::default(),
            history_appends: Counter::default(),
            history_append_errors: Counter::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 3.0, 12)),
            slow_clients: Counter::default(),
            replays: Family::default(),
            restarts: Family::default(),
            auth_failures: Counter::default(),
            projects: Gauge::default(),
            resident_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            breaker_state: Family::default(),
            breaker_opened: Family::default(),
            cluster_forwarded: Counter::default(),
            cluster_remote_deliveries: Counter::default(),
            nats_reconnects: Counter::default(),
        };
        {
            let mut r = crate::sync::lock(&m.registry);
            // Registration order is the order of the text exposition.
            m.register_connections(&mut r);
            m.register_broadcast(&mut r);
            m.register_runs(&mut r);
            m.register_history(&mut r);
            m.register_daemon(&mut r);
            m.register_breakers(&mut r);
            m.register_cluster(&mut r);
        }
        m
    }

    /// Connections and the messages and bytes they carry.
    fn register_connections(&self, r: &mut Registry) {
        r.register(
            "connections",
            "Open WebSocket connections",
            self.connections.clone(),
        );
        r.register(
            "connections_opened",
            "WebSocket connections accepted",
            self.connections_opened.clone(),
        );
        r.register(
            "connections_refused",
            "WebSocket connections refused, by reason",
            self.connections_refused.clone(),
        );
        r.register(
            "messages_received",
            "Client messages received, by type",
            self.messages_in.clone(),
        );
        r.register(
            "messages_sent",
            "Server messages encoded, by type",
            self.messages_out.clone(),
        );
        r.register(
            "received_bytes",
            "Bytes of client messages received",
            self.bytes_in.clone(),
        );
        r.register(
            "sent_bytes",
            "Bytes of server messages queued to clients",
            self.bytes_out.clone(),
        );
    }

    /// Fan-out of events to subscribers.
    fn register_broadcast(&self, r: &mut Registry) {
        r.register(
            "broadcast_deliveries",
            "Event deliveries to subscribers",
            self.deliveries.clone(),
        );
        r.register(
            "broadcast_fanout_subscribers",
            "Subscribers an event was fanned out to",
            self.fanout.clone(),
        );
        r.register(
            "broadcast_fanout_seconds",
            "Time to fan one event out to its subscribers",
            self.fanout_seconds.clone(),
        );
    }

    /// Agent runs: active, finished, queued.
    fn register_runs(&self, r: &mut Registry) {
        r.register(
            "runs_active",
            "Agent runs in progress",
            self.runs_active.clone(),
        );
        r.register(
            "runs",
            "Agent runs finished, by final status",
            self.runs.clone(),
        );
        r.register(
            "run_duration_seconds",
            "Duration of finished agent runs",
            self.run_seconds.clone(),
        );
        r.register(
            "queued_runs",
            "Runs waiting in project queues",
            self.queued_runs.clone(),
        );
    }

    /// History writes.
    fn register_history(&self, r: &mut Registry) {
        r.register(
            "history_appends",
            "Records appended to history",
            self.history_appends.clone(),
        );
        r.register(
            "history_append_errors",
            "History appends that failed",
            self.history_append_errors.clone(),
        );
        r.register(
            "history_fsync_seconds",
            "Latency of history fsyncs",
            self.fsync_seconds.clone(),
        );
    }

    /// The cluster of daemons (docs/scaling.md): all zero on a daemon that joined none.
    fn register_cluster(&self, r: &mut Registry) {
        r.register(
            "cluster_forwarded_requests",
            "Requests forwarded to the node of the cluster that owns their project",
            self.cluster_forwarded.clone(),
        );
        r.register(
            "cluster_remote_deliveries",
            "Events of another node's projects delivered to this node's clients",
            self.cluster_remote_deliveries.clone(),
        );
        r.register(
            "nats_reconnects",
            "Times the connection to NATS was established again after a loss",
            self.nats_reconnects.clone(),
        );
    }

    /// Slow clients, replays, restarts, authentication, projects and the process.
    fn register_daemon(&self, r: &mut Registry) {
        r.register(
            "slow_client_disconnects",
            "Connections closed because their backlog overflowed",
            self.slow_clients.clone(),
        );
        r.register(
            "replays",
            "Replays on join, by whether the whole range was still stored",
            self.replays.clone(),
        );
        r.register(
            "actor_restarts",
            "Actor crashes handled by the supervisor, by actor kind",
            self.restarts.clone(),
        );
        r.register(
            "auth_failures",
            "Failed or missing authentications",
            self.auth_failures.clone(),
        );
        r.register("projects", "Registered projects", self.projects.clone());
        r.register(
            "process_resident_memory_bytes",
            "Resident memory of the daemon",
            self.resident_bytes.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors of the daemon",
            self.open_fds.clone(),
        );
    }

    /// The agent backends' circuit breakers.
    fn register_breakers(&self, r: &mut Registry) {
        r.register(
            "breaker_state",
            "Circuit breaker of each agent backend: 0 closed, 1 half-open, 2 open",
            self.breaker_state.clone(),
        );
        r.register(
            "breaker_opened",
            "Times each agent backend's circuit breaker opened",
            self.breaker_opened.clone(),
        );
    }

    /// The text exposition, with the scrape-time gauges set from `gauges` and `/proc`.
    pub fn render(&self, gauges: &Gauges) -> String {
        self.connections.set(gauges.connections as i64);
        self.runs_active.set(gauges.runs_active as i64);
        self.queued_runs.set(gauges.queued_runs as i64);
        self.projects.set(gauges.projects as i64);
        for (agent, level) in &gauges.breakers {
            self.breaker_state
                .get_or_create(&agent_label(agent))
                .set(*level);
        }
        if let Some(b) = crate::procfs::resident_bytes() {
            self.resident_bytes.set(b as i64);
        }
        if let Some(n) = crate::procfs::open_fds() {
            self.open_fds.set(n as i64);
        }
        let mut out = String::new();
        let r = crate::sync::lock(&self.registry);
        if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
            out.clear();
        }
        out
    }

    pub fn message_in(&self, kind: &str) {
        self.messages_in
            .get_or_create(&TypeLabel {
                r#type: kind.to_string(),
            })
            .inc();
    }

    pub fn message_out(&self, kind: &str) {
        self.messages_out
            .get_or_create(&TypeLabel {
                r#type: kind.to_string(),
            })
            .inc();
    }

    pub fn refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn restart(&self, kind: &str) {
        self.restarts
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn replay(&self, recovered: bool) {
        self.replays
            .get_or_create(&RecoveredLabel {
                recovered: recovered.to_string(),
            })
            .inc();
    }

    pub fn breaker_opened(&self, agent: &str) {
        self.breaker_opened.get_or_create(&agent_label(agent)).inc();
    }

    pub fn fsync(&self, took: Duration) {
        self.fsync_seconds.observe(took.as_secs_f64());
    }
}

fn agent_label(agent: &str) -> AgentLabel {
    AgentLabel {
        agent: agent.to_string(),
    }
}

/// Counts a finished run. `duration_ms` is `None` for a run that never ran (cancelled in the
/// queue, or interrupted by a restart): it is counted but kept out of the duration histogram.
pub fn run_finished(status: &str, duration_ms: Option<u64>) {
    METRICS
        .runs
        .get_or_create(&StatusLabel {
            status: status.to_string(),
        })
        .inc();
    if let Some(ms) = duration_ms {
        METRICS.run_seconds.observe(ms as f64 / 1000.0);
    }
}

/// The gauges read from the engine's live state when the metrics are scraped.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    pub connections: usize,
    pub runs_active: u64,
    pub queued_runs: usize,
    pub projects: usize,
    /// Each agent backend's breaker: 0 closed, 1 half-open, 2 open.
    pub breakers: Vec<(&'static str, i64)>,
}
