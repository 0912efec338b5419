//! Authentication, origins, forwarded addresses, hostile input and metrics, through the real
//! binary.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const TOKEN: &str = "a-long-enough-test-token-0123456789";

fn with_token() -> Daemon {
    Daemon::builder().env("AGENTVISOR_TOKEN", TOKEN).start()
}

#[tokio::test]
async fn bearer_header_authenticates() {
    let d = with_token();
    let auth = format!("Bearer {TOKEN}");
    let mut c = d.client_with(&[("authorization", &auth)]).await;
    c.ping().await;
}

#[tokio::test]
async fn first_message_auth_authenticates_and_anything_else_is_refused() {
    let d = with_token();
    let mut c = d.client().await;
    let r = c.call("auth", json!({"token": TOKEN})).await;
    assert_eq!(r["type"], "authenticated", "{r}");
    c.ping().await;

    let mut c = d.client().await;
    c.request("project_list", json!({})).await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1008));

    let mut c = d.client().await;
    c.request("auth", json!({"token": "wrong-token-wrong-token-wrong"}))
        .await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1008));
}

#[tokio::test]
async fn wrong_header_token_and_token_in_url_are_refused() {
    let d = with_token();
    let mut c = d
        .client_with(&[("authorization", "Bearer nope-nope-nope-nope-nope")])
        .await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1008));
    let (code, metrics) = d.http_get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("agentvisor_auth_failures_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn repeated_failures_are_throttled() {
    let d = with_token();
    for _ in 0..10 {
        let mut c = d
            .client_with(&[("authorization", "Bearer bad-bad-bad-bad-bad-bad")])
            .await;
        assert_eq!(c.closed(WAIT).await, Closed::Code(1008));
    }
    // Now even the right token is refused from this address for a while.
    let auth = format!("Bearer {TOKEN}");
    let mut c = d.client_with(&[("authorization", &auth)]).await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1008));
}

#[tokio::test]
async fn missing_auth_times_out_with_1008() {
    let d = with_token();
    let mut c = d.client().await;
    // The daemon waits a bounded time for the auth message.
    assert_eq!(c.closed(Duration::from_secs(20)).await, Closed::Code(1008));
}

#[tokio::test]
async fn cross_site_origins_are_refused() {
    let d = Daemon::builder()
        .env("AGENTVISOR_ALLOWED_ORIGINS", "https://app.example")
        .start();
    let mut evil = d.client_with(&[("origin", "https://evil.example")]).await;
    assert_eq!(evil.closed(WAIT).await, Closed::Code(1008));
    let mut ok = d.client_with(&[("origin", "https://app.example")]).await;
    ok.ping().await;
    let same = format!("http://127.0.0.1:{}", d.port);
    let mut same_host = d.client_with(&[("origin", &same)]).await;
    same_host.ping().await;
}

#[tokio::test]
async fn spoofed_forwarded_for_does_not_escape_the_per_address_limit() {
    let d = Daemon::builder()
        .env("AGENTVISOR_MAX_CONNECTIONS_PER_IP", "2")
        .start();
    let mut held = Vec::new();
    for i in 0..2 {
        let xff = format!("10.0.0.{i}");
        let mut c = d.client_with(&[("x-forwarded-for", &xff)]).await;
        c.ping().await;
        held.push(c);
    }
    let mut third = d.client_with(&[("x-forwarded-for", "10.9.9.9")]).await;
    assert_eq!(third.closed(WAIT).await, Closed::Code(1013));
}

#[tokio::test]
async fn hostile_frames_get_clean_errors_and_the_connection_survives() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let deep = format!(
        "{{\"type\":\"ping\",\"data\":{{\"x\":{}1{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases = [
        deep,
        r#"{"type":"ping","id":1e400}"#.to_string(),
        r#"{"type":"get_messages","project_id":"p","data":{"since_seq":123456789012345678901234567890}}"#.to_string(),
        "{\"type\":\"project_create\",\"data\":{\"path\":\"/tmp/\\u0000x\"}}".to_string(),
        r#"{"type":"project_create","data":{"path":"/../../etc"}}"#.to_string(),
        r#"{"type":"project_create","data":{"path":"relative/../x"}}"#.to_string(),
        r#"{"type":"execute","project_id":"../../etc/passwd","data":{"prompt":"x"}}"#.to_string(),
        "\u{0}\u{1}garbage".to_string(),
        r#"{"type":"ping""#.to_string(),
        r#"{"type":"\u0000"}"#.to_string(),
    ];
    for case in cases {
        c.send_text(case.clone()).await;
        let r = c.recv().await;
        assert_eq!(r["type"], "error", "for {case:.80}: {r}");
        let msg = r["data"]["error"].as_str().unwrap();
        assert!(!msg.contains(d.data_dir.to_str().unwrap()), "{msg}");
        assert!(msg.len() < 1024);
    }
    // Invalid UTF-8 can only arrive as a binary frame: refused, connection kept.
    c.send_binary(vec![0xff, 0xfe, 0x00, 0x7b]).await;
    assert_eq!(c.recv().await["data"]["code"], "INVALID_MESSAGE");
    c.ping().await;
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("m")).await;
    c.run(&id, "hi").await;
    let (code, body) = d.http_get("/metrics").await;
    assert_eq!(code, 200);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let names: Vec<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for want in [
        "agentvisor_connections",
        "agentvisor_connections_opened_total",
        "agentvisor_messages_received_total",
        "agentvisor_messages_sent_total",
        "agentvisor_broadcast_deliveries_total",
        "agentvisor_runs_total",
        "agentvisor_history_appends_total",
        "agentvisor_process_resident_memory_bytes",
        "agentvisor_process_open_fds",
    ] {
        assert!(names.contains(&want), "{want} missing from:\n{body}");
    }
    let runs = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "agentvisor_runs_total" && s.labels.get("status") == Some("completed")
        })
        .expect("completed runs counted");
    let value = match runs.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("unexpected sample type {other:?}"),
    };
    assert!(value >= 1.0, "{value}");
}

#[tokio::test]
async fn health_answers_quickly_and_reports_checks() {
    let d = Daemon::start();
    let (code, body) = d.http_get("/health").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    for key in ["cpu", "memory", "disk", "agents"] {
        assert!(v["checks"].get(key).is_some(), "{key} missing: {v}");
    }
    assert!(v["actors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "broadcast"));
}

#[test]
fn refuses_to_listen_off_loopback_without_a_token() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentvisor"))
        .args(["--listen", "0.0.0.0:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env_remove("AGENTVISOR_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires a token"), "{err}");
}

#[tokio::test]
async fn server_stats_are_pushed_on_the_configured_interval() {
    let d = Daemon::builder()
        .env("AGENTVISOR_STATS_INTERVAL", "200ms")
        .start();
    let mut c = d.client().await;
    c.create_project(&d.project_dir("s")).await;
    let s = c.recv_type("server_stats").await;
    for key in [
        "connections",
        "projects",
        "runs_active",
        "runs_total",
        "messages_per_s",
        "uptime_s",
    ] {
        assert!(s["data"].get(key).is_some(), "{key} missing: {s}");
    }
    assert_eq!(s["data"]["connections"], 1);
    assert_eq!(s["data"]["projects"]["total"], 1);
}

/// TLS termination in the daemon: a WSS client with the daemon's certificate as its only root
/// can talk; the certificate and key come from the configuration.
#[tokio::test]
async fn serves_wss_with_the_configured_certificate() {
    use std::sync::Arc;
    use tokio_tungstenite::tungstenite::Message;

    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agentvisor"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("AGENTVISOR_PROJECT_ROOTS", dir.path())
        .env("AGENTVISOR_TLS_CERT", &cert_path)
        .env("AGENTVISOR_TLS_KEY", &key_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let deadline = std::time::Instant::now() + WAIT;
    let tls = loop {
        if let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            if let Ok(s) = connector.connect(name, tcp).await {
                break s;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "TLS daemon never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let url = format!("wss://localhost:{port}/ws");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("wss handshake");
    use futures_util::{SinkExt, StreamExt};
    ws.send(Message::Text(r#"{"type":"ping","id":"t"}"#.into()))
        .await
        .unwrap();
    let reply = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => break t,
            _ => continue,
        }
    };
    assert!(reply.contains("\"pong\""), "{reply}");
    // Plain HTTP is not served on a TLS port.
    assert!(http_get(port, "/health")
        .await
        .is_none_or(|(code, _)| code != 200));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tls_needs_both_certificate_and_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentvisor"))
        .args(["--tls-cert", "/nonexistent.pem", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

#[tokio::test]
async fn a_dns_rebound_page_cannot_connect_without_a_token() {
    let d = Daemon::start();
    let evil = format!("evil.example:{}", d.port);
    let origin = format!("http://{evil}");
    let mut c = d.client_with(&[("origin", &origin), ("host", &evil)]).await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1008));
    let local = format!("localhost:{}", d.port);
    let origin = format!("http://{local}");
    let mut ok = d
        .client_with(&[("origin", &origin), ("host", &local)])
        .await;
    ok.ping().await;
}

#[tokio::test]
async fn a_second_daemon_cannot_share_the_data_directory() {
    let d = Daemon::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentvisor"))
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(&d.data_dir)
        .env("AGENTVISOR_PROJECT_ROOTS", &d.root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already using the data directory"));
    // The first one is unaffected.
    let mut c = d.client().await;
    c.ping().await;
}

#[tokio::test]
async fn the_data_directory_cannot_become_a_project() {
    let d = Daemon::builder()
        .env("AGENTVISOR_PROJECT_ROOTS", "/")
        .start();
    let mut c = d.client().await;
    for path in [
        d.data_dir.clone(),
        d.data_dir.parent().unwrap().to_path_buf(),
    ] {
        let r = c.call("project_create", json!({"path": path})).await;
        assert_eq!(r["data"]["code"], "INVALID_PATH", "{r}");
    }
}

/// A stored record may hold numbers no JSON library value type can represent; queries must
/// still answer, byte for byte.
#[tokio::test]
async fn history_with_extreme_numbers_is_served_verbatim() {
    let mut d = Daemon::start();
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("n")).await;
    drop(c);
    d.stop();
    let seg = d
        .data_dir
        .join(format!("projects/{id}/history/{:020}.jsonl", 1));
    let line = format!(
        r#"{{"type":"agent_message","project_id":"{id}","seq":1,"ts":"2026-11-21T10:00:00.000Z","direction":"agent","data":{{"run_id":"r","message":{{"type":"x","big":1e999,"n":123456789012345678901234567890}}}}}}"#
    );
    std::fs::write(&seg, format!("{line}\n")).unwrap();
    d.restart();
    let mut c = d.client().await;
    c.request("get_messages", json!({"project_id": id})).await;
    let raw = c.recv_raw().await;
    assert!(raw.starts_with(r#"{"type":"messages""#), "{raw}");
    assert!(
        raw.contains(r#""big":1e999,"n":123456789012345678901234567890"#),
        "{raw}"
    );
    // The project is still healthy afterwards.
    c.join(&id).await;
}

/// `add_dirs` follows the project rules: no data directory, no other project.
#[tokio::test]
async fn extra_directories_cannot_reach_the_data_dir_or_other_projects() {
    let d = Daemon::builder()
        .env("AGENTVISOR_PROJECT_ROOTS", "/")
        .start();
    let mut c = d.client().await;
    let a = d.project_dir("a");
    let id = c.create_project(&a).await;
    let b = d.project_dir("b");
    c.create_project(&b).await;
    for (dir, code) in [
        (d.data_dir.clone(), "INVALID_PATH"),
        (b.clone(), "PROJECT_EXISTS"),
        (d.root.clone(), "PROJECT_NESTING"),
    ] {
        let r = c
            .call(
                "execute",
                json!({"project_id": id, "prompt": "hi", "options": {"add_dirs": [dir]}}),
            )
            .await;
        assert_eq!(r["data"]["code"], code, "{r}");
    }
    let extra = d.project_dir("extra");
    let r = c
        .call(
            "execute",
            json!({"project_id": id, "prompt": "hi", "options": {"add_dirs": [extra]}}),
        )
        .await;
    assert_eq!(r["type"], "execute_accepted", "{r}");
}

/// JSON log lines: one object per event, with the ids that trace a request, a run and a
/// restart, and nothing a client typed reaching the log raw.
#[tokio::test]
async fn json_logs_trace_connections_projects_and_runs_without_raw_input() {
    let d = Daemon::builder()
        .env("AGENTVISOR_LOG_FORMAT", "json")
        .env("AGENTVISOR_FAULT_INJECTION", "1")
        .start();
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("logs")).await;
    let finished = c.run(&id, "say \u{1b}[31mhi\u{7}").await;
    let run_id = finished["data"]["run_id"].as_str().unwrap().to_string();
    let r = c
        .call("fault_inject", json!({"actor": "evil\u{1b}[2J\nactor"}))
        .await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    c.call("fault_inject", json!({"actor": "health"})).await;
    c.send_text(r#"{"type":"\u001b]0;pwned\u0007"}"#).await;
    let err = c.recv_type("error").await;
    assert_eq!(err["data"]["code"], "UNKNOWN_TYPE", "{err}");
    c.close().await;
    // The health actor's restart and the connection's close are logged shortly after.
    let deadline = std::time::Instant::now() + WAIT;
    let lines = loop {
        let text = d.log_text();
        if text.contains("health actor restarted") && text.contains("connection closed") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    for e in &events {
        for key in ["ts", "level", "target", "msg"] {
            assert!(e.get(key).is_some(), "{key} missing: {e}");
        }
    }
    let has = |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().any(pred);
    assert!(has(
        &|e| e["msg"] == "connection opened" && e.get("conn").is_some()
    ));
    assert!(has(
        &|e| e["msg"] == "project created" && e["project"] == id.as_str()
    ));
    assert!(has(&|e| e["msg"] == "run finished"
        && e["project"] == id.as_str()
        && e["run"] == run_id.as_str()));
    assert!(has(
        &|e| e["actor"] == "health" && e.get("restarts").is_some()
    ));
    // Neither the prompt's nor the frames' control characters reach the log.
    assert!(
        !lines.contains('\u{1b}') && !lines.contains('\u{7}'),
        "{lines}"
    );
    assert!(
        !lines.contains("\\u001b"),
        "escaped control characters logged: {lines}"
    );
}
