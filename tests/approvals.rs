//! Approvals (issue 16), black-box: a Claude run with `approvals: true` speaks the control
//! protocol with the mock agent (which asks, waits on stdin and acts on the answer), and the
//! clients answer: allow, deny, timeout, the first of two answers wins, remember, and a run killed
//! or a daemon shut down while a request waits. Codex refuses `approvals: true`.

mod common;

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "a-long-enough-test-token-0123456789";

/// A daemon whose requests time out after `timeout`.
fn daemon(timeout: &str) -> Daemon {
    Daemon::builder()
        .env("AGENTVISOR_APPROVAL_TIMEOUT", timeout)
        .env("AGENTVISOR_KILL_GRACE", "500ms")
        .start()
}

/// Starts `prompt` with approvals on; returns the run id.
async fn start(c: &mut Client, project: &str, prompt: &str) -> String {
    let r = c
        .call(
            "execute",
            json!({"project_id": project, "prompt": prompt, "options": {"approvals": true}}),
        )
        .await;
    assert_eq!(r["type"], "execute_accepted", "{r}");
    r["data"]["run_id"].as_str().unwrap().to_string()
}

/// Starts `prompt` with approvals on and waits for its first permission request; returns the
/// run id and the request id.
async fn ask(c: &mut Client, project: &str, prompt: &str) -> (String, String) {
    let run = start(c, project, prompt).await;
    let id = request_of(c, &run).await["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    (run, id)
}

async fn request_of(c: &mut Client, run: &str) -> Value {
    c.recv_where(|m| m["type"] == "permission_request" && m["data"]["run_id"] == run)
        .await["data"]
        .clone()
}

async fn resolved(c: &mut Client, request_id: &str) -> Value {
    c.recv_where(|m| m["type"] == "permission_resolved" && m["data"]["request_id"] == request_id)
        .await["data"]
        .clone()
}

async fn respond(c: &mut Client, project: &str, request_id: &str, answer: Value) -> Value {
    let mut data = answer;
    data["project_id"] = json!(project);
    data["request_id"] = json!(request_id);
    c.call("permission_respond", data).await
}

/// The next tool result the agent reports: `(content, is_error)`.
async fn tool_result(c: &mut Client, run: &str) -> (String, bool) {
    let m = c
        .recv_where(|m| {
            m["type"] == "agent_message"
                && m["data"]["run_id"] == run
                && m["data"]["message"]["type"] == "user"
        })
        .await;
    let block = &m["data"]["message"]["message"]["content"][0];
    (
        block["content"].as_str().unwrap().to_string(),
        block["is_error"].as_bool().unwrap(),
    )
}

#[tokio::test]
async fn an_allowed_tool_call_runs_and_everything_is_stored() {
    let d = daemon("1m");
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    let run = start(&mut c, &p, "mock:ask").await;

    let req = request_of(&mut c, &run).await;
    assert_eq!(req["tool"], "Bash", "{req}");
    assert_eq!(req["input"]["command"], "echo approved", "{req}");
    assert_eq!(req["summary"], "Run: echo approved", "{req}");
    assert_eq!(req["suggestions"][0]["type"], "addRules", "{req}");
    assert!(req["expires_at"].as_str().unwrap().ends_with('Z'), "{req}");
    let id = req["request_id"].as_str().unwrap();

    let r = respond(&mut c, &p, id, json!({"decision": "allow"})).await;
    assert_eq!(r["type"], "permission_responded", "{r}");
    let res = resolved(&mut c, id).await;
    assert_eq!(res["decision"], "allow");
    assert!(res["by"].as_str().unwrap().starts_with("client:"), "{res}");
    assert_eq!(tool_result(&mut c, &run).await, ("approved".into(), false));
    let fin = c.finished(&run).await;
    assert_eq!(fin["data"]["status"], "completed", "{fin}");

    let stored = c.messages(&p, json!({"limit": 1000})).await;
    let types: Vec<&str> = stored.iter().filter_map(|m| m["type"].as_str()).collect();
    assert!(types.contains(&"permission_request"), "{types:?}");
    assert!(types.contains(&"permission_resolved"), "{types:?}");
    // The protocol lines are not passed on as agent output.
    assert!(
        !stored
            .iter()
            .any(|m| m["data"]["message"]["type"] == "control_request"),
        "a control line was stored as agent output"
    );
}

#[tokio::test]
async fn a_denied_tool_call_tells_the_agent_why() {
    let d = daemon("1m");
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    let (run, id) = ask(&mut c, &p, "mock:ask").await;
    let why = "not on the production box";
    let r = respond(&mut c, &p, &id, json!({"decision": "deny", "message": why})).await;
    assert_eq!(r["type"], "permission_responded", "{r}");
    let res = resolved(&mut c, &id).await;
    assert_eq!(res["decision"], "deny");
    assert_eq!(res["message"], why);
    assert_eq!(tool_result(&mut c, &run).await, (why.into(), true));
    assert_eq!(c.finished(&run).await["data"]["status"], "completed");
}

#[tokio::test]
async fn an_answer_sent_again_with_its_idempotency_key_gets_the_same_reply() {
    let d = daemon("1m");
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    let (run, id) = ask(&mut c, &p, "mock:ask").await;
    let mut replies = Vec::new();
    for n in 0..2 {
        let req = json!({"type": "permission_respond", "id": format!("k{n}"), "project_id": p,
            "idempotency_key": "answer-1", "data": {"request_id": id, "decision": "allow"}});
        c.send(&req).await;
        let want = format!("k{n}");
        replies.push(c.recv_where(|m| m["id"] == want.as_str()).await);
    }
    assert_eq!(replies[0]["type"], "permission_responded", "{}", replies[0]);
    assert_eq!(replies[1]["type"], "permission_responded", "{}", replies[1]);
    assert_eq!(replies[0]["data"], replies[1]["data"]);
    assert_eq!(c.finished(&run).await["data"]["status"], "completed");
}

#[tokio::test]
async fn an_unanswered_request_is_denied_when_it_expires() {
    let d = daemon("1s");
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    let (run, id) = ask(&mut c, &p, "mock:ask").await;
    let res = resolved(&mut c, &id).await;
    assert_eq!(res["decision"], "deny", "{res}");
    assert_eq!(res["by"], "timeout", "{res}");
    let (text, is_error) = tool_result(&mut c, &run).await;
    assert!(is_error);
    assert!(text.contains("No one answered"), "{text}");
    assert_eq!(c.finished(&run).await["data"]["status"], "completed");
    // A late answer is told what happened.
    let r = respond(&mut c, &p, &id, json!({"decision": "allow"})).await;
    assert_eq!(r["data"]["code"], "ALREADY_RESOLVED", "{r}");
    assert!(
        r["data"]["error"].as_str().unwrap().contains("timeout"),
        "{r}"
    );
}

#[tokio::test]
async fn the_first_of_two_clients_to_answer_wins() {
    let d = daemon("1m");
    let mut a = d.client().await;
    let mut b = d.client().await;
    let p = a.create_project(&d.project_dir("p")).await;
    b.join(&p).await;
    let (run, id) = ask(&mut a, &p, "mock:ask").await;
    assert_eq!(request_of(&mut b, &run).await["request_id"], id.as_str());

    let first = respond(&mut b, &p, &id, json!({"decision": "deny"})).await;
    assert_eq!(first["type"], "permission_responded", "{first}");
    let late = respond(&mut a, &p, &id, json!({"decision": "allow"})).await;
    assert_eq!(late["type"], "error", "{late}");
    assert_eq!(late["data"]["code"], "ALREADY_RESOLVED", "{late}");
    for c in [&mut a, &mut b] {
        assert_eq!(resolved(c, &id).await["decision"], "deny");
    }
    assert!(tool_result(&mut a, &run).await.1, "the denial won");
    assert_eq!(a.finished(&run).await["data"]["status"], "completed");
}

#[tokio::test]
async fn remember_allows_the_same_call_for_the_rest_of_the_session() {
    let d = daemon("1m");
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    let (run, id) = ask(&mut c, &p, "mock:ask count=3").await;
    let r = respond(
        &mut c,
        &p,
        &id,
        json!({"decision": "allow", "remember": true}),
    )
    .await;
    assert_eq!(r["type"], "permission_responded", "{r}");
    assert_eq!(resolved(&mut c, &id).await["remember"], true);
    let mut asked_again = false;
    let mut results = Vec::new();
    loop {
        let m = c.recv().await;
        match (m["type"].as_str(), &m["data"]) {
            (Some("permission_request"), _) => asked_again = true,
            (Some("agent_message"), d) if d["message"]["type"] == "user" => {
                results.push(d["message"]["message"]["content"][0]["content"].clone())
            }
            (Some("run_finished"), d) if d["run_id"] == run.as_str() => {
                assert_eq!(d["status"], "completed", "{m}");
                break;
            }
            _ => {}
        }
    }
    assert!(!asked_again, "the remembered call was asked again");
    assert_eq!(results, vec![json!("approved"); 3]);
}

#[tokio::test]
async fn remember_holds_for_later_runs_of_the_session_only() {
    let d = daemon("1m");
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    let (run, id) = ask(&mut c, &p, "mock:ask").await;
    respond(
        &mut c,
        &p,
        &id,
        json!({"decision": "allow", "remember": true}),
    )
    .await;
    assert_eq!(c.finished(&run).await["data"]["status"], "completed");

    // The next run resumes the session: the remembered rule is passed, no one is asked.
    let run = start(&mut c, &p, "mock:ask").await;
    assert_eq!(tool_result(&mut c, &run).await, ("approved".into(), false));
    assert_eq!(c.finished(&run).await["data"]["status"], "completed");

    // A new session forgets it.
    let r = c.call("agent_new_session", json!({"project_id": p})).await;
    assert_eq!(r["type"], "session_reset", "{r}");
    let (run, id) = ask(&mut c, &p, "mock:ask").await;
    respond(&mut c, &p, &id, json!({"decision": "deny"})).await;
    assert_eq!(c.finished(&run).await["data"]["status"], "completed");
    let stored = c.messages(&p, json!({"limit": 1000})).await;
    let asked = stored
        .iter()
        .filter(|m| m["type"] == "permission_request")
        .count();
    assert_eq!(asked, 2, "the resumed run was not asked");
}

#[tokio::test]
async fn killing_a_waiting_run_denies_its_request() {
    let d = daemon("1m");
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    let (run, id) = ask(&mut c, &p, "mock:ask").await;
    c.kill(&p).await;
    let res = resolved(&mut c, &id).await;
    assert_eq!(res["decision"], "deny", "{res}");
    assert_eq!(res["by"], "run_stopped", "{res}");
    assert_eq!(c.finished(&run).await["data"]["status"], "killed");
    assert!(run_leftovers(&run, WAIT).await.is_empty());
    let r = respond(&mut c, &p, &id, json!({"decision": "allow"})).await;
    assert_eq!(r["data"]["code"], "ALREADY_RESOLVED", "{r}");
}

#[tokio::test]
async fn a_shutdown_denies_waiting_requests_and_history_says_so() {
    let mut d = daemon("1m");
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    let (run, id) = ask(&mut c, &p, "mock:ask").await;
    assert!(d.stop().success(), "the daemon exits cleanly");
    assert!(run_leftovers(&run, WAIT).await.is_empty());
    d.restart();
    let mut c = d.client().await;
    let stored = c.messages(&p, json!({"limit": 1000})).await;
    let res = stored
        .iter()
        .find(|m| m["type"] == "permission_resolved" && m["data"]["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no resolution stored: {stored:?}"));
    assert_eq!(res["data"]["decision"], "deny");
    assert_eq!(res["data"]["by"], "shutdown");
    let fin = stored
        .iter()
        .find(|m| m["type"] == "run_finished" && m["data"]["run_id"] == run.as_str())
        .expect("the run was closed");
    assert_eq!(fin["data"]["status"], "killed", "{fin}");
}

#[tokio::test]
async fn bad_answers_are_refused_and_nothing_is_lost() {
    let d = daemon("1m");
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    let r = respond(&mut c, &p, "nope", json!({"decision": "allow"})).await;
    assert_eq!(r["data"]["code"], "REQUEST_NOT_FOUND", "{r}");
    for bad in [
        json!({"decision": "maybe"}),
        json!({"decision": "deny", "remember": true}),
        json!({}),
    ] {
        let r = respond(&mut c, &p, "x", bad.clone()).await;
        assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{bad}: {r}");
    }
}

#[tokio::test]
async fn codex_runs_refuse_approvals() {
    let d = daemon("1m");
    let mut c = d.client().await;
    let dir = d.project_dir("cx");
    let p = c
        .create_project_with(json!({"path": dir, "agent": "codex"}))
        .await;
    let r = c
        .call(
            "execute",
            json!({"project_id": p["id"], "prompt": "hi", "options": {"approvals": true}}),
        )
        .await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    assert!(
        r["data"]["error"].as_str().unwrap().contains("sandbox"),
        "{r}"
    );
}

#[tokio::test]
async fn only_an_authenticated_client_can_answer() {
    let d = Daemon::builder()
        .env("AGENTVISOR_TOKEN", TOKEN)
        .env("AGENTVISOR_APPROVAL_TIMEOUT", "1m")
        .start();
    let auth = format!("Bearer {TOKEN}");
    let mut c = d.client_with(&[("authorization", &auth)]).await;
    let p = c.create_project(&d.project_dir("p")).await;
    let (run, id) = ask(&mut c, &p, "mock:ask").await;

    let mut stranger = d.client().await;
    stranger
        .request(
            "permission_respond",
            json!({"project_id": p, "request_id": id, "decision": "allow"}),
        )
        .await;
    assert_eq!(stranger.closed(WAIT).await, Closed::Code(1008));

    let r = respond(&mut c, &p, &id, json!({"decision": "deny"})).await;
    assert_eq!(
        r["type"], "permission_responded",
        "the request was still open: {r}"
    );
    assert_eq!(c.finished(&run).await["data"]["status"], "completed");
}

#[tokio::test]
async fn a_project_default_applies_unless_execute_says_otherwise() {
    let d = daemon("1m");
    let mut c = d.client().await;
    let dir = d.project_dir("p");
    let project = c
        .create_project_with(json!({"path": dir, "approvals": true}))
        .await;
    assert_eq!(project["approvals"], true, "{project}");
    let p = project["id"].as_str().unwrap().to_string();

    let run = c.execute(&p, "mock:ask").await;
    let id = request_of(&mut c, &run).await["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    respond(&mut c, &p, &id, json!({"decision": "allow"})).await;
    assert_eq!(tool_result(&mut c, &run).await, ("approved".into(), false));
    assert_eq!(c.finished(&run).await["data"]["status"], "completed");

    // `approvals: false` on the run: no one is asked, and Claude Code denies on its own.
    let r = c
        .call(
            "execute",
            json!({"project_id": p, "prompt": "mock:ask", "options": {"approvals": false}}),
        )
        .await;
    let run = r["data"]["run_id"].as_str().unwrap().to_string();
    let (text, is_error) = tool_result(&mut c, &run).await;
    assert!(is_error && text.contains("haven't granted"), "{text}");
    let stored = c.messages(&p, json!({"limit": 1000})).await;
    let asked = stored
        .iter()
        .filter(|m| m["type"] == "permission_request")
        .count();
    assert_eq!(asked, 1, "only the first run asked");

    let dir = d.project_dir("cx");
    let r = c
        .call(
            "project_create",
            json!({"path": dir, "agent": "codex", "approvals": true}),
        )
        .await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
}
