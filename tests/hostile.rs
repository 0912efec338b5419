//! The review's classes of weakness, each proved against the real binary: secrets kept from
//! agents, prompts the CLI cannot take, hostile clients before and after authentication, runs
//! lost to a crash, and the smaller guarantees of `docs/security.md`.

mod common;

use common::*;
use serde_json::Value;

const TOKEN: &str = "a-long-enough-test-token-0123456789";

/// A daemon with a token and a client authenticated to it, and one project.
async fn authed(d: &Daemon) -> (Client, String) {
    let auth = format!("Bearer {TOKEN}");
    let mut c = d.client_with(&[("authorization", &auth)]).await;
    let dir = d.project_dir("p");
    let p = c.create_project(&dir).await;
    c.join(&p).await;
    (c, p)
}

/// The agent lines (`data.message`) of `run_id` up to its `run_finished`.
async fn agent_lines_of(c: &mut Client, run_id: &str) -> Vec<Value> {
    let mut lines = Vec::new();
    loop {
        let m = c.recv().await;
        if m["data"]["run_id"] != run_id {
            continue;
        }
        match m["type"].as_str() {
            Some("agent_message") => lines.push(m["data"]["message"].clone()),
            Some("run_finished") => return lines,
            _ => {}
        }
    }
}

#[tokio::test]
async fn the_agent_gets_its_keys_but_never_the_daemons_secrets() {
    let d = Daemon::builder()
        .env("AGENTVISOR_TOKEN", TOKEN)
        .env("ANTHROPIC_API_KEY", "sk-ant-for-the-agent")
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .env("DATABASE_PASSWORD", "not-for-agents")
        .start();
    let (mut c, p) = authed(&d).await;
    let run = c.execute(&p, "mock:env").await;
    let lines = agent_lines_of(&mut c, &run).await;
    let report = lines
        .iter()
        .find(|l| l["type"] == "mock_env")
        .expect("env report");
    let vars: Vec<&str> = report["vars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let has = |name: &str| vars.iter().any(|v| v.split('=').next() == Some(name));
    for kept in [
        "PATH",
        "ANTHROPIC_API_KEY",
        "OPENAI_BASE_URL",
        "AGENTVISOR_RUN_ID",
    ] {
        assert!(has(kept), "{kept} missing from {vars:?}");
    }
    assert!(vars.contains(&format!("AGENTVISOR_RUN_ID={run}").as_str()));
    assert!(!has("DATABASE_PASSWORD"), "{vars:?}");
    let daemon_vars: Vec<&&str> = vars
        .iter()
        .filter(|v| v.starts_with("AGENTVISOR_") && !v.starts_with("AGENTVISOR_RUN_ID="))
        .collect();
    assert!(daemon_vars.is_empty(), "{daemon_vars:?}");
    assert!(!vars.iter().any(|v| v.contains(TOKEN)), "{vars:?}");
}
