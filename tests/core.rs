//! Black-box tests of the daemon core (issue 2): projects, the protocol's request and error
//! paths, several clients at once, persistence across restarts, limits, heartbeat, health and
//! graceful shutdown. Every test starts the real binary and speaks real WebSocket.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// The `code` of an `error` message (panics on anything else).
fn code(m: &Value) -> &str {
    assert_eq!(m["type"], "error", "expected an error, got {m}");
    m["data"]["code"].as_str().expect("error code")
}

/// Asserts `m` is an error with `want` as its code and a non-empty sentence.
fn assert_error(m: &Value, want: &str) {
    assert_eq!(code(m), want, "{m}");
    let sentence = m["data"]["error"].as_str().unwrap_or_default();
    assert!(
        sentence.len() > 10,
        "the error should say what was wrong: {m}"
    );
}

/// Asserts the message shows neither the daemon's data directory nor its temporary parent.
fn assert_no_server_paths(m: &Value, d: &Daemon) {
    let text = m.to_string();
    let mut paths = vec![d.data_dir.clone()];
    if let Ok(c) = std::fs::canonicalize(&d.data_dir) {
        paths.push(c);
    }
    for p in paths {
        let p = p.to_string_lossy().into_owned();
        assert!(!text.contains(&p), "a message shows the data dir {p}: {m}");
    }
}

/// A directory next to the project root, outside it.
fn outside_dir(d: &Daemon, name: &str) -> PathBuf {
    let p = d.root.parent().expect("root has a parent").join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Whether `s` looks like `2026-11-21T10:00:00.123Z`.
fn is_rfc3339_millis(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && b[20..23].iter().all(u8::is_ascii_digit)
}

/// Checks that `p` is a full project object for `dir`.
fn assert_project_object(p: &Value, dir: &Path) {
    for f in PROJECT_FIELDS {
        assert!(p.get(f).is_some(), "project lacks '{f}': {p}");
    }
    assert!(p["id"].as_str().is_some_and(|s| !s.is_empty()), "{p}");
    assert_eq!(p["path"], canonical(dir), "{p}");
    assert!(p["name"].is_string(), "{p}");
    assert!(
        ["IDLE", "EXECUTING", "ERROR"].contains(&p["state"].as_str().unwrap_or("")),
        "{p}"
    );
    assert!(
        p["session_id"].is_null() || p["session_id"].is_string(),
        "{p}"
    );
    for t in ["created_at", "last_active"] {
        let ts = p[t].as_str().unwrap_or("");
        assert!(is_rfc3339_millis(ts), "{t} is not RFC 3339 with ms: {p}");
    }
    for n in ["subscribers", "last_seq", "queue_len"] {
        assert!(p[n].is_u64(), "{n} is not a count: {p}");
    }
    assert!(
        ["claude", "codex"].contains(&p["agent"].as_str().unwrap_or("")),
        "{p}"
    );
}

/// Polls `project_list` until `pred` holds for the project `id`.
async fn wait_for_project(c: &mut Client, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let p = c.project(id).await;
        if pred(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "project never matched: {p}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Connects until the server accepts (the permit of a closed connection is released
/// asynchronously); returns the accepted client.
async fn connect_when_accepted(port: u16) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = Client::connect(port).await;
        let refused = match c.try_next(Duration::from_millis(300)).await {
            Some(Err(closed)) => Some(closed),
            Some(Ok(m)) => panic!("unexpected message on a new connection: {m}"),
            None => {
                // Not refused at once; a refusal could still be on its way on a loaded machine.
                let id = c.request("ping", json!({})).await;
                match c.try_next(WAIT).await {
                    Some(Ok(m)) if m["id"] == id => return c,
                    Some(Err(closed)) => Some(closed),
                    other => panic!("unexpected answer to a ping: {other:?}"),
                }
            }
        };
        assert!(
            Instant::now() < deadline,
            "still refused after the limit should have freed up: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- project_create ----------------------------------------------------------------------

#[tokio::test]
async fn project_create_returns_the_stored_project() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let dir = d.project_dir("alpha");
    let r = c
        .call("project_create", json!({"path": dir, "name": "My Alpha"}))
        .await;
    assert_eq!(r["type"], "project_created", "{r}");
    assert!(r["id"].is_string(), "the request id is echoed: {r}");
    assert!(is_rfc3339_millis(r["ts"].as_str().unwrap_or("")), "{r}");
    let p = &r["data"]["project"];
    assert_project_object(p, &dir);
    assert_eq!(p["name"], "My Alpha");
    assert_eq!(p["state"], "IDLE");
    assert_eq!(p["session_id"], Value::Null);
    assert_eq!(p["agent"], "claude", "claude is the default agent");
    assert_eq!(p["subscribers"], 0);
    assert_eq!(p["queue_len"], 0);
    let id = p["id"].as_str().unwrap();
    // Durably on disk by the time the reply is sent.
    let meta = d.data_dir.join("projects").join(id).join("metadata.json");
    let stored: Value = serde_json::from_slice(&std::fs::read(&meta).expect("metadata.json"))
        .expect("metadata.json is JSON");
    assert_eq!(stored["id"], id);

    // Without a name the directory's name is used; the agent can be chosen.
    let beta = d.project_dir("beta");
    let p = c
        .create_project_with(json!({"path": beta, "agent": "codex"}))
        .await;
    assert_eq!(p["name"], "beta");
    assert_eq!(p["agent"], "codex");
}

#[tokio::test]
async fn project_create_refuses_invalid_paths() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let good = d.project_dir("good");
    std::fs::write(d.root.join("a-file"), "not a directory").unwrap();
    let outside = outside_dir(&d, "outside");
    let escape = d.root.join("escape");
    std::os::unix::fs::symlink(&outside, &escape).unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("relative", "projects/good".into()),
        ("empty", String::new()),
        (
            "dot-dot",
            format!(
                "{}/../{}/good",
                d.root.display(),
                d.root.file_name().unwrap().to_string_lossy()
            ),
        ),
        ("missing", d.root.join("missing").display().to_string()),
        ("a file", d.root.join("a-file").display().to_string()),
        ("outside the roots", outside.display().to_string()),
        ("the data dir", d.data_dir.display().to_string()),
        ("symlink escaping the root", escape.display().to_string()),
        ("root of the file system", "/".into()),
    ];
    for (what, path) in cases {
        let r = c.call("project_create", json!({"path": path})).await;
        assert_eq!(r["type"], "error", "{what}: {r}");
        assert_error(&r, "INVALID_PATH");
        assert_no_server_paths(&r, &d);
    }
    // Nothing was created, and a good path still works afterwards.
    let list = c.call("project_list", json!({})).await;
    assert_eq!(list["data"]["projects"], json!([]), "{list}");
    c.create_project(&good).await;
}

#[tokio::test]
async fn project_create_refuses_duplicates_and_nesting() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let a = d.project_dir("a");
    let id = c.create_project(&a).await;

    let r = c.call("project_create", json!({"path": a})).await;
    assert_error(&r, "PROJECT_EXISTS");
    assert_eq!(r["data"]["details"]["project_id"], id, "{r}");

    // The same directory through a symlink is the same project.
    let alias = d.root.join("alias");
    std::os::unix::fs::symlink(&a, &alias).unwrap();
    let r = c.call("project_create", json!({"path": alias})).await;
    assert_error(&r, "PROJECT_EXISTS");

    // A trailing slash names the same directory too.
    let r = c
        .call(
            "project_create",
            json!({"path": format!("{}/", a.display())}),
        )
        .await;
    assert_error(&r, "PROJECT_EXISTS");

    let inner = d.project_dir("a/inner");
    let r = c.call("project_create", json!({"path": inner})).await;
    assert_error(&r, "PROJECT_NESTING");
    assert_eq!(r["data"]["details"]["project_id"], id, "{r}");

    let r = c.call("project_create", json!({"path": d.root})).await;
    assert_error(&r, "PROJECT_NESTING");

    // A sibling that merely shares a name prefix is not nested.
    c.create_project(&d.project_dir("ab")).await;
    let list = c.call("project_list", json!({})).await;
    assert_eq!(list["data"]["projects"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn project_create_validates_its_fields() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let dir = d.project_dir("p");
    for data in [
        json!({"path": dir, "agent": "gpt"}),
        json!({"path": dir, "agent": 7}),
        json!({"path": 42}),
        json!({}),
        json!({"path": dir, "name": "bad\u{7}name"}),
    ] {
        let r = c.call("project_create", data.clone()).await;
        assert_error(&r, "VALIDATION_FAILED");
        assert!(r["id"].is_string(), "{r}");
    }
    let list = c.call("project_list", json!({})).await;
    assert_eq!(list["data"]["projects"], json!([]), "{list}");
}

// --- project_list ------------------------------------------------------------------------

#[tokio::test]
async fn project_list_is_oldest_first_with_every_field() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let r = c.call("project_list", json!({})).await;
    assert_eq!(r["type"], "project_list", "{r}");
    assert_eq!(r["data"]["projects"], json!([]));

    let names = ["zeta", "alpha", "mid"];
    let mut ids = Vec::new();
    for n in names {
        ids.push(c.create_project(&d.project_dir(n)).await);
    }
    let r = c.call("project_list", json!({})).await;
    let ps = r["data"]["projects"].as_array().expect("projects");
    let listed: Vec<&str> = ps.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ids, "oldest first");
    for (p, n) in ps.iter().zip(names) {
        assert_project_object(p, &d.root.join(n));
        assert_eq!(p["name"], n);
    }
    let created: Vec<&str> = ps
        .iter()
        .map(|p| p["created_at"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "{created:?}");
}

#[tokio::test]
async fn project_list_of_100_projects() {
    let d = Daemon::builder()
        .env("AGENTVISOR_RATE_LIMIT", "1000")
        .start();
    let mut c = d.client().await;
    // Pipelined: every create is sent before the first reply is read.
    let mut requests = Vec::new();
    for i in 0..100 {
        let dir = d.project_dir(&format!("p{i:03}"));
        requests.push((c.request("project_create", json!({"path": dir})).await, dir));
    }
    let mut ids = Vec::new();
    for (rid, dir) in &requests {
        let r = c.recv_where(|m| m["id"] == *rid).await;
        assert_eq!(r["type"], "project_created", "{r}");
        assert_eq!(r["data"]["project"]["path"], canonical(dir));
        ids.push(r["data"]["project"]["id"].as_str().unwrap().to_string());
    }
    let r = c.call("project_list", json!({})).await;
    let ps = r["data"]["projects"].as_array().expect("projects");
    assert_eq!(ps.len(), 100);
    let listed: Vec<&str> = ps.iter().map(|p| p["id"].as_str().unwrap()).collect();
    if let Some(i) = (0..100).find(|&i| listed[i] != ids[i]) {
        panic!(
            "not listed in creation order from position {i}: {} (created_at {}) is listed where {} belongs",
            listed[i], ps[i]["created_at"], ids[i]
        );
    }
    for (p, (_, dir)) in ps.iter().zip(&requests) {
        assert_project_object(p, dir);
    }
}

// --- project_delete ----------------------------------------------------------------------

#[tokio::test]
async fn project_delete_notifies_subscribers_and_removes_the_data() {
    let d = Daemon::start();
    let mut a = d.client().await;
    let mut b = d.client().await;
    let id = a.create_project(&d.project_dir("doomed")).await;
    let keep = a.create_project(&d.project_dir("kept")).await;
    b.join(&id).await;
    // Some history, so that there is data to remove.
    let f = b.run(&id, "hello").await;
    assert_eq!(f["data"]["status"], "completed", "{f}");
    let dir = d.data_dir.join("projects").join(&id);
    assert!(dir.join("metadata.json").exists());

    let r = a.call("project_delete", json!({"project_id": id})).await;
    assert_eq!(r["type"], "project_deleted", "{r}");
    assert_eq!(r["data"]["project_id"], id);
    assert_eq!(r["project_id"], id);

    let n = b
        .recv_where(|m| m["type"] == "project_deleted" && m["id"].is_null())
        .await;
    assert_eq!(n["data"]["project_id"], id, "{n}");
    assert!(n["data"]["reason"].is_string(), "{n}");

    assert!(!dir.exists(), "the project's data is removed");
    let leftovers: Vec<_> = std::fs::read_dir(d.data_dir.join("projects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&id))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let list = a.call("project_list", json!({})).await;
    let listed: Vec<&str> = list["data"]["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [keep.as_str()]);

    for (kind, c) in [("project_delete", &mut a), ("project_join", &mut b)] {
        let r = c.call(kind, json!({"project_id": id})).await;
        assert_error(&r, "PROJECT_NOT_FOUND");
        assert!(
            r["data"]["error"].as_str().unwrap().contains(&id),
            "the missing id is in the message: {r}"
        );
        assert_eq!(r["data"]["details"]["project_id"], id, "{r}");
        assert_no_server_paths(&r, &d);
    }
    // The directory is free for a new project.
    a.create_project(&d.root.join("doomed")).await;
}

#[tokio::test]
async fn project_delete_refuses_an_executing_project() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("busy")).await;
    c.execute(&id, "mock:hang").await;
    c.recv_type("run_started").await;
    wait_for_project(&mut c, &id, |p| p["state"] == "EXECUTING").await;

    // project_id at the top level this time.
    c.send(&json!({"type": "project_delete", "id": "del-1", "project_id": id}))
        .await;
    let r = c.recv_where(|m| m["id"] == "del-1").await;
    assert_error(&r, "PROJECT_BUSY");
    assert!(d.data_dir.join("projects").join(&id).exists());

    c.kill(&id).await;
    let f = c.recv_type("run_finished").await;
    assert_eq!(f["data"]["status"], "killed", "{f}");
    wait_for_project(&mut c, &id, |p| p["state"] == "IDLE").await;
    c.send(&json!({"type": "project_delete", "id": "del-2", "project_id": id}))
        .await;
    let r = c.recv_where(|m| m["id"] == "del-2").await;
    assert_eq!(r["type"], "project_deleted", "{r}");
    assert!(!d.data_dir.join("projects").join(&id).exists());
}

// --- project_join / project_leave --------------------------------------------------------

#[tokio::test]
async fn project_join_and_leave() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let dir = d.project_dir("p");
    let id = c.create_project(&dir).await;

    // project_id at the top level.
    let id_req = "join-1";
    c.send(&json!({"type": "project_join", "id": id_req, "project_id": id}))
        .await;
    let r = c.recv_where(|m| m["id"] == id_req).await;
    assert_eq!(r["type"], "project_joined", "{r}");
    assert_eq!(r["project_id"], id);
    assert_project_object(&r["data"]["project"], &dir);
    assert_eq!(r["data"]["recovered"], true);
    assert_eq!(r["data"]["replayed"], 0);
    let p = wait_for_project(&mut c, &id, |p| p["subscribers"] == 1).await;
    assert_eq!(p["subscribers"], 1);

    // Joining twice does not count twice.
    c.join(&id).await;
    let p = wait_for_project(&mut c, &id, |_| true).await;
    assert_eq!(p["subscribers"], 1, "{p}");

    // project_id in data.
    let r = c.call("project_leave", json!({"project_id": id})).await;
    assert_eq!(r["type"], "project_left", "{r}");
    assert_eq!(r["data"]["project_id"], id);
    wait_for_project(&mut c, &id, |p| p["subscribers"] == 0).await;

    // Both forms at once must agree.
    c.send(&json!({"type": "project_join", "id": "both", "project_id": id, "data": {"project_id": "other"}}))
        .await;
    let r = c.recv_where(|m| m["id"] == "both").await;
    assert_error(&r, "VALIDATION_FAILED");
    c.send(&json!({"type": "project_join", "id": "same", "project_id": id, "data": {"project_id": id}}))
        .await;
    let r = c.recv_where(|m| m["id"] == "same").await;
    assert_eq!(r["type"], "project_joined", "{r}");

    // Unknown projects.
    for kind in ["project_join", "project_leave"] {
        let r = c.call(kind, json!({"project_id": "no-such-project"})).await;
        assert_error(&r, "PROJECT_NOT_FOUND");
        assert!(
            r["data"]["error"]
                .as_str()
                .unwrap()
                .contains("no-such-project"),
            "{r}"
        );
        assert_eq!(r["project_id"], "no-such-project", "{r}");
    }
    // Missing project ids.
    for kind in ["project_join", "project_leave", "project_delete"] {
        let r = c.call(kind, json!({})).await;
        assert_error(&r, "VALIDATION_FAILED");
    }
}

// --- malformed requests ------------------------------------------------------------------

#[tokio::test]
async fn malformed_requests_are_answered_and_the_connection_stays_open() {
    let d = Daemon::start();
    let mut c = d.client().await;

    for bad in [
        "{not json",
        "[1, 2, 3]",
        "\"a string\"",
        "",
        "{\"type\": \"ping\"",
    ] {
        c.send_text(bad).await;
        let r = c.recv_type("error").await;
        assert_error(&r, "INVALID_MESSAGE");
        assert!(r["id"].is_null(), "{r}");
        let pong = c.call("ping", json!({})).await;
        assert_eq!(
            pong["type"], "pong",
            "the connection stays usable after {bad:?}"
        );
    }

    // No type, or a type that is not a string, with the id echoed.
    c.send(&json!({"id": "no-type", "data": {}})).await;
    let r = c.recv_where(|m| m["id"] == "no-type").await;
    assert_error(&r, "INVALID_MESSAGE");
    c.send(&json!({"type": 3, "id": "num-type"})).await;
    let r = c.recv_where(|m| m["id"] == "num-type").await;
    assert_error(&r, "INVALID_MESSAGE");

    let r = c.call("definitely_not_a_type", json!({})).await;
    assert_error(&r, "UNKNOWN_TYPE");
    assert!(
        r["data"]["error"]
            .as_str()
            .unwrap()
            .contains("definitely_not_a_type"),
        "{r}"
    );
    // Fault injection does not exist unless enabled.
    let r = c.call("fault_inject", json!({"actor": "health"})).await;
    assert_error(&r, "UNKNOWN_TYPE");

    // Missing or mistyped fields.
    let p = c.create_project(&d.project_dir("p")).await;
    for (kind, data) in [
        ("project_create", json!({})),
        ("project_join", json!({})),
        ("project_join", json!({"project_id": p, "since_seq": "ten"})),
        ("execute", json!({"project_id": p})),
        ("execute", json!({"project_id": p, "prompt": "   "})),
        ("get_messages", json!({"project_id": p, "limit": 100000})),
        ("project_delete", json!({"project_id": 17})),
    ] {
        let r = c.call(kind, data).await;
        assert_error(&r, "VALIDATION_FAILED");
        assert!(r["id"].is_string(), "{r}");
        assert_no_server_paths(&r, &d);
    }
    // `data` that is not an object.
    c.send(&json!({"type": "project_list", "id": "data-array", "data": [1]}))
        .await;
    let r = c.recv_where(|m| m["id"] == "data-array").await;
    assert_error(&r, "VALIDATION_FAILED");

    // The request id is echoed on replies and errors, whatever string it is.
    let odd = "ünïcode id with spaces \" and quotes";
    c.send(&json!({"type": "ping", "id": odd})).await;
    let r = c.recv_where(|m| m["id"] == odd).await;
    assert_eq!(r["type"], "pong", "{r}");
    c.send(&json!({"type": "project_join", "id": odd, "project_id": "nope"}))
        .await;
    let r = c.recv_where(|m| m["id"] == odd).await;
    assert_error(&r, "PROJECT_NOT_FOUND");

    // An id that is too long or not a string is refused, not echoed.
    let long = "x".repeat(129);
    c.send(&json!({"type": "ping", "id": long})).await;
    let r = c.recv_type("error").await;
    assert_error(&r, "VALIDATION_FAILED");
    c.send(&json!({"type": "ping", "id": 5})).await;
    let r = c.recv_type("error").await;
    assert_error(&r, "VALIDATION_FAILED");

    c.ping().await;
}

// --- several clients ---------------------------------------------------------------------

#[tokio::test]
async fn two_clients_have_separate_contexts() {
    let d = Daemon::start();
    let mut a = d.client().await;
    let mut b = d.client().await;
    let p1 = a.create_project(&d.project_dir("one")).await;
    let p2 = a.create_project(&d.project_dir("two")).await;

    // A watches p1, B watches p2; each sees only its own project's events.
    a.join(&p1).await;
    b.join(&p2).await;
    let f = a.run(&p1, "hello from a").await;
    assert_eq!(f["data"]["status"], "completed", "{f}");
    b.ping().await;
    b.stay(Duration::from_millis(300)).await.unwrap();
    assert!(
        b.pending().iter().all(|m| m["project_id"] != p1),
        "B saw events of a project it did not join: {:?}",
        b.pending()
    );

    // Both watch p2 now.
    a.join(&p2).await;
    wait_for_project(&mut a, &p2, |p| p["subscribers"] == 2).await;

    // B closes: its subscription is released; A is unaffected.
    b.close().await;
    wait_for_project(&mut a, &p2, |p| p["subscribers"] == 1).await;
    let f = a.run(&p2, "still here").await;
    assert_eq!(f["data"]["status"], "completed", "{f}");

    // A third client that vanishes without a close frame is cleaned up as well.
    let mut c = d.client().await;
    c.join(&p1).await;
    wait_for_project(&mut a, &p1, |p| p["subscribers"] == 2).await;
    drop(c);
    wait_for_project(&mut a, &p1, |p| p["subscribers"] == 1).await;
    a.ping().await;
}

// --- persistence -------------------------------------------------------------------------

#[tokio::test]
async fn projects_and_session_ids_survive_a_restart() {
    let mut d = Daemon::start();
    let mut c = d.client().await;
    let one = c.create_project(&d.project_dir("one")).await;
    c.create_project_with(
        json!({"path": d.project_dir("two"), "name": "Second", "agent": "codex"}),
    )
    .await;
    let f = c.run(&one, "remember me").await;
    assert_eq!(f["data"]["status"], "completed", "{f}");
    let session = f["data"]["session_id"]
        .as_str()
        .expect("a session id")
        .to_string();
    let before = wait_for_project(&mut c, &one, |p| p["state"] == "IDLE").await;
    assert_eq!(before["session_id"], session);
    let before = c.call("project_list", json!({})).await["data"]["projects"].clone();
    c.close().await;

    let st = d.stop();
    assert_eq!(
        st.code(),
        Some(0),
        "SIGTERM exits 0; log:\n{}",
        d.log_text()
    );
    d.restart();

    let mut c = d.client().await;
    let after = c.call("project_list", json!({})).await["data"]["projects"].clone();
    let ps = after.as_array().unwrap();
    assert_eq!(ps.len(), 2, "{after}");
    for (b, a) in before.as_array().unwrap().iter().zip(ps) {
        assert_project_kept(b, a, "the restart");
        assert_eq!(
            a["last_active"], b["last_active"],
            "'last_active' changed across the restart"
        );
    }
    assert_eq!(ps[0]["session_id"], session);
    assert!(ps[0]["last_seq"].as_u64().unwrap() > 0);
    assert_eq!(ps[1]["name"], "Second");
    assert_eq!(ps[1]["agent"], "codex");

    // The session is resumed by the next run.
    c.execute(&one, "again").await;
    let started = c.recv_type("run_started").await;
    assert_eq!(started["data"]["resumed_session_id"], session, "{started}");
}

#[tokio::test]
async fn a_corrupt_metadata_file_is_skipped_and_the_others_load() {
    let mut d = Daemon::start();
    let mut c = d.client().await;
    let good = c.create_project(&d.project_dir("good")).await;
    let bad = c.create_project(&d.project_dir("bad")).await;
    let also_good = c.create_project(&d.project_dir("also-good")).await;
    c.close().await;
    assert_eq!(d.stop().code(), Some(0));

    let meta = d.data_dir.join("projects").join(&bad).join("metadata.json");
    std::fs::write(&meta, "{\"id\": \"truncated").unwrap();
    d.restart();

    let mut c = d.client().await;
    let list = c.call("project_list", json!({})).await;
    let ids: Vec<&str> = list["data"]["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [good.as_str(), also_good.as_str()], "{list}");
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains(&bad) && l.contains("metadata")),
        "the log names the skipped project:\n{log}"
    );
    let r = c.call("project_join", json!({"project_id": bad})).await;
    assert_error(&r, "PROJECT_NOT_FOUND");
    let (status, _) = d.http_get("/ready").await;
    assert_eq!(status, 200);
}

// --- limits ------------------------------------------------------------------------------

#[tokio::test]
async fn the_project_limit_is_enforced() {
    let d = Daemon::builder()
        .env("AGENTVISOR_MAX_PROJECTS", "2")
        .start();
    let mut c = d.client().await;
    let first = c.create_project(&d.project_dir("a")).await;
    c.create_project(&d.project_dir("b")).await;
    let r = c
        .call("project_create", json!({"path": d.project_dir("c")}))
        .await;
    assert_error(&r, "PROJECT_LIMIT");
    assert!(r["data"]["error"].as_str().unwrap().contains('2'), "{r}");
    // Deleting one makes room.
    let r = c.call("project_delete", json!({"project_id": first})).await;
    assert_eq!(r["type"], "project_deleted", "{r}");
    c.create_project(&d.root.join("c")).await;

    // The flag wins over the environment variable.
    let d = Daemon::builder()
        .env("AGENTVISOR_MAX_PROJECTS", "5")
        .arg("--max-projects")
        .arg("1")
        .start();
    let mut c = d.client().await;
    c.create_project(&d.project_dir("a")).await;
    let r = c
        .call("project_create", json!({"path": d.project_dir("b")}))
        .await;
    assert_error(&r, "PROJECT_LIMIT");
}

#[tokio::test]
async fn the_connection_limit_refuses_with_1013() {
    let d = Daemon::builder()
        .env("AGENTVISOR_MAX_CONNECTIONS", "2")
        .start();
    let mut a = d.client().await;
    let mut b = d.client().await;
    a.ping().await;
    b.ping().await;
    let mut third = d.client().await;
    assert_eq!(third.closed(WAIT).await, Closed::Code(1013));
    // The first two are unaffected.
    a.ping().await;
    // A freed place can be taken again.
    b.close().await;
    let mut again = connect_when_accepted(d.port).await;
    again.ping().await;
}

#[tokio::test]
async fn the_per_address_limit_refuses_with_1013() {
    let d = Daemon::builder()
        .env("AGENTVISOR_MAX_CONNECTIONS_PER_IP", "1")
        .start();
    let mut a = d.client().await;
    a.ping().await;
    let mut second = d.client().await;
    assert_eq!(second.closed(WAIT).await, Closed::Code(1013));
    // X-Forwarded-For from an untrusted peer does not make a new address.
    let mut forged = d.client_with(&[("x-forwarded-for", "10.0.0.9")]).await;
    assert_eq!(forged.closed(WAIT).await, Closed::Code(1013));
    a.ping().await;
}

#[tokio::test]
async fn the_per_address_limit_uses_forwarded_for_from_a_trusted_proxy() {
    let d = Daemon::builder()
        .env("AGENTVISOR_MAX_CONNECTIONS_PER_IP", "1")
        .env("AGENTVISOR_TRUSTED_PROXIES", "127.0.0.1")
        .start();
    let mut x = d.client_with(&[("x-forwarded-for", "10.0.0.1")]).await;
    let mut y = d.client_with(&[("x-forwarded-for", "10.0.0.2")]).await;
    x.ping().await;
    y.ping().await;
    let mut x2 = d.client_with(&[("x-forwarded-for", "10.0.0.1")]).await;
    assert_eq!(x2.closed(WAIT).await, Closed::Code(1013));
}

#[tokio::test]
async fn the_message_rate_is_limited_and_the_connection_stays_usable() {
    let d = Daemon::builder().env("AGENTVISOR_RATE_LIMIT", "5").start();
    let mut c = d.client().await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(c.request("ping", json!({})).await);
    }
    let (mut pongs, mut limited) = (0, 0);
    for id in &ids {
        let r = c.recv_where(|m| m["id"] == *id).await;
        match r["type"].as_str() {
            Some("pong") => pongs += 1,
            _ => {
                assert_error(&r, "RATE_LIMITED");
                limited += 1;
            }
        }
    }
    assert!(pongs >= 10, "a burst of twice the rate is allowed: {pongs}");
    // Even if the server took a few seconds over these 60, most of them are over the rate.
    assert!(limited >= 20, "the rest is refused: {limited} of 60");
    // After a pause the client may talk again, on the same connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.ping().await;
}

#[tokio::test]
async fn an_oversize_frame_closes_with_1009() {
    let d = Daemon::builder()
        .env("AGENTVISOR_MAX_MESSAGE_BYTES", "1024")
        .start();
    let mut c = d.client().await;
    let mut other = d.client().await;
    // Just under the limit is fine.
    let fits = json!({"type": "ping", "id": "fits", "data": {"pad": "x".repeat(900)}});
    assert!(fits.to_string().len() < 1024);
    c.send(&fits).await;
    assert_eq!(c.recv_where(|m| m["id"] == "fits").await["type"], "pong");
    let big = json!({"type": "ping", "id": "big", "data": {"pad": "x".repeat(2000)}});
    c.send(&big).await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1009));
    other.ping().await;
}

// --- heartbeat ---------------------------------------------------------------------------

#[tokio::test]
async fn a_silent_client_is_closed_with_4000_and_a_live_one_is_kept() {
    let d = Daemon::builder()
        .env("AGENTVISOR_PING_INTERVAL", "200ms")
        .env("AGENTVISOR_PONG_TIMEOUT", "200ms")
        .start();
    // Nothing reads this socket, so nothing answers the server's pings.
    let mut silent = d.client().await;
    let mut live = d.client().await;
    // Reading answers pings: the live client must outlast several timeouts.
    live.stay(Duration::from_secs(2))
        .await
        .expect("a client that answers pings stays connected");
    assert_eq!(silent.closed(WAIT).await, Closed::Code(4000));
    live.ping().await;
}

// --- shutdown ----------------------------------------------------------------------------

async fn shutdown_with(sig: i32) {
    let mut d = Daemon::start();
    let mut a = d.client().await;
    let mut b = d.client().await;
    let p = a.create_project(&d.project_dir("p")).await;
    b.join(&p).await;
    let st = d.stop_with(sig);
    assert_eq!(st.code(), Some(0), "log:\n{}", d.log_text());
    assert_eq!(a.closed(WAIT).await, Closed::Code(1001));
    assert_eq!(b.closed(WAIT).await, Closed::Code(1001));
}

#[tokio::test]
async fn sigterm_drains_and_exits_0() {
    shutdown_with(SIGTERM).await;
}

#[tokio::test]
async fn sigint_drains_and_exits_0() {
    shutdown_with(SIGINT).await;
}

/// One HTTP/1.1 request on a kept-alive connection; `None` once the server closed it.
async fn keep_alive_get(s: &mut tokio::net::TcpStream, path: &str) -> Option<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if body.len() >= len {
            let status = head.split_whitespace().nth(1)?.parse().ok()?;
            return Some((status, body[..len].to_string()));
        }
    }
}

#[tokio::test]
async fn ready_is_503_while_shutting_down() {
    let mut d = Daemon::builder().env("AGENTVISOR_KILL_GRACE", "2s").start();
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    // A run that ignores SIGINT keeps the shutdown busy for the kill grace.
    c.execute(&p, "mock:hang ignore_sigint=1").await;
    c.recv_type("run_started").await;
    c.recv_type("agent_message").await;

    let mut http = tokio::net::TcpStream::connect(("127.0.0.1", d.port))
        .await
        .unwrap();
    let (status, body) = keep_alive_get(&mut http, "/ready").await.expect("ready");
    assert_eq!(status, 200, "{body}");

    signal(d.pid(), SIGTERM);
    let mut seen = None;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match keep_alive_get(&mut http, "/ready").await {
            Some((503, body)) => {
                seen = Some(body);
                break;
            }
            Some((200, _)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Some(other) => panic!("unexpected /ready answer {other:?}"),
            None => break,
        }
    }
    let body = seen.expect("/ready answered 503 during the shutdown");
    let v: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(v["status"], "shutting_down", "{v}");
    assert_eq!(c.closed(WAIT).await, Closed::Code(1001));
    let st = d.stop();
    assert_eq!(st.code(), Some(0), "log:\n{}", d.log_text());
}

// --- health ------------------------------------------------------------------------------

#[tokio::test]
async fn health_and_readiness() {
    let d = Daemon::start();
    let (status, body) = d.http_get("/health").await;
    assert_eq!(status, 200, "{body}");
    let h: Value = serde_json::from_str(&body).expect("/health is JSON");
    assert!(h["status"].is_string(), "{h}");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"), "{h}");
    assert!(h["uptime_s"].is_u64(), "{h}");
    let actors = h["actors"].as_array().expect("actors");
    for kind in ["registry", "broadcast", "health"] {
        assert!(
            actors.iter().any(|a| a["kind"] == kind),
            "no {kind} actor in {h}"
        );
    }
    for a in actors {
        for f in ["name", "kind", "status", "restarts", "backoff_ms"] {
            assert!(a.get(f).is_some(), "actor lacks '{f}': {a}");
        }
        assert_eq!(a["status"], "running", "{a}");
    }

    let (status, body) = d.http_get("/ready").await;
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).expect("/ready is JSON");
    assert_eq!(r["status"], "ready");

    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("p")).await;
    let r = c.call("health_check", json!({})).await;
    assert_eq!(r["type"], "health", "{r}");
    assert!(r["id"].is_string(), "{r}");
    assert!(r["data"]["status"].is_string(), "{r}");
    assert!(r["data"]["checks"].is_object(), "{r}");
    assert!(r["data"]["actors"].is_array(), "{r}");
    // The supervisor adopts a new project's actor just after the project is created.
    let r = c
        .health_when("project actor named by its id", |r| {
            let actors = r["data"]["actors"].as_array().expect("actors");
            actors
                .iter()
                .any(|a| a["name"] == p && a["kind"] == "project")
        })
        .await;
    assert_no_server_paths(&r, &d);
}

// --- configuration -----------------------------------------------------------------------

#[test]
fn bad_configuration_exits_non_zero_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let data = tmp.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    /// Arguments, environment, and a word stderr must contain.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--max-connections", "0"], vec![], "max-connections"),
        (
            vec![],
            vec![("AGENTVISOR_MAX_CONNECTIONS", "0")],
            "max-connections",
        ),
        (vec!["--ping-interval", "nonsense"], vec![], "ping-interval"),
        (vec![], vec![("AGENTVISOR_PONG_TIMEOUT", "soon")], "pong"),
        (
            vec!["--max-message-bytes", "lots"],
            vec![],
            "max-message-bytes",
        ),
        (vec!["--rate-limit=-3"], vec![], "rate-limit"),
        (vec!["--token", "short"], vec![], "16"),
        (
            vec!["--project-roots", "relative/dir"],
            vec![],
            "project root",
        ),
    ];
    let run = |args: &[&str], env: &[(&str, &str)], listen: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentvisor"));
        cmd.env_clear()
            .env("HOME", tmp.path())
            .env("AGENTVISOR_PROJECT_ROOTS", &root)
            .arg("--data-dir")
            .arg(&data)
            .args(listen.map(|l| ["--listen", l]).into_iter().flatten())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start agentvisor");
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("agentvisor {args:?} {env:?} kept running with a bad configuration");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    };
    for (args, env, needle) in &cases {
        let (status, stderr) = run(args, env, Some(&listen));
        assert!(
            !status.success() && status.code().is_some(),
            "{args:?} {env:?}: {status}"
        );
        assert!(
            stderr.contains(needle),
            "{args:?} {env:?}: stderr should mention {needle:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Listening off loopback without a token.
    let (status, stderr) = run(&["--listen", "0.0.0.0:0"], &[], None);
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("token"), "{stderr}");
    assert!(stderr.contains("AGENTVISOR_TOKEN"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_its_socket_is_logged_as_gone_not_as_a_protocol_error() {
    let d = Daemon::start();
    let mut c = d.client().await;
    c.call("project_list", json!({})).await;
    drop(c); // no close frame, as when a client exits or loses its network
    let deadline = std::time::Instant::now() + WAIT;
    while !d.log_text().contains("connection closed") {
        assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = d.log_text();
    assert!(
        log.contains("the client went away without a close frame")
            && !log.contains("protocol error"),
        "{log}"
    );
}
