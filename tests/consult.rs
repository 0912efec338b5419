//! Consults (issue 12), black-box: one agent asks the other for a second opinion through the
//! real daemon. The mock agent plays the consultant, answering well or in each of the ways the
//! protocol's failure table covers; every attempt, output line and result is checked on the
//! wire and in history.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{json, Value};

/// A daemon whose agent logs its invocations, and a joined project.
struct Setup {
    d: Daemon,
    c: Client,
    project: String,
    argv_log: PathBuf,
    _scratch: tempfile::TempDir,
}

async fn setup(agent: &str) -> Setup {
    let scratch = tempfile::tempdir().unwrap();
    let argv_log = scratch.path().join("argv.jsonl");
    let d = Daemon::builder()
        .env("MOCK_AGENT_ARGV_LOG", argv_log.to_str().unwrap())
        .start();
    let mut c = d.client().await;
    let p = c
        .create_project_with(json!({"path": d.project_dir("app"), "agent": agent}))
        .await;
    let project = p["id"].as_str().unwrap().to_string();
    c.join(&project).await;
    Setup {
        d,
        c,
        project,
        argv_log,
        _scratch: scratch,
    }
}

impl Setup {
    /// Sends `consult` and waits for its `consult_result`.
    async fn consult(&mut self, data: Value) -> (String, Value) {
        let id = self.start(data).await;
        let result = self
            .c
            .recv_where(|m| m["type"] == "consult_result" && m["data"]["consult_id"] == id.as_str())
            .await;
        (id, result["data"].clone())
    }

    async fn start(&mut self, mut data: Value) -> String {
        data["project_id"] = json!(self.project);
        let r = self.c.call("consult", data).await;
        assert_eq!(r["type"], "consult_accepted", "{r}");
        r["data"]["consult_id"].as_str().unwrap().to_string()
    }

    /// The `consult_attempt` events of a consult, from history.
    async fn attempts(&mut self, id: &str) -> Vec<Value> {
        let project = self.project.clone();
        self.c
            .messages(&project, json!({"limit": 1000}))
            .await
            .into_iter()
            .filter(|m| m["type"] == "consult_attempt" && m["data"]["consult_id"] == id)
            .map(|m| m["data"].clone())
            .collect()
    }

    fn invocations(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.argv_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn a_design_consult_with_codex_is_read_only_and_stored() {
    let mut s = setup("claude").await;
    let (id, r) = s
        .consult(json!({"to": "codex", "kind": "design", "question": "Should the session cache be write-through?", "context": "cache.rs keeps sessions"}))
        .await;
    assert_eq!(r["status"], "complete", "{r}");
    assert_eq!(r["to"], "codex");
    assert_eq!(r["kind"], "design");
    assert_eq!(r["attempts"], 1);
    for name in ["ASSESSMENT", "RISKS", "ALTERNATIVES", "RECOMMENDATION"] {
        assert!(r["sections"][name].is_string(), "{name}: {r}");
    }
    assert!(r["text"].as_str().unwrap().contains("[RESPONSE:DESIGN]"));

    // Codex ran once, sandboxed read-only, in the project directory, with the protocol prompt.
    let runs = s.invocations();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let argv: Vec<&str> = runs[0]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(argv.contains(&"sandbox_mode=\"read-only\""), "{argv:?}");
    assert_eq!(runs[0]["flavour"], "codex");
    assert!(runs[0]["prompt"]
        .as_str()
        .unwrap()
        .starts_with("[CONSULT:DESIGN]\nShould the session cache"));
    assert!(runs[0]["cwd"].as_str().unwrap().ends_with("/app"));

    // Everything is in history: the question, the output marked with the consult, the result.
    let project = s.project.clone();
    let stored = s.c.messages(&project, json!({"limit": 1000})).await;
    let of = |t: &str| {
        stored
            .iter()
            .filter(|m| m["type"] == t && m["data"]["consult_id"] == id.as_str())
            .count()
    };
    assert_eq!(of("consult_started"), 1);
    assert!(of("consult_output") >= 2, "{stored:?}");
    assert_eq!(of("consult_attempt"), 1);
    assert_eq!(of("consult_result"), 1);
    // The project's own session is untouched by the consultant's conversation.
    assert!(s.c.project(&project).await["session_id"].is_null());
}

#[tokio::test]
async fn a_review_by_claude_lists_issues_and_a_consult_id_continues_it() {
    let mut s = setup("codex").await;
    let (id, r) = s
        .consult(json!({"to": "claude", "kind": "review", "question": "Review the parser change"}))
        .await;
    assert_eq!(r["status"], "complete", "{r}");
    assert_eq!(
        r["issues"],
        json!([
            {"severity": "Critical", "text": "the lock is never released on error"},
            {"severity": "Minor", "text": "a typo in a comment"}
        ])
    );
    let (again, r) = s
        .consult(json!({"to": "claude", "kind": "implementation", "question": "And how should the lock be released?", "consult_id": id}))
        .await;
    assert_eq!(again, id);
    assert_eq!(r["status"], "complete", "{r}");
    let runs = s.invocations();
    assert_eq!(runs.len(), 2);
    assert!(runs[0]["resume"].is_null());
    assert!(runs[1]["resume"].is_string(), "{runs:?}");
    let argv = runs[1]["argv"].to_string();
    assert!(argv.contains("--permission-mode=plan"), "{argv}");

    let r = s
        .c
        .call("consult", json!({"project_id": s.project, "to": "codex", "kind": "design", "question": "q", "consult_id": id}))
        .await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    let r = s
        .c
        .call("consult", json!({"project_id": s.project, "to": "claude", "kind": "design", "question": "q", "consult_id": "nope"}))
        .await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    let r =
        s.c.call(
            "consult",
            json!({"project_id": s.project, "to": "claude", "kind": "refactor", "question": "q"}),
        )
        .await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    assert!(
        r["data"]["error"].as_str().unwrap().contains("review"),
        "{r}"
    );
}

/// Each row of the failure table: what the consultant did first, the failure the daemon saw,
/// and what the follow-up prompt must carry.
#[tokio::test]
async fn every_failure_is_followed_up_and_recovers() {
    let mut s = setup("claude").await;
    let rows = [
        ("nomarker", "no_marker", "did not follow the consult format"),
        ("incomplete", "incomplete", "Send only the missing ones"),
        ("unrelated", "unrelated", "cache.rs keeps sessions"),
        ("slow", "timeout", "Answer briefly"),
    ];
    for (answer, failure, follow_up) in rows {
        let question =
            format!("Should the session cache be write-through? mock:consult answer={answer}");
        let (id, r) = s
            .consult(json!({"to": "codex", "kind": "design", "question": question, "context": "cache.rs keeps sessions", "timeout_s": 2}))
            .await;
        assert_eq!(r["status"], "complete", "{answer}: {r}");
        assert_eq!(r["attempts"], 2, "{answer}: {r}");
        let attempts = s.attempts(&id).await;
        assert_eq!(attempts.len(), 2, "{answer}: {attempts:?}");
        assert!(attempts[0]["after"].is_null());
        assert_eq!(attempts[1]["after"], failure, "{answer}");
        let prompt = attempts[1]["prompt"].as_str().unwrap();
        assert!(prompt.contains(follow_up), "{answer}: {prompt}");
        if answer == "incomplete" {
            assert!(!prompt.contains("## ASSESSMENT"), "{prompt}");
            assert_eq!(r["sections"]["ASSESSMENT"], "mock assessment text");
        }
    }
}

#[tokio::test]
async fn shutdown_stops_a_consult_instead_of_waiting_for_it() {
    let mut s = setup("claude").await;
    let id = s
        .start(json!({"to": "codex", "kind": "design", "question": "Slow? mock:consult answer=slow", "timeout_s": 600}))
        .await;
    // The consultant is running once it has printed its first line.
    s.c.recv_where(|m| m["type"] == "consult_output" && m["data"]["consult_id"] == id.as_str())
        .await;
    // Exit code 0: shutdown did not have to kill anything at its deadline.
    let status = s.d.stop();
    assert!(status.success(), "{status}; log:\n{}", s.d.log_text());
    let left = run_leftovers(&format!("consult-{id}-1"), WAIT).await;
    assert!(
        left.is_empty(),
        "the consultant outlived the daemon: {left:?}"
    );
}

#[tokio::test]
async fn a_consult_runs_beside_an_active_run() {
    let mut s = setup("claude").await;
    let project = s.project.clone();
    let run = s.c.start_run(&project, "mock:hang").await;
    let (_, r) = s
        .consult(json!({"to": "codex", "kind": "implementation", "question": "Which queue suits the scheduler?"}))
        .await;
    assert_eq!(r["status"], "complete", "{r}");
    assert_eq!(s.c.project(&project).await["state"], "EXECUTING");
    s.c.kill(&project).await;
    let f = s.c.finished(&run).await;
    assert_eq!(f["data"]["status"], "killed", "{f}");
}

/// The lead consults by itself: its run's environment holds the daemon's address and a token
/// that allows `consult` on its own project only, and only while the run lives.
#[tokio::test]
async fn a_lead_consults_with_its_run_capability_and_nothing_else() {
    const TOKEN: &str = "a-long-enough-test-token-0123456789";
    let d = Daemon::builder().env("AGENTVISOR_TOKEN", TOKEN).start();
    let auth = format!("Bearer {TOKEN}");
    let mut op = d.client_with(&[("authorization", &auth)]).await;
    let lead_project = op.create_project(&d.project_dir("lead")).await;
    let other = op.create_project(&d.project_dir("other")).await;
    op.join(&lead_project).await;

    // The mock lead reports what its environment holds, then keeps its run alive.
    let run = op.execute(&lead_project, "mock:lead").await;
    let report = op
        .recv_where(|m| m["type"] == "agent_message" && m["data"]["message"]["type"] == "mock_lead")
        .await;
    let env = &report["data"]["message"];
    assert_eq!(env["url"], format!("ws://127.0.0.1:{}/ws", d.port), "{env}");
    assert_eq!(env["project_id"], lead_project.as_str());
    let cap = env["token"].as_str().unwrap().to_string();
    assert_ne!(cap, TOKEN);

    // With it, the lead may consult on its project, by header or by auth message…
    let bearer = format!("Bearer {cap}");
    let mut lead = d.client_with(&[("authorization", &bearer)]).await;
    let r = lead
        .call("consult", json!({"project_id": lead_project, "to": "codex", "kind": "design", "question": "Is the plan sound?"}))
        .await;
    assert_eq!(r["type"], "consult_accepted", "{r}");
    let id = r["data"]["consult_id"].as_str().unwrap().to_string();
    let result = lead
        .recv_where(|m| m["type"] == "consult_result" && m["data"]["consult_id"] == id.as_str())
        .await;
    assert_eq!(result["data"]["status"], "complete", "{result}");
    let mut by_message = d.client().await;
    let r = by_message.call("auth", json!({"token": cap})).await;
    assert_eq!(r["type"], "authenticated", "{r}");

    // …but nothing else, and not on another project.
    let refused = |r: &Value| r["type"] == "error" && r["data"]["code"] == "UNAUTHORIZED";
    for (kind, data) in [
        (
            "consult",
            json!({"project_id": other, "to": "codex", "kind": "design", "question": "q"}),
        ),
        (
            "execute",
            json!({"project_id": lead_project, "prompt": "hi"}),
        ),
        ("project_list", json!({})),
        ("agent_kill", json!({"project_id": lead_project})),
    ] {
        let r = lead.call(kind, data).await;
        assert!(refused(&r), "{kind}: {r}");
    }

    // Once the run has ended, the capability is worth nothing.
    op.kill(&lead_project).await;
    op.finished(&run).await;
    let r = lead
        .call(
            "consult",
            json!({"project_id": lead_project, "to": "codex", "kind": "design", "question": "q"}),
        )
        .await;
    assert!(refused(&r), "{r}");
    assert!(
        r["data"]["error"].as_str().unwrap().contains("ended"),
        "{r}"
    );
    let mut late = d.client_with(&[("authorization", &bearer)]).await;
    assert_eq!(late.closed(WAIT).await, Closed::Code(1008));
}

/// The lead agent consults as a shell command, `agentvisor consult . --to codex --kind design
/// --json "…"`, with its run's capability, and reads the structured result; the same command
/// for another project is refused.
#[tokio::test]
async fn a_mock_lead_runs_agentvisor_consult() {
    const TOKEN: &str = "a-long-enough-test-token-0123456789";
    let d = Daemon::builder()
        .env("AGENTVISOR_TOKEN", TOKEN)
        .env("MOCK_AGENT_AGENTVISOR", env!("CARGO_BIN_EXE_agentvisor"))
        .start();
    let auth = format!("Bearer {TOKEN}");
    let mut op = d.client_with(&[("authorization", &auth)]).await;
    let lead = op.create_project(&d.project_dir("lead")).await;
    let other = op.create_project(&d.project_dir("other")).await;
    op.join(&lead).await;

    async fn consulted(op: &mut Client, project: &str, prompt: &str) -> Value {
        let run = op.execute(project, prompt).await;
        let report = op
            .recv_where(|m| {
                m["data"]["run_id"] == run.as_str()
                    && m["data"]["message"]["type"] == "mock_consult"
            })
            .await;
        op.finished(&run).await;
        report["data"]["message"].clone()
    }

    let report = consulted(&mut op, &lead, "mock:lead_consult").await;
    assert_eq!(report["exit"], 0, "{report}");
    let result: Value = serde_json::from_str(report["stdout"].as_str().unwrap().trim())
        .unwrap_or_else(|e| panic!("{e}: {report}"));
    assert_eq!(result["status"], "complete", "{result}");
    assert_eq!(
        (&result["to"], &result["kind"]),
        (&json!("codex"), &json!("design"))
    );
    assert!(result["sections"]["RECOMMENDATION"].is_string(), "{result}");

    // Even with the daemon's own token in the agent's environment, the command uses the run's
    // capability, which another project refuses.
    let report = consulted(
        &mut op,
        &lead,
        &format!("mock:lead_consult project={other}"),
    )
    .await;
    assert_eq!(report["exit"], 1, "{report}");
    assert!(
        report["stderr"].as_str().unwrap().contains("UNAUTHORIZED"),
        "{report}"
    );
}

/// What a person sees: `agentvisor consult` prints the status, the issues by severity and the
/// sections; `agentvisor history` shows the consult among the project's events.
#[tokio::test]
async fn the_command_line_shows_a_consult() {
    let s = setup("codex").await;
    let client = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentvisor"))
            .args(args)
            .env("AGENTVISOR_URL", format!("ws://127.0.0.1:{}/ws", s.d.port))
            .env_remove("AGENTVISOR_TOKEN")
            .env_remove("AGENTVISOR_CONSULT_TOKEN")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.code(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = client(&[
        "consult", "app", "--to", "claude", "--kind", "review", "Review", "the", "parser", "change",
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.starts_with("✓ complete · claude answered the review consult · 1 attempt(s)"),
        "{out}"
    );
    let critical = out
        .find("  [Critical] the lock is never released on error")
        .expect(&out);
    let minor = out.find("  [Minor] a typo in a comment").expect(&out);
    assert!(critical < minor, "{out}");
    assert!(out.contains("STRENGTHS\nmock strengths text"), "{out}");

    let (code, out, err) = client(&["history", "app"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("? consult claude (review): Review the parser change"),
        "{out}"
    );
    assert!(
        out.contains("✓ complete · claude answered the review consult"),
        "{out}"
    );
}
