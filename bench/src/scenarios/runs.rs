//! `runs`: agent runs with the mock agent.
//!
//! 1. The mock's own start time: spawned directly (same command line as the daemon's), from
//!    spawn to its first stdout line.
//! 2. The daemon's overhead per run, on one project, one run at a time: from `execute` sent to
//!    the first `agent_message` received, minus (1). The times of `execute_accepted` and
//!    `run_started` show where it goes.
//! 3. Runs per minute: every project runs back to back, all projects at once.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::Barrier;

use crate::client::{connect, create_project, msg_type, quickack, recv, send, Ws};
use crate::daemon::{Daemon, Opts};
use crate::report::{r2, r3, Outcome};
use crate::stats::{us, Summary};
use crate::{err, Paths, Res};

#[derive(clap::Args, Debug, Clone)]
pub struct Params {
    /// Projects running at once (at most 100).
    #[arg(long, default_value_t = 10)]
    pub projects: usize,
    /// Runs in the throughput phase, spread evenly over the projects (at most 100 000).
    #[arg(long, default_value_t = 300)]
    pub runs: usize,
    /// Sequential runs for the overhead phase (and direct spawns of the mock).
    #[arg(long, default_value_t = 30)]
    pub overhead_runs: usize,
    /// The prompt (which mock scenario runs).
    #[arg(long, default_value = "mock:success")]
    pub prompt: String,
}

/// Times within one run, from `execute` sent.
struct RunTimes {
    accepted: Duration,
    started: Duration,
    first_output: Duration,
    finished: Duration,
}

/// Sends `execute` and waits for `run_finished`.
async fn one_run(ws: &mut Ws, project: &str, prompt: &str, id: &str, quick: bool) -> Res<RunTimes> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let t0 = Instant::now();
    send(
        ws,
        &json!({"type": "execute", "id": id, "project_id": project, "data": {"prompt": prompt}}),
    )
    .await?;
    let (mut accepted, mut started, mut first) = (None, None, None);
    loop {
        if quick {
            quickack(ws);
        }
        let text = recv(ws, deadline).await?;
        let t = t0.elapsed();
        match msg_type(&text) {
            "execute_accepted" => accepted = accepted.or(Some(t)),
            "run_started" => started = started.or(Some(t)),
            "agent_message" => first = first.or(Some(t)),
            "run_finished" => {
                if !text.contains("\"status\":\"completed\"") {
                    return Err(err(format!("a run did not complete: {text}")));
                }
                let missing =
                    || err("a run finished without execute_accepted, run_started or output");
                return Ok(RunTimes {
                    accepted: accepted.ok_or_else(missing)?,
                    started: started.ok_or_else(missing)?,
                    first_output: first.ok_or_else(missing)?,
                    finished: t,
                });
            }
            "error" => return Err(err(format!("execute failed: {text}"))),
            _ => {}
        }
    }
}

/// Spawns the mock agent directly `n` times: time from spawn to its first stdout line.
async fn mock_start(paths: &Paths, cwd: &std::path::Path, prompt: &str, n: usize) -> Res<Vec<u32>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..=n {
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new(&paths.mock)
            .args([
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--",
                prompt,
            ])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| err("no stdout"))?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line))
            .await
            .map_err(|_| err("the mock agent printed nothing within 30s"))??;
        let t = t0.elapsed();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await?;
        child.wait().await?;
        if i > 0 {
            out.push(us(t));
        }
    }
    Ok(out)
}

pub async fn run(paths: &Paths, p: &Params) -> Res<Outcome> {
    if p.projects == 0
        || p.projects > 100
        || p.runs == 0
        || p.runs > 100_000
        || p.overhead_runs == 0
        || p.overhead_runs > 10_000
    {
        return Err(err(
            "--projects must be 1..=100, --runs 1..=100000, --overhead-runs 1..=10000",
        ));
    }
    let opts = Opts::new(p.projects + 16)
        .env("AGENTVISOR_MAX_CONCURRENT_RUNS", p.projects.to_string())
        .env("AGENTVISOR_MAX_QUEUE", "64");
    let mut d = Daemon::start(paths, opts).await?;
    let port = d.port;
    let mut clients = Vec::with_capacity(p.projects);
    for i in 0..p.projects {
        let dir = d.project_dir(&format!("run{i:03}"))?;
        let mut ws = connect(port, "/ws").await?;
        let id = create_project(&mut ws, &dir, Instant::now() + Duration::from_secs(30)).await?;
        clients.push((ws, id));
    }

    // 1. The mock's own start.
    let mut mock = mock_start(paths, &d.root, &p.prompt, p.overhead_runs).await?;
    let mock_s = Summary::from_us(&mut mock);

    // 2. Overhead: one run at a time on the first project (two warm-up runs first, which also
    //    store the session id, as in steady use).
    let (ws0, project0) = &mut clients[0];
    for i in 0..2 {
        one_run(ws0, project0, &p.prompt, &format!("warm{i}"), false).await?;
    }
    let plain = overhead_phase(ws0, project0, p, false).await?;
    // The same with the client acknowledging at once: what is left is the daemon's own work.
    let quick = overhead_phase(ws0, project0, p, true).await?;
    d.check_alive()?;
    let overhead_ms = plain.first.p50 - mock_s.p50;
    let overhead_quick_ms = quick.first.p50 - mock_s.p50;

    // 3. Throughput: every project back to back, all at once.
    let per_project = p.runs.div_ceil(p.projects);
    let barrier = Arc::new(Barrier::new(p.projects + 1));
    let prompt = p.prompt.clone();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(mut ws, project)| {
            let barrier = barrier.clone();
            let prompt = prompt.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut durations = Vec::with_capacity(per_project);
                for i in 0..per_project {
                    let t = one_run(&mut ws, &project, &prompt, &format!("tp{i}"), false).await?;
                    durations.push(us(t.finished));
                }
                let _ = ws.close(None).await;
                Ok::<_, crate::Error>(durations)
            })
        })
        .collect();
    let cpu0 = d.cpu_s()?;
    barrier.wait().await;
    let t0 = Instant::now();
    let mut durations = Vec::new();
    for t in tasks {
        durations.extend(t.await.map_err(|e| err(e.to_string()))??);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = d.cpu_s()? - cpu0;
    d.check_alive()?;
    d.stop().await?;
    let total = durations.len();
    let per_min = total as f64 / elapsed * 60.0;
    let dur = Summary::from_us(&mut durations);

    let mut summary = vec![format!(
        "mock agent alone, spawn to first line: {}",
        mock_s.line()
    )];
    summary.extend(plain.lines(""));
    summary.push(format!("=> daemon overhead per run (median first agent_message − median mock start): {overhead_ms:.3} ms"));
    summary.extend(quick.lines(" [client quick-ACK]"));
    summary.push(format!("=> with the client acknowledging at once (as if the daemon set TCP_NODELAY): {overhead_quick_ms:.3} ms"));
    summary.push(format!(
        "throughput: {total} runs over {} projects in {elapsed:.2}s = {per_min:.0} runs/min; run {}; daemon CPU {cpu:.2}s ({:.2} cores)",
        p.projects,
        dur.line(),
        cpu / elapsed
    ));
    Ok(Outcome {
        params: json!({"projects": p.projects, "runs": total, "overhead_runs": p.overhead_runs, "prompt": p.prompt}),
        results: json!({
            "mock_start": mock_s.json(),
            "overhead": plain.json(),
            "overhead_ms": r3(overhead_ms),
            "overhead_quickack": quick.json(),
            "overhead_quickack_ms": r3(overhead_quick_ms),
            "runs": total,
            "elapsed_s": r3(elapsed),
            "runs_per_min": r2(per_min),
            "run_duration": dur.json(),
            "daemon_cpu_s": r3(cpu),
        }),
        summary,
    })
}

/// Percentiles of the phases of sequential runs.
struct Phases {
    accepted: Summary,
    started: Summary,
    first: Summary,
    finished: Summary,
}

impl Phases {
    fn json(&self) -> serde_json::Value {
        json!({
            "execute_to_accepted": self.accepted.json(),
            "execute_to_run_started": self.started.json(),
            "execute_to_first_agent_message": self.first.json(),
            "execute_to_run_finished": self.finished.json(),
        })
    }

    fn lines(&self, tag: &str) -> Vec<String> {
        vec![
            format!(
                "daemon{tag}, execute to execute_accepted: {}",
                self.accepted.line()
            ),
            format!(
                "daemon{tag}, execute to run_started: {}",
                self.started.line()
            ),
            format!(
                "daemon{tag}, execute to first agent_message: {}",
                self.first.line()
            ),
            format!(
                "daemon{tag}, execute to run_finished: {}",
                self.finished.line()
            ),
        ]
    }
}

/// `overhead_runs` runs one after another on one project.
async fn overhead_phase(ws: &mut Ws, project: &str, p: &Params, quick: bool) -> Res<Phases> {
    let (mut acc, mut start, mut first, mut fin) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..p.overhead_runs {
        let t = one_run(ws, project, &p.prompt, &format!("ov{i}"), quick).await?;
        acc.push(us(t.accepted));
        start.push(us(t.started));
        first.push(us(t.first_output));
        fin.push(us(t.finished));
    }
    Ok(Phases {
        accepted: Summary::from_us(&mut acc),
        started: Summary::from_us(&mut start),
        first: Summary::from_us(&mut first),
        finished: Summary::from_us(&mut fin),
    })
}
