//! The engine's settings, already validated. The daemon shell builds this from flags,
//! environment variables and defaults (see the workspace's `src/config.rs` and
//! `docs/configuration.md`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::agent::AgentKind;

/// How hard the history log works to survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync after every record: nothing acknowledged is lost, slowest.
    Always,
    /// fsync every `history_flush_interval` (group commit): a power loss can take that window.
    Batch,
    /// Leave flushing to the OS: a power loss can take what the kernel had not written yet.
    Os,
}

/// Restart policy of the supervisor (PM2-style exponential backoff).
#[derive(Debug, Clone)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    pub reset_after: Duration,
    pub restart_limit: u32,
    pub restart_window: Duration,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub project_roots: Vec<PathBuf>,
    /// Each agent's executable (a path, or a name looked up on `PATH`); an agent missing here
    /// is looked up by its name.
    pub agent_bins: HashMap<AgentKind, String>,
    /// Variable names (a trailing `*` makes a prefix) an agent gets besides the built-in list.
    pub agent_env: Vec<String>,
    pub max_projects: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Connections not yet authenticated, in total and per address (counted in the above too).
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_ip: usize,
    pub rate_limit: u32,
    pub max_message_bytes: usize,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub run_timeout: Option<Duration>,
    pub kill_grace: Duration,
    /// How long a permission request waits for an answer before it is denied.
    pub approval_timeout: Duration,
    pub max_concurrent_runs: usize,
    pub max_queue: usize,
    pub history_segment_records: u64,
    pub history_segment_bytes: u64,
    pub history_retention_bytes: Option<u64>,
    pub history_retention_segments: Option<usize>,
    pub durability: Durability,
    pub history_flush_interval: Duration,
    pub max_backlog_bytes: usize,
    /// Records one history reply may examine (see `storage::history::Budget`).
    pub history_scan_records: usize,
    /// Bytes of records in one `get_messages` reply; it reads at most four times as much.
    pub history_page_bytes: usize,
    pub stats_interval: Option<Duration>,
    pub backoff: BackoffPolicy,
    pub fault_injection: bool,
    pub token: Option<String>,
    pub trusted_proxies: Vec<IpAddr>,
    pub allowed_origins: Vec<String>,
    pub auth_timeout: Duration,
    pub disk_warn_bytes: u64,
    /// When to stop sending runs to a failing agent backend.
    pub breaker: BreakerSettings,
    /// The WebSocket address a run's agent is given to reach the daemon (`consult`).
    pub daemon_url: Option<String>,
}

impl EngineConfig {
    /// The executable that runs `agent`: its setting, or its name.
    pub fn agent_bin(&self, agent: AgentKind) -> &str {
        self.agent_bins
            .get(&agent)
            .map_or(agent.as_str(), String::as_str)
    }

    /// Settings for tests of the engine itself: small, quick, in `data_dir`.
    pub fn for_tests(data_dir: PathBuf, root: PathBuf) -> Self {
        EngineConfig {
            data_dir,
            project_roots: vec![root],
            agent_bins: HashMap::new(),
            agent_env: Vec::new(),
            max_projects: 100,
            max_connections: 100,
            max_connections_per_ip: 100,
            max_unauthenticated: 25,
            max_unauthenticated_per_ip: 6,
            rate_limit: 100,
            max_message_bytes: 1 << 20,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(30),
            run_timeout: Some(Duration::from_secs(300)),
            kill_grace: Duration::from_secs(3),
            approval_timeout: Duration::from_secs(600),
            max_concurrent_runs: 4,
            max_queue: 16,
            history_segment_records: 10_000,
            history_segment_bytes: 100 << 20,
            history_retention_bytes: None,
            history_retention_segments: None,
            durability: Durability::Batch,
            history_flush_interval: Duration::from_millis(5),
            max_backlog_bytes: 16 << 20,
            history_scan_records: 10_000,
            history_page_bytes: 4 << 20,
            stats_interval: None,
            backoff: BackoffPolicy {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(15),
                multiplier: 1.5,
                reset_after: Duration::from_secs(30),
                restart_limit: 10,
                restart_window: Duration::from_secs(60),
            },
            fault_injection: false,
            token: None,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            auth_timeout: Duration::from_secs(10),
            disk_warn_bytes: 1 << 30,
            breaker: BreakerSettings::default(),
            daemon_url: None,
        }
    }
}

/// When an agent backend's circuit breaker opens and for how long (see `breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive backend failures that open the breaker.
    pub threshold: u32,
    /// The first cool-down.
    pub cooldown: Duration,
    /// The longest cool-down, however often the trial fails.
    pub cooldown_max: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            threshold: 5,
            cooldown: Duration::from_secs(30),
            cooldown_max: Duration::from_secs(600),
        }
    }
}
