//! The review's classes of weakness, each proved against the real binary: secrets kept from
//! agents, prompts the CLI cannot take, hostile clients before and after authentication, runs
//! lost to a crash, and the smaller guarantees of `docs/security.md`.

mod common;

use common::*;
use serde_json::{json, Value};

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

#[tokio::test]
async fn prompts_no_command_line_can_carry_are_refused_before_anything_is_stored() {
    let d = Daemon::builder().env("AGENTVISOR_TOKEN", TOKEN).start();
    let (mut c, p) = authed(&d).await;
    let before = c.project(&p).await["last_seq"].clone();
    let too_long = "a".repeat(128 * 1024);
    for prompt in [too_long.as_str(), "run this\0and that"] {
        let r = c
            .call("execute", json!({"project_id": p, "prompt": prompt}))
            .await;
        assert_eq!(r["type"], "error", "{r}");
        assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
        assert!(
            r["data"]["error"].as_str().unwrap().contains("'prompt'"),
            "{r}"
        );
    }
    assert_eq!(
        c.project(&p).await["last_seq"],
        before,
        "something was stored"
    );
    assert!(c.messages(&p, json!({})).await.is_empty());

    // The longest prompt a command line carries still runs.
    let longest = "a".repeat(128 * 1024 - 1);
    let done = c.run(&p, &longest).await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
}
