//! `abuse`: history abuse beside a live run. One project holds a large history of agent lines
//! (written directly, as `history` does); clients loop the heaviest history requests there are
//! against it — a `direction` filter that matches nothing, `since` far back, the latest 1 000
//! large records, a replay on join — while a run streams on another project. Measured twice,
//! without and with the abuse: the latency of the run's live output (the mock agent writes the
//! time it printed each line, `t_ns`; each line's latency is when the subscriber read it minus
//! that) and of `execute_accepted` for short runs on the same project.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{connect, create_project, parse_mock_line, recv, request, unix_ns, Ws};
use crate::daemon::{Daemon, Opts};
use crate::report::{r2, Outcome};
use crate::stats::{us, Summary};
use crate::{err, Paths, Res};

#[derive(clap::Args, Debug, Clone)]
pub struct Params {
    /// Records in the abused project's history.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Bytes per agent line inside each of those records.
    #[arg(long, default_value_t = 1000)]
    pub bytes: usize,
    /// Clients looping heavy history requests (at most 16).
    #[arg(long, default_value_t = 4)]
    pub abusers: usize,
    /// Lines the live run prints, per phase.
    #[arg(long, default_value_t = 2000)]
    pub lines: u64,
    /// The live run's lines per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Short runs timed from `execute` to `execute_accepted`, per phase.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
}

/// The abusers' requests, in turn (`project_join` replays the newest 10 000 records).
fn abuse_requests(project: &str, last: u64) -> Vec<Value> {
    let q = |data: Value| json!({"type": "get_messages", "project_id": project, "data": data});
    vec![
        q(json!({"direction": "client", "since_seq": 0, "limit": 1000})),
        q(json!({"limit": 1000})),
        q(json!({"direction": "system", "since": "2000-01-01T00:00:00Z", "limit": 1000})),
        q(json!({"direction": "client", "limit": 1000})),
        json!({"type": "project_join", "project_id": project,
            "data": {"since_seq": last.saturating_sub(10_000)}}),
        json!({"type": "project_leave", "project_id": project}),
    ]
}

/// What one phase measured.
struct Phase {
    output: Summary,
    accepted: Summary,
}

pub async fn run(paths: &Paths, p: &Params) -> Res<Outcome> {
    if !(10_000..=2_000_000).contains(&p.records) || p.abusers == 0 || p.abusers > 16 {
        return Err(err(
            "--records must be in 10000..=2000000 and --abusers in 1..=16",
        ));
    }
    if p.lines == 0 || p.lines > 100_000 || p.rate <= 0.0 || p.runs == 0 || p.runs > 1000 {
        return Err(err(
            "--lines must be in 1..=100000, --rate above 0, --runs in 1..=1000",
        ));
    }
    let mut opts = Opts::new(64);
    opts.ready_timeout = Duration::from_secs(600);
    let mut d = Daemon::start(paths, opts).await?;
    let setup = || Instant::now() + Duration::from_secs(60);
    let mut ctl = connect(d.port, "/ws").await?;
    let heavy = create_project(&mut ctl, &d.project_dir("heavy")?, setup()).await?;
    let live = create_project(&mut ctl, &d.project_dir("live")?, setup()).await?;
    let _ = ctl.close(None).await;
    d.stop().await?;
    let hist = d.data_dir.join("projects").join(&heavy).join("history");
    let (records, bytes, proj) = (p.records, p.bytes, heavy.clone());
    tokio::task::spawn_blocking(move || {
        super::history::write_segments(&hist, &proj, records, bytes)
    })
    .await
    .map_err(|e| err(e.to_string()))??;
    d.restart().await?;

    let mut sub = connect(d.port, "/ws").await?;
    request(
        &mut sub,
        &json!({"type": "project_join", "id": "join", "project_id": live}),
        setup(),
    )
    .await?;
    let base = phase(&mut sub, &live, p).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut abusers = Vec::with_capacity(p.abusers);
    for _ in 0..p.abusers {
        let ws = connect(d.port, "/ws").await?;
        let reqs = abuse_requests(&heavy, p.records);
        abusers.push(tokio::spawn(abuse(
            ws,
            reqs,
            stop.clone(),
            answered.clone(),
        )));
    }
    // Let every abuser have a request in flight first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t_abuse = Instant::now();
    let abused = phase(&mut sub, &live, p).await;
    let abuse_s = t_abuse.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for a in abusers {
        a.await.map_err(|e| err(e.to_string()))??;
    }
    let abused = abused?;
    d.check_alive()?;
    let _ = sub.close(None).await;
    d.stop().await?;

    let per_s = answered.load(Ordering::Relaxed) as f64 / abuse_s;
    let ratio = |a: f64, b: f64| if b > 0.0 { r2(a / b) } else { 0.0 };
    let summary = vec![
        format!(
            "live output, alone: {}; beside the abuse: {}",
            base.output.line(),
            abused.output.line()
        ),
        format!(
            "execute_accepted, alone: {}; beside the abuse: {}",
            base.accepted.line(),
            abused.accepted.line()
        ),
        format!(
            "ratios (abuse / alone): output p50 {}, p99 {}; execute_accepted p50 {}, p99 {}; {} abusers answered {per_s:.1} requests/s",
            ratio(abused.output.p50, base.output.p50),
            ratio(abused.output.p99, base.output.p99),
            ratio(abused.accepted.p50, base.accepted.p50),
            ratio(abused.accepted.p99, base.accepted.p99),
            p.abusers
        ),
    ];
    Ok(Outcome {
        params: json!({"records": p.records, "bytes": p.bytes, "abusers": p.abusers,
            "lines": p.lines, "rate": p.rate, "runs": p.runs}),
        results: json!({
            "alone": {"output": base.output.json(), "accepted": base.accepted.json()},
            "abused": {"output": abused.output.json(), "accepted": abused.accepted.json()},
            "output_p50_ratio": ratio(abused.output.p50, base.output.p50),
            "output_p99_ratio": ratio(abused.output.p99, base.output.p99),
            "accepted_p50_ratio": ratio(abused.accepted.p50, base.accepted.p50),
            "accepted_p99_ratio": ratio(abused.accepted.p99, base.accepted.p99),
            "abuse_requests_per_s": r2(per_s),
        }),
        summary,
    })
}

/// One measurement: the live run's output latency, then short runs' `execute_accepted`.
async fn phase(sub: &mut Ws, project: &str, p: &Params) -> Res<Phase> {
    let prompt = format!("mock:lines count={} bytes=200 rate={}", p.lines, p.rate);
    let deadline = Instant::now() + Duration::from_secs_f64(p.lines as f64 / p.rate + 120.0);
    request(
        sub,
        &json!({"type": "execute", "id": "live", "project_id": project,
            "data": {"prompt": prompt}}),
        deadline,
    )
    .await?;
    let mut lat = Vec::with_capacity(p.lines as usize);
    loop {
        let text = recv(sub, deadline).await?;
        if let Some((_, t_ns)) = parse_mock_line(&text) {
            lat.push((unix_ns().saturating_sub(t_ns) / 1000).min(u128::from(u32::MAX)) as u32);
        } else if text.starts_with("{\"type\":\"run_finished\"") {
            break;
        }
    }
    if lat.len() as u64 != p.lines {
        return Err(err(format!(
            "the live run delivered {} of {} lines",
            lat.len(),
            p.lines
        )));
    }
    let mut accepted = Vec::with_capacity(p.runs);
    for i in 0..p.runs {
        let t0 = Instant::now();
        request(
            sub,
            &json!({"type": "execute", "id": format!("short-{i}"), "project_id": project,
                "data": {"prompt": "mock:success"}}),
            Instant::now() + Duration::from_secs(60),
        )
        .await?;
        accepted.push(us(t0.elapsed()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !recv(sub, deadline)
            .await?
            .starts_with("{\"type\":\"run_finished\"")
        {}
    }
    Ok(Phase {
        output: Summary::from_us(&mut lat),
        accepted: Summary::from_us(&mut accepted),
    })
}

/// Sends the requests in turn, each once the one before is answered, until `stop`.
async fn abuse(
    mut ws: Ws,
    reqs: Vec<Value>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> Res<()> {
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let mut req = reqs[i % reqs.len()].clone();
        req["id"] = json!(format!("abuse-{i}"));
        request(&mut ws, &req, Instant::now() + Duration::from_secs(120)).await?;
        answered.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
    let _ = ws.close(None).await;
    Ok(())
}
