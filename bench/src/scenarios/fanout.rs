//! `fanout` and `floor`: one project, S subscribers, the mock agent printing L lines of B bytes
//! (as fast as it can, or at `--rate` lines/s). Each line carries the wall-clock time it was
//! written (`t_ns`); each client records the time it received it, and checks that it got every
//! line exactly once, in order. `fanout` runs the daemon, then (unless `--no-floor`) the same
//! load through the floor server, and reports the ratio.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::client::{
    connect, create_project, msg_type, number_after, parse_mock_line, recv, request, send, unix_ns,
    Ws,
};
use crate::daemon::{Daemon, Opts};
use crate::floor::Floor;
use crate::report::{r2, r3, Outcome};
use crate::stats::Summary;
use crate::{err, Paths, Res};

/// The most subscribers a fan-out opens.
pub const MAX_SUBS: usize = 5000;
/// The most deliveries (subscribers × lines) one fan-out may produce.
pub const MAX_DELIVERIES: u64 = 50_000_000;

/// The load of one fan-out, as given on the command line (`floor` takes just this).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadParams {
    /// Subscribers.
    #[arg(long, default_value_t = 100)]
    pub subs: usize,
    /// Lines the mock agent prints [default: about 2 000 000 deliveries, 500 to 200 000 lines;
    /// 1 000 when --rate is set].
    #[arg(long)]
    pub lines: Option<u64>,
    /// Bytes per mock line (the agent's JSON line; the daemon's frame adds its envelope).
    #[arg(long, default_value_t = 200)]
    pub bytes: usize,
    /// Lines per second; 0 = as fast as the agent can write.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Params {
    #[command(flatten)]
    pub load: LoadParams,
    /// Skip the floor run.
    #[arg(long)]
    pub no_floor: bool,
}

/// One fan-out's settings, resolved.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub subs: usize,
    lines: u64,
    bytes: usize,
    rate: f64,
}

impl Load {
    pub fn resolve(p: &LoadParams) -> Res<Load> {
        let LoadParams {
            subs,
            lines,
            bytes,
            rate,
        } = *p;
        if subs == 0 || subs > MAX_SUBS {
            return Err(err(format!("--subs must be between 1 and {MAX_SUBS}")));
        }
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(err("--rate must be >= 0"));
        }
        if bytes > 1 << 20 {
            return Err(err("--bytes must be at most 1 MiB"));
        }
        let lines = lines.unwrap_or(if rate > 0.0 {
            1000
        } else {
            (2_000_000 / subs as u64).clamp(500, 200_000)
        });
        if lines == 0 || subs as u64 * lines > MAX_DELIVERIES {
            return Err(err(format!(
                "--lines must be > 0 and subs × lines at most {MAX_DELIVERIES}"
            )));
        }
        Ok(Load {
            subs,
            lines,
            bytes,
            rate,
        })
    }

    pub fn prompt(&self) -> String {
        format!(
            "mock:lines count={} bytes={} rate={}",
            self.lines, self.bytes, self.rate
        )
    }

    /// How long the whole fan-out may take.
    fn deadline(&self) -> Instant {
        let emit = if self.rate > 0.0 {
            self.lines as f64 / self.rate
        } else {
            0.0
        };
        // Generous: 20 000 deliveries/s is far below any acceptable result.
        let deliver = (self.subs as u64 * self.lines) as f64 / 20_000.0;
        Instant::now() + Duration::from_secs_f64(60.0 + emit + deliver)
    }

    pub fn json(&self) -> Value {
        json!({"subs": self.subs, "lines": self.lines, "bytes": self.bytes, "rate": self.rate})
    }
}

/// What one subscriber saw.
#[derive(Default)]
pub struct Sub {
    got: u64,
    dups: u64,
    out_of_order: u64,
    unexpected: u64,
    seq_regressions: u64,
    lat_us: Vec<u32>,
    first_t_ns: u128,
    last_t_ns: u128,
    last_recv_ns: u128,
    bytes: u64,
    end: Option<String>,
    error: Option<String>,
}

/// Reads mock lines until the message of type `end_type` (or an error or the deadline).
async fn read_lines(ws: &mut Ws, lines: u64, end_type: &str, deadline: Instant) -> Sub {
    let mut s = Sub {
        lat_us: Vec::with_capacity(lines as usize),
        first_t_ns: u128::MAX,
        ..Sub::default()
    };
    let mut seen = vec![0u64; (lines as usize).div_ceil(64)];
    let mut last_n = 0u64;
    let mut last_seq = 0u128;
    loop {
        let text = match recv(ws, deadline).await {
            Ok(t) => t,
            Err(e) => {
                s.error = Some(e.to_string());
                break;
            }
        };
        let now = unix_ns();
        if let Some((n, t_ns)) = parse_mock_line(&text) {
            s.bytes += text.len() as u64;
            if n == 0 || n > lines {
                s.unexpected += 1;
                continue;
            }
            let (w, b) = (((n - 1) / 64) as usize, (n - 1) % 64);
            if seen[w] & (1 << b) != 0 {
                s.dups += 1;
                continue;
            }
            seen[w] |= 1 << b;
            s.got += 1;
            if n <= last_n {
                s.out_of_order += 1;
            }
            last_n = n;
            if let Some(seq) = number_after(&text, ",\"seq\":") {
                if seq <= last_seq {
                    s.seq_regressions += 1;
                }
                last_seq = seq;
            }
            let lat = now.saturating_sub(t_ns) / 1000;
            s.lat_us.push(lat.min(u128::from(u32::MAX)) as u32);
            s.first_t_ns = s.first_t_ns.min(t_ns);
            s.last_t_ns = s.last_t_ns.max(t_ns);
            s.last_recv_ns = now;
        } else if msg_type(&text) == end_type {
            let status = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["data"]["status"].as_str().map(String::from))
                .unwrap_or_else(|| end_type.to_string());
            s.end = Some(status);
            break;
        }
    }
    s
}

/// The aggregate of one fan-out.
pub struct FanResult {
    load: Load,
    expected: u64,
    delivered: u64,
    dups: u64,
    out_of_order: u64,
    unexpected: u64,
    seq_regressions: u64,
    incomplete_clients: usize,
    missing_end: usize,
    errors: usize,
    first_error: Option<String>,
    end_status: Option<String>,
    window_s: f64,
    emit_s: f64,
    pub deliveries_per_s: f64,
    pub lat: Summary,
    frame_bytes: f64,
    server_cpu_s: f64,
    client_cpu_s: f64,
}

impl FanResult {
    pub fn new(load: Load, subs: Vec<Sub>, server_cpu_s: f64, client_cpu_s: f64) -> FanResult {
        let expected = load.subs as u64 * load.lines;
        let mut all = Vec::with_capacity(expected as usize);
        let (mut first_t, mut last_t, mut last_recv) = (u128::MAX, 0u128, 0u128);
        let mut r = FanResult {
            load,
            expected,
            delivered: 0,
            dups: 0,
            out_of_order: 0,
            unexpected: 0,
            seq_regressions: 0,
            incomplete_clients: 0,
            missing_end: 0,
            errors: 0,
            first_error: None,
            end_status: None,
            window_s: 0.0,
            emit_s: 0.0,
            deliveries_per_s: 0.0,
            lat: Summary::default(),
            frame_bytes: 0.0,
            server_cpu_s,
            client_cpu_s,
        };
        let mut bytes = 0u64;
        for s in subs {
            r.delivered += s.got;
            r.dups += s.dups;
            r.out_of_order += s.out_of_order;
            r.unexpected += s.unexpected;
            r.seq_regressions += s.seq_regressions;
            r.incomplete_clients += usize::from(s.got != load.lines);
            if let Some(e) = s.error {
                r.errors += 1;
                r.first_error.get_or_insert(e);
            }
            // Keep the first status that is not a clean end, else the clean one.
            match s.end {
                Some(st)
                    if r.end_status.is_none() || !matches!(st.as_str(), "completed" | "end") =>
                {
                    if r.end_status
                        .as_deref()
                        .is_none_or(|e| matches!(e, "completed" | "end"))
                    {
                        r.end_status = Some(st);
                    }
                }
                Some(_) => {}
                None => r.missing_end += 1,
            }
            first_t = first_t.min(s.first_t_ns);
            last_t = last_t.max(s.last_t_ns);
            last_recv = last_recv.max(s.last_recv_ns);
            bytes += s.bytes;
            all.extend(s.lat_us);
        }
        if r.delivered > 0 {
            r.window_s = last_recv.saturating_sub(first_t) as f64 / 1e9;
            r.emit_s = last_t.saturating_sub(first_t) as f64 / 1e9;
            r.deliveries_per_s = r.delivered as f64 / r.window_s.max(1e-9);
            r.frame_bytes = bytes as f64 / r.delivered as f64;
        }
        r.lat = Summary::from_us(&mut all);
        r
    }

    pub fn complete(&self) -> bool {
        self.delivered == self.expected
            && self.dups == 0
            && self.out_of_order == 0
            && self.errors == 0
            && self.missing_end == 0
            && matches!(self.end_status.as_deref(), Some("completed" | "end"))
    }

    pub fn json(&self) -> Value {
        json!({
            "expected": self.expected,
            "delivered": self.delivered,
            "missing": self.expected - self.delivered,
            "duplicates": self.dups,
            "out_of_order": self.out_of_order,
            "unexpected": self.unexpected,
            "seq_regressions": self.seq_regressions,
            "incomplete_clients": self.incomplete_clients,
            "client_errors": self.errors,
            "clients_without_end": self.missing_end,
            "first_error": self.first_error,
            "run_status": self.end_status,
            "complete": self.complete(),
            "window_s": r3(self.window_s),
            "emit_s": r3(self.emit_s),
            "deliveries_per_s": r2(self.deliveries_per_s),
            "latency": self.lat.json(),
            "frame_bytes": r2(self.frame_bytes),
            "server_cpu_s": r3(self.server_cpu_s),
            "server_cores_used": r2(self.server_cpu_s / self.window_s.max(1e-9)),
            "client_cpu_s": r3(self.client_cpu_s),
            "client_cores_used": r2(self.client_cpu_s / self.window_s.max(1e-9)),
        })
    }

    pub fn lines(&self, who: &str) -> Vec<String> {
        let l = &self.load;
        vec![
            format!(
                "{who}: {} subs × {} lines of {} B{}: {}/{} delivered{} in {:.3}s (agent wrote for {:.3}s) = {:.0} deliveries/s; frame {:.0} B; CPU: server {:.2}s ({:.2} cores), bench clients {:.2}s",
                l.subs,
                l.lines,
                l.bytes,
                if l.rate > 0.0 { format!(" at {} lines/s", l.rate) } else { " (fast)".into() },
                self.delivered,
                self.expected,
                if self.complete() { ", all complete and in order".to_string() } else {
                    format!(" — INCOMPLETE: {} dups, {} out of order, {} client errors ({})",
                        self.dups, self.out_of_order, self.errors, self.first_error.as_deref().unwrap_or("-"))
                },
                self.window_s,
                self.emit_s,
                self.deliveries_per_s,
                self.frame_bytes,
                self.server_cpu_s,
                self.server_cpu_s / self.window_s.max(1e-9),
                self.client_cpu_s,
            ),
            format!("{who}: end-to-end latency {}", self.lat.line()),
        ]
    }
}

/// CPU seconds used so far by the bench's client threads.
pub fn client_cpu_s() -> f64 {
    crate::daemon::threads_cpu_s(&[crate::CLIENT_THREADS])
}

/// Connects `n` clients to `port`, running `setup` on each (64 at a time).
pub async fn connect_many<F, Fut>(port: u16, n: usize, setup: F) -> Res<Vec<Ws>>
where
    F: Fn(Ws) -> Fut,
    Fut: std::future::Future<Output = Res<Ws>>,
{
    futures_util::stream::iter(0..n)
        .map(|_| async {
            let ws = connect(port, "/ws").await?;
            setup(ws).await
        })
        .buffer_unordered(64)
        .try_collect()
        .await
}

/// The fan-out through the daemon.
pub async fn daemon_fanout(paths: &Paths, load: Load) -> Res<FanResult> {
    let mut d = Daemon::start(paths, Opts::new(load.subs + 16)).await?;
    let port = d.port;
    let dir = d.project_dir("fanout")?;
    let setup_deadline = Instant::now() + Duration::from_secs(120);
    // Client 0 creates the project and runs the agent (execute subscribes it); the others join.
    let mut runner = connect(port, "/ws").await?;
    let project = create_project(&mut runner, &dir, setup_deadline).await?;
    let others = connect_many(port, load.subs - 1, |ws| {
        joined(ws, project.clone(), setup_deadline)
    })
    .await?;
    let cpu0 = d.cpu_s()?;
    let ccpu0 = client_cpu_s();
    let subs = measure(load, &project, runner, others).await?;
    let cpu = d.cpu_s()? - cpu0;
    let ccpu = client_cpu_s() - ccpu0;
    d.check_alive()?;
    d.stop().await?;
    Ok(FanResult::new(load, subs, cpu, ccpu))
}

/// Runs the agent from `runner` (its `execute` subscribes it) and reads every line on it and on
/// the joined `others`; returns what each of them saw.
pub async fn measure(load: Load, project: &str, mut runner: Ws, others: Vec<Ws>) -> Res<Vec<Sub>> {
    let deadline = load.deadline();
    let mut tasks = Vec::with_capacity(load.subs);
    for mut ws in others {
        tasks.push(tokio::spawn(async move {
            let s = read_lines(&mut ws, load.lines, "run_finished", deadline).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
            s
        }));
    }
    send(
        &mut runner,
        &json!({"type": "execute", "id": "run", "project_id": project,
            "data": {"prompt": load.prompt()}}),
    )
    .await?;
    tasks.push(tokio::spawn(async move {
        let s = read_lines(&mut runner, load.lines, "run_finished", deadline).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), runner.close(None)).await;
        s
    }));
    let mut subs = Vec::with_capacity(load.subs);
    for t in tasks {
        subs.push(t.await.map_err(|e| err(e.to_string()))?);
    }
    Ok(subs)
}

/// Joins `project` on a fresh connection.
pub async fn joined(mut ws: Ws, project: String, deadline: Instant) -> Res<Ws> {
    request(
        &mut ws,
        &json!({"type": "project_join", "id": "join", "project_id": project}),
        deadline,
    )
    .await?;
    Ok(ws)
}

/// The same fan-out through the floor server.
async fn floor_fanout(paths: &Paths, load: Load) -> Res<FanResult> {
    let floor = Floor::start(2, load.lines as usize + 64)?;
    let cwd = tempfile::tempdir()?;
    let clients = connect_many(floor.port, load.subs, |ws| async { Ok(ws) }).await?;
    let setup_deadline = Instant::now() + Duration::from_secs(60);
    while floor.subscribers() < load.subs {
        if Instant::now() > setup_deadline {
            return Err(err("the floor server did not register every subscriber"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = load.deadline();
    let cpu0 = Floor::cpu_s();
    let ccpu0 = client_cpu_s();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let s = read_lines(&mut ws, load.lines, "end", deadline).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                s
            })
        })
        .collect();
    let done = floor.feed(paths.mock.clone(), cwd.path().to_path_buf(), load.prompt());
    let mut subs = Vec::with_capacity(load.subs);
    for t in tasks {
        subs.push(t.await.map_err(|e| err(e.to_string()))?);
    }
    let cpu = Floor::cpu_s() - cpu0;
    let ccpu = client_cpu_s() - ccpu0;
    tokio::time::timeout_at(deadline.into(), done)
        .await
        .map_err(|_| err("the floor's agent did not finish"))?
        .map_err(|_| err("the floor server stopped"))??;
    drop(floor);
    Ok(FanResult::new(load, subs, cpu, ccpu))
}

pub async fn run(paths: &Paths, p: &Params) -> Res<Outcome> {
    let load = Load::resolve(&p.load)?;
    let daemon = daemon_fanout(paths, load).await?;
    let mut summary = daemon.lines("daemon");
    let mut results = json!({"daemon": daemon.json()});
    if !p.no_floor {
        let floor = floor_fanout(paths, load).await?;
        summary.extend(floor.lines("floor"));
        let ratio = daemon.deliveries_per_s / floor.deliveries_per_s.max(1e-9);
        let p99_ratio = daemon.lat.p99 / floor.lat.p99.max(1e-9);
        summary.push(format!(
            "daemon / floor: {ratio:.3} of the floor's deliveries/s; p99 latency {p99_ratio:.2}× the floor's"
        ));
        results["floor"] = floor.json();
        results["ratio_deliveries_per_s"] = json!(r3(ratio));
        results["ratio_p99_latency"] = json!(r3(p99_ratio));
    }
    if !daemon.complete() {
        summary.push("WARNING: the daemon did not deliver every line to every client".into());
    }
    Ok(Outcome {
        params: load.json(),
        results,
        summary,
    })
}

pub async fn run_floor_only(paths: &Paths, p: &LoadParams) -> Res<Outcome> {
    let load = Load::resolve(p)?;
    let floor = floor_fanout(paths, load).await?;
    Ok(Outcome {
        params: load.json(),
        summary: floor.lines("floor"),
        results: json!({"floor": floor.json()}),
    })
}
