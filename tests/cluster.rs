//! Several daemons, one view (issue 15), black-box: a real nats-server with JetStream on
//! loopback and three real daemons joined to it. A client of any node lists every project,
//! joins, executes, kills and replays on projects another node owns; a node killed is shown
//! unavailable and comes back; a restarted nats-server is recovered from.

mod common;

use std::time::{Duration, Instant};

use common::nats::NatsServer;
use common::*;
use serde_json::{json, Value};

/// The cluster's time-to-live in these tests: short, so that a dead node shows quickly, yet
/// with room for heartbeats (every third of it) delayed by a busy machine running a dozen
/// clusters at once.
const TTL: &str = "4s";

/// A nats-server and the daemons joined to it.
struct Cluster {
    nats: NatsServer,
    nodes: Vec<Daemon>,
}

impl Cluster {
    /// A nats-server and nodes `a`, `b`, `c`.
    fn start() -> Cluster {
        let nats = NatsServer::start();
        let nodes = ["a", "b", "c"].iter().map(|n| node(&nats, n)).collect();
        Cluster { nats, nodes }
    }

    /// A project on node `owner`, once every node lists it.
    async fn project_on(&self, owner: usize, name: &str) -> String {
        let p = project_on(&self.nodes[owner], name).await;
        for d in &self.nodes {
            listed(d, &p).await;
        }
        p
    }
}

/// A daemon joined to `nats` as node `name`.
fn node(nats: &NatsServer, name: &str) -> Daemon {
    node_with(nats, name, &[])
}

/// A daemon joined to `nats` as node `name`, with more settings.
fn node_with(nats: &NatsServer, name: &str, env: &[(&str, &str)]) -> Daemon {
    let mut b = Daemon::builder()
        .env("AGENTVISOR_NATS_URL", nats.url())
        .env("AGENTVISOR_NODE", name)
        .env("AGENTVISOR_CLUSTER_TTL", TTL);
    for (k, v) in env {
        b = b.env(k, *v);
    }
    b.start()
}

/// Waits until `probe` holds, polling.
async fn until<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `project_list` as a client of `d` sees it.
async fn list(d: &Daemon) -> Vec<Value> {
    let mut c = d.client().await;
    let r = c.call("project_list", json!({})).await;
    r["data"]["projects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The project `id` as `d` lists it, once it does.
async fn listed(d: &Daemon, id: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(p) = list(d).await.into_iter().find(|p| p["id"] == id) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "port {} never listed {id}",
            d.port
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a project on `d` (in a directory of its own) and returns its id.
async fn project_on(d: &Daemon, name: &str) -> String {
    let dir = d.project_dir(name);
    d.client().await.create_project(&dir).await
}

/// The `agent_message` events of `run` up to its `run_finished`, as `c` receives them.
async fn run_events(c: &mut Client, run: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = c.recv().await;
        if m["data"]["run_id"] == run || m["type"] == "project_state" {
            seen.push(m.clone());
        }
        if m["type"] == "run_finished" && m["data"]["run_id"] == run {
            return seen;
        }
    }
}

/// The events of `run` as `c` receives them, checking that the agent's output is among them.
async fn streamed(c: &mut Client, run: &str) -> Vec<Value> {
    let seen = run_events(c, run).await;
    assert!(
        seen.iter().any(|m| m["type"] == "agent_message"),
        "no agent output: {seen:?}"
    );
    seen
}

/// Every seq in `events`, in order.
fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().filter_map(|e| e["seq"].as_u64()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lists_every_project_with_its_node() {
    let cl = Cluster::start();
    let pa = project_on(&cl.nodes[0], "pa").await;
    let pb = project_on(&cl.nodes[1], "pb").await;
    for d in &cl.nodes {
        assert_eq!(listed(d, &pa).await["node"], "a");
        assert_eq!(listed(d, &pb).await["node"], "b");
    }
    let c_view = listed(&cl.nodes[2], &pa).await;
    assert_eq!(c_view["state"], "IDLE", "{c_view}");
    assert!(
        c_view["path"].as_str().unwrap().ends_with("/pa"),
        "{c_view}"
    );
    // health shows the cluster and its nodes.
    let (status, body) = cl.nodes[2].http_get("/health").await;
    assert_eq!(status, 200);
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["cluster"]["node"], "c", "{h}");
    assert_eq!(h["cluster"]["nats"], "connected", "{h}");
    let nodes = h["cluster"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_node_joins_executes_and_sees_the_output() {
    let cl = Cluster::start();
    let p = cl.project_on(0, "shop").await;
    // A watcher on the owner and one on node b see the same events with the same seqs.
    let mut on_a = cl.nodes[0].client().await;
    on_a.join(&p).await;
    let mut on_b = cl.nodes[1].client().await;
    let joined = on_b.join(&p).await;
    assert_eq!(joined["project_id"], p.as_str(), "{joined}");
    assert_eq!(joined["data"]["project"]["id"], p.as_str(), "{joined}");
    let mut runner = cl.nodes[2].client().await;
    let run = runner.execute(&p, "hello").await;
    let seen_b = streamed(&mut on_b, &run).await;
    let seen_a = run_events(&mut on_a, &run).await;
    assert_eq!(seqs(&seen_b), seqs(&seen_a));
    // The requester on node c was subscribed by its execute, as on the owner.
    let finished = runner
        .recv_where(|m| m["type"] == "run_finished" && m["data"]["run_id"] == run.as_str())
        .await;
    assert_eq!(finished["data"]["status"], "completed", "{finished}");
    // Forwarded replies keep the client's request id; get_messages goes to the owner too.
    let r = runner
        .call("get_messages", json!({"project_id": p, "limit": 5}))
        .await;
    assert_eq!(r["type"], "messages", "{r}");
    let m = metrics_of(&cl.nodes[1]).await;
    assert!(
        m.contains("agentvisor_cluster_remote_deliveries_total"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_killed_from_another_node() {
    let cl = Cluster::start();
    let p = cl.project_on(1, "k").await;
    let mut c = cl.nodes[0].client().await;
    let run = c.start_run(&p, "mock:hang").await;
    let r = c.call("agent_kill", json!({"project_id": p})).await;
    assert_eq!(r["type"], "agent_killed", "{r}");
    let finished = c
        .recv_where(|m| m["type"] == "run_finished" && m["data"]["run_id"] == run.as_str())
        .await;
    assert_eq!(finished["data"]["status"], "killed", "{finished}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_to_another_node_replays_without_gap_or_duplicate() {
    let cl = Cluster::start();
    let p = cl.project_on(0, "r").await;
    let mut first = cl.nodes[1].client().await;
    first.join(&p).await;
    let run = first.execute(&p, "one").await;
    let before = run_events(&mut first, &run).await;
    let last = *seqs(&before).last().unwrap();
    first.close().await;
    // Meanwhile another run adds events the moving client has not seen.
    let mut owner = cl.nodes[0].client().await;
    let run2 = owner.execute(&p, "two").await;
    run_events(&mut owner, &run2).await;
    let expected = owner.project(&p).await["last_seq"].as_u64().unwrap();
    // It reconnects to node c and re-joins from the last seq it saw.
    let mut moved = cl.nodes[2].client().await;
    let joined = moved.join_since(&p, last).await;
    assert_eq!(joined["data"]["recovered"], true, "{joined}");
    let replayed = joined["data"]["replayed"].as_u64().unwrap();
    assert_eq!(replayed, expected - last, "{joined}");
    let mut got = Vec::new();
    for _ in 0..replayed {
        got.push(moved.recv().await["seq"].as_u64().unwrap());
    }
    assert_eq!(got, (last + 1..=expected).collect::<Vec<_>>());
    // And then live events continue from there.
    let run3 = owner.execute(&p, "three").await;
    let live = run_events(&mut moved, &run3).await;
    assert_eq!(seqs(&live).first(), Some(&(expected + 1)), "{live:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_unavailable_then_back() {
    let mut cl = Cluster::start();
    let p = cl.project_on(1, "gone").await;
    // A client of node c watches b's project through b's death.
    let mut watcher = cl.nodes[2].client().await;
    watcher.join(&p).await;
    cl.nodes[1].kill9();
    until("node b's project is UNAVAILABLE on a", || async {
        listed(&cl.nodes[0], &p).await["state"] == "UNAVAILABLE"
    })
    .await;
    let mut c = cl.nodes[0].client().await;
    let r = c.call("project_join", json!({"project_id": p})).await;
    assert_eq!(r["data"]["code"], "NODE_UNAVAILABLE", "{r}");
    assert_eq!(r["data"]["details"]["retryable"], true, "{r}");
    assert_eq!(r["data"]["details"]["node"], "b", "{r}");
    // Node a's own projects are not affected.
    let own = project_on(&cl.nodes[0], "own").await;
    c.join(&own).await;
    // b comes back on the same data directory.
    cl.nodes[1].restart();
    until("node b's project is back on a", || async {
        listed(&cl.nodes[0], &p).await["state"] == "IDLE"
    })
    .await;
    let r = c.call("get_messages", json!({"project_id": p})).await;
    assert_eq!(r["type"], "messages", "{r}");
    // The restarted owner publishes again for the node whose client still watches.
    let mut owner = cl.nodes[1].client().await;
    let run = owner.execute(&p, "after the restart").await;
    streamed(&mut watcher, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_recovers_from_a_nats_server_restart() {
    let mut cl = Cluster::start();
    let p = cl.project_on(0, "n").await;
    // A client of node b watches the project through the outage.
    let mut watcher = cl.nodes[1].client().await;
    watcher.join(&p).await;
    cl.nats.stop();
    // Without NATS every node still serves its own projects, and says it is degraded.
    until("node a reports degraded", || async {
        health(&cl.nodes[0]).await["status"] == "degraded"
    })
    .await;
    let mut own = cl.nodes[0].client().await;
    own.join(&p).await;
    let run = own.execute(&p, "alone").await;
    run_events(&mut own, &run).await;
    cl.nats.restart();
    until("node a is healthy again", || async {
        let h = health(&cl.nodes[0]).await;
        h["cluster"]["nats"] == "connected" && h["cluster"]["registry"] == "synced"
    })
    .await;
    // The registry is resynchronised and forwarding works again.
    until("node b forwards to a again", || async {
        let mut c = cl.nodes[1].client().await;
        let r = c.call("project_join", json!({"project_id": p})).await;
        r["type"] == "project_joined"
    })
    .await;
    // What happened while NATS was down reaches the watcher once it is back: no gap.
    let missed = run_events(&mut watcher, &run).await;
    let seqs = seqs(&missed);
    assert!(!seqs.is_empty(), "{missed:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let m = metrics_of(&cl.nodes[0]).await;
    let reconnects = metric_value(&m, "agentvisor_nats_reconnects_total");
    assert!(reconnects >= 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_is_created_on_the_node_named() {
    let cl = Cluster::start();
    listed_node(&cl.nodes[0], "b").await;
    let mut c = cl.nodes[0].client().await;
    let dir = cl.nodes[1].project_dir("made");
    let p = c
        .create_project_with(json!({"path": dir, "node": "b"}))
        .await;
    let id = p["id"].as_str().unwrap();
    assert_eq!(listed(&cl.nodes[1], id).await["node"], "b");
    // Known at once on the node that forwarded the create.
    assert_eq!(listed(&cl.nodes[0], id).await["node"], "b");
    let r = c
        .call("project_create", json!({"path": dir, "node": "nowhere"}))
        .await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
}

/// Waits until `d` knows of node `name`.
async fn listed_node(d: &Daemon, name: &str) {
    until(&format!("node {name} is up"), || async {
        health(d).await["cluster"]["nodes"]
            .as_array()
            .is_some_and(|ns| ns.iter().any(|n| n["node"] == name && n["state"] == "up"))
    })
    .await;
}

async fn health(d: &Daemon) -> Value {
    let (_, body) = d.http_get("/health").await;
    serde_json::from_str(&body).unwrap_or_default()
}

async fn metrics_of(d: &Daemon) -> String {
    d.http_get("/metrics").await.1
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_nats_url_the_daemon_is_a_single_machine() {
    let d = Daemon::start();
    let p = project_on(&d, "solo").await;
    let listed = list(&d).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], p.as_str());
    assert!(listed[0].get("node").is_none(), "{:?}", listed[0]);
    let h = health(&d).await;
    assert_eq!(h["status"], "ok", "{h}");
    assert!(h.get("cluster").is_none(), "{h}");
    assert!(!d.log_text().contains("NATS"), "{}", d.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_and_delete_work_across_nodes() {
    let cl = Cluster::start();
    let p = cl.project_on(0, "d").await;
    let mut leaver = cl.nodes[1].client().await;
    leaver.join(&p).await;
    let left = leaver.call("project_leave", json!({"project_id": p})).await;
    assert_eq!(left["type"], "project_left", "{left}");
    let mut watcher = cl.nodes[1].client().await;
    watcher.join(&p).await;
    let mut c = cl.nodes[2].client().await;
    let run = c.execute(&p, "before the delete").await;
    run_events(&mut watcher, &run).await;
    let r = c.call("project_delete", json!({"project_id": p})).await;
    assert_eq!(r["type"], "project_deleted", "{r}");
    let gone = watcher.recv_type("project_deleted").await;
    assert_eq!(gone["project_id"], p.as_str(), "{gone}");
    // The one that left saw none of it.
    assert!(leaver.pending().is_empty(), "{:?}", leaver.pending());
    let stray = leaver.try_next(Duration::from_millis(300)).await;
    assert!(stray.is_none(), "{stray:?}");
    until("no node lists the deleted project", || async {
        let mut all = Vec::new();
        for d in &cl.nodes {
            all.extend(list(d).await);
        }
        all.iter().all(|x| x["id"] != p.as_str())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_serves_tls_answers_forwarded_requests() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["agentvisor.example".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    // Node a serves only TLS, with a certificate for another name than its address.
    let tls_node = Daemon::builder()
        .env("AGENTVISOR_NATS_URL", nats.url())
        .env("AGENTVISOR_NODE", "a")
        .env("AGENTVISOR_CLUSTER_TTL", TTL)
        .env("AGENTVISOR_TLS_CERT", cert_path.to_str().unwrap())
        .env("AGENTVISOR_TLS_KEY", key_path.to_str().unwrap())
        .launch();
    let plain = node(&nats, "b");
    listed_node(&plain, "a").await;
    // Created on a through b: a hands the request to itself over its own TLS listener.
    let mut c = plain.client().await;
    let p = c
        .create_project_with(json!({"path": tls_node.project_dir("t"), "node": "a"}))
        .await;
    let id = p["id"].as_str().unwrap();
    let run = c.execute(id, "over tls").await;
    streamed(&mut c, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_of_another_node_is_closed_there_and_slows_no_one() {
    let nats = NatsServer::start();
    let owner = node(&nats, "a");
    // Node b bounds its clients' backlogs small (as history.rs's slow-client test does).
    let b = node_with(&nats, "b", &[("AGENTVISOR_MAX_BACKLOG_BYTES", "262144")]);
    let p = project_on(&owner, "slow").await;
    listed(&b, &p).await;
    let mut slow = Client::connect_with_recv_buffer(b.port, 4096).await;
    slow.join(&p).await;
    let mut fast = b.client().await;
    fast.join(&p).await;
    let mut local = owner.client().await;
    local.join(&p).await;
    let run = local
        .execute(&p, "mock:lines count=3000 bytes=1000 rate=1000")
        .await;
    let on_owner = run_events(&mut local, &run).await;
    let on_b = run_events(&mut fast, &run).await;
    assert_eq!(on_owner.last().unwrap()["data"]["status"], "completed");
    assert_eq!(seqs(&on_b), seqs(&on_owner));
    let code = loop {
        match slow.next_message(WAIT).await {
            Ok(_) => continue,
            Err(c) => break c,
        }
    };
    assert_eq!(code, Closed::Code(4008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_of_another_nodes_project_is_served() {
    use tokio::io::AsyncWriteExt;
    let cl = Cluster::start();
    let p = cl.project_on(0, "sse").await;
    let port = cl.nodes[1].port;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let get = format!("GET /projects/{p}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    s.write_all(get.as_bytes()).await.unwrap();
    let mut text = String::new();
    // The stream is open (its project_joined came) before the run starts.
    read_until(&mut s, &mut text, "event: project_joined").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let mut c = cl.nodes[0].client().await;
    c.execute(&p, "streamed elsewhere").await;
    read_until(&mut s, &mut text, "event: run_finished").await;
    assert!(text.contains("event: agent_message"), "{text}");
}

/// Reads the response on `s` into `text` until it holds `needle`.
async fn read_until(s: &mut tokio::net::TcpStream, text: &mut String, needle: &str) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 65536];
    while !text.contains(needle) {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle} in time: {text}"))
            .unwrap();
        assert!(n > 0, "the stream ended before {needle}: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_with_one_node_name_are_told_so() {
    let nats = NatsServer::start();
    let first = node(&nats, "twin");
    let second = node(&nats, "twin");
    until("a daemon logs the name clash", || async {
        [&first, &second].iter().any(|d| {
            d.log_text()
                .contains("another daemon uses the node name twin")
        })
    })
    .await;
}
