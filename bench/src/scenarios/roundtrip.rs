//! `roundtrip`: request/reply latency and throughput. 100 projects exist; C clients each send R
//! `project_list` requests one after another (closed loop), then R `health_check` requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Barrier;

use crate::client::{connect, create_project, msg_type, recv, request, send_text};
use crate::daemon::{Daemon, Opts};
use crate::report::{r2, r3, Outcome};
use crate::stats::{us, Summary};
use crate::{err, Paths, Res};

#[derive(clap::Args, Debug, Clone)]
pub struct Params {
    /// Concurrent clients (at most 1000).
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Requests per client and request type.
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Projects to create first (what `project_list` returns).
    #[arg(long, default_value_t = 100)]
    pub projects: usize,
}

/// Requests measured: (request type, reply type).
const KINDS: [(&str, &str); 2] = [("project_list", "project_list"), ("health_check", "health")];

pub async fn run(paths: &Paths, p: &Params) -> Res<Outcome> {
    if p.clients == 0 || p.clients > 1000 || p.requests == 0 || p.requests > 100_000 {
        return Err(err("--clients must be 1..=1000 and --requests 1..=100000"));
    }
    if p.projects > 1000 {
        return Err(err("--projects must be at most 1000"));
    }
    let mut d = Daemon::start(paths, Opts::new(p.clients + 16)).await?;
    let port = d.port;
    let mut ctl = connect(port, "/ws").await?;
    let t_create = Instant::now();
    for i in 0..p.projects {
        let dir = d.project_dir(&format!("p{i:04}"))?;
        create_project(&mut ctl, &dir, Instant::now() + Duration::from_secs(30)).await?;
    }
    let create_s = t_create.elapsed().as_secs_f64();
    let listed = request(
        &mut ctl,
        &json!({"type": "project_list", "id": "check"}),
        Instant::now() + Duration::from_secs(30),
    )
    .await?;
    let count = listed["data"]["projects"].as_array().map_or(0, Vec::len);
    if count != p.projects {
        return Err(err(format!(
            "project_list returned {count} projects, expected {}",
            p.projects
        )));
    }

    let mut results = serde_json::Map::new();
    let mut summary = vec![format!(
        "{} projects created in {create_s:.2}s ({:.1} ms each)",
        p.projects,
        create_s * 1000.0 / p.projects.max(1) as f64
    )];
    for (kind, reply) in KINDS {
        let barrier = Arc::new(Barrier::new(p.clients + 1));
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut tasks = Vec::new();
        for _ in 0..p.clients {
            let barrier = barrier.clone();
            let requests = p.requests;
            tasks.push(tokio::spawn(async move {
                let mut ws = connect(port, "/ws").await?;
                let mut lat = Vec::with_capacity(requests);
                let mut bytes = 0usize;
                // A few unmeasured requests first.
                for i in 0..(requests + 5) {
                    if i == 5 {
                        barrier.wait().await;
                    }
                    let id = format!("q{i}");
                    let t0 = Instant::now();
                    send_text(&mut ws, format!("{{\"type\":\"{kind}\",\"id\":\"{id}\"}}")).await?;
                    let prefix = format!("{{\"type\":\"{reply}\",\"id\":\"{id}\"");
                    loop {
                        let text = recv(&mut ws, deadline).await?;
                        if text.starts_with(&prefix) {
                            if i >= 5 {
                                lat.push(us(t0.elapsed()));
                                bytes = text.len();
                            }
                            break;
                        }
                        if msg_type(&text) == "error" {
                            return Err(err(format!("{kind} failed: {text}")));
                        }
                    }
                }
                let _ = ws.close(None).await;
                Ok::<_, crate::Error>((lat, bytes))
            }));
        }
        // Start the clock once every client is connected and warmed up.
        tokio::time::timeout(Duration::from_secs(60), barrier.wait())
            .await
            .map_err(|_| err("clients did not connect in time"))?;
        let t0 = Instant::now();
        let mut all = Vec::with_capacity(p.clients * p.requests);
        let mut reply_bytes = 0;
        for t in tasks {
            let (lat, bytes) = t.await.map_err(|e| err(e.to_string()))??;
            all.extend(lat);
            reply_bytes = bytes;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        d.check_alive()?;
        let total = all.len();
        let s = Summary::from_us(&mut all);
        let rps = total as f64 / elapsed;
        summary.push(format!(
            "{kind}: {total} requests from {} clients in {elapsed:.2}s = {rps:.0} req/s; {}; reply {reply_bytes} bytes",
            p.clients,
            s.line()
        ));
        results.insert(
            kind.into(),
            json!({"requests": total, "elapsed_s": r3(elapsed), "requests_per_s": r2(rps),
                "latency": s.json(), "reply_bytes": reply_bytes}),
        );
    }
    let _ = ctl.close(None).await;
    d.stop().await?;
    results.insert(
        "project_create_ms_each".into(),
        json!(r3(create_s * 1000.0 / p.projects.max(1) as f64)),
    );
    Ok(Outcome {
        params: json!({"clients": p.clients, "requests": p.requests, "projects": p.projects}),
        results: serde_json::Value::Object(results),
        summary,
    })
}
