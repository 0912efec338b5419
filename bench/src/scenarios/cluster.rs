//! `cluster`: the fan-out of `fanout`, with the subscribers spread over the three nodes of a
//! cluster (a nats-server with JetStream and three daemons, all on this machine) watching a
//! project of the first node; then the same load on a single daemon, in the same run. It
//! measures what the owner's publishing once to NATS and each node's own fan-out cost against
//! one daemon serving everyone.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::fanout::{self, client_cpu_s, connect_many, joined, FanResult, Load, LoadParams};
use crate::client::{connect, create_project, request};
use crate::daemon::{free_port, Daemon, Opts};
use crate::report::{r3, Outcome};
use crate::{err, Paths, Res};

/// The nodes of the cluster.
const NODES: usize = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct Params {
    #[command(flatten)]
    pub load: LoadParams,
}

pub async fn run(paths: &Paths, p: &Params) -> Res<Outcome> {
    let load = Load::resolve(&p.load)?;
    let cluster = cluster_fanout(paths, load).await?;
    let single = fanout::daemon_fanout(paths, load).await?;
    let mut summary = cluster.lines("cluster of 3");
    summary.extend(single.lines("single node"));
    let ratio = cluster.deliveries_per_s / single.deliveries_per_s.max(1e-9);
    let p99_ratio = cluster.lat.p99 / single.lat.p99.max(1e-9);
    summary.push(format!(
        "cluster / single: {ratio:.3} of the single node's deliveries/s; p99 latency {p99_ratio:.2}× the single node's"
    ));
    if !cluster.complete() {
        summary.push("WARNING: the cluster did not deliver every line to every client".into());
    }
    Ok(Outcome {
        params: load.json(),
        results: json!({
            "cluster": cluster.json(),
            "single": single.json(),
            "ratio_deliveries_per_s": r3(ratio),
            "ratio_p99_latency": r3(p99_ratio),
        }),
        summary,
    })
}

/// The fan-out over the cluster: the runner on node 0 (which owns the project), the other
/// subscribers joined round-robin on nodes 0, 1 and 2.
async fn cluster_fanout(paths: &Paths, load: Load) -> Res<FanResult> {
    let nats = NatsServer::start()?;
    let mut nodes = Vec::with_capacity(NODES);
    for i in 0..NODES {
        let opts = Opts::new(load.subs + 64)
            .env("AGENTVISOR_NATS_URL", nats.url())
            .env("AGENTVISOR_NODE", format!("n{i}"));
        nodes.push(Daemon::start(paths, opts).await?);
    }
    let setup_deadline = Instant::now() + Duration::from_secs(120);
    let mut runner = connect(nodes[0].port, "/ws").await?;
    let dir = nodes[0].project_dir("fanout")?;
    let project = create_project(&mut runner, &dir, setup_deadline).await?;
    for d in &nodes[1..] {
        wait_listed(d.port, &project, setup_deadline).await?;
    }
    let mut others = Vec::with_capacity(load.subs);
    for (i, d) in nodes.iter().enumerate() {
        let share = (load.subs - 1) / NODES + usize::from(i < (load.subs - 1) % NODES);
        let ws = connect_many(d.port, share, |ws| {
            joined(ws, project.clone(), setup_deadline)
        });
        others.extend(ws.await?);
    }
    let cpu = || -> Res<f64> { nodes.iter().map(|d| d.cpu_s()).sum() };
    let (cpu0, ccpu0, ncpu0) = (cpu()?, client_cpu_s(), nats.cpu_s()?);
    let subs = fanout::measure(load, &project, runner, others).await?;
    let server_cpu = cpu()? - cpu0 + nats.cpu_s()? - ncpu0;
    let ccpu = client_cpu_s() - ccpu0;
    for d in nodes.iter_mut() {
        d.check_alive()?;
        d.stop().await?;
    }
    Ok(FanResult::new(load, subs, server_cpu, ccpu))
}

/// Waits until the daemon on `port` lists `project` (the registry has reached it).
async fn wait_listed(port: u16, project: &str, deadline: Instant) -> Res<()> {
    let mut ws = connect(port, "/ws").await?;
    loop {
        let r: Value = request(
            &mut ws,
            &json!({"type": "project_list", "id": "l"}),
            deadline,
        )
        .await?;
        let listed = r["data"]["projects"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["id"] == project));
        if listed {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(
                "the cluster's registry did not show the project on every node",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A nats-server with JetStream on a free loopback port, killed with the bench.
struct NatsServer {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> Res<NatsServer> {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| err("nats-server not found: install it with scripts/install-nats.sh (Debian's nats-server package)"))?;
        let store = tempfile::tempdir()?;
        let port = free_port()?;
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let s = NatsServer {
            child,
            port,
            _store: store,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(err("nats-server did not start listening"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn cpu_s(&self) -> Res<f64> {
        crate::daemon::proc_cpu_s(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
