//! The black-box test harness: starts the real `agentvisor` binary on a free port with a
//! temporary data directory and the mock agent, and talks to it over real WebSocket.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod nats;

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// How long any single wait of a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

// --- the daemon ------------------------------------------------------------------------------

/// The mock agent executable, built (or brought up to date) once per test binary: `cargo test`
/// does not rebuild another package's executable, and a stale one fails tests in confusing ways.
pub fn mock_agent() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target profile dir");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "-q", "-p", "agentvisor-mock-agent"]);
            if profile_dir.ends_with("release") {
                build.arg("--release");
            }
            let status = build.status().expect("cargo build of the mock agent");
            assert!(status.success(), "building the mock agent failed");
            profile_dir.join("mock-agent")
        })
        .clone()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The command line of a test daemon on `port`: the mock agent for both CLIs, debug logging
/// appended to `log`, no periodic stats. For tests that start the binary in their own way (as a
/// process manager does); [`Daemon`] starts it with this too.
pub fn daemon_command(port: u16, data_dir: &Path, root: &Path, log: &Path) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentvisor"));
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("RUST_LOG")
        .env("AGENTVISOR_PROJECT_ROOTS", root)
        .env("AGENTVISOR_CLAUDE_BIN", mock_agent())
        .env("AGENTVISOR_CODEX_BIN", mock_agent())
        .env("AGENTVISOR_AGENT_ENV", "MOCK_AGENT_*")
        .env("AGENTVISOR_STATS_INTERVAL", "0")
        .env("AGENTVISOR_LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    cmd
}

/// How to start a daemon.
pub struct DaemonBuilder {
    env: HashMap<String, String>,
    data: Option<PathBuf>,
    args: Vec<String>,
}

/// A running daemon and its directories.
pub struct Daemon {
    pub child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub root: PathBuf,
    pub log: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    builder_env: HashMap<String, String>,
}

impl DaemonBuilder {
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    /// Reuse a data directory (to test restarts).
    pub fn data_dir(mut self, p: &Path) -> Self {
        self.data = Some(p.to_path_buf());
        self
    }

    pub fn start(self) -> Daemon {
        let mut d = self.launch();
        d.wait_ready();
        d
    }

    /// Starts the process without waiting for it to be ready (to test what happens while it
    /// starts).
    pub fn launch(self) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("projects");
        std::fs::create_dir_all(&root).unwrap();
        let data_dir = self.data.clone().unwrap_or_else(|| tmp.path().join("data"));
        let mut d = Daemon {
            child: None,
            port: 0,
            data_dir,
            root,
            log: tmp.path().join("daemon.log"),
            _tmp: Some(tmp),
            builder_env: self.env,
        };
        d.spawn(&self.args);
        d
    }
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder {
            env: HashMap::new(),
            data: None,
            args: Vec::new(),
        }
    }

    pub fn start() -> Daemon {
        Self::builder().start()
    }

    fn spawn(&mut self, args: &[String]) {
        self.port = free_port();
        let mut cmd = daemon_command(self.port, &self.data_dir, &self.root, &self.log);
        cmd.args(args).envs(&self.builder_env);
        self.child = Some(cmd.spawn().expect("start agentvisor"));
    }

    /// Restarts on the same data directory (after `stop` or `kill9`).
    pub fn restart(&mut self) {
        self.spawn(&[]);
        self.wait_ready();
    }

    /// Waits until `/ready` answers 200 (panics if the process exits first).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited early with {st}; log:\n{}", self.log_text());
            }
            if let Some((200, _)) = http_get_blocking(self.port, "/ready") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` and waits for the exit.
    pub fn stop_with(&mut self, sig: i32) -> ExitStatus {
        signal(self.pid(), sig);
        self.wait_exit(WAIT)
    }

    /// Waits up to `limit` for the process to exit, by itself or after a signal. The child stays
    /// owned meanwhile, so that a daemon that does not exit is still killed when dropped.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut().expect("running daemon");
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(15)
    }

    pub fn kill9(&mut self) {
        self.stop_with(9);
    }

    /// A new project directory under the project root.
    pub fn project_dir(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.port).await
    }

    /// A client whose upgrade request carries `headers` (authorization, origin, forwarded-for).
    /// The upgrade succeeds even where the daemon refuses the client: it then closes the socket.
    pub async fn client_with(&self, headers: &[(&str, &str)]) -> Client {
        Client::connect_with(self.port, headers)
            .await
            .expect("websocket connect")
    }

    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path).await.expect("http get")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// --- systemd -------------------------------------------------------------------------------

/// A socket standing in for systemd's notify socket (read with a time limit of [`WAIT`]), and a
/// daemon builder that notifies it. The socket's directory lives as long as the `TempDir`.
pub fn under_systemd() -> (tempfile::TempDir, UnixDatagram, DaemonBuilder) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let builder = Daemon::builder().env("NOTIFY_SOCKET", path.to_str().unwrap());
    (dir, sock, builder)
}

/// Reads the next datagram on the notify socket.
pub fn notification(sock: &UnixDatagram) -> String {
    try_notification(sock).expect("no sd_notify message within the time limit")
}

/// The next datagram on the notify socket, or `None` when none came within its read timeout.
pub fn try_notification(sock: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

// --- processes -------------------------------------------------------------------------------

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Sends a signal to a process.
pub fn signal(pid: i32, sig: i32) {
    unsafe {
        libc_kill(pid, sig);
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Live pids belonging to one run (`AGENTVISOR_RUN_ID=<run_id>` in their environment): safe to
/// assert on while other tests run agents of their own.
pub fn processes_of_run(run_id: &str) -> Vec<i32> {
    processes_with("environ", format!("AGENTVISOR_RUN_ID={run_id}").as_bytes())
}

/// Live pids whose `/proc/<pid>/<file>` (`environ`, `cmdline`: NUL-separated) holds `entry`.
pub fn processes_with(file: &str, entry: &[u8]) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            alive(*pid)
                && std::fs::read(format!("/proc/{pid}/{file}"))
                    .is_ok_and(|text| text.split(|b| *b == 0).any(|e| e == entry))
        })
        .collect()
}

/// Polls `probe` every `every` until it finds nothing or `limit` has passed; returns what it
/// found last (empty when everything went away in time). For waiting until processes are gone,
/// where a leftover is named in the failure rather than just timed out on.
pub async fn left_after<T>(limit: Duration, every: Duration, probe: impl Fn() -> Vec<T>) -> Vec<T> {
    let deadline = Instant::now() + limit;
    loop {
        let left = probe();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until no process of the run remains; returns the ones left after `limit`.
pub async fn run_leftovers(run_id: &str, limit: Duration) -> Vec<i32> {
    left_after(limit, Duration::from_millis(20), || {
        processes_of_run(run_id)
    })
    .await
}

// --- HTTP ------------------------------------------------------------------------------------

/// A minimal HTTP/1.1 GET; returns status and body.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    parse_http(&buf)
}

fn http_get_blocking(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    parse_http(&buf)
}

fn parse_http(buf: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(buf);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

// --- WebSocket -------------------------------------------------------------------------------

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client.
pub struct Client {
    ws: Ws,
    next_id: u64,
    /// Messages read while waiting for another.
    pending: std::collections::VecDeque<Value>,
}

/// How a read ended when it did not yield a message.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(u16),
    Eof,
}

/// What one read from the socket means to a test: a message, how the connection ended, or
/// `None` for a frame that is neither (ping, pong, binary) and is read past.
fn interpret(
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Option<Result<Value, Closed>> {
    match frame {
        Some(Ok(Message::Text(t))) => {
            Some(Ok(serde_json::from_str(&t).expect("server sends JSON")))
        }
        Some(Ok(Message::Close(frame))) => {
            Some(Err(frame.map_or(Closed::Code(1005), |f| {
                Closed::Code(u16::from(f.code))
            })))
        }
        Some(Ok(_)) => None,
        Some(Err(_)) | None => Some(Err(Closed::Eof)),
    }
}

impl Client {
    pub async fn connect(port: u16) -> Client {
        Self::connect_with(port, &[])
            .await
            .expect("websocket connect")
    }

    /// Connects with a small kernel receive buffer, so that a client that stops reading makes
    /// the server's outbound backlog grow after little data (a slow-consumer test).
    pub async fn connect_with_recv_buffer(port: u16, bytes: u32) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let stream = sock
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("tcp connect");
        let (ws, _) = tokio_tungstenite::client_async(
            format!("ws://127.0.0.1:{port}/ws"),
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        )
        .await
        .expect("websocket connect");
        Client {
            ws,
            next_id: 0,
            pending: Default::default(),
        }
    }

    pub async fn connect_with(port: u16, headers: &[(&str, &str)]) -> Result<Client, String> {
        let mut req = format!("ws://127.0.0.1:{port}/ws")
            .into_client_request()
            .unwrap();
        // A header given once replaces the default; a name given again is sent again (several
        // `X-Forwarded-For` headers, as a chain of proxies writes them).
        let mut given = std::collections::HashSet::new();
        for (k, v) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            if given.insert(name.clone()) {
                req.headers_mut().insert(name, v.parse().unwrap());
            } else {
                req.headers_mut().append(name, v.parse().unwrap());
            }
        }
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
            max_message_size: Some(256 << 20),
            max_frame_size: Some(256 << 20),
            ..Default::default()
        };
        let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Client {
            ws,
            next_id: 0,
            pending: Default::default(),
        })
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes)).await.expect("send");
    }

    /// Queues WebSocket ping frames (control frames, not the protocol's `ping` request) and
    /// sends them; returns how many were sent before the connection failed.
    pub async fn send_ws_pings(&mut self, count: usize, payload: &[u8]) -> usize {
        for i in 0..count {
            if self.ws.feed(Message::Ping(payload.to_vec())).await.is_err() {
                return i;
            }
        }
        if self.ws.flush().await.is_err() {
            return 0;
        }
        count
    }

    /// Reads up to the answer to request `id`; returns how many pongs came before it.
    pub async fn pongs_before(&mut self, id: &str) -> usize {
        let mut pongs = 0;
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {id} within {WAIT:?}"));
            match frame {
                Some(Ok(Message::Pong(_))) => pongs += 1,
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("JSON");
                    if v["id"] == id {
                        return pongs;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended while waiting for {id}: {other:?}"),
            }
        }
    }

    pub async fn send(&mut self, v: &Value) {
        self.send_text(v.to_string()).await;
    }

    /// Sends a ping and asserts the pong: the connection is open and served.
    pub async fn ping(&mut self) {
        let r = self.call("ping", json!({})).await;
        assert_eq!(r["type"], "pong", "{r}");
    }

    /// Sends a request with a fresh id; returns the id.
    pub async fn request(&mut self, kind: &str, data: Value) -> String {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        self.send(&json!({"type": kind, "id": id, "data": data}))
            .await;
        id
    }

    /// Sends a request and waits for the message that answers it (reply or error).
    pub async fn call(&mut self, kind: &str, data: Value) -> Value {
        let id = self.request(kind, data).await;
        self.recv_where(|m| m["id"] == id).await
    }

    /// The next message, whatever it is.
    pub async fn recv(&mut self) -> Value {
        match self.next_message(WAIT).await {
            Ok(v) => v,
            Err(c) => panic!("connection ended while waiting for a message: {c:?}"),
        }
    }

    /// The next message or how the connection ended.
    pub async fn next_message(&mut self, limit: Duration) -> Result<Value, Closed> {
        if let Some(v) = self.pending.pop_front() {
            return Ok(v);
        }
        self.read(limit).await
    }

    async fn read(&mut self, limit: Duration) -> Result<Value, Closed> {
        self.read_within(limit)
            .await
            .unwrap_or_else(|| panic!("no message within {limit:?}"))
    }

    /// The next message from the socket, how the connection ended, or `None` when nothing came
    /// within `limit`.
    async fn read_within(&mut self, limit: Duration) -> Option<Result<Value, Closed>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            if let Some(read) = interpret(frame) {
                return Some(read);
            }
        }
    }

    /// The next message, how the connection ended, or `None` when nothing came within `limit`.
    pub async fn try_next(&mut self, limit: Duration) -> Option<Result<Value, Closed>> {
        if let Some(v) = self.pending.pop_front() {
            return Some(Ok(v));
        }
        self.read_within(limit).await
    }

    /// Keeps reading (which answers the server's pings) for `limit`, keeping the messages for
    /// later reads; `Err` if the connection ended meanwhile.
    pub async fn stay(&mut self, limit: Duration) -> Result<(), Closed> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_within(left).await {
                None => return Ok(()),
                Some(Ok(v)) => self.pending.push_back(v),
                Some(Err(c)) => return Err(c),
            }
        }
    }

    /// Messages read but not yet consumed.
    pub fn pending(&self) -> &std::collections::VecDeque<Value> {
        &self.pending
    }

    /// The next text frame as it came, unparsed.
    pub async fn recv_raw(&mut self) -> String {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
            {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    /// The first message that satisfies `pred`; others are kept for later reads.
    pub async fn recv_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).unwrap();
        }
        loop {
            match self.read(WAIT).await {
                Ok(v) if pred(&v) => return v,
                Ok(v) => self.pending.push_back(v),
                Err(c) => panic!(
                    "connection ended while waiting: {c:?}; got so far: {:?}",
                    self.pending
                ),
            }
        }
    }

    /// The first message of type `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        self.recv_where(|m| m["type"] == kind).await
    }

    /// Waits for the server to close the connection and returns the close code.
    pub async fn closed(&mut self, limit: Duration) -> Closed {
        loop {
            match self.read(limit).await {
                Ok(_) => continue,
                Err(c) => return c,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    pub fn close_code(c: CloseCode) -> u16 {
        u16::from(c)
    }

    // --- requests every test file makes: each asserts the success reply, so that a test reads
    // as the steps it takes and a failure shows the reply that went wrong.

    /// Creates a project in `dir` and returns its id.
    pub async fn create_project(&mut self, dir: &Path) -> String {
        let p = self.create_project_with(json!({"path": dir})).await;
        p["id"].as_str().unwrap().to_string()
    }

    /// Creates a project from a full `project_create` request (`path`, `name`, `agent`);
    /// returns the created project.
    pub async fn create_project_with(&mut self, data: Value) -> Value {
        let r = self.call("project_create", data).await;
        assert_eq!(r["type"], "project_created", "{r}");
        r["data"]["project"].clone()
    }

    /// One project as `project_list` shows it.
    pub async fn project(&mut self, id: &str) -> Value {
        let r = self.call("project_list", json!({})).await;
        r["data"]["projects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("project {id} is not listed: {r}"))
    }

    /// Joins a project (live events only); returns the `project_joined` reply.
    pub async fn join(&mut self, project: &str) -> Value {
        self.join_with(json!({"project_id": project})).await
    }

    /// Joins a project with a replay of what was stored after `since_seq`; returns the
    /// `project_joined` reply.
    pub async fn join_since(&mut self, project: &str, since_seq: u64) -> Value {
        self.join_with(json!({"project_id": project, "since_seq": since_seq}))
            .await
    }

    async fn join_with(&mut self, data: Value) -> Value {
        let r = self.call("project_join", data).await;
        assert_eq!(r["type"], "project_joined", "{r}");
        r
    }

    /// Sends `execute`; returns the accepted run's id.
    pub async fn execute(&mut self, project: &str, prompt: &str) -> String {
        let r = self
            .call("execute", json!({"project_id": project, "prompt": prompt}))
            .await;
        assert_eq!(r["type"], "execute_accepted", "{r}");
        r["data"]["run_id"].as_str().unwrap().to_string()
    }

    /// Starts `prompt` and returns the run id once the agent has printed its first line (its
    /// processes exist then).
    pub async fn start_run(&mut self, project: &str, prompt: &str) -> String {
        let run = self.execute(project, prompt).await;
        self.recv_where(|m| m["type"] == "agent_message" && m["data"]["run_id"] == run.as_str())
            .await;
        run
    }

    /// Waits for the `run_finished` of `run_id`.
    pub async fn finished(&mut self, run_id: &str) -> Value {
        self.recv_where(|m| m["type"] == "run_finished" && m["data"]["run_id"] == run_id)
            .await
    }

    /// Runs `prompt` to its end; returns its `run_finished`.
    pub async fn run(&mut self, project: &str, prompt: &str) -> Value {
        let run = self.execute(project, prompt).await;
        self.finished(&run).await
    }

    /// Waits for a `project_state` message with `state` (`IDLE`, `EXECUTING`, `ERROR`).
    pub async fn project_state(&mut self, state: &str) -> Value {
        self.recv_where(|m| m["type"] == "project_state" && m["data"]["state"] == state)
            .await
    }

    /// Polls `health_check` until `pred` holds for its reply (for what the daemon learns or
    /// starts after it is ready: agent probes, a new project's actor); returns that reply.
    pub async fn health_when(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = self.call("health_check", json!({})).await;
            assert_eq!(r["type"], "health", "{r}");
            if pred(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "no {what} in health_check: {r}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends `agent_kill` for the project's run; returns the `agent_killed` reply.
    pub async fn kill(&mut self, project: &str) -> Value {
        let r = self
            .call("agent_kill", json!({"project_id": project}))
            .await;
        assert_eq!(r["type"], "agent_killed", "{r}");
        r
    }

    /// The stored records of a project that `get_messages` returns for `query` (`direction`,
    /// `since_seq`, `limit`, …).
    pub async fn messages(&mut self, project: &str, mut query: Value) -> Vec<Value> {
        query["project_id"] = json!(project);
        let r = self.call("get_messages", query).await;
        assert_eq!(r["type"], "messages", "{r}");
        r["data"]["messages"].as_array().unwrap().clone()
    }

    /// Every stored record that `query` matches, newest pages first, following each page's
    /// `before_seq` (a page the daemon cut at its scan budget may hold none of them); returned
    /// in chronological order.
    pub async fn messages_all(&mut self, project: &str, query: Value) -> Vec<Value> {
        let (mut all, mut q) = (Vec::new(), query.clone());
        for _ in 0..10_000 {
            q["project_id"] = json!(project);
            let r = self.call("get_messages", q.clone()).await;
            assert_eq!(r["type"], "messages", "{r}");
            let page = r["data"]["messages"].as_array().unwrap().clone();
            all.splice(0..0, page);
            match r["data"]["before_seq"].as_u64() {
                Some(n) if r["data"]["has_more"] == true => {
                    q = query.clone();
                    q["before_seq"] = json!(n);
                }
                _ => return all,
            }
        }
        panic!("paging back through {project}'s history never ended");
    }
}

// --- assertions shared by test files ---------------------------------------------------------

/// Every field of a project object, as `project_create`, `project_list` and `project_join` show it.
pub const PROJECT_FIELDS: [&str; 11] = [
    "id",
    "path",
    "name",
    "state",
    "session_id",
    "created_at",
    "last_active",
    "subscribers",
    "last_seq",
    "queue_len",
    "agent",
];

/// Asserts that what a project is and has stored is the same in two of its views, taken on
/// either side of a restart (`what`): every field but the live counters (`subscribers`,
/// `queue_len`) and `last_active` (a test that needs that one unchanged compares it itself).
pub fn assert_project_kept(before: &Value, after: &Value, what: &str) {
    let live = ["subscribers", "queue_len", "last_active"];
    for f in PROJECT_FIELDS.iter().filter(|f| !live.contains(f)) {
        assert_eq!(after[f], before[f], "'{f}' changed across {what}");
    }
}
