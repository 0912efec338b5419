//! The floor: a minimal WebSocket broadcast server on the daemon's own stack (actix-web +
//! actix-ws, the same worker count), with no features at all — no history, no actors, no
//! per-connection bookkeeping, no JSON parsing. It runs the mock agent, reads its stdout, wraps
//! each line in an envelope of the same shape and size as the daemon's `agent_message`, and
//! hands the same reference-counted bytes to every connection through one broadcast channel.
//! What it reaches is what the stack allows on this machine; the daemon's fan-out is reported
//! as a ratio to it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytestring::ByteString;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{err, Res};

/// The name of the floor's main thread (its CPU time is reported with the workers').
pub const THREAD: &str = "floor-server";

struct State {
    tx: broadcast::Sender<ByteString>,
    subs: Arc<AtomicUsize>,
}

/// Run the mock agent with this prompt and broadcast its lines.
struct Feed {
    mock: PathBuf,
    cwd: PathBuf,
    prompt: String,
    done: oneshot::Sender<Res<u64>>,
}

enum Cmd {
    Feed(Feed),
    Stop,
}

/// A running floor server.
pub struct Floor {
    pub port: u16,
    subs: Arc<AtomicUsize>,
    cmd: mpsc::UnboundedSender<Cmd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Floor {
    /// Starts the server with `workers` HTTP workers; `capacity` must exceed the lines of one
    /// feed (the broadcast ring never laps a reader then).
    pub fn start(workers: usize, capacity: usize) -> Res<Floor> {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let subs = Arc::new(AtomicUsize::new(0));
        let subs2 = subs.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || {
                let r = actix_rt::System::new().block_on(serve(
                    workers,
                    capacity,
                    subs2,
                    cmd_rx,
                    port_tx.clone(),
                ));
                if let Err(e) = r {
                    let _ = port_tx.send(Err(e.to_string()));
                }
            })?;
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| err("the floor server did not start"))?
            .map_err(err)?;
        Ok(Floor {
            port,
            subs,
            cmd: cmd_tx,
            thread: Some(thread),
        })
    }

    /// Connections currently open.
    pub fn subscribers(&self) -> usize {
        self.subs.load(Ordering::Acquire)
    }

    /// Starts a feed; the receiver yields the number of lines sent once the agent has exited.
    pub fn feed(&self, mock: PathBuf, cwd: PathBuf, prompt: String) -> oneshot::Receiver<Res<u64>> {
        let (done, rx) = oneshot::channel();
        let _ = self.cmd.send(Cmd::Feed(Feed {
            mock,
            cwd,
            prompt,
            done,
        }));
        rx
    }

    /// CPU seconds used by the floor's threads so far.
    pub fn cpu_s() -> f64 {
        crate::daemon::threads_cpu_s(&[THREAD, "actix"])
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    workers: usize,
    capacity: usize,
    subs: Arc<AtomicUsize>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    port_tx: std::sync::mpsc::Sender<Result<u16, String>>,
) -> Res<()> {
    let (tx, _) = broadcast::channel::<ByteString>(capacity.max(16));
    let state = web::Data::new(State {
        tx: tx.clone(),
        subs,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/ws", web::get().to(ws))
    })
    .workers(workers)
    // Small frames go out at once; the daemon leaves Nagle's algorithm on (see
    // docs/benchmarks.md), the floor shows what the stack allows.
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(("127.0.0.1", 0))?;
    let port = server
        .addrs()
        .first()
        .map(|a| a.port())
        .ok_or_else(|| err("the floor server has no address"))?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let _ = port_tx.send(Ok(port));
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            Cmd::Feed(f) => {
                let r = feed(&f, &tx).await;
                let _ = f.done.send(r);
            }
            Cmd::Stop => break,
        }
    }
    handle.stop(false).await;
    Ok(())
}

/// One WebSocket: forward every broadcast frame; answer pings; stop on close.
async fn ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<State>,
) -> actix_web::Result<HttpResponse> {
    let (resp, mut session, mut stream) = actix_ws::handle(&req, body)?;
    let mut rx = state.tx.subscribe();
    let subs = state.subs.clone();
    subs.fetch_add(1, Ordering::AcqRel);
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Ok(text) => {
                        if session.text(text).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                m = stream.next() => match m {
                    Some(Ok(actix_ws::Message::Ping(p))) => {
                        if session.pong(&p).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(actix_ws::Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        subs.fetch_sub(1, Ordering::AcqRel);
        let _ = session.close(None).await;
    });
    Ok(resp)
}

/// Runs the mock agent (the same command line the daemon uses) and broadcasts each stdout line
/// in an `agent_message`-shaped envelope; then `{"type":"end"}`.
async fn feed(f: &Feed, tx: &broadcast::Sender<ByteString>) -> Res<u64> {
    let mut child = tokio::process::Command::new(&f.mock)
        .args(["-p", "--output-format", "stream-json", "--verbose", "--"])
        .arg(&f.prompt)
        .current_dir(&f.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| err("the mock agent has no stdout"))?;
    let mut reader = BufReader::with_capacity(64 << 10, stdout);
    let mut line = String::new();
    let mut seq = 0u64;
    // The same envelope fields and sizes as the daemon's (ids are 36-character UUIDs, the
    // timestamp 24 characters), without building it through serde.
    const PROJECT: &str = "00000000-0000-4000-8000-000000000001";
    const RUN: &str = "00000000-0000-4000-8000-000000000002";
    const TS: &str = "2026-11-21T10:00:00.000Z";
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            continue;
        }
        seq += 1;
        let frame = format!(
            "{{\"type\":\"agent_message\",\"project_id\":\"{PROJECT}\",\"seq\":{seq},\"ts\":\"{TS}\",\"direction\":\"agent\",\"data\":{{\"run_id\":\"{RUN}\",\"message\":{l}}}}}"
        );
        let _ = tx.send(ByteString::from(frame));
    }
    child.wait().await?;
    let _ = tx.send(ByteString::from_static("{\"type\":\"end\"}"));
    Ok(seq)
}
