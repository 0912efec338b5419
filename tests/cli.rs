//! The command-line client, black-box: the real `agentvisor` binary as client and as daemon,
//! with a TCP proxy in between that breaks the network on purpose (cuts every connection, loses
//! a reply, rides through a daemon killed with -9). Every line printed once, in order; every
//! change made once; every subcommand's output and exit code.

mod common;
#[path = "cli/proxy.rs"]
mod proxy;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use proxy::Proxy;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The client, pointed at `url`, with nothing of the test's own environment that it reads.
fn cli(url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentvisor"));
    c.env("AGENTVISOR_URL", url)
        .env("AGENTVISOR_GIVE_UP", "20s")
        .env_remove("AGENTVISOR_TOKEN")
        .env_remove("AGENTVISOR_TOKEN_FILE")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

fn direct(d: &Daemon) -> String {
    format!("ws://127.0.0.1:{}/ws", d.port)
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the client to its end (within a minute).
async fn run_cli(mut cmd: Command) -> Out {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the client did not end within a minute")
        .expect("start the client");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn agentvisor(url: &str, args: &[&str]) -> Out {
    let mut c = cli(url);
    c.args(args);
    run_cli(c).await
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The `n` of each mock line among the events, in the order printed.
fn mock_lines(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["type"] == "agent_message" && e["data"]["message"]["type"] == "mock_line")
        .map(|e| e["data"]["message"]["n"].as_u64().unwrap())
        .collect()
}

/// The prompts stored in a project's history.
async fn prompts(d: &Daemon, project: &str) -> Vec<Value> {
    let mut c = d.client().await;
    c.messages_all(project, json!({"direction": "client", "limit": 1000}))
        .await
}

/// Waits until the project's history holds a `run_finished`; returns it.
async fn stored_run_finished(d: &Daemon, project: &str) -> Value {
    let mut c = d.client().await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let records = c
            .messages_all(project, json!({"direction": "system", "limit": 1000}))
            .await;
        if let Some(f) = records.into_iter().find(|m| m["type"] == "run_finished") {
            return f;
        }
        assert!(std::time::Instant::now() < deadline, "no run finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn project_in(d: &Daemon, name: &str) -> String {
    let mut c = d.client().await;
    c.create_project(&d.project_dir(name)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_through_a_proxy_that_cuts_every_connection_prints_every_line_once() {
    let d = Daemon::start();
    let project = project_in(&d, "cut").await;
    let proxy = Proxy::start(d.port).await;
    proxy.cut_every(Some(Duration::from_millis(300)));
    let out = agentvisor(
        &proxy.url(),
        &[
            "run",
            "--json",
            &project,
            "mock:lines count=20000 rate=5000",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let events = json_lines(&out.stdout);
    let lines = mock_lines(&events);
    assert_eq!(lines.len(), 20_000, "every line, once");
    assert!(
        lines.iter().enumerate().all(|(i, n)| *n == i as u64 + 1),
        "in order"
    );
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "no event twice");
    assert_eq!(events.last().unwrap()["type"], "run_finished");
    assert!(
        proxy.cuts() >= 5,
        "the proxy cut only {} times",
        proxy.cuts()
    );
    assert_eq!(
        prompts(&d, &project).await.len(),
        1,
        "one run, however often execute was re-sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_rides_through_a_daemon_killed_with_9_and_shows_the_next_run_in_full() {
    let mut d = Daemon::start();
    let project = project_in(&d, "watched").await;
    let proxy = Proxy::start(d.port).await;
    let mut cmd = cli(&proxy.url());
    cmd.args(["watch", "--json", &project]);
    let (mut watch, mut lines) = spawn_lines(cmd);

    let mut c = d.client().await;
    c.join(&project).await;
    let first = c.run(&project, "mock:lines count=3 rate=0").await;
    let first_run = first["data"]["run_id"].as_str().unwrap().to_string();
    let seen = read_until_finished(&mut lines, &first_run).await;
    assert_eq!(mock_lines(&seen), [1, 2, 3], "attached before the crash");

    d.kill9();
    d.restart();
    proxy.retarget(d.port);
    let mut c = d.client().await;
    c.join(&project).await;
    let second = c.run(&project, "mock:lines count=50 rate=0").await;
    let second_run = second["data"]["run_id"].as_str().unwrap().to_string();
    let seen = read_until_finished(&mut lines, &second_run).await;
    let of_second: Vec<Value> = seen
        .into_iter()
        .filter(|e| e["data"]["run_id"] == second_run.as_str())
        .collect();
    assert_eq!(mock_lines(&of_second), (1..=50).collect::<Vec<_>>());
    assert_eq!(of_second[0]["type"], "prompt", "the run from its start");

    signal(watch.id().unwrap() as i32, libc::SIGINT);
    let status = tokio::time::timeout(WAIT, watch.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C ends watch with 130");
}

#[tokio::test]
async fn a_gap_the_replay_cannot_cover_is_filled_from_history() {
    // A small backlog bound: a join's replay carries at most 128 KiB, a few hundred events.
    let d = Daemon::builder()
        .env("AGENTVISOR_MAX_BACKLOG_BYTES", "256KiB")
        .start();
    let project = project_in(&d, "gap").await;
    // Started detached: no client follows the run while it prints.
    let out = agentvisor(
        &direct(&d),
        &[
            "run",
            "--detach",
            &project,
            "mock:lines count=3000 bytes=200 rate=0",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.stdout.trim().to_string();
    stored_run_finished(&d, &project).await;
    let mut cmd = cli(&direct(&d));
    cmd.args(["watch", "--json", "--since-seq", "0", &project]);
    let (mut watch, mut lines) = spawn_lines(cmd);
    let seen = read_until_finished(&mut lines, &run).await;
    assert_eq!(mock_lines(&seen), (1..=3000).collect::<Vec<_>>());
    let seqs: Vec<u64> = seen.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "from the first seq, none twice"
    );
    let _ = watch.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_dies_silently_is_noticed_by_the_heartbeat_and_replaced() {
    let d = Daemon::start();
    let project = project_in(&d, "silent").await;
    let proxy = Proxy::start(d.port).await;
    let mut cmd = cli(&proxy.url());
    cmd.env("AGENTVISOR_HEARTBEAT", "300ms")
        .args(["watch", "--json", &project]);
    let (mut watch, mut lines) = spawn_lines(cmd);
    let mut c = d.client().await;
    c.join(&project).await;
    let first = c.run(&project, "mock:lines count=2 rate=0").await;
    read_until_finished(&mut lines, first["data"]["run_id"].as_str().unwrap()).await;

    // The path dies without a close or a reset: only the heartbeat can tell.
    proxy.freeze_open_connections();
    let second = c.run(&project, "mock:lines count=5 rate=0").await;
    let run = second["data"]["run_id"].as_str().unwrap().to_string();
    let seen = read_until_finished(&mut lines, &run).await;
    assert_eq!(mock_lines(&seen), [1, 2, 3, 4, 5]);
    let _ = watch.kill().await;
}

/// The standard output of a client running in the background, line by line.
type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Starts the client in the background.
fn spawn_lines(mut cmd: Command) -> (tokio::process::Child, Lines) {
    let mut child = cmd.spawn().expect("start the client");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The client's next line (it must print one within 40 s).
async fn next_line(lines: &mut Lines) -> String {
    tokio::time::timeout(Duration::from_secs(40), lines.next_line())
        .await
        .expect("the client printed nothing for 40s")
        .unwrap()
        .expect("the client ended")
}

/// Reads the client's JSON lines up to the `run_finished` of `run_id`.
async fn read_until_finished(lines: &mut Lines, run_id: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let line = next_line(lines).await;
        let v: Value = serde_json::from_str(&line).unwrap();
        let done = v["type"] == "run_finished" && v["data"]["run_id"] == run_id;
        seen.push(v);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execute_whose_reply_is_lost_is_sent_again_and_runs_once() {
    let d = Daemon::start();
    let project = project_in(&d, "lost").await;
    let proxy = Proxy::start(d.port).await;
    proxy.swallow_once("execute_accepted", false);
    let out = agentvisor(
        &proxy.url(),
        &["run", "--json", &project, "mock:lines count=20 rate=0"],
    )
    .await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(
        mock_lines(&json_lines(&out.stdout)),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(prompts(&d, &project).await.len(), 1, "exactly one run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execute_whose_reply_is_lost_runs_once_across_a_daemon_restart() {
    let mut d = Daemon::start();
    let project = project_in(&d, "restarted").await;
    let proxy = Proxy::start(d.port).await;
    proxy.swallow_once("execute_accepted", true);
    let mut cmd = cli(&proxy.url());
    cmd.args(["run", "--json", &project, "mock:lines count=20 rate=0"]);
    let client = tokio::spawn(run_cli(cmd));
    tokio::time::timeout(WAIT, proxy.swallowed()).await.unwrap();

    // The run happens while the client cannot hear about it; the daemon dies after it.
    stored_run_finished(&d, &project).await;
    d.kill9();
    d.restart();
    proxy.retarget(d.port);
    proxy.hold(false);

    let out = client.await.unwrap();
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(
        mock_lines(&json_lines(&out.stdout)),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(prompts(&d, &project).await.len(), 1, "exactly one run");
}

#[tokio::test]
async fn the_same_key_gets_the_same_reply_also_after_a_restart_and_another_request_is_refused() {
    let mut d = Daemon::start();
    let project = project_in(&d, "keyed").await;
    let execute = |key: &str, prompt: &str| {
        json!({"type": "execute", "id": "e", "project_id": project, "idempotency_key": key,
               "data": {"prompt": prompt}})
    };
    let mut c = d.client().await;
    c.send(&execute("k-1", "mock:success")).await;
    let first = c.recv_where(|m| m["id"] == "e").await;
    assert_eq!(first["type"], "execute_accepted", "{first}");
    c.send(&execute("k-1", "mock:success")).await;
    let again = c.recv_where(|m| m["id"] == "e").await;
    assert_eq!(again["data"]["run_id"], first["data"]["run_id"]);
    c.send(&execute("k-1", "another prompt")).await;
    let other = c.recv_where(|m| m["id"] == "e").await;
    assert_eq!(other["data"]["code"], "VALIDATION_FAILED", "{other}");
    c.send(&json!({"type": "project_list", "id": "e", "idempotency_key": "k-2"}))
        .await;
    let list = c.recv_where(|m| m["id"] == "e").await;
    assert_eq!(
        list["data"]["code"], "VALIDATION_FAILED",
        "only change requests take a key"
    );

    d.kill9();
    d.restart();
    let mut c = d.client().await;
    c.send(&execute("k-1", "mock:success")).await;
    let after = c.recv_where(|m| m["id"] == "e").await;
    assert_eq!(after["data"]["run_id"], first["data"]["run_id"], "{after}");
    let created = json!({"type": "project_create", "id": "p", "idempotency_key": "k-3",
                         "data": {"path": d.project_dir("twice")}});
    c.send(&created).await;
    let one = c.recv_where(|m| m["id"] == "p").await;
    c.send(&created).await;
    let two = c.recv_where(|m| m["id"] == "p").await;
    assert_eq!(one["type"], "project_created", "{one}");
    assert_eq!(one["data"]["project"]["id"], two["data"]["project"]["id"]);
    assert_eq!(prompts(&d, &project).await.len(), 1);
}

#[tokio::test]
async fn requests_to_a_crashing_project_actor_get_a_retryable_error_and_the_client_retries() {
    let d = Daemon::builder()
        .env("AGENTVISOR_FAULT_INJECTION", "1")
        .env("AGENTVISOR_BACKOFF_INITIAL", "1500ms")
        .env("AGENTVISOR_RATE_LIMIT", "0")
        .start();
    let project = project_in(&d, "crashing").await;
    let mut c = d.client().await;
    // The crash and the requests behind it in one burst: some wait in the mailbox that the
    // crash drops, the rest find the actor restarting. Each one is answered.
    let mut burst = vec![
        json!({"type": "fault_inject", "id": "f", "project_id": project,
                                "data": {"actor": "project"}}),
    ];
    for i in 0..10 {
        burst.push(json!({"type": "get_messages", "id": format!("q{i}"), "project_id": project}));
    }
    for m in &burst {
        c.send(m).await;
    }
    for i in 0..10 {
        let id = format!("q{i}");
        let r = c.recv_where(|m| m["id"] == id.as_str()).await;
        assert_eq!(r["type"], "error", "{r}");
        assert_eq!(r["data"]["code"], "INTERNAL_ERROR", "{r}");
        assert_eq!(r["data"]["details"]["retryable"], true, "{r}");
    }
    // Back after its restart; crashed again, and the client retries on its own until the
    // actor is back.
    let deadline = std::time::Instant::now() + WAIT;
    while c.call("get_messages", json!({"project_id": project})).await["type"] != "messages" {
        assert!(
            std::time::Instant::now() < deadline,
            "the project did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = c
        .call(
            "fault_inject",
            json!({"actor": "project", "project_id": project}),
        )
        .await;
    assert_eq!(r["type"], "fault_injected", "{r}");
    let out = agentvisor(&direct(&d), &["history", &project]).await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
}

#[tokio::test]
async fn every_subcommand_prints_for_people_and_exits_with_its_code() {
    let d = Daemon::start();
    let url = direct(&d);
    let dir = d.project_dir("shop");
    let dir_s = dir.to_str().unwrap();

    let out = agentvisor(&url, &["create", dir_s, "--name", "shop"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("created project shop ("),
        "{}",
        out.stdout
    );
    let out = agentvisor(&url, &["create", dir_s]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("(PROJECT_EXISTS)"), "{}", out.stderr);

    let out = agentvisor(&url, &["projects"]).await;
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("shop") && out.stdout.contains("IDLE"),
        "{}",
        out.stdout
    );
    let listed = json_lines(&agentvisor(&url, &["projects", "--json"]).await.stdout);
    let id = listed[0]["id"].as_str().unwrap().to_string();

    // By path (`.` inside the directory), with a tool call and the run's end.
    let mut c = cli(&url);
    c.current_dir(&dir).args(["run", ".", "mock:tool"]);
    let out = run_cli(c).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("> mock:tool"), "{}", out.stdout);
    assert!(
        out.stdout.contains("→ Bash: touch made-by-tool.txt"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("✓ completed in "), "{}", out.stdout);
    assert!(!out.stdout.contains('\x1b'), "no colour on a pipe");

    let out = agentvisor(&url, &["run", "shop", "mock:error"]).await;
    assert_eq!(out.code, 1, "a failed run: {}", out.stdout);
    assert!(out.stdout.contains("✗ failed"), "{}", out.stdout);

    let out = agentvisor(&url, &["run", "--detach", &id[..8], "mock:success"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim().len(), 36, "the run id: {}", out.stdout);

    let out = agentvisor(&url, &["history", "shop", "--json", "--limit", "2"]).await;
    assert_eq!(out.code, 0);
    assert_eq!(json_lines(&out.stdout).len(), 2);

    let out = agentvisor(&url, &["kill", "shop"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("(NO_ACTIVE_RUN)"), "{}", out.stderr);
    let out = agentvisor(&url, &["new-session", "shop"]).await;
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("fresh conversation"), "{}", out.stdout);
    let out = agentvisor(&url, &["health"]).await;
    assert_eq!(out.code, 0);
    assert!(out.stdout.starts_with("ok · agentvisor "), "{}", out.stdout);
    let out = agentvisor(&url, &["reset", &id]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("(VALIDATION_FAILED)"), "{}", out.stderr);

    let out = agentvisor(&url, &["run", "nothing-like-it", "hi"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no project matches 'nothing-like-it'"),
        "{}",
        out.stderr
    );
    let out = agentvisor(&url, &["run", "shop"]).await;
    assert_eq!(out.code, 2, "no prompt is a usage error");
    let out = agentvisor(&url, &["delete", "shop"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("deleted project shop"),
        "{}",
        out.stdout
    );
    assert!(agentvisor(&url, &["projects", "--json"])
        .await
        .stdout
        .is_empty());
}

#[tokio::test]
async fn colour_only_when_asked_and_never_with_no_color() {
    let d = Daemon::start();
    let project = project_in(&d, "colours").await;
    let mut c = cli(&direct(&d));
    c.env("CLICOLOR_FORCE", "1")
        .args(["run", &project, "mock:success"]);
    let out = run_cli(c).await;
    assert!(
        out.stdout.contains("\x1b[32m✓ completed"),
        "{:?}",
        out.stdout
    );
    let mut c = cli(&direct(&d));
    // Another client's prompt is untrusted text too: its escape sequence must not reach the
    // terminal.
    c.env("CLICOLOR_FORCE", "1").env("NO_COLOR", "1").args([
        "run",
        &project,
        "mock:success \x1b[2J",
    ]);
    let out = run_cli(c).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("> mock:success [2J"),
        "{:?}",
        out.stdout
    );
    assert!(
        !out.stdout.contains('\x1b'),
        "NO_COLOR, and escapes removed: {:?}",
        out.stdout
    );
}

#[tokio::test]
async fn ctrl_c_during_run_stops_the_run_and_exits_130() {
    let d = Daemon::start();
    let project = project_in(&d, "interrupted").await;
    let mut cmd = cli(&direct(&d));
    cmd.args(["run", "--json", &project, "mock:slow interval_ms=300"]);
    let (mut child, mut lines) = spawn_lines(cmd);
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if line.contains("\"agent_message\"") {
            break;
        }
    }
    signal(child.id().unwrap() as i32, libc::SIGINT);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let f = stored_run_finished(&d, &project).await;
    assert_eq!(f["data"]["status"], "killed", "{f}");
}

#[tokio::test]
async fn a_wrong_or_missing_token_and_an_absent_daemon_exit_3_with_a_sentence() {
    let d = Daemon::builder()
        .env("AGENTVISOR_TOKEN", "the-right-token-0123456789")
        .start();
    let mut c = cli(&direct(&d));
    c.env("AGENTVISOR_TOKEN", "a-wrong-token-0123456789")
        .arg("projects");
    let out = run_cli(c).await;
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("refused the connection"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("check AGENTVISOR_TOKEN"),
        "{}",
        out.stderr
    );

    let out = agentvisor(&direct(&d), &["projects"]).await;
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("it needs a token"), "{}", out.stderr);

    let file = d.root.join("token");
    std::fs::write(&file, "the-right-token-0123456789\n").unwrap();
    let mut c = cli(&direct(&d));
    c.env("AGENTVISOR_TOKEN_FILE", &file).arg("projects");
    assert_eq!(run_cli(c).await.code, 0, "the token from a file");

    let closed = format!("ws://127.0.0.1:{}/ws", free_port());
    let mut c = cli(&closed);
    c.env("AGENTVISOR_GIVE_UP", "1s").arg("health");
    let out = run_cli(c).await;
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("cannot reach the daemon"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn serve_runs_the_daemon_like_no_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_agentvisor"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(tmp.path())
        .env("AGENTVISOR_PROJECT_ROOTS", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut c = cli(&url);
    // A daemon setting the client does not read cannot break it.
    c.env("AGENTVISOR_LISTEN", "not an address").arg("health");
    let out = run_cli(c).await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test]
async fn wss_with_the_daemons_certificate_and_a_sentence_for_an_untrusted_one() {
    let dir = tempfile::tempdir().unwrap();
    let write_cert = |name: &str| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let path = dir.path().join(format!("{name}.pem"));
        std::fs::write(&path, cert.cert.pem()).unwrap();
        (path, cert)
    };
    let (cert_path, cert) = write_cert("daemon");
    let (other_path, _) = write_cert("other");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let port = free_port();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_agentvisor"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("AGENTVISOR_PROJECT_ROOTS", dir.path())
        .env("AGENTVISOR_TLS_CERT", &cert_path)
        .env("AGENTVISOR_TLS_KEY", &key_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("wss://localhost:{port}/ws");
    let mut c = cli(&url);
    c.env("AGENTVISOR_CA_FILE", &cert_path).arg("health");
    let trusted = run_cli(c).await;
    let mut c = cli(&url);
    c.env("AGENTVISOR_CA_FILE", &other_path).arg("health");
    let untrusted = run_cli(c).await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(trusted.code, 0, "{}", trusted.stderr);
    assert_eq!(untrusted.code, 3);
    assert!(
        untrusted.stderr.contains("securely"),
        "{}",
        untrusted.stderr
    );
}

/// The newest stored record of a project for which `pred` holds.
async fn newest_stored(d: &Daemon, project: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let stored = d
        .client()
        .await
        .messages(project, json!({"limit": 1000}))
        .await;
    stored
        .into_iter()
        .rev()
        .find(|m| pred(m))
        .unwrap_or_else(|| panic!("no such record in project {project}"))
}

/// Reads the client's lines until one starts with `prefix`; returns it.
async fn line_starting(lines: &mut Lines, prefix: &str) -> String {
    loop {
        let line = next_line(lines).await;
        if line.starts_with(prefix) {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_a_permission_request_and_approve_or_deny_answers_it() {
    let d = Daemon::start();
    let project = project_in(&d, "asks").await;
    let url = direct(&d);
    for (verb, expected) in [("approve", "approved"), ("deny", "not today")] {
        let mut cmd = cli(&url);
        cmd.args(["run", "--approvals", &project, "mock:ask"]);
        let (mut child, mut lines) = spawn_lines(cmd);
        let question =
            line_starting(&mut lines, "? Bash asks for permission: Run: echo approved").await;
        let request = question
            .trim_end_matches(')')
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string();
        assert!(
            question.contains(&format!("agentvisor approve|deny {project} {request}")),
            "{question}"
        );
        let mut args = vec![verb, project.as_str(), request.as_str()];
        if verb == "deny" {
            args.extend(["--message", "not today"]);
        }
        let out = agentvisor(&url, &args).await;
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert!(
            out.stdout.contains(&format!("request {request}")),
            "{}",
            out.stdout
        );
        let answered = line_starting(&mut lines, &format!("  {request}")).await;
        assert!(
            answered.contains(if verb == "approve" {
                "allowed"
            } else {
                "denied"
            }),
            "{answered}"
        );
        let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(0), "the run completes either way");
        // A second answer is told the request was already resolved.
        let late = agentvisor(&url, &["approve", &project, &request]).await;
        assert_eq!(late.code, 1);
        assert!(late.stderr.contains("ALREADY_RESOLVED"), "{}", late.stderr);
        let result = newest_stored(&d, &project, |m| m["data"]["message"]["type"] == "user").await;
        assert_eq!(
            result["data"]["message"]["message"]["content"][0]["content"],
            expected
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_prints_what_the_latest_or_a_named_run_changed() {
    let d = Daemon::start();
    let dir = d.project_dir("repo");
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(&dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(dir.join("edit.txt"), "first\n").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "start"]);
    let mut c = d.client().await;
    let project = c.create_project(&dir).await;
    let fin = c.run(&project, "mock:edit").await;
    let run = fin["data"]["run_id"].as_str().unwrap();
    let url = direct(&d);

    let out = agentvisor(&url, &["diff", &project]).await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("+a line the agent added"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("added.txt"), "{}", out.stdout);
    let out = agentvisor(&url, &["diff", &project, run, "--path", "added.txt"]).await;
    assert!(
        out.stdout.contains("+a new file") && !out.stdout.contains("edit.txt"),
        "{}",
        out.stdout
    );

    let plain = project_in(&d, "plain").await;
    c.run(&plain, "mock:success").await;
    let out = agentvisor(&url, &["diff", &plain]).await;
    assert_eq!(out.code, 0, "outside git is not an error: {}", out.stderr);
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("no recorded changes"), "{}", out.stderr);
}

/// Runs `agentvisor <args>` on a terminal (util-linux `script`), answers the first question with
/// `answer` once it is asked, and returns the client's exit code.
async fn on_a_terminal(url: &str, args: &str, answer: &str) -> i32 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_agentvisor"));
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("AGENTVISOR_URL", url)
        .env("AGENTVISOR_GIVE_UP", "20s")
        .env_remove("AGENTVISOR_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = script.spawn().expect("util-linux script");
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Allow? [y]es, [n]o, [a]lways") {
        let n = tokio::time::timeout(Duration::from_secs(40), out.read(&mut buf))
            .await
            .expect("no question on the terminal within 40s")
            .unwrap();
        assert!(
            n > 0,
            "the client ended before asking: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{answer}\n").as_bytes())
        .await
        .unwrap();
    tokio::spawn(async move { while out.read(&mut buf).await.is_ok_and(|n| n > 0) {} });
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .expect("the client did not end")
        .unwrap();
    drop(stdin);
    status.code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_a_terminal_asks_y_n_a_and_answers() {
    let d = Daemon::start();
    let project = project_in(&d, "tty").await;
    let url = direct(&d);
    for (answer, decision, remember) in [
        ("y", "allow", false),
        ("n", "deny", false),
        ("a", "allow", true),
    ] {
        let code =
            on_a_terminal(&url, &format!("run --approvals {project} mock:ask"), answer).await;
        assert_eq!(code, 0, "answer {answer}");
        let res = newest_stored(&d, &project, |m| m["type"] == "permission_resolved").await;
        assert_eq!(res["data"]["decision"], decision, "{res}");
        assert_eq!(res["data"]["remember"], remember, "{res}");
        assert!(
            res["data"]["by"].as_str().unwrap().starts_with("client:"),
            "{res}"
        );
    }
}

/// The seq after `--before-seq ` in the `history` command's hint on stderr, if it printed one.
fn older_page_hint(stderr: &str) -> Option<String> {
    let rest = stderr.split("--before-seq ").nth(1)?;
    Some(rest.chars().take_while(char::is_ascii_digit).collect())
}

#[tokio::test]
async fn history_says_where_the_next_page_starts_even_when_a_page_is_cut_empty() {
    let d = Daemon::builder()
        .env("AGENTVISOR_HISTORY_SCAN_RECORDS", "200")
        .start();
    let project = project_in(&d, "sparse").await;
    let url = direct(&d);
    let out = agentvisor(&url, &["run", &project, "mock:lines count=1000"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let query = ["history", &project, "--direction", "client", "--json"];
    // The prompt is 1 000 agent lines back: the first page is cut before it, empty.
    let out = agentvisor(&url, &query).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(json_lines(&out.stdout).is_empty(), "{}", out.stdout);
    let mut hint = older_page_hint(&out.stderr);
    assert!(hint.is_some(), "no --before-seq hint: {}", out.stderr);
    // Following the hints reaches the prompt, once.
    let mut found = Vec::new();
    for _ in 0..20 {
        let Some(before) = hint else { break };
        let mut args = query.to_vec();
        args.extend(["--before-seq", &before]);
        let out = agentvisor(&url, &args).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        found.extend(json_lines(&out.stdout));
        hint = older_page_hint(&out.stderr);
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["type"], "prompt");
}
