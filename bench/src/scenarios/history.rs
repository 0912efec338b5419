//! `history`: a project with N stored records; the time of `get_messages` for the latest 1 000,
//! for 1 000 after a `since` time in the middle (and a `since_seq` in the middle), and of the
//! replay of 10 000 records on `project_join`.
//!
//! Records are produced by mock agent runs, or — for large N — written directly in the daemon's
//! on-disk format while it is stopped (JSON lines `{type, project_id, seq, ts, direction, data}`
//! in `<data>/projects/<id>/history/<first_seq:020>.jsonl`, 10 000 records per segment, no
//! index files: the daemon rebuilds its block indexes when it starts).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{connect, create_project, number_after, recv, request, send, Ws};
use crate::daemon::{dir_bytes, Daemon, Opts};
use crate::report::{r2, r3, Outcome};
use crate::stats::{us, Summary};
use crate::{err, Paths, Res};

/// Records per segment file (the daemon's default rotation).
const SEGMENT_RECORDS: u64 = 10_000;
/// The most records this scenario makes.
const MAX_RECORDS: u64 = 10_000_000;
/// Records per mock run when generating with runs.
const RUN_LINES: u64 = 100_000;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generate {
    /// Direct when more than 200 000 records, runs otherwise.
    Auto,
    /// `mock:lines` runs through the daemon.
    Runs,
    /// Segment files written while the daemon is stopped.
    Direct,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Params {
    /// Records in the project's history.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Bytes per agent line inside each record.
    #[arg(long, default_value_t = 200)]
    pub bytes: usize,
    /// Repetitions of each measurement.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Records replayed on join (the daemon replays at most 10 000).
    #[arg(long, default_value_t = 10_000)]
    pub replay: u64,
    /// How the records are produced.
    #[arg(long, value_enum, default_value_t = Generate::Auto)]
    pub generate: Generate,
}

pub async fn run(paths: &Paths, p: &Params) -> Res<Outcome> {
    if p.records < 2000 || p.records > MAX_RECORDS {
        return Err(err(format!(
            "--records must be between 2000 and {MAX_RECORDS}"
        )));
    }
    if p.replay == 0 || p.replay >= p.records || p.reps == 0 || p.reps > 1000 {
        return Err(err("--replay must be in 1..records and --reps in 1..=1000"));
    }
    let method = match p.generate {
        Generate::Auto if p.records > 200_000 => Generate::Direct,
        Generate::Auto => Generate::Runs,
        g => g,
    };
    let mut opts = Opts::new(64);
    opts.ready_timeout = Duration::from_secs(600);
    let mut d = Daemon::start(paths, opts).await?;
    let dir = d.project_dir("history")?;
    let setup = || Instant::now() + Duration::from_secs(60);
    let mut ctl = connect(d.port, "/ws").await?;
    let project = create_project(&mut ctl, &dir, setup()).await?;

    let t_gen = Instant::now();
    let mut ready_s = None;
    match method {
        Generate::Direct => {
            let _ = ctl.close(None).await;
            d.stop().await?;
            let hist = d.data_dir.join("projects").join(&project).join("history");
            let proj = project.clone();
            let (records, bytes) = (p.records, p.bytes);
            tokio::task::spawn_blocking(move || write_segments(&hist, &proj, records, bytes))
                .await
                .map_err(|e| err(e.to_string()))??;
            let start = Instant::now();
            d.restart().await?;
            ready_s = Some(start.elapsed().as_secs_f64());
            ctl = connect(d.port, "/ws").await?;
        }
        Generate::Runs => generate_with_runs(&mut d, &mut ctl, &project, p).await?,
        Generate::Auto => unreachable!("resolved above"),
    }
    let gen_s = t_gen.elapsed().as_secs_f64();
    let disk = dir_bytes(&d.data_dir.join("projects").join(&project).join("history"));

    let last = latest(&mut ctl, &project, 1).await?.1;
    if last < p.records {
        return Err(err(format!(
            "history holds {last} records, expected {}",
            p.records
        )));
    }
    let mid = last / 2;
    // The time of record `mid`: `since` that time returns the records after it.
    let mid_ts = {
        let v = request(
            &mut ctl,
            &json!({"type": "get_messages", "id": "mid", "project_id": project,
                "data": {"since_seq": mid - 1, "limit": 1}}),
            setup(),
        )
        .await?;
        v["data"]["messages"][0]["ts"]
            .as_str()
            .ok_or_else(|| err("no record in the middle of history"))?
            .to_string()
    };

    let mut results = serde_json::Map::new();
    let mut summary = vec![format!(
        "{last} records ({:.0} MB on disk) made by {} in {gen_s:.1}s{}",
        disk as f64 / 1e6,
        if method == Generate::Direct {
            "writing segments"
        } else {
            "mock runs"
        },
        ready_s
            .map(|s| format!("; daemon ready {s:.2}s after start (index rebuild)"))
            .unwrap_or_default()
    )];
    let queries: [(&str, Value); 3] = [
        ("latest_1000", json!({"limit": 1000})),
        ("since_ts_mid_1000", json!({"since": mid_ts, "limit": 1000})),
        (
            "since_seq_mid_1000",
            json!({"since_seq": mid, "limit": 1000}),
        ),
    ];
    for (name, data) in queries {
        let mut lat = Vec::with_capacity(p.reps);
        let mut reply_bytes = 0;
        for i in 0..p.reps + 1 {
            let req = json!({"type": "get_messages", "id": format!("{name}-{i}"),
                "project_id": project, "data": data});
            let (t, text) = timed_request(&mut ctl, &req).await?;
            let v: Value = serde_json::from_str(&text)?;
            let msgs = v["data"]["messages"].as_array().map_or(0, Vec::len);
            if msgs != 1000 {
                return Err(err(format!(
                    "{name}: {msgs} records returned, expected 1000"
                )));
            }
            let first = v["data"]["messages"][0]["seq"].as_u64().unwrap_or(0);
            // `since` a time: records stamped in the same millisecond as record `mid` follow it.
            let expect_first = if name == "latest_1000" {
                last - 999
            } else {
                mid + 1
            };
            let ok = if name == "since_ts_mid_1000" {
                first >= expect_first && first < mid + 1000
            } else {
                first == expect_first
            };
            if !ok {
                return Err(err(format!(
                    "{name}: first seq {first}, expected {expect_first}"
                )));
            }
            // The first request warms the page cache and is not counted.
            if i > 0 {
                lat.push(us(t));
            }
            reply_bytes = text.len();
        }
        let s = Summary::from_us(&mut lat);
        summary.push(format!(
            "get_messages {name}: {} ; reply {:.0} KB",
            s.line(),
            reply_bytes as f64 / 1e3
        ));
        results.insert(
            name.into(),
            json!({"latency": s.json(), "reply_bytes": reply_bytes}),
        );
    }

    // Replay on join, on a fresh connection each time.
    let mut lat = Vec::with_capacity(p.reps);
    let mut replayed = 0;
    for i in 0..p.reps + 1 {
        let mut ws = connect(d.port, "/ws").await?;
        let since = last - p.replay;
        let t0 = Instant::now();
        send(
            &mut ws,
            &json!({"type": "project_join", "id": "join", "project_id": project,
                "data": {"since_seq": since}}),
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut n = 0u64;
        let mut joined = None;
        loop {
            let text = recv(&mut ws, deadline).await?;
            if text.starts_with("{\"type\":\"project_joined\"") {
                joined = Some(text);
                continue;
            }
            if text.starts_with("{\"type\":\"error\"") {
                return Err(err(format!("replay failed: {text}")));
            }
            if let Some(seq) = number_after(&text, ",\"seq\":") {
                n += 1;
                if seq as u64 >= last {
                    break;
                }
            }
        }
        let t = t0.elapsed();
        let joined: Value = serde_json::from_str(
            &joined.ok_or_else(|| err("no project_joined before the replay"))?,
        )?;
        replayed = joined["data"]["replayed"].as_u64().unwrap_or(0);
        if n != p.replay || replayed != p.replay || joined["data"]["recovered"] != true {
            return Err(err(format!(
                "replay: received {n} records (project_joined said {replayed}, recovered {}), expected {}",
                joined["data"]["recovered"], p.replay
            )));
        }
        if i > 0 {
            lat.push(us(t));
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    let s = Summary::from_us(&mut lat);
    summary.push(format!(
        "replay of {replayed} on join (to the last record received): {}",
        s.line()
    ));
    results.insert(
        format!("replay_{}", p.replay),
        json!({"latency": s.json(), "records": replayed}),
    );

    d.check_alive()?;
    let rss = d.rss_kib()?;
    let _ = ctl.close(None).await;
    d.stop().await?;
    results.insert("records".into(), json!(last));
    results.insert("disk_bytes".into(), json!(disk));
    results.insert("generate_s".into(), json!(r2(gen_s)));
    results.insert("ready_after_restart_s".into(), json!(ready_s.map(r3)));
    results.insert("daemon_rss_kib".into(), json!(rss));
    Ok(Outcome {
        params: json!({"records": p.records, "bytes": p.bytes, "reps": p.reps, "replay": p.replay,
            "generate": format!("{method:?}").to_lowercase()}),
        results: serde_json::Value::Object(results),
        summary,
    })
}

/// Sends a request and returns the time until its reply arrived, and the reply.
async fn timed_request(ws: &mut Ws, req: &Value) -> Res<(Duration, String)> {
    let id = req["id"].as_str().unwrap_or_default().to_string();
    let needle = format!(",\"id\":\"{id}\"");
    let deadline = Instant::now() + Duration::from_secs(60);
    let t0 = Instant::now();
    send(ws, req).await?;
    loop {
        let text = recv(ws, deadline).await?;
        if text.contains(&needle) {
            let t = t0.elapsed();
            if text.starts_with("{\"type\":\"error\"") {
                return Err(err(format!("{} failed: {text}", req["type"])));
            }
            return Ok((t, text));
        }
    }
}

/// The latest `limit` records: (reply, seq of the newest).
async fn latest(ws: &mut Ws, project: &str, limit: u64) -> Res<(Value, u64)> {
    let v = request(
        ws,
        &json!({"type": "get_messages", "id": "latest", "project_id": project,
            "data": {"limit": limit}}),
        Instant::now() + Duration::from_secs(60),
    )
    .await?;
    let last = v["data"]["next_seq"].as_u64().unwrap_or(0);
    Ok((v, last))
}

/// Fills history with `mock:lines` runs until it holds at least `p.records` records.
async fn generate_with_runs(d: &mut Daemon, ctl: &mut Ws, project: &str, p: &Params) -> Res<()> {
    // Each run also stores 7 records of its own (prompt, states, start, init, result, finish).
    loop {
        let last = latest(ctl, project, 1).await?.1;
        if last >= p.records {
            return Ok(());
        }
        let count = (p.records - last).saturating_sub(7).clamp(1, RUN_LINES);
        send(
            ctl,
            &json!({"type": "execute", "id": "gen", "project_id": project,
                "data": {"prompt": format!("mock:lines count={count} bytes={}", p.bytes)}}),
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let text = recv(ctl, deadline).await?;
            if text.starts_with("{\"type\":\"error\"") {
                return Err(err(format!("a generating run failed: {text}")));
            }
            if text.starts_with("{\"type\":\"project_state\"")
                && text.contains("\"state\":\"IDLE\"")
            {
                break;
            }
            if text.starts_with("{\"type\":\"run_finished\"") && !text.contains("\"completed\"") {
                return Err(err(format!("a generating run did not complete: {text}")));
            }
        }
        d.check_alive()?;
    }
}

/// Writes `n` agent_message records as the daemon would have stored them.
pub fn write_segments(dir: &Path, project: &str, n: u64, bytes: usize) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if matches!(
            path.extension().and_then(|x| x.to_str()),
            Some("jsonl" | "idx")
        ) {
            std::fs::remove_file(path)?;
        }
    }
    const RUN: &str = "00000000-0000-4000-8000-00000000beef";
    // One record per millisecond, ending a little before now: times are strictly increasing and
    // in the past, as a real history's would be.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let base_ms = now_ms - n as i64 - 1000;
    let pad = "x".repeat(bytes);
    let mut out: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut line = String::with_capacity(bytes + 400);
    for seq in 1..=n {
        if (seq - 1) % SEGMENT_RECORDS == 0 {
            if let Some(mut w) = out.take() {
                w.flush()?;
            }
            let f = std::fs::File::create(dir.join(format!("{seq:020}.jsonl")))?;
            out = Some(std::io::BufWriter::with_capacity(1 << 20, f));
        }
        let ms = base_ms + seq as i64;
        let ts = chrono::DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| err("timestamp out of range"))?
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // The agent's line, sized like the mock's: {"type":"mock_line","n":…,"t_ns":…,"pad":"xx"}
        line.clear();
        let head = format!(
            "{{\"type\":\"mock_line\",\"n\":{seq},\"t_ns\":{}000000,\"pad\":\"",
            ms
        );
        let fill = bytes.saturating_sub(head.len() + 2).min(pad.len());
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "{{\"type\":\"agent_message\",\"project_id\":\"{project}\",\"seq\":{seq},\"ts\":\"{ts}\",\"direction\":\"agent\",\"data\":{{\"run_id\":\"{RUN}\",\"message\":{head}{}\"}}}}}}",
            &pad[..fill]
        );
        if let Some(w) = out.as_mut() {
            w.write_all(line.as_bytes())?;
        }
    }
    if let Some(mut w) = out.take() {
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    Ok(())
}
