//! Configuration: command-line flags, each with an `AGENTVISOR_*` environment variable (the flag
//! wins), validated at start. Every option and its default is in `docs/configuration.md`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use agentvisor_actors::agent::AgentKind;
use agentvisor_actors::config::{BackoffPolicy, Durability, EngineConfig};
use agentvisor_actors::executor::cgroup::CgroupSetting;
use clap::Parser;

/// Drive AI coding agents remotely and together, over WebSocket.
#[derive(Parser, Debug)]
#[command(name = "agentvisor", version, about)]
pub struct Args {
    /// Address to serve HTTP and WebSocket on.
    #[arg(long, env = "AGENTVISOR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory for projects, metadata and history.
    #[arg(long, env = "AGENTVISOR_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `:`-separated directories that projects must lie inside [default: your home directory].
    #[arg(long, env = "AGENTVISOR_PROJECT_ROOTS")]
    pub project_roots: Option<String>,
    #[command(flatten)]
    pub agent_bins: AgentBins,
    /// Comma-separated extra variables an agent may see (`NAME`, or `PREFIX*`); no
    /// `AGENTVISOR_*` variable ever passes (see docs/security.md).
    #[arg(long, env = "AGENTVISOR_AGENT_ENV", default_value = "")]
    pub agent_env: String,
    /// Most projects the server keeps.
    #[arg(long, env = "AGENTVISOR_MAX_PROJECTS", default_value_t = 100)]
    pub max_projects: usize,
    /// Most open WebSocket connections; more are closed with 1013.
    #[arg(long, env = "AGENTVISOR_MAX_CONNECTIONS", default_value_t = 100)]
    pub max_connections: usize,
    /// Most connections from one client address [default: the connection limit].
    #[arg(long, env = "AGENTVISOR_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Most connections that have not authenticated yet [default: a quarter of the connection
    /// limit]; they count toward the connection limit too.
    #[arg(long, env = "AGENTVISOR_MAX_UNAUTHENTICATED")]
    pub max_unauthenticated: Option<usize>,
    /// Most connections from one address that have not authenticated yet [default: a quarter of
    /// the unauthenticated limit].
    #[arg(long, env = "AGENTVISOR_MAX_UNAUTHENTICATED_PER_IP")]
    pub max_unauthenticated_per_ip: Option<usize>,
    /// Messages per second per connection (bursts of twice that); 0 = unlimited.
    #[arg(long, env = "AGENTVISOR_RATE_LIMIT", default_value_t = 100)]
    pub rate_limit: u32,
    /// Largest accepted message, in bytes (e.g. 1048576 or 1MiB); larger ones close with 1009.
    #[arg(long, env = "AGENTVISOR_MAX_MESSAGE_BYTES", default_value = "1048576", value_parser = parse_size)]
    pub max_message_bytes: u64,
    /// How often the server pings each client.
    #[arg(long, env = "AGENTVISOR_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// How long past a ping a silent client is kept before it is closed with 4000.
    #[arg(long, env = "AGENTVISOR_PONG_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub pong_timeout: Duration,
    /// A run's time limit; 0 = none.
    #[arg(long, env = "AGENTVISOR_RUN_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub run_timeout: Duration,
    /// How long a tool call waits for a client's approval before it is denied.
    #[arg(long, env = "AGENTVISOR_APPROVAL_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub approval_timeout: Duration,
    /// Grace period between SIGINT, SIGTERM and SIGKILL when a run is stopped.
    #[arg(long, env = "AGENTVISOR_KILL_GRACE", default_value = "3s", value_parser = parse_duration)]
    pub kill_grace: Duration,
    /// Most agent runs at once across all projects (each agent takes 150–300 MB).
    #[arg(long, env = "AGENTVISOR_MAX_CONCURRENT_RUNS", default_value_t = 4)]
    pub max_concurrent_runs: usize,
    /// Most runs waiting behind the active one in a project; more get QUEUE_FULL.
    #[arg(long, env = "AGENTVISOR_MAX_QUEUE", default_value_t = 16)]
    pub max_queue: usize,
    /// Bound on a graceful shutdown.
    #[arg(long, env = "AGENTVISOR_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Bearer token clients must present (required when listening off loopback).
    #[arg(long, env = "AGENTVISOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token (its first line).
    #[arg(long, env = "AGENTVISOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Records per history segment before rotation.
    #[arg(
        long,
        env = "AGENTVISOR_HISTORY_SEGMENT_RECORDS",
        default_value_t = 10_000
    )]
    pub history_segment_records: u64,
    /// Bytes per history segment before rotation.
    #[arg(long, env = "AGENTVISOR_HISTORY_SEGMENT_BYTES", default_value = "100MB", value_parser = parse_size)]
    pub history_segment_bytes: u64,
    /// Keep at most this many bytes of history per project (oldest segments go first); 0 = no limit.
    #[arg(long, env = "AGENTVISOR_HISTORY_RETENTION_BYTES", default_value = "0", value_parser = parse_size)]
    pub history_retention_bytes: u64,
    /// Keep at most this many history segments per project; 0 = no limit.
    #[arg(
        long,
        env = "AGENTVISOR_HISTORY_RETENTION_SEGMENTS",
        default_value_t = 0
    )]
    pub history_retention_segments: usize,
    /// Each run in a cgroup v2 of its own where the daemon may create one (`auto`), or only
    /// the process-group sweep (`off`).
    #[arg(long, env = "AGENTVISOR_CGROUPS", default_value = "auto", value_parser = parse_cgroups)]
    pub cgroups: CgroupSetting,
    /// When history is fsynced: `always` (every record), `batch` (group commit), `os` (never).
    #[arg(long, env = "AGENTVISOR_HISTORY_DURABILITY", default_value = "batch", value_parser = parse_durability)]
    pub history_durability: Durability,
    /// Group-commit interval for `batch` durability.
    #[arg(long, env = "AGENTVISOR_HISTORY_FLUSH_INTERVAL", default_value = "5ms", value_parser = parse_duration)]
    pub history_flush_interval: Duration,
    /// Records a history reply (a `get_messages` page) may examine before it is cut short.
    #[arg(
        long,
        env = "AGENTVISOR_HISTORY_SCAN_RECORDS",
        default_value_t = 10_000
    )]
    pub history_scan_records: usize,
    /// Bytes of records in a `get_messages` reply before it is cut short; a page reads at most
    /// four times as much.
    #[arg(long, env = "AGENTVISOR_HISTORY_PAGE_BYTES", default_value = "4MB", value_parser = parse_size)]
    pub history_page_bytes: u64,
    /// A connection's unsent bytes before it is closed with 4008.
    #[arg(long, env = "AGENTVISOR_MAX_BACKLOG_BYTES", default_value = "16MB", value_parser = parse_size)]
    pub max_backlog_bytes: u64,
    /// How often an idle event stream (`/projects/{id}/events`) gets a comment line, which keeps
    /// proxies from closing it.
    #[arg(long, env = "AGENTVISOR_SSE_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub sse_heartbeat: Duration,
    /// `server_stats` period; 0 = off.
    #[arg(long, env = "AGENTVISOR_STATS_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub stats_interval: Duration,
    #[command(flatten)]
    pub cluster: crate::cluster::settings::ClusterArgs,
    /// First restart delay of a crashed actor.
    #[arg(long, env = "AGENTVISOR_BACKOFF_INITIAL", default_value = "100ms", value_parser = parse_duration)]
    pub backoff_initial: Duration,
    /// Longest restart delay.
    #[arg(long, env = "AGENTVISOR_BACKOFF_MAX", default_value = "15s", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// Uptime after which the restart delay starts over.
    #[arg(long, env = "AGENTVISOR_BACKOFF_RESET_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub backoff_reset_after: Duration,
    /// Restarts allowed within the window before an actor is left errored.
    #[arg(long, env = "AGENTVISOR_RESTART_LIMIT", default_value_t = 10)]
    pub restart_limit: u32,
    /// The sliding window for the restart limit.
    #[arg(long, env = "AGENTVISOR_RESTART_WINDOW", default_value = "60s", value_parser = parse_duration)]
    pub restart_window: Duration,
    /// Enable `fault_inject` requests (tests only: lets any client crash actors).
    #[arg(long, env = "AGENTVISOR_FAULT_INJECTION", default_value = "false", value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    pub fault_injection: bool,
    /// Comma-separated proxy addresses whose X-Forwarded-For is believed.
    #[arg(long, env = "AGENTVISOR_TRUSTED_PROXIES", default_value = "", value_parser = parse_ips)]
    pub trusted_proxies: IpList,
    /// Comma-separated browser origins allowed to connect (same-host origins always are).
    #[arg(long, env = "AGENTVISOR_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: String,
    /// Warn in health when the data directory's disk has less free space than this.
    #[arg(long, env = "AGENTVISOR_DISK_WARN_BYTES", default_value = "1GiB", value_parser = parse_size)]
    pub disk_warn_bytes: u64,
    /// Consecutive runs failed by an agent's backend that open its circuit breaker.
    #[arg(long, env = "AGENTVISOR_BREAKER_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_threshold: u32,
    /// How long an open breaker refuses runs before one trial run (doubled after each failed trial).
    #[arg(long, env = "AGENTVISOR_BREAKER_COOLDOWN", default_value = "30s", value_parser = parse_duration)]
    pub breaker_cooldown: Duration,
    /// The longest cool-down of an open breaker.
    #[arg(long, env = "AGENTVISOR_BREAKER_COOLDOWN_MAX", default_value = "10m", value_parser = parse_duration)]
    pub breaker_cooldown_max: Duration,
    /// PEM certificate chain: serve HTTPS/WSS directly (needs --tls-key too).
    #[arg(long, env = "AGENTVISOR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "AGENTVISOR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// HTTP worker threads.
    #[arg(long, env = "AGENTVISOR_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// Log format: `text` or `json` (one JSON object per line).
    #[arg(long, env = "AGENTVISOR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log level (RUST_LOG, when set, takes precedence).
    #[arg(long, env = "AGENTVISOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// A list of IP addresses.
/// Each registered agent's executable: `--<name>-bin` / `AGENTVISOR_<NAME>_BIN`, by default its
/// name looked up on `PATH`. The options come from the agent registry, so a new agent brings its
/// own.
#[derive(Debug, Clone, Default)]
pub struct AgentBins(HashMap<AgentKind, String>);

/// The option naming `agent`'s executable: `claude-bin`.
fn bin_option(agent: AgentKind) -> String {
    format!("{}-bin", agent.as_str())
}

impl clap::Args for AgentBins {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        AgentKind::all().fold(cmd, |cmd, agent| {
            let option = bin_option(agent);
            let title = agent.agent().title();
            cmd.arg(
                clap::Arg::new(option.clone())
                    .long(option)
                    .env(agent.bin_variable())
                    .default_value(agent.as_str())
                    .value_name(format!("{}_BIN", agent.as_str().to_ascii_uppercase()))
                    .value_parser(clap::value_parser!(String))
                    .help(format!(
                        "{title} executable (a path, or a name looked up on PATH)"
                    )),
            )
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for AgentBins {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(AgentBins(
            AgentKind::all()
                .filter_map(|a| Some((a, matches.get_one::<String>(&bin_option(a))?.clone())))
                .collect(),
        ))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
pub struct IpList(pub Vec<IpAddr>);

/// The validated configuration.
pub struct Config {
    pub listen: SocketAddr,
    pub tls: Option<rustls::ServerConfig>,
    pub workers: usize,
    pub shutdown_timeout: Duration,
    pub sse_heartbeat: Duration,
    pub log_format: String,
    pub log_level: String,
    pub cgroups: CgroupSetting,
    pub engine: EngineConfig,
    /// Set when the daemon joins a cluster (`AGENTVISOR_NATS_URL`).
    pub cluster: Option<crate::cluster::settings::ClusterSettings>,
    /// How a node of a cluster that serves TLS reaches itself: trusting its own certificate.
    pub own_tls: Option<rustls::ClientConfig>,
}

impl Args {
    /// The breaker settings, each cool-down at least a millisecond and the cap no shorter
    /// than the first cool-down.
    fn breaker_settings(&self) -> Result<agentvisor_actors::breaker::BreakerSettings, String> {
        if self.breaker_cooldown.is_zero() {
            return Err("AGENTVISOR_BREAKER_COOLDOWN must be more than 0".into());
        }
        if self.breaker_cooldown_max < self.breaker_cooldown {
            return Err(
                "AGENTVISOR_BREAKER_COOLDOWN_MAX must not be shorter than AGENTVISOR_BREAKER_COOLDOWN"
                    .into(),
            );
        }
        Ok(agentvisor_actors::breaker::BreakerSettings {
            threshold: self.breaker_threshold,
            cooldown: self.breaker_cooldown,
            cooldown_max: self.breaker_cooldown_max,
        })
    }

    /// Checks everything that can be checked before start-up.
    pub fn validate(self) -> Result<Config, String> {
        self.check_limits()?;
        let token = self.token()?;
        let roots = self.project_roots()?;
        let data_dir = self.data_dir()?;
        let tls = self.tls()?;
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        let breaker = self.breaker_settings()?;
        let cluster = self.cluster.validate()?;
        let own_tls = match (&cluster, &self.tls_cert) {
            (Some(_), Some(cert)) => Some(crate::tls::own_certificate_client(cert)?),
            _ => None,
        };
        let url = daemon_url(self.listen, tls.is_some());
        let unauthenticated = self
            .max_unauthenticated
            .unwrap_or(self.max_connections / 4)
            .clamp(1, self.max_connections);
        Ok(Config {
            listen: self.listen,
            tls,
            workers: self.workers,
            shutdown_timeout: self.shutdown_timeout,
            sse_heartbeat: self.sse_heartbeat,
            log_format: self.log_format,
            log_level: self.log_level,
            cluster,
            own_tls,
            cgroups: self.cgroups,
            engine: EngineConfig {
                data_dir,
                project_roots: roots,
                agent_bins: self.agent_bins.0,
                agent_env: self
                    .agent_env
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect(),
                max_projects: self.max_projects,
                max_connections: self.max_connections,
                max_connections_per_ip: self
                    .max_connections_per_ip
                    .unwrap_or(self.max_connections)
                    .max(1),
                max_unauthenticated: unauthenticated,
                max_unauthenticated_per_ip: self
                    .max_unauthenticated_per_ip
                    .unwrap_or(unauthenticated / 4)
                    .clamp(1, unauthenticated),
                rate_limit: self.rate_limit,
                max_message_bytes: self.max_message_bytes as usize,
                ping_interval: self.ping_interval,
                pong_timeout: self.pong_timeout,
                run_timeout: nonzero(self.run_timeout),
                kill_grace: self.kill_grace,
                approval_timeout: self.approval_timeout,
                max_concurrent_runs: self.max_concurrent_runs,
                max_queue: self.max_queue,
                history_segment_records: self.history_segment_records,
                history_segment_bytes: self.history_segment_bytes,
                history_retention_bytes: (self.history_retention_bytes > 0)
                    .then_some(self.history_retention_bytes),
                history_retention_segments: (self.history_retention_segments > 0)
                    .then_some(self.history_retention_segments),
                durability: self.history_durability,
                history_flush_interval: self.history_flush_interval.max(Duration::from_millis(1)),
                max_backlog_bytes: self.max_backlog_bytes as usize,
                history_scan_records: self.history_scan_records,
                history_page_bytes: self.history_page_bytes as usize,
                stats_interval: nonzero(self.stats_interval),
                backoff: BackoffPolicy {
                    initial: self.backoff_initial,
                    max: self.backoff_max,
                    multiplier: 1.5,
                    reset_after: self.backoff_reset_after,
                    restart_limit: self.restart_limit,
                    restart_window: self.restart_window,
                },
                fault_injection: self.fault_injection,
                token,
                trusted_proxies: self.trusted_proxies.0,
                allowed_origins: self
                    .allowed_origins
                    .split(',')
                    .map(|s| s.trim().trim_end_matches('/').to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                auth_timeout: Duration::from_secs(10),
                disk_warn_bytes: self.disk_warn_bytes,
                breaker,
                daemon_url: Some(url),
            },
        })
    }

    /// Sizes, counts and intervals that must be positive, and their bounds.
    fn check_limits(&self) -> Result<(), String> {
        let positive = [
            ("max-projects", self.max_projects),
            ("max-connections", self.max_connections),
            ("max-concurrent-runs", self.max_concurrent_runs),
            ("workers", self.workers),
            (
                "history-segment-records",
                self.history_segment_records as usize,
            ),
            ("max-message-bytes", self.max_message_bytes as usize),
            ("max-backlog-bytes", self.max_backlog_bytes as usize),
            ("history-segment-bytes", self.history_segment_bytes as usize),
            ("history-scan-records", self.history_scan_records),
            ("history-page-bytes", self.history_page_bytes as usize),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("--{name} must be greater than 0"));
            }
        }
        for (name, d) in [
            ("ping-interval", self.ping_interval),
            ("pong-timeout", self.pong_timeout),
            ("shutdown-timeout", self.shutdown_timeout),
            ("sse-heartbeat", self.sse_heartbeat),
            ("backoff-initial", self.backoff_initial),
            ("restart-window", self.restart_window),
        ] {
            if d.is_zero() {
                return Err(format!("--{name} must be greater than 0"));
            }
        }
        if self.backoff_max < self.backoff_initial {
            return Err("--backoff-max must not be shorter than --backoff-initial".into());
        }
        if self.max_message_bytes > 64 << 20 {
            return Err("--max-message-bytes may be at most 64MiB".into());
        }
        Ok(())
    }

    /// The token from `--token` or `--token-file`; required unless listening on loopback.
    fn token(&self) -> Result<Option<String>, String> {
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "give the token either with --token or with --token-file, not both".into(),
                )
            }
            (Some(t), None) => Some(t.trim().to_string()),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read the token file {}: {e}", f.display()))?;
                Some(text.lines().next().unwrap_or("").trim().to_string())
            }
            (None, None) => None,
        };
        if let Some(t) = &token {
            if t.len() < 16 {
                return Err("the token must be at least 16 characters long".into());
            }
        }
        if token.is_none() && !self.listen.ip().is_loopback() {
            return Err(format!(
                "listening on {} (not loopback) requires a token: set AGENTVISOR_TOKEN or AGENTVISOR_TOKEN_FILE",
                self.listen
            ));
        }
        Ok(token)
    }

    /// The project roots: existing absolute directories, the home directory by default.
    fn project_roots(&self) -> Result<Vec<PathBuf>, String> {
        let roots: Vec<PathBuf> =
            match &self.project_roots {
                Some(s) => s
                    .split(':')
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect(),
                None => vec![home_dir()
                    .ok_or("cannot tell the home directory: set AGENTVISOR_PROJECT_ROOTS")?],
            };
        if roots.is_empty() {
            return Err("--project-roots names no directory".into());
        }
        for r in &roots {
            if !r.is_absolute() || !r.is_dir() {
                return Err(format!(
                    "project root {} must be an existing absolute directory",
                    r.display()
                ));
            }
        }
        Ok(roots)
    }

    /// The data directory, created if needed, as a canonical path.
    fn data_dir(&self) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e}",
                self.data_dir.display()
            )
        })?;
        std::fs::canonicalize(&self.data_dir).map_err(|e| {
            format!(
                "cannot resolve the data directory {}: {e}",
                self.data_dir.display()
            )
        })
    }

    /// The TLS settings: both files or neither.
    fn tls(&self) -> Result<Option<rustls::ServerConfig>, String> {
        Ok(match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some(crate::tls::server_config(c, k)?),
            (None, None) => None,
            _ => return Err("TLS needs both --tls-cert and --tls-key".into()),
        })
    }
}

/// Whether the token was given as a flag: the command line of a process is readable by every
/// local user, unlike its environment or a file.
pub fn token_on_command_line(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.filter_map(|a| a.into_string().ok())
        .any(|a| a == "--token" || a.starts_with("--token="))
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The address a run's agent reaches the daemon at: the listening address, on loopback when
/// the daemon listens on every address.
fn daemon_url(listen: SocketAddr, tls: bool) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "wss" } else { "ws" };
    format!("{scheme}://{}/ws", SocketAddr::new(ip, listen.port()))
}

/// Parses `500ms`, `30s`, `5m` (or `5min`), `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (use e.g. 500ms, 30s, 5m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit '{other}' (use ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=365.0 * 86400.0).contains(&secs) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `1048576`, `64KB`, `100MB`, `1GiB` (KB = 1000, KiB = 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (use e.g. 1048576, 64KB, 100MB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (use B, KB, KiB, MB, MiB, GB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "always" => Ok(Durability::Always),
        "batch" => Ok(Durability::Batch),
        "os" => Ok(Durability::Os),
        _ => Err("must be always, batch or os".into()),
    }
}

fn parse_cgroups(s: &str) -> Result<CgroupSetting, String> {
    match s {
        "auto" => Ok(CgroupSetting::Auto),
        "off" => Ok(CgroupSetting::Off),
        _ => Err("must be auto or off".into()),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("'{s}' is not a boolean (use 1 or 0)")),
    }
}

fn parse_ips(s: &str) -> Result<IpList, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpAddr>()
                .map_err(|_| format!("'{p}' is not an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(IpList)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("100MB").unwrap(), 100_000_000);
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999GB").is_err());
    }
}
