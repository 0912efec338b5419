//! The health actor: samples the process and the machine in the background and publishes the
//! result, so that `/health` and `health_check` only read a ready-made value and never wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::json;

use crate::agent::{resolve_program, AgentProbe};
use crate::api::health::Panic;
use crate::api::supervisor::{ChildGuard, ChildId, SupervisorHandle};
use crate::engine::Engine;
use crate::procfs;

const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const PROBE_AGENTS_EVERY: Duration = Duration::from_secs(60);

pub struct HealthActor {
    engine: Arc<Engine>,
    /// Messages counted at the last `server_stats`, for the rate.
    last_messages: (Instant, u64),
    cpu: Option<(Instant, u64)>,
    agents: serde_json::Value,
    _guard: ChildGuard,
}

impl HealthActor {
    pub fn new(engine: Arc<Engine>, sup: Option<SupervisorHandle>) -> Self {
        HealthActor {
            last_messages: (Instant::now(), 0),
            engine,
            cpu: None,
            agents: json!({}),
            _guard: ChildGuard::new(ChildId::Health, sup),
        }
    }

    pub(crate) fn sample(&mut self) {
        crate::executor::process::reap_orphans();
        let engine = self.engine.clone();
        let cfg = &engine.config;
        let rss = procfs::resident_bytes();
        let fds = procfs::open_fds();
        let cpu_percent = self.cpu_percent();
        let mem_available = procfs::meminfo_kb("MemAvailable").map(|kb| kb * 1024);
        let disk_free = disk_free_bytes(&cfg.data_dir);
        let disk_ok = disk_free.is_none_or(|f| f >= cfg.disk_warn_bytes);
        let load = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|l| l.parse::<f64>().ok())
        });
        let status = if disk_ok { "ok" } else { "degraded" };
        let report = json!({
            "status": status,
            "checks": {
                "cpu": {"process_percent": cpu_percent, "load_1m": load},
                "memory": {"resident_bytes": rss, "system_available_bytes": mem_available},
                "disk": {
                    "status": if disk_ok { "ok" } else { "low" },
                    "free_bytes": disk_free,
                    "warn_below_bytes": cfg.disk_warn_bytes,
                },
                "open_fds": fds,
                "agents": self.agents,
                "connections": self.engine.directory.connection_count(),
                "runs_active": self.engine.stats.runs_active.load(Ordering::Relaxed),
                "isolation": crate::executor::cgroup::mode().name(),
            },
            "sampled_at": crate::time::now_rfc3339(),
        });
        if let Ok(mut h) = self.engine.health.write() {
            *h = report;
        }
    }

    /// Sends `server_stats` to every connection.
    fn push_stats(&mut self) {
        let stats = &self.engine.stats;
        let messages =
            stats.messages_in.load(Ordering::Relaxed) + stats.messages_out.load(Ordering::Relaxed);
        let now = Instant::now();
        let (then, before) = std::mem::replace(&mut self.last_messages, (now, messages));
        let secs = now.duration_since(then).as_secs_f64().max(0.001);
        let data = json!({
            "connections": self.engine.directory.connection_count(),
            "projects": self.engine.directory.projects_by_state(),
            "runs_active": stats.runs_active.load(Ordering::Relaxed),
            "runs_total": stats.runs_total.load(Ordering::Relaxed),
            "messages_per_s": ((messages - before) as f64 / secs * 10.0).round() / 10.0,
            "uptime_s": self.engine.uptime_s(),
        });
        let frame = crate::protocol::FrameBuilder::new("server_stats").encode(&data);
        self.engine
            .directory
            .signal_connections(|| crate::api::connection::ConnectionSignal::Push(frame.clone()));
    }

    fn cpu_percent(&mut self) -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        let now = Instant::now();
        let prev = self.cpu.replace((now, ticks));
        let (t0, ticks0) = prev?;
        let hz = 100.0; // USER_HZ on Linux
        let secs = now.duration_since(t0).as_secs_f64();
        (secs > 0.0).then(|| ((ticks - ticks0) as f64 / hz) / secs * 100.0)
    }

    fn probe_agents(&mut self, ctx: &mut Context<Self>) {
        let cfg = &self.engine.config;
        let bins = crate::agent::all().map(|a| (a.kind(), a.binary(cfg).to_string()));
        let fut = async move {
            let mut out = serde_json::Map::new();
            for (kind, bin) in bins {
                let probe = match resolve_program(&bin) {
                    Some(path) => AgentProbe::run(&path).await,
                    None => AgentProbe::missing(),
                };
                out.insert(
                    kind.as_str().into(),
                    serde_json::to_value(probe).unwrap_or_default(),
                );
            }
            serde_json::Value::Object(out)
        };
        ctx.spawn(fut.into_actor(self).map(|agents, act, _| {
            act.agents = agents;
            act.sample();
        }));
    }
}

impl Actor for HealthActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sample();
        self.probe_agents(ctx);
        ctx.run_interval(SAMPLE_EVERY, |act, _| act.sample());
        ctx.run_interval(PROBE_AGENTS_EVERY, |act, ctx| act.probe_agents(ctx));
        if let Some(every) = self.engine.config.stats_interval {
            ctx.run_interval(every, |act, _| act.push_stats());
        }
    }
}

/// Fault injection: panic inside a handler.
impl Handler<Panic> for HealthActor {
    type Result = ();

    fn handle(&mut self, _: Panic, _: &mut Self::Context) {
        panic!("fault injected into the health actor");
    }
}

/// Free bytes on the file system holding `dir`.
pub fn disk_free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    (rc == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
}
