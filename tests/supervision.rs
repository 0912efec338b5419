//! Supervision, black-box: crashes injected with `fault_inject` into every kind of actor, and
//! what the daemon does about them — restart delays (measured), backoff growth and reset,
//! `errored` past the restart limit, the crash-loop exit code, and that nothing else is hurt
//! (other projects keep streaming, history and metadata survive, subscribers see no gap).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The first restart delay the tests configure.
const INITIAL: Duration = Duration::from_millis(200);
/// How far a measured delay may be from the configured one: the tolerance of the brief, plus
/// scheduling slack on a loaded test machine (tests run in parallel, each with its daemon).
const TOLERANCE: Duration = Duration::from_millis(150);
const SLACK: Duration = Duration::from_millis(250);

/// A daemon with fault injection on, a 200 ms first restart delay and no rate limit (the tests
/// poll health quickly).
fn daemon(extra: &[(&str, &str)]) -> Daemon {
    let mut b = Daemon::builder()
        .env("AGENTVISOR_FAULT_INJECTION", "1")
        .env("AGENTVISOR_BACKOFF_INITIAL", "200ms")
        .env("AGENTVISOR_BACKOFF_MAX", "15s")
        .env("AGENTVISOR_BACKOFF_RESET_AFTER", "30s")
        .env("AGENTVISOR_RESTART_LIMIT", "10")
        .env("AGENTVISOR_RESTART_WINDOW", "60s")
        .env("AGENTVISOR_RATE_LIMIT", "0")
        .env("AGENTVISOR_KILL_GRACE", "500ms");
    for (k, v) in extra {
        b = b.env(k, *v);
    }
    b.start()
}

/// `/health` over HTTP.
async fn health(port: u16) -> Value {
    let (status, body) = http_get(port, "/health").await.expect("GET /health");
    assert_eq!(status, 200, "/health answered {status}: {body}");
    serde_json::from_str(&body).expect("/health is JSON")
}

/// One supervised actor's record in `/health`'s `actors` list.
async fn actor(port: u16, name: &str) -> Option<Value> {
    health(port).await["actors"]
        .as_array()
        .expect("health has an actors list")
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
}

/// What polling saw of one restart.
struct Restart {
    /// When the actor was first seen `restarting` (if it was seen at all).
    restarting_at: Option<Instant>,
    /// When it was first seen `running` again.
    running_at: Instant,
    /// Its record at that moment.
    record: Value,
}

/// Polls `/health` every few milliseconds until `name` is `running` with `restarts` restarts.
async fn wait_restarted(port: u16, name: &str, restarts: u64) -> Restart {
    let deadline = Instant::now() + WAIT;
    let mut restarting_at = None;
    loop {
        if let Some(a) = actor(port, name).await {
            let now = Instant::now();
            if a["restarts"] == restarts {
                match a["status"].as_str() {
                    Some("restarting") => {
                        restarting_at.get_or_insert(now);
                    }
                    Some("running") => {
                        return Restart {
                            restarting_at,
                            running_at: now,
                            record: a,
                        }
                    }
                    _ => panic!("{name} is not coming back: {a}"),
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not come back with {restarts} restart(s): {:?}",
            actor(port, name).await
        );
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
}

/// Polls `/health` until `name` has the wanted status.
async fn wait_status(port: u16, name: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(a) = actor(port, name).await {
            if a["status"] == status {
                return a;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {status}: {:?}",
            actor(port, name).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts that a measured restart delay is the configured one, within tolerance.
fn assert_delay(what: &str, measured: Duration, expected: Duration) {
    let low = expected.saturating_sub(TOLERANCE);
    let high = expected + TOLERANCE + SLACK;
    assert!(
        measured >= low && measured <= high,
        "{what}: restart took {measured:?}, expected {expected:?} (allowed {low:?}..{high:?})"
    );
}

/// Injects a fault and returns the moment the confirmation arrived.
async fn inject(c: &mut Client, actor: &str, project: Option<&str>) -> Instant {
    let mut data = json!({ "actor": actor });
    if let Some(p) = project {
        data["project_id"] = json!(p);
    }
    let r = c.call("fault_inject", data).await;
    assert_eq!(r["type"], "fault_injected", "{r}");
    assert_eq!(r["data"]["actor"], actor, "{r}");
    Instant::now()
}

/// Injects a crash into `name` and checks that it comes back after `expected`, measured two
/// ways: from the confirmation, and from the first poll that saw it `restarting`.
async fn crash_and_measure(
    d: &Daemon,
    c: &mut Client,
    kind: &str,
    project: Option<&str>,
    name: &str,
    restarts: u64,
    expected: Duration,
) -> Value {
    let t0 = inject(c, kind, project).await;
    let r = wait_restarted(d.port, name, restarts).await;
    let restarting_at = r
        .restarting_at
        .unwrap_or_else(|| panic!("{name} was never seen restarting"));
    assert_delay(name, r.running_at - t0, expected);
    assert_delay(name, r.running_at - restarting_at, expected);
    assert_eq!(
        r.record["backoff_ms"],
        expected.as_millis() as u64,
        "{}",
        r.record
    );
    assert_eq!(r.record["kind"], kind, "{}", r.record);
    r.record
}

/// Waits until no process of the run is left.
async fn wait_no_processes(run_id: &str) {
    let left = run_leftovers(run_id, WAIT).await;
    assert!(
        left.is_empty(),
        "processes of run {run_id} survived: {left:?}"
    );
}

/// A gauge from `/metrics`.
async fn gauge(d: &Daemon, name: &str) -> f64 {
    let (_, body) = d.http_get("/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}

/// Waits until a gauge has a value.
async fn wait_gauge(d: &Daemon, name: &str, want: f64) {
    let deadline = Instant::now() + WAIT;
    while gauge(d, name).await != want {
        assert!(
            Instant::now() < deadline,
            "{name} stayed at {} (wanted {want})",
            gauge(d, name).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A project's whole history.
/// A project's `metadata.json` once the write that follows a run's end has landed: that write
/// happens in the background, after `run_finished` is sent.
async fn settled_metadata(path: &std::path::Path) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let meta: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        if meta["state"] == "IDLE" && meta["active_run"].is_null() {
            return meta;
        }
        assert!(Instant::now() < deadline, "metadata never settled: {meta}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn history(c: &mut Client, id: &str) -> Vec<Value> {
    c.messages(id, json!({"since_seq": 0, "limit": 1000})).await
}

// --- the tests -------------------------------------------------------------------------------

#[tokio::test]
async fn fault_inject_does_not_exist_without_the_flag() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let r = c.call("fault_inject", json!({"actor": "health"})).await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["data"]["code"], "UNKNOWN_TYPE", "{r}");
    let plain = c.call("no_such_request", json!({})).await;
    assert_eq!(
        plain["data"]["code"], r["data"]["code"],
        "fault_inject must look like any unknown type"
    );
    assert!(
        !d.log_text().contains("FAULT INJECTION"),
        "{}",
        d.log_text()
    );
    // Still alive and unchanged.
    let h = health(d.port).await;
    assert!(h["actors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["restarts"] == 0 && a["status"] == "running"));
}

#[tokio::test]
async fn fault_injection_is_announced_and_validated() {
    let d = daemon(&[]);
    assert!(
        d.log_text().contains("FAULT INJECTION IS ENABLED"),
        "{}",
        d.log_text()
    );
    let mut c = d.client().await;
    let r = c.call("fault_inject", json!({"actor": "nobody"})).await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    let r = c.call("fault_inject", json!({"actor": "project"})).await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    let r = c
        .call(
            "fault_inject",
            json!({"actor": "project", "project_id": "nope"}),
        )
        .await;
    assert_eq!(r["data"]["code"], "PROJECT_NOT_FOUND", "{r}");
    let id = c.create_project(&d.project_dir("idle")).await;
    let r = c
        .call(
            "fault_inject",
            json!({"actor": "executor", "project_id": id}),
        )
        .await;
    assert_eq!(r["data"]["code"], "NO_ACTIVE_RUN", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_actors_restart_after_the_initial_delay() {
    let d = daemon(&[]);
    let mut c = d.client().await;
    for kind in ["health", "broadcast", "registry"] {
        let rec = crash_and_measure(&d, &mut c, kind, None, kind, 1, INITIAL).await;
        assert_eq!(rec["restarts"], 1, "{rec}");
        // The HTTP server and this very connection never noticed.
        c.ping().await;
    }
    // Restarted actors work: the registry creates, the broadcast actor delivers.
    let id = c.create_project(&d.project_dir("after")).await;
    assert_eq!(c.run(&id, "hi").await["data"]["status"], "completed");
    let log = d.log_text();
    for kind in ["health", "broadcast", "registry"] {
        assert!(
            log.contains(&format!("{kind} actor crashed (panic: fault injected")),
            "no crash line with the reason for {kind}:\n{log}"
        );
        assert!(log.contains(&format!("{kind} actor restarted")), "{log}");
    }
    // Every restart shows in /metrics too.
    let (_, metrics) = d.http_get("/metrics").await;
    assert!(metrics.contains("restart"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_a_restart_are_refused_with_a_reason() {
    let d = daemon(&[("AGENTVISOR_BACKOFF_INITIAL", "1s")]);
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("p")).await;

    inject(&mut c, "registry", None).await;
    wait_status(d.port, "registry", "restarting").await;
    let r = c
        .call("project_create", json!({"path": d.project_dir("x")}))
        .await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["data"]["code"], "INTERNAL_ERROR", "{r}");
    assert!(
        r["data"]["error"].as_str().unwrap().contains("restarting"),
        "{r}"
    );
    wait_restarted(d.port, "registry", 1).await;
    c.create_project(&d.project_dir("x")).await;

    inject(&mut c, "project", Some(&id)).await;
    wait_status(d.port, &id, "restarting").await;
    let r = c.call("get_messages", json!({"project_id": id})).await;
    assert_eq!(r["data"]["code"], "INTERNAL_ERROR", "{r}");
    assert_eq!(r["project_id"], id.as_str(), "{r}");
    assert!(
        r["data"]["error"].as_str().unwrap().contains("restarting"),
        "{r}"
    );
    // Listed all the while, from its last known state.
    assert_eq!(c.project(&id).await["state"], "IDLE");
    wait_restarted(d.port, &id, 1).await;
    let r = c.call("get_messages", json!({"project_id": id})).await;
    assert_eq!(r["type"], "messages", "{r}");

    inject(&mut c, "broadcast", None).await;
    wait_status(d.port, "broadcast", "restarting").await;
    let r = c.call("project_join", json!({"project_id": id})).await;
    assert_eq!(r["data"]["code"], "INTERNAL_ERROR", "{r}");
    wait_restarted(d.port, "broadcast", 1).await;
    c.join(&id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_grows_by_half_and_resets_after_the_stable_window() {
    let d = daemon(&[("AGENTVISOR_BACKOFF_RESET_AFTER", "1s")]);
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("p")).await;
    // Consecutive crashes, each right after the restart (well inside the stable window).
    let expected = [200u64, 300, 450];
    for (i, ms) in expected.iter().enumerate() {
        let rec = crash_and_measure(
            &d,
            &mut c,
            "project",
            Some(&id),
            &id,
            i as u64 + 1,
            Duration::from_millis(*ms),
        )
        .await;
        assert_eq!(rec["restarts"], i as u64 + 1, "{rec}");
    }
    // Up for longer than the stable window: the delay starts over, the counter does not.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let rec = crash_and_measure(&d, &mut c, "project", Some(&id), &id, 4, INITIAL).await;
    assert_eq!(rec["restarts"], 4, "{rec}");

    // The log tells the same story, with the delays in it and measurable from its timestamps.
    let log = d.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("actor={id}")))
        .collect();
    let crashes: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("project actor crashed (panic: fault injected"))
        .collect();
    let delays: Vec<u64> = crashes
        .iter()
        .map(|l| {
            l.split("restarting in ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no delay in {l}"))
        })
        .collect();
    assert_eq!(delays, vec![200, 300, 450, 200], "{log}");
    let stamp = |l: &str| {
        chrono::DateTime::parse_from_rfc3339(l.split(' ').next().unwrap())
            .unwrap_or_else(|e| panic!("no timestamp in {l}: {e}"))
    };
    let restarted: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("project actor restarted"))
        .collect();
    assert_eq!(restarted.len(), 4, "{log}");
    for ((crash, up), ms) in crashes.iter().zip(&restarted).zip(&delays) {
        let took = (stamp(up) - stamp(crash)).to_std().unwrap();
        assert_delay("logged restart", took, Duration::from_millis(*ms));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_is_capped() {
    let d = daemon(&[("AGENTVISOR_BACKOFF_MAX", "300ms")]);
    let mut c = d.client().await;
    for (i, ms) in [200u64, 300, 300].iter().enumerate() {
        crash_and_measure(
            &d,
            &mut c,
            "health",
            None,
            "health",
            i as u64 + 1,
            Duration::from_millis(*ms),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_that_crashes_too_often_is_errored_and_says_so() {
    let mut d = daemon(&[("AGENTVISOR_RESTART_LIMIT", "2")]);
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("fragile")).await;
    let other = c.create_project(&d.project_dir("sturdy")).await;
    c.run(&id, "hi").await;
    let before = history(&mut c, &id).await;

    crash_and_measure(&d, &mut c, "project", Some(&id), &id, 1, INITIAL).await;
    crash_and_measure(
        &d,
        &mut c,
        "project",
        Some(&id),
        &id,
        2,
        Duration::from_millis(300),
    )
    .await;
    inject(&mut c, "project", Some(&id)).await;
    let rec = wait_status(d.port, &id, "errored").await;
    assert_eq!(rec["restarts"], 2, "{rec}");
    // It stays down.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(actor(d.port, &id).await.unwrap()["status"], "errored");
    assert_eq!(health(d.port).await["status"], "degraded");

    for (kind, data) in [
        ("execute", json!({"project_id": id, "prompt": "hi"})),
        ("get_messages", json!({"project_id": id})),
        ("project_join", json!({"project_id": id})),
    ] {
        let r = c.call(kind, data).await;
        assert_eq!(r["type"], "error", "{kind}: {r}");
        assert_eq!(r["data"]["code"], "INTERNAL_ERROR", "{kind}: {r}");
        assert_eq!(r["project_id"], id.as_str(), "{kind}: {r}");
        let why = r["data"]["error"].as_str().unwrap();
        assert!(
            why.contains("crashed too often"),
            "{kind}: the error must say why: {r}"
        );
        assert!(!why.contains(d.data_dir.to_str().unwrap()), "{r}");
    }
    assert!(
        d.log_text().contains("errored, staying down"),
        "{}",
        d.log_text()
    );
    // Nothing else is affected.
    assert_eq!(c.run(&other, "hi").await["data"]["status"], "completed");

    // An operator brings it back without restarting the daemon.
    let r = c.call("actor_reset", json!({"actor": "nope"})).await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    let r = c.call("actor_reset", json!({"actor": id})).await;
    assert_eq!(r["type"], "actor_reset", "{r}");
    assert_eq!(actor(d.port, &id).await.unwrap()["status"], "running");
    assert_eq!(history(&mut c, &id).await, before);
    assert_eq!(c.run(&id, "hi").await["data"]["status"], "completed");
    let before = history(&mut c, &id).await;
    // Crash it into `errored` again, for the restart check below.
    for _ in 0..3 {
        inject(&mut c, "project", Some(&id)).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    wait_status(d.port, &id, "errored").await;

    // A daemon restart brings it back, with its history.
    c.close().await;
    assert!(d.stop().success());
    d.restart();
    let mut c = d.client().await;
    assert_eq!(history(&mut c, &id).await, before);
    assert_eq!(actor(d.port, &id).await.unwrap()["status"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_actor_crash_loop_ends_the_process_with_code_70() {
    let mut d = daemon(&[("AGENTVISOR_RESTART_LIMIT", "1")]);
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("p")).await;
    let run = c.start_run(&id, "mock:hang").await;
    crash_and_measure(&d, &mut c, "health", None, "health", 1, INITIAL).await;
    inject(&mut c, "health", None).await;
    let code = tokio::task::block_in_place(|| d.wait_exit(WAIT).code());
    assert_eq!(code, Some(70), "log:\n{}", d.log_text());
    // The process manager restarts a daemon, not its orphans.
    wait_no_processes(&run).await;
    let log = d.log_text();
    assert!(log.contains("crash loop"), "{log}");
    assert!(log.contains("exiting with code 70"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_crash_fails_its_run_and_kills_its_processes() {
    let d = daemon(&[]);
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("p")).await;
    let run = c.start_run(&id, "mock:hang").await;
    assert!(
        !processes_of_run(&run).is_empty(),
        "the agent of run {run} is not running"
    );
    let r = c
        .call(
            "fault_inject",
            json!({"actor": "executor", "project_id": id}),
        )
        .await;
    assert_eq!(r["type"], "fault_injected", "{r}");
    let f = c.finished(&run).await;
    assert_eq!(f["data"]["status"], "failed", "{f}");
    let why = f["data"]["error"].as_str().unwrap();
    assert!(why.contains("executor crashed"), "{f}");
    assert!(why.contains("fault injected"), "the reason is lost: {f}");
    wait_no_processes(&run).await;
    let st = c.project_state("ERROR").await;
    assert_eq!(st["data"]["queue_len"], 0, "{st}");
    let exec = format!("executor:{id}");
    let rec = wait_status(d.port, &exec, "running").await;
    assert_eq!(rec["restarts"], 1, "{rec}");
    assert_eq!(rec["kind"], "executor", "{rec}");
    let log = d.log_text();
    assert!(
        log.lines().any(|l| l.contains(&format!("actor={exec}"))
            && l.contains("executor actor crashed (panic: fault injected into the executor")),
        "the crash is not logged with its reason:\n{log}"
    );
    // The project itself never crashed, and runs again.
    assert_eq!(actor(d.port, &id).await.unwrap()["restarts"], 0);
    assert_eq!(c.run(&id, "hi").await["data"]["status"], "completed");
    wait_gauge(&d, "agentvisor_runs_active", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_crash_during_a_run_fails_the_run_and_leaves_nothing_behind() {
    let mut d = daemon(&[]);
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("p")).await;
    let run = c.start_run(&id, "mock:hang").await;
    crash_and_measure(&d, &mut c, "project", Some(&id), &id, 1, INITIAL).await;
    wait_no_processes(&run).await;
    // The subscriber still hears about its run, from the restarted actor.
    let f = c.finished(&run).await;
    assert_eq!(f["data"]["status"], "failed", "{f}");
    assert!(f["data"]["error"].as_str().unwrap().contains("interrupted"));
    assert_eq!(c.project(&id).await["state"], "ERROR");
    wait_gauge(&d, "agentvisor_runs_active", 0.0).await;
    assert_eq!(c.run(&id, "hi").await["data"]["status"], "completed");
    // Nothing is left to wait for: a graceful stop is quick and clean.
    c.close().await;
    let t = Instant::now();
    let st = d.stop();
    assert!(st.success(), "{st}; log:\n{}", d.log_text());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_restart_loses_nothing_and_others_keep_streaming() {
    let d = daemon(&[]);
    let mut c = d.client().await;
    let a = c.create_project(&d.project_dir("a")).await;
    let b = c.create_project(&d.project_dir("b")).await;
    c.run(&a, "hi").await;
    let history_before = history(&mut c, &a).await;
    let view_before = c.project(&a).await;
    let meta_path = d.data_dir.join("projects").join(&a).join("metadata.json");
    let meta_before = settled_metadata(&meta_path).await;
    assert!(view_before["session_id"].is_string(), "{view_before}");
    let last_seq = view_before["last_seq"].as_u64().unwrap();
    assert!(last_seq > 3, "{view_before}");

    // A watcher of A, joined before the crash.
    let mut watcher = d.client().await;
    watcher.join(&a).await;

    // B streams 40 lines over 2 s; its client records when each arrives.
    let mut streamer = d.client().await;
    let b_run = streamer.start_run(&b, "mock:lines count=40 rate=20").await;
    let b_id = b.clone();
    let collector = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let m = streamer.recv().await;
            if m["project_id"] != b_id.as_str() {
                continue;
            }
            let done = m["type"] == "run_finished";
            got.push((Instant::now(), m));
            if done {
                return got;
            }
        }
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = inject(&mut c, "project", Some(&a)).await;
    let r = wait_restarted(d.port, &a, 1).await;
    assert_delay("project", r.running_at - t0, INITIAL);

    let got = collector.await.unwrap();
    let during = got
        .iter()
        .filter(|(t, m)| *t > t0 && *t < r.running_at && m["type"] == "agent_message")
        .count();
    assert!(
        during > 0,
        "project B delivered nothing while A was restarting"
    );
    let (_, last) = got.last().unwrap();
    assert_eq!(last["data"]["run_id"], b_run.as_str());
    assert_eq!(last["data"]["status"], "completed", "{last}");
    let mut n: Vec<u64> = got
        .iter()
        .filter_map(|(_, m)| m["data"]["message"]["n"].as_u64())
        .collect();
    n.sort();
    assert_eq!(n, (1..=40).collect::<Vec<_>>(), "lines of B were lost");
    // (The agent's first line was taken by `start_run`: check from the first counted line on.)
    let first = got
        .iter()
        .find(|(_, m)| m["data"]["message"]["n"] == 1)
        .and_then(|(_, m)| m["seq"].as_u64())
        .unwrap();
    let seqs: Vec<u64> = got
        .iter()
        .filter_map(|(_, m)| m["seq"].as_u64())
        .filter(|s| *s >= first)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gap in B: {seqs:?}"
    );

    // A is back exactly as it was, on the wire and on disk.
    assert_eq!(history(&mut c, &a).await, history_before);
    let view_after = c.project(&a).await;
    assert_project_kept(&view_before, &view_after, "the project's restart");
    let meta_after: Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    assert_eq!(meta_after, meta_before);

    // Its seq continues, the session resumes, and the watcher hears it without re-joining.
    let run = c.start_run(&a, "hi").await;
    let f = c.finished(&run).await;
    assert_eq!(f["data"]["status"], "completed", "{f}");
    let after = history(&mut c, &a).await;
    assert_eq!(after[..history_before.len()], history_before[..]);
    assert_eq!(after[history_before.len()]["seq"], last_seq + 1);
    let started = after
        .iter()
        .find(|m| m["type"] == "run_started" && m["data"]["run_id"] == run.as_str())
        .unwrap();
    assert_eq!(
        started["data"]["resumed_session_id"], view_before["session_id"],
        "{started}"
    );
    let w = watcher.finished(&run).await;
    assert!(w["seq"].as_u64().unwrap() > last_seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_restart_rejoins_subscribers_without_a_gap() {
    let d = daemon(&[]);
    let mut ctl = d.client().await;
    let id = ctl.create_project(&d.project_dir("p")).await;
    // A subscriber that only watches, and one that runs the agent.
    let mut watcher = d.client().await;
    watcher.join(&id).await;
    let mut runner = d.client().await;
    let run = runner.execute(&id, "mock:lines count=40 rate=20").await;

    // Both collect everything about the project, from the prompt to the end of the run.
    let collect = |mut client: Client, id: String, run: String| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let m = client.recv().await;
                if m["project_id"] != id.as_str() || m["seq"].is_null() {
                    continue;
                }
                let done = m["type"] == "run_finished" && m["data"]["run_id"] == run.as_str();
                got.push(m);
                if done {
                    // The client goes back too: dropping it would unsubscribe it.
                    return (client, got);
                }
            }
        })
    };
    let runner = collect(runner, id.clone(), run.clone());
    let watcher = collect(watcher, id.clone(), run.clone());

    // Crash the fan-out mid-run (a quarter of the way through the lines).
    tokio::time::sleep(Duration::from_millis(500)).await;
    crash_and_measure(&d, &mut ctl, "broadcast", None, "broadcast", 1, INITIAL).await;

    let mut clients = Vec::new();
    for (who, task) in [("runner", runner), ("watcher", watcher)] {
        let (client, got) = task.await.unwrap();
        clients.push(client);
        let last = got.last().unwrap();
        assert_eq!(last["data"]["status"], "completed", "{who}: {last}");
        assert_eq!(
            got[0]["type"], "prompt",
            "{who} missed the start: {}",
            got[0]
        );
        let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{who} saw a gap or a duplicate: {seqs:?}"
        );
        let lines: Vec<u64> = got
            .iter()
            .filter_map(|m| m["data"]["message"]["n"].as_u64())
            .collect();
        assert_eq!(lines, (1..=40).collect::<Vec<_>>(), "{who}");
    }
    // The subscriber count is right again (each client once).
    let view = ctl.project(&id).await;
    assert_eq!(view["subscribers"], 2, "{view}");
    assert_eq!(
        view["last_seq"],
        history(&mut ctl, &id).await.last().unwrap()["seq"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_crash_closes_only_that_socket() {
    let d = daemon(&[]);
    // Clients that come and go are no crash.
    for _ in 0..3 {
        let mut brief = d.client().await;
        brief.ping().await;
        brief.close().await;
    }
    let abrupt = d.client().await;
    drop(abrupt);
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("p")).await;
    wait_gauge(&d, "agentvisor_connections", 1.0).await;
    assert!(
        actor(d.port, "connection").await.is_none(),
        "a normal disconnect was counted as a crash: {:?}",
        actor(d.port, "connection").await
    );
    let mut victim = d.client().await;
    victim.join(&id).await;
    c.join(&id).await;
    assert_eq!(c.project(&id).await["subscribers"], 2);
    wait_gauge(&d, "agentvisor_connections", 2.0).await;

    let r = victim
        .call("fault_inject", json!({"actor": "connection"}))
        .await;
    assert_eq!(r["type"], "fault_injected", "{r}");
    match victim.closed(WAIT).await {
        Closed::Code(1011) | Closed::Eof => {}
        other => panic!("the crashed connection ended with {other:?}, expected 1011"),
    }

    // The other client is untouched and still streams.
    c.ping().await;
    assert_eq!(c.run(&id, "hi").await["data"]["status"], "completed");
    let rec = wait_status(d.port, "connection", "running").await;
    assert_eq!(rec["restarts"], 1, "{rec}");
    assert_eq!(rec["kind"], "connection", "{rec}");
    // The dead connection is not counted anywhere any more.
    wait_gauge(&d, "agentvisor_connections", 1.0).await;
    assert_eq!(c.project(&id).await["subscribers"], 1);
    // A new connection works.
    let mut again = d.client().await;
    again.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_through_a_health_actor_restart() {
    let d = daemon(&[("AGENTVISOR_BACKOFF_INITIAL", "1s")]);
    let mut c = d.client().await;
    inject(&mut c, "health", None).await;
    wait_status(d.port, "health", "restarting").await;
    // While it is down, both health endpoints answer and show it.
    let h = c.call("health_check", json!({})).await;
    assert_eq!(h["type"], "health", "{h}");
    let rec = h["data"]["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "health")
        .cloned()
        .unwrap();
    assert_eq!(rec["status"], "restarting", "{rec}");
    assert_eq!(rec["backoff_ms"], 1000, "{rec}");
    assert_eq!(h["data"]["status"], "degraded", "{h}");
    let (code, _) = d.http_get("/ready").await;
    assert_eq!(code, 200);
    wait_restarted(d.port, "health", 1).await;
    let h = c.call("health_check", json!({})).await;
    assert_eq!(h["data"]["status"], "ok", "{h}");
}
