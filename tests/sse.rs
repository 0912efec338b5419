//! Black-box tests of `GET /projects/{id}/events` (Server-Sent Events) against the real binary,
//! read with a plain HTTP/1.1 client over TCP: replay from `Last-Event-ID` then live with no gap
//! and no duplicate, the heartbeat, authentication and origins, an unknown project, and a slow
//! reader cut off with bounded memory.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "sse-test-token-0123456789";

/// One event as the stream carried it.
#[derive(Debug, Clone)]
struct Event {
    id: Option<u64>,
    kind: String,
    data: Value,
}

/// An open event stream: the response head, then the decoded body read incrementally.
struct Stream {
    sock: TcpStream,
    status: u16,
    head: String,
    /// Raw bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body text not yet parsed into events.
    body: String,
    /// The body has ended (the last chunk, or the socket closed).
    ended: bool,
}

impl Stream {
    async fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> Stream {
        Self::open_on(
            TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
            port,
            path,
            headers,
        )
        .await
    }

    /// Opens the stream on a socket with a tiny receive buffer (for a reader that never reads).
    async fn open_small(port: u16, path: &str) -> Stream {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let s = sock.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        Self::open_on(s, port, path, &[]).await
    }

    async fn open_on(
        mut sock: TcpStream,
        port: u16,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Stream {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        sock.write_all(req.as_bytes()).await.unwrap();
        let mut s = Stream {
            sock,
            status: 0,
            head: String::new(),
            raw: Vec::new(),
            body: String::new(),
            ended: false,
        };
        let end = loop {
            if let Some(i) = s.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(s.read_more(WAIT).await, "no response head");
        };
        s.head = String::from_utf8_lossy(&s.raw[..end]).to_lowercase();
        s.raw.drain(..end + 4);
        s.status = s.head[9..12].parse().unwrap();
        s
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    }

    /// Reads more bytes from the socket; false when the socket ended or nothing came in time.
    async fn read_more(&mut self, limit: Duration) -> bool {
        let mut buf = [0u8; 65536];
        match tokio::time::timeout(limit, self.sock.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Ok(_) => {
                self.ended = true;
                false
            }
            Err(_) => false,
        }
    }

    /// Moves complete chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..eol]).to_string();
            let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            let chunk = self.raw[eol + 2..eol + 2 + size].to_vec();
            self.body
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 body"));
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// The next complete block (an event or a comment), without its blank line; `None` when the
    /// stream ended or nothing came within `limit`.
    async fn next_block(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            self.dechunk();
            if let Some(i) = self.body.find("\n\n") {
                let block = self.body[..i].to_string();
                self.body.drain(..i + 2);
                return Some(block);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.ended || left.is_zero() || !self.read_more(left).await {
                return None;
            }
        }
    }

    /// The next event, skipping comments.
    async fn next_event(&mut self, limit: Duration) -> Option<Event> {
        loop {
            let block = self.next_block(limit).await?;
            if let Some(e) = parse_event(&block) {
                return Some(e);
            }
        }
    }

    /// Events up to and including the `run_finished` of `run`.
    async fn until_finished(&mut self, run: &str) -> Vec<Event> {
        let mut got = Vec::new();
        loop {
            let e = self
                .next_event(WAIT)
                .await
                .unwrap_or_else(|| panic!("the stream stopped before run {run} ended: {got:?}"));
            let done = e.kind == "run_finished" && e.data["data"]["run_id"] == run;
            got.push(e);
            if done {
                return got;
            }
        }
    }
}

/// Parses an event block; `None` for a comment-only block.
fn parse_event(block: &str) -> Option<Event> {
    let (mut id, mut kind, mut data) = (None, None, String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().expect("numeric id"));
        } else if let Some(v) = line.strip_prefix("event: ") {
            kind = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        } else {
            assert!(line.starts_with(':'), "unexpected line {line:?}");
        }
    }
    let kind = kind?;
    let data: Value = serde_json::from_str(&data).expect("data is JSON");
    assert_eq!(data["type"], kind.as_str(), "event name and type differ");
    Some(Event { id, kind, data })
}

/// Asserts that the stored events are seq `first`, `first + 1`, … with `id` equal to `seq`.
fn assert_contiguous(events: &[Event], first: u64, what: &str) {
    let stored: Vec<&Event> = events.iter().filter(|e| e.id.is_some()).collect();
    for (i, e) in stored.iter().enumerate() {
        assert_eq!(e.id, Some(first + i as u64), "{what}: {e:?}");
        assert_eq!(e.data["seq"], json!(e.id), "{what}: id and seq differ");
    }
}

/// A daemon started with `env`, a client, and a project named `name`.
async fn with_project(env: &[(&str, &str)], name: &str) -> (Daemon, Client, String) {
    let mut b = Daemon::builder();
    for (k, v) in env {
        b = b.env(k, *v);
    }
    let d = b.start();
    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir(name)).await;
    (d, c, id)
}

fn events_path(project: &str) -> String {
    format!("/projects/{project}/events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_from_last_event_id_then_goes_live_without_gap_or_duplicate() {
    let (d, mut c, id) = with_project(&[], "sse").await;
    c.run(&id, "mock:tool").await;
    let stored = c.messages(&id, json!({"limit": 1000})).await;
    let last = stored.last().unwrap()["seq"].as_u64().unwrap();
    assert!(last > 4, "too little history: {last}");

    // A second run streams slowly; the stream opens in the middle of it, from seq 2.
    let run = c.execute(&id, "mock:slow interval_ms=40").await;
    c.recv_where(|m| m["type"] == "agent_message" && m["data"]["run_id"] == run.as_str())
        .await;
    let mut s = Stream::open(d.port, &events_path(&id), &[("Last-Event-ID", "2")]).await;
    assert_eq!(s.status, 200, "{}", s.head);
    assert!(s
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(s.header("cache-control"), Some("no-cache, no-store"));
    let joined = s.next_event(WAIT).await.unwrap();
    assert_eq!(joined.kind, "project_joined");
    assert_eq!(joined.id, None);
    assert_eq!(joined.data["data"]["recovered"], true);
    let got = s.until_finished(&run).await;
    assert_contiguous(&got, 3, "replay then live");

    // Each stored event is the very object the WebSocket carries and history keeps.
    let history = c
        .messages(&id, json!({"since_seq": 2, "limit": 1000}))
        .await;
    assert!(history.len() >= got.len());
    for (e, h) in got.iter().zip(&history) {
        assert!(e.data == *h, "seq {:?} differs from history", e.id);
    }

    // `?since_seq` does the same as Last-Event-ID.
    let mut q = Stream::open(
        d.port,
        &format!("{}?since_seq={last}", events_path(&id)),
        &[],
    )
    .await;
    assert_eq!(q.next_event(WAIT).await.unwrap().kind, "project_joined");
    assert_eq!(q.next_event(WAIT).await.unwrap().id, Some(last + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cursor_only_live_events_come() {
    let (d, mut c, id) = with_project(&[], "live").await;
    c.run(&id, "mock:success").await;
    let before = c.project(&id).await["last_seq"].as_u64().unwrap();
    let mut s = Stream::open(d.port, &events_path(&id), &[]).await;
    assert_eq!(
        s.next_event(WAIT).await.unwrap().data["data"]["replayed"],
        0
    );
    let run = c.execute(&id, "mock:success").await;
    let got = s.until_finished(&run).await;
    assert_contiguous(&got, before + 1, "live only");
    assert_eq!(got[0].kind, "prompt");

    // Deleting the project ends its streams, after telling them.
    let r = c.call("project_delete", json!({"project_id": id})).await;
    assert_eq!(r["type"], "project_deleted", "{r}");
    let mut last = None;
    while let Some(e) = s.next_event(WAIT).await {
        last = Some(e);
    }
    assert_eq!(last.map(|e| e.kind).as_deref(), Some("project_deleted"));
    assert!(s.ended, "the stream of a deleted project stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_gets_heartbeat_comments() {
    let (d, _c, id) = with_project(&[("AGENTVISOR_SSE_HEARTBEAT", "200ms")], "beat").await;
    let mut s = Stream::open(d.port, &events_path(&id), &[]).await;
    assert_eq!(s.next_event(WAIT).await.unwrap().kind, "project_joined");
    for _ in 0..2 {
        let block = s.next_block(WAIT).await.expect("a heartbeat");
        assert_eq!(block, ": keepalive");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_restart_rejoins_the_stream_without_a_gap() {
    let (d, mut c, id) = with_project(&[("AGENTVISOR_FAULT_INJECTION", "1")], "crash").await;
    let mut s = Stream::open(d.port, &events_path(&id), &[]).await;
    assert_eq!(s.next_event(WAIT).await.unwrap().kind, "project_joined");
    let run = c.execute(&id, "mock:lines count=40 rate=20").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c.call("fault_inject", json!({"actor": "broadcast"})).await;
    assert_eq!(r["type"], "fault_injected", "{r}");

    let got = s.until_finished(&run).await;
    assert_eq!(got[0].kind, "prompt");
    let first = got[0].id.unwrap();
    assert_contiguous(&got, first, "across the broadcast restart");
    assert!(
        got.iter().any(|e| e.kind == "project_joined"),
        "the stream was not joined again"
    );
    let lines: Vec<u64> = got
        .iter()
        .filter_map(|e| e.data["data"]["message"]["n"].as_u64())
        .collect();
    assert_eq!(lines, (1..=40).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_ends_open_streams() {
    let (mut d, _c, id) = with_project(&[], "bye").await;
    let mut s = Stream::open(d.port, &events_path(&id), &[]).await;
    assert_eq!(s.next_event(WAIT).await.unwrap().kind, "project_joined");
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    assert!(s.next_event(WAIT).await.is_none());
    assert!(s.ended, "the stream outlived the daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_required_in_the_header_and_origins_are_checked() {
    let d = Daemon::builder().env("AGENTVISOR_TOKEN", TOKEN).start();
    let mut c = d
        .client_with(&[("Authorization", &format!("Bearer {TOKEN}"))])
        .await;
    let id = c.create_project(&d.project_dir("auth")).await;
    let path = events_path(&id);

    let refused = [
        (vec![], 401),
        (
            vec![("Authorization", "Bearer wrong-token-wrong-token")],
            401,
        ),
        (vec![("Authorization", "Basic Zm9vOmJhcg==")], 401),
    ];
    for (headers, status) in refused {
        let s = Stream::open(d.port, &path, &headers).await;
        assert_eq!(s.status, status, "{headers:?}: {}", s.head);
        assert_eq!(s.header("www-authenticate"), Some("bearer"));
        let body = error_body(s).await;
        assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
    }
    let in_url = Stream::open(d.port, &format!("{path}?access_token={TOKEN}"), &[]).await;
    assert_eq!(in_url.status, 400);

    let bearer = format!("Bearer {TOKEN}");
    let evil = Stream::open(
        d.port,
        &path,
        &[
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
    )
    .await;
    assert_eq!(evil.status, 403);
    assert_eq!(error_body(evil).await["error"], "origin not allowed");

    let mut ok = Stream::open(d.port, &path, &[("Authorization", &bearer)]).await;
    assert_eq!(ok.status, 200, "{}", ok.head);
    assert_eq!(ok.next_event(WAIT).await.unwrap().kind, "project_joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_project_or_a_bad_cursor_is_a_json_error() {
    let d = Daemon::start();
    let s = Stream::open(d.port, &events_path("no-such-project"), &[]).await;
    assert_eq!(s.status, 404);
    assert!(s
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let body = error_body(s).await;
    assert_eq!(body["code"], "PROJECT_NOT_FOUND");
    assert_eq!(body["details"]["project_id"], "no-such-project");
    assert_eq!(body["error"], "project not found: no-such-project");

    let mut c = d.client().await;
    let id = c.create_project(&d.project_dir("cursor")).await;
    let bad = Stream::open(d.port, &events_path(&id), &[("Last-Event-ID", "-3")]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(error_body(bad).await["code"], "VALIDATION_FAILED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_behind_is_cut_off_and_can_resume() {
    let (d, mut c, id) = with_project(&[("AGENTVISOR_MAX_BACKLOG_BYTES", "262144")], "slow").await;
    let mut slow = Stream::open_small(d.port, &format!("{}?since_seq=0", events_path(&id))).await;
    assert_eq!(slow.status, 200);
    // Subscribed once its join reply is out; from here on it never reads.
    assert_eq!(slow.next_event(WAIT).await.unwrap().kind, "project_joined");
    // Far more than the backlog bound plus what the kernel buffers on loopback (megabytes).
    let count = 20_000u64;
    // `execute` subscribes its sender: that one leaves, so that only the stream is subscribed.
    let mut runner = d.client().await;
    runner
        .execute(&id, &format!("mock:lines count={count} bytes=1000"))
        .await;
    runner.close().await;

    // The daemon drops the stream's subscription when it cuts it off, long before the run ends.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = c.project(&id).await;
        if p["subscribers"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream that never reads was not cut off: {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.log_text().contains("closing a slow event stream"));

    // What was buffered arrives in order, then the body ends, short of the whole run.
    let mut got = Vec::new();
    while let Some(e) = slow.next_event(STREAM_WAIT).await {
        got.push(e);
    }
    assert!(slow.ended, "the cut-off stream did not end");
    let stored: Vec<Event> = got.into_iter().filter(|e| e.id.is_some()).collect();
    assert!(!stored.is_empty(), "nothing arrived before the cut");
    assert_contiguous(&stored, 1, "before the cut");
    let resume = stored.last().unwrap().id.unwrap();
    assert!(resume < count, "the whole run arrived: no cut");

    // Resuming from the last id seen picks up right after it, or says that the replay had to
    // leave older events out (it must fit in the same backlog bound). It resumes once the run
    // is over: during it, a reader on a loaded machine may fall behind the burst again.
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.project(&id).await["state"] != "IDLE" {
        assert!(Instant::now() < deadline, "the run did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again = Stream::open(
        d.port,
        &events_path(&id),
        &[("Last-Event-ID", &resume.to_string())],
    )
    .await;
    let joined = again.next_event(WAIT).await.unwrap();
    assert_eq!(joined.kind, "project_joined");
    let first = again.next_event(WAIT).await.unwrap().id.unwrap();
    if joined.data["data"]["recovered"] == true {
        assert_eq!(first, resume + 1);
    } else {
        assert!(first > resume + 1, "not recovered, yet no gap");
    }
}

/// How long a stream that is draining what was buffered may pause.
const STREAM_WAIT: Duration = Duration::from_secs(5);

/// The JSON body of an error response.
async fn error_body(mut s: Stream) -> Value {
    let len: usize = s.header("content-length").unwrap().parse().unwrap();
    while s.raw.len() < len {
        assert!(s.read_more(WAIT).await, "short body");
    }
    serde_json::from_slice(&s.raw[..len]).unwrap()
}
