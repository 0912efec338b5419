//! The daemon under its process managers and proxy.
//!
//! The first tests speak the managers' own protocols to the real binary: systemd's `sd_notify`
//! datagrams (`READY=1`, `WATCHDOG=1`, `STOPPING=1`) and PM2's Node IPC channel (`"ready"`, and
//! that agents do not inherit the channel). The `#[ignore]`d ones need real PM2 and nginx
//! around a running daemon; `scripts/test-ecosystem.sh` installs and starts those, then runs
//! them with `cargo test --test ecosystem -- --ignored` and the addresses in the environment.

mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// What a descriptor of a process points at (`socket:[1234]`, a path, …).
fn fd_target(pid: i32, fd: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Everything the descriptors of a process point at.
fn fd_targets(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The environment a process was started with.
fn environ(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| {
            env.split(|b| *b == 0)
                .map(|kv| String::from_utf8_lossy(kv).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Starts `mock:hang` in a new project and returns the project and run ids and the agent's pids.
async fn hanging_agent(c: &mut Client, dir: &Path) -> (String, String, Vec<i32>) {
    let project = c.create_project(dir).await;
    let run = c.start_run(&project, "mock:hang").await;
    let pids = processes_of_run(&run);
    assert!(!pids.is_empty(), "no process of run {run}");
    (project, run, pids)
}

/// Asserts that no process of the run can reach the channel the daemon got from its manager.
fn assert_channel_not_inherited(pids: &[i32], channel: &str) {
    for pid in pids {
        let env = environ(*pid);
        assert!(
            !env.iter().any(|kv| kv.starts_with("NODE_CHANNEL_FD=")
                || kv.starts_with("NODE_CHANNEL_SERIALIZATION_MODE=")),
            "agent {pid} inherited the IPC variables: {env:?}"
        );
        let fds = fd_targets(*pid);
        assert!(
            !fds.iter().any(|t| t == channel),
            "agent {pid} holds the IPC channel {channel}: {fds:?}"
        );
    }
}

async fn kill_run(c: &mut Client, project: &str, run: &str) {
    c.kill(project).await;
    let f = c.finished(run).await;
    assert_eq!(f["data"]["status"], "killed", "{f}");
}

// --- systemd ---------------------------------------------------------------------------------

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    let (_dir, sock, builder) = under_systemd();
    let mut d = builder.env("WATCHDOG_USEC", "400000").start();
    // READY=1 comes first, once the daemon serves (Daemon::start has seen /ready answer 200).
    assert_eq!(notification(&sock), "READY=1", "log:\n{}", d.log_text());
    // Then WATCHDOG=1 every WATCHDOG_USEC / 2.
    let t = Instant::now();
    for _ in 0..3 {
        assert_eq!(notification(&sock), "WATCHDOG=1");
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "three watchdog pings took {took:?} (expected about 600 ms)"
    );
    assert!(d.stop().success());
    let mut rest = Vec::new();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while let Some(m) = try_notification(&sock) {
        rest.push(m);
    }
    assert!(
        rest.iter().any(|m| m == "STOPPING=1"),
        "no STOPPING=1 on shutdown: {rest:?}"
    );
}

#[test]
fn no_watchdog_pings_for_another_pid() {
    let (_dir, sock, builder) = under_systemd();
    let d = builder
        .env("WATCHDOG_USEC", "100000")
        .env("WATCHDOG_PID", "1")
        .start();
    assert_eq!(notification(&sock), "READY=1", "log:\n{}", d.log_text());
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(
        try_notification(&sock),
        None,
        "watchdog pings meant for another process"
    );
}

// --- PM2 -------------------------------------------------------------------------------------

/// A child process that is killed if the test ends early.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the daemon the way PM2 does in fork mode: an IPC socket as descriptor 3 and
/// `NODE_CHANNEL_FD=3`. Returns the child, our end of the channel, and the daemon's end as
/// `/proc` names it.
fn start_like_pm2(tmp: &Path, port: u16, root: &Path) -> (Reaped, UnixStream, String) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let channel = fd_target(std::process::id() as i32, theirs.as_raw_fd()).unwrap();
    let theirs_fd = theirs.as_raw_fd();
    let mut cmd = daemon_command(port, &tmp.join("data"), root, &tmp.join("daemon.log"));
    cmd.env("NODE_CHANNEL_FD", "3")
        .env("NODE_CHANNEL_SERIALIZATION_MODE", "json");
    // SAFETY: only dup2 between fork and exec; it also clears close-on-exec on descriptor 3.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(theirs_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = Reaped(cmd.spawn().unwrap());
    drop(theirs);
    (child, ours, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pm2_hears_ready_on_the_ipc_channel_and_agents_do_not_inherit_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    let port = free_port();
    let (mut child, mut ours, channel) = start_like_pm2(tmp.path(), port, &root);
    let log = || std::fs::read_to_string(tmp.path().join("daemon.log")).unwrap_or_default();

    // Exactly what Node's process.send('ready') writes: JSON, one message per line.
    ours.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = [0u8; 8];
    ours.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("no ready message ({e}); log:\n{}", log()));
    assert_eq!(&got, b"\"ready\"\n", "log:\n{}", log());
    // ... and only once the daemon serves.
    assert_eq!(http_get(port, "/ready").await.map(|r| r.0), Some(200));

    let mut c = Client::connect(port).await;
    let (project, run, pids) = hanging_agent(&mut c, &root.join("p")).await;
    assert_channel_not_inherited(&pids, &channel);
    kill_run(&mut c, &project, &run).await;

    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}; log:\n{}", log());
}

/// The daemon PM2 started from `ecosystem/ecosystem.config.js`: its port and pid.
fn pm2_daemon() -> (u16, i32) {
    let port = std::env::var("AGENTVISOR_E2E_DAEMON_PORT")
        .expect("AGENTVISOR_E2E_DAEMON_PORT (run by scripts/test-ecosystem.sh)");
    let pid = std::env::var("AGENTVISOR_E2E_DAEMON_PID").expect("AGENTVISOR_E2E_DAEMON_PID");
    (port.parse().unwrap(), pid.parse().unwrap())
}

/// A new directory inside the PM2-run daemon's project roots.
fn e2e_project_dir(name: &str) -> std::path::PathBuf {
    let root = std::env::var("AGENTVISOR_E2E_PROJECT_ROOT").expect("AGENTVISOR_E2E_PROJECT_ROOT");
    let dir = Path::new(&root).join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
#[ignore = "needs the daemon running under PM2: scripts/test-ecosystem.sh"]
async fn under_pm2_the_daemon_has_the_channel_and_its_agents_do_not() {
    let (port, pid) = pm2_daemon();
    let channel = fd_target(pid, 3).expect("the daemon has no descriptor 3");
    assert!(
        channel.starts_with("socket:"),
        "PM2 gave no IPC socket: fd 3 is {channel}"
    );
    assert!(
        environ(pid).iter().any(|kv| kv == "NODE_CHANNEL_FD=3"),
        "PM2 did not set NODE_CHANNEL_FD"
    );
    let mut c = Client::connect(port).await;
    let (project, run, pids) = hanging_agent(&mut c, &e2e_project_dir("pm2")).await;
    assert_channel_not_inherited(&pids, &channel);
    kill_run(&mut c, &project, &run).await;
}

// --- nginx -----------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs nginx in front of a daemon: scripts/test-ecosystem.sh"]
async fn through_nginx_a_websocket_session_runs_an_agent() {
    let port: u16 = std::env::var("AGENTVISOR_E2E_PROXY_PORT")
        .expect("AGENTVISOR_E2E_PROXY_PORT")
        .parse()
        .unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    let mut c = Client::connect_with(
        port,
        &[("X-Forwarded-For", "203.0.113.7"), ("Origin", &origin)],
    )
    .await
    .expect("WebSocket upgrade through nginx");
    c.ping().await;
    let project = c.create_project(&e2e_project_dir("nginx")).await;

    // A streamed run: every line arrives, in order, as the agent writes it.
    let run = c.execute(&project, "mock:lines count=50 rate=100").await;
    let mut lines = Vec::new();
    let mut seqs = Vec::new();
    loop {
        let m = c.recv().await;
        if m["project_id"] != project.as_str() {
            continue;
        }
        if let Some(s) = m["seq"].as_u64() {
            seqs.push(s);
        }
        if let Some(n) = m["data"]["message"]["n"].as_u64() {
            lines.push(n);
        }
        if m["type"] == "run_finished" && m["data"]["run_id"] == run.as_str() {
            assert_eq!(m["data"]["status"], "completed", "{m}");
            break;
        }
    }
    assert_eq!(lines, (1..=50).collect::<Vec<_>>());
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");

    // A second run resumes the session.
    let run = c.execute(&project, "hi").await;
    let started = c
        .recv_where(|m| m["type"] == "run_started" && m["project_id"] == project.as_str())
        .await;
    assert!(
        started["data"]["resumed_session_id"].is_string(),
        "{started}"
    );
    let f = c.finished(&run).await;
    assert_eq!(f["data"]["status"], "completed", "{f}");
    // Everything is stored: seq counts from 1, with no hole, up to the end of the second run.
    let stored: Vec<u64> = c
        .messages(&project, json!({"since_seq": 0, "limit": 1000}))
        .await
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(stored, (1..=stored.len() as u64).collect::<Vec<_>>());
    assert!(stored.contains(&f["seq"].as_u64().unwrap()));

    // The project's event stream, through the same proxy: the replay reaches the run's end.
    let sse = sse_until(port, &project, &format!("\"seq\":{}", f["seq"])).await;
    assert!(sse.contains("event: run_finished"), "{sse}");

    // The HTTP endpoints, through the same proxy.
    for path in ["/health", "/ready"] {
        let (status, body) = http_get(port, path).await.expect(path);
        assert_eq!(status, 200, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["status"].is_string(), "{path}: {body}");
    }
    let (status, body) = http_get(port, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("agentvisor_connections"), "{body}");
    // The web console and its files.
    for path in ["/", "/console/js/main.js"] {
        let (status, body) = http_get(port, path).await.expect(path);
        assert_eq!(status, 200, "{path}");
        assert!(
            body.contains("agentvisor") || body.contains("import"),
            "{path}: {body}"
        );
    }
    let (status, _) = http_get(port, "/nothing-here").await.unwrap();
    assert_eq!(status, 404);
    c.close().await;
}

/// Reads `GET /projects/{project}/events?since_seq=0` until `needle` appears; returns what was
/// read (the stream itself stays open, so it is read raw, not to its end).
async fn sse_until(port: u16, project: &str, needle: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET /projects/{project}/events?since_seq=0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !String::from_utf8_lossy(&got).contains(needle) {
        let mut buf = [0u8; 8192];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => panic!(
                "no {needle} in the stream: {}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_lowercase()
            .contains("content-type: text/event-stream"),
        "{text}"
    );
    text
}
