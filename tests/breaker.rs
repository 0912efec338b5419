//! The circuit breaker of each agent backend (issue 12), black-box: the mock agent fails the
//! way the real CLIs do when their API cannot be reached (the recorded `api-down` output), and
//! the daemon stops starting runs for that agent, tells every client, lets one trial through
//! after the cool-down, reopens for longer when it fails, and closes when it succeeds.

mod common;

use common::*;
use serde_json::{json, Value};

/// A daemon whose breakers open after two backend failures and cool down for 1 s, then 2 s.
fn daemon() -> Daemon {
    Daemon::builder()
        .env("AGENTVISOR_BREAKER_THRESHOLD", "2")
        .env("AGENTVISOR_BREAKER_COOLDOWN", "1s")
        .env("AGENTVISOR_BREAKER_COOLDOWN_MAX", "2s")
        .start()
}

async fn project(c: &mut Client, d: &Daemon, name: &str, agent: &str) -> String {
    let p = c
        .create_project_with(json!({"path": d.project_dir(name), "agent": agent}))
        .await;
    let id = p["id"].as_str().unwrap().to_string();
    c.join(&id).await;
    id
}

/// The next `breaker_state` event for `agent` in `state`.
async fn breaker_event(c: &mut Client, agent: &str, state: &str) -> Value {
    c.recv_where(|m| {
        m["type"] == "breaker_state" && m["data"]["agent"] == agent && m["data"]["state"] == state
    })
    .await
}

async fn refused_execute(c: &mut Client, project: &str) -> Value {
    let r = c
        .call("execute", json!({"project_id": project, "prompt": "hi"}))
        .await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["data"]["code"], "AGENT_UNAVAILABLE", "{r}");
    r
}

#[tokio::test]
async fn the_whole_cycle_with_an_unreachable_api() {
    let d = daemon();
    let mut c = d.client().await;
    // A client that joined nothing still hears of every breaker change.
    let mut watcher = d.client().await;
    let codex = project(&mut c, &d, "codex", "codex").await;
    let claude = project(&mut c, &d, "claude", "claude").await;

    // Two runs fail as an unreachable API makes Codex fail; a third waits behind them.
    let first = c.execute(&codex, "mock:api_down").await;
    let second = c.execute(&codex, "mock:api_down").await;
    let queued = c.execute(&codex, "mock:success").await;
    for run in [&first, &second] {
        let f = c.finished(run).await;
        assert_eq!(f["data"]["status"], "failed", "{f}");
    }
    let opened = breaker_event(&mut watcher, "codex", "open").await;
    assert_eq!(opened["data"]["consecutive_failures"], 2, "{opened}");
    assert!(opened["data"]["retry_at"].is_string(), "{opened}");
    // The run queued when it opened ends with the breaker's sentence, not silently.
    let f = c.finished(&queued).await;
    assert_eq!(f["data"]["status"], "failed", "{f}");
    let why = f["data"]["error"].as_str().unwrap();
    assert!(why.contains("codex agent is unavailable"), "{f}");

    // New runs are refused at once, with when it will try again; the other agent is unaffected.
    let r = refused_execute(&mut c, &codex).await;
    assert!(
        r["data"]["error"]
            .as_str()
            .unwrap()
            .contains("will try it again at"),
        "{r}"
    );
    let r = c
        .call(
            "consult",
            json!({"project_id": claude, "to": "codex", "kind": "design", "question": "q"}),
        )
        .await;
    assert_eq!(r["data"]["code"], "AGENT_UNAVAILABLE", "{r}");
    let done = c.run(&claude, "mock:success").await;
    assert_eq!(done["data"]["status"], "completed", "{done}");

    // Its state shows in health_check, /health and the metrics.
    let h = c.call("health_check", json!({})).await;
    assert_eq!(h["data"]["breakers"]["codex"]["state"], "open", "{h}");
    assert_eq!(h["data"]["breakers"]["claude"]["state"], "closed", "{h}");
    assert_eq!(h["data"]["status"], "degraded", "{h}");
    let (code, body) = d.http_get("/health").await;
    assert_eq!(code, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["breakers"]["codex"]["state"], "open", "{health}");
    let (_, metrics) = d.http_get("/metrics").await;
    assert!(
        metrics.contains("agentvisor_breaker_state{agent=\"codex\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agentvisor_breaker_opened_total{agent=\"codex\"} 1"),
        "{metrics}"
    );

    // After the cool-down one trial goes through; its failure reopens the breaker for longer.
    breaker_event(&mut watcher, "codex", "half_open").await;
    let trial = c.execute(&codex, "mock:api_down").await;
    let f = c.finished(&trial).await;
    assert_eq!(f["data"]["status"], "failed", "{f}");
    let reopened = breaker_event(&mut watcher, "codex", "open").await;
    assert_eq!(reopened["data"]["state"], "open", "{reopened}");
    refused_execute(&mut c, &codex).await;

    // The next trial succeeds: the breaker closes and runs go through again.
    breaker_event(&mut watcher, "codex", "half_open").await;
    let trial = c.run(&codex, "mock:success").await;
    assert_eq!(trial["data"]["status"], "completed", "{trial}");
    let closed = breaker_event(&mut watcher, "codex", "closed").await;
    assert_eq!(closed["data"]["consecutive_failures"], 0, "{closed}");
    let done = c.run(&codex, "mock:success").await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
}

#[tokio::test]
async fn an_operator_closes_it_and_user_kills_do_not_count() {
    let d = Daemon::builder()
        .env("AGENTVISOR_BREAKER_THRESHOLD", "1")
        .env("AGENTVISOR_BREAKER_COOLDOWN", "10m")
        .start();
    let mut c = d.client().await;
    let claude = project(&mut c, &d, "claude", "claude").await;

    // A prompt the OS would refuse as an argument is refused up front: no request can make
    // the agent fail to start, and so open the breaker.
    let r = c
        .call("execute", json!({"project_id": claude, "prompt": "a\0b"}))
        .await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    let r = c
        .call("consult", json!({"project_id": claude, "to": "claude", "kind": "design", "question": "q", "context": "\0"}))
        .await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");

    // A run the user stops says nothing about the backend.
    let run = c.start_run(&claude, "mock:hang").await;
    c.kill(&claude).await;
    let f = c.finished(&run).await;
    assert_eq!(f["data"]["status"], "killed", "{f}");
    let h = c.call("health_check", json!({})).await;
    assert_eq!(h["data"]["breakers"]["claude"]["state"], "closed", "{h}");

    // A server error from the API does (the recorded HTTP 500 of Claude Code).
    let f = c.run(&claude, "mock:error").await;
    assert_eq!(f["data"]["status"], "failed", "{f}");
    breaker_event(&mut c, "claude", "open").await;
    let r = refused_execute(&mut c, &claude).await;
    assert!(
        r["data"]["error"].as_str().unwrap().contains("(in 6"),
        "{r}"
    );

    let r = c.call("breaker_reset", json!({"agent": "nobody"})).await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    let r = c.call("breaker_reset", json!({"agent": "claude"})).await;
    assert_eq!(r["type"], "breaker_reset", "{r}");
    assert_eq!(r["data"]["state"], "closed", "{r}");
    breaker_event(&mut c, "claude", "closed").await;
    let done = c.run(&claude, "mock:success").await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
}
