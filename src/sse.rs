//! `GET /projects/{id}/events`: one project's events as Server-Sent Events, for scripts and
//! watchers that do not speak WebSocket (`curl -N` works).
//!
//! Each stream is a small actor subscribed to the project like a WebSocket connection: it joins
//! through the project's own join-with-replay path, so the replay from `Last-Event-ID` (or
//! `?since_seq`) and the live events that follow have no gap and no duplicate. The actor writes
//! encoded events into a queue bounded in bytes; a reader that falls behind by more than
//! `AGENTVISOR_MAX_BACKLOG_BYTES` is cut off, exactly like a slow WebSocket client.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use agentvisor_actors::api::cluster::Cluster;
use agentvisor_actors::api::project::{Join, ProjectHandle};
use agentvisor_actors::auth::token_matches;
use agentvisor_actors::broadcast::Disconnect;
use agentvisor_actors::connection::{ConnectionPermit, ConnectionSignal, Deliver, Mark, ReplyTo};
use agentvisor_actors::directory::ProjectRoute;
use agentvisor_actors::engine::{Engine, Lifecycle};
use agentvisor_actors::error::{ApiError, Code};
use agentvisor_actors::metrics::METRICS;
use agentvisor_actors::protocol::{Frame, Request};
use tokio::sync::mpsc;

use crate::http::{bearer_token, client_ip, origin_allowed, token_in_url, AppState};

/// The handler of `GET /projects/{id}/events`.
pub async fn events(
    req: HttpRequest,
    project: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let engine = state.engine.clone();
    let ip = client_ip(&req, &engine.config);
    if let Err(denied) = admit(&req, &engine, ip) {
        return denied.response(ip);
    }
    let since_seq = match cursor(&req) {
        Ok(s) => s,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e),
    };
    let project = project.into_inner();
    let owner = match engine.directory.route(&project) {
        ProjectRoute::Up(addr) => Owner::Here(Box::new(addr)),
        ProjectRoute::Missing if engine.cluster().is_some_and(|c| c.owns_elsewhere(&project)) => {
            Owner::Elsewhere
        }
        ProjectRoute::Missing => {
            return error_response(
                StatusCode::NOT_FOUND,
                &ApiError::project_not_found(&project),
            )
        }
        ProjectRoute::Down(why) => {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, &ApiError::internal(why))
        }
        ProjectRoute::Restarting => {
            let e = ApiError::retryable(format!(
                "project {project} is restarting after a crash; try again shortly"
            ));
            return error_response(StatusCode::SERVICE_UNAVAILABLE, &e);
        }
    };
    let permit = match engine.limiter.try_acquire(ip) {
        Ok(p) => p,
        Err(r) => {
            METRICS.refused(r.label());
            let e = ApiError::new(Code::RateLimited, r.reason());
            return error_response(StatusCode::SERVICE_UNAVAILABLE, &e);
        }
    };
    let (queue, body) = queue(engine.config.max_backlog_bytes);
    SseStream::open(
        engine,
        owner,
        &project,
        since_seq,
        queue,
        state.sse_heartbeat,
        permit,
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        // Tells nginx not to buffer this response even where buffering is on.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// Why a stream is refused before it starts.
struct Denied {
    status: StatusCode,
    code: Code,
    why: &'static str,
    metric: &'static str,
}

impl Denied {
    fn response(self, ip: IpAddr) -> HttpResponse {
        METRICS.refused(self.metric);
        log::info!(peer = ip.to_string().as_str(); "refusing an event stream: {}", self.why);
        let mut r = error_response(self.status, &ApiError::new(self.code, self.why));
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// The same admission rules as the WebSocket: the origin, the bearer token (only in the
/// header: a stream has no auth message), the failed-authentication throttle, the lifecycle.
fn admit(req: &HttpRequest, engine: &Engine, ip: IpAddr) -> Result<(), Denied> {
    let cfg = &engine.config;
    let deny = |status, code, why, metric| {
        Err(Denied {
            status,
            code,
            why,
            metric,
        })
    };
    if engine.lifecycle() == Lifecycle::ShuttingDown {
        return deny(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::InternalError,
            "server shutting down",
            "shutting_down",
        );
    }
    if !origin_allowed(req, &cfg.allowed_origins, cfg.token.is_some()) {
        return deny(
            StatusCode::FORBIDDEN,
            Code::Unauthorized,
            "origin not allowed",
            "origin",
        );
    }
    if token_in_url(req) {
        return deny(
            StatusCode::BAD_REQUEST,
            Code::Unauthorized,
            "tokens are not accepted in the URL; use the Authorization header",
            "token_in_url",
        );
    }
    let Some(expected) = &cfg.token else {
        return Ok(());
    };
    if engine.auth_throttle.is_blocked(ip) {
        return deny(
            StatusCode::TOO_MANY_REQUESTS,
            Code::Unauthorized,
            "too many failed authentications; try later",
            "auth_throttled",
        );
    }
    match bearer_token(req) {
        Some(t) if token_matches(t, expected) => Ok(()),
        given => {
            if given.is_some() {
                engine.auth_throttle.record_failure(ip);
            }
            deny(
                StatusCode::UNAUTHORIZED,
                Code::Unauthorized,
                "authentication required: send Authorization: Bearer <token>",
                "auth",
            )
        }
    }
}

/// Where the replay starts: `Last-Event-ID` (what a reconnecting `EventSource` sends), else
/// `?since_seq=N`; neither means live events only.
fn cursor(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let bad = |what: &str| ApiError::validation(format!("{what} must be a non-negative integer"));
    if let Some(v) = req.headers().get("last-event-id") {
        let v = v.to_str().map_err(|_| bad("Last-Event-ID"))?.trim();
        return v.parse().map(Some).map_err(|_| bad("Last-Event-ID"));
    }
    let mut query = req.query_string().split('&');
    match query.find_map(|kv| kv.strip_prefix("since_seq=")) {
        Some(v) => v.parse().map(Some).map_err(|_| bad("since_seq")),
        None => Ok(None),
    }
}

/// An HTTP error with the same body as the WebSocket's `error` data.
fn error_response(status: StatusCode, e: &ApiError) -> HttpResponse {
    HttpResponse::build(status).json(e)
}

// --- the stream's queue -------------------------------------------------------------------------

/// What the actor and the response body share.
struct Shared {
    /// Bytes queued and not yet taken by the HTTP layer.
    backlog: AtomicUsize,
    /// The reader was cut off: drop what is queued and end the response.
    cut: AtomicBool,
}

/// The actor's end of the queue, bounded in bytes.
struct Queue {
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
    max_backlog: usize,
}

/// Why a chunk was not queued.
enum Refused {
    /// The reader is gone.
    Gone,
    /// The reader is more than the backlog bound behind.
    Behind,
}

impl Queue {
    fn push(&self, chunks: &[Bytes]) -> Result<(), Refused> {
        let len: usize = chunks.iter().map(Bytes::len).sum();
        let before = self.shared.backlog.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.max_backlog {
            self.shared.cut.store(true, Ordering::Release);
            return Err(Refused::Behind);
        }
        for c in chunks {
            self.tx.send(c.clone()).map_err(|_| Refused::Gone)?;
        }
        Ok(())
    }
}

/// A queue and the response body that drains it. The HTTP layer polls the body only while its
/// write buffer has room, so an unread stream leaves its bytes counted here.
fn queue(
    max_backlog: usize,
) -> (
    Queue,
    impl futures_util::Stream<Item = Result<Bytes, Infallible>>,
) {
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let shared = Arc::new(Shared {
        backlog: AtomicUsize::new(0),
        cut: AtomicBool::new(false),
    });
    let body = futures_util::stream::unfold((rx, shared.clone()), |(mut rx, shared)| async move {
        if shared.cut.load(Ordering::Acquire) {
            return None;
        }
        let chunk = rx.recv().await?;
        if shared.cut.load(Ordering::Acquire) {
            return None;
        }
        shared.backlog.fetch_sub(chunk.len(), Ordering::AcqRel);
        Some((Ok(chunk), (rx, shared)))
    });
    (
        Queue {
            tx,
            shared,
            max_backlog,
        },
        body,
    )
}

// --- the stream's actor -------------------------------------------------------------------------

/// Where the stream's project runs: in this daemon, or on another node of its cluster (whose
/// events the cluster brings here, docs/scaling.md).
enum Owner {
    /// Boxed: a handle holds one recipient per message the project accepts.
    Here(Box<ProjectHandle>),
    Elsewhere,
}

/// One open event stream, subscribed to one project.
struct SseStream {
    conn: u64,
    engine: Arc<Engine>,
    project: Arc<str>,
    /// The last seq sent; `None` until the join reply arrives.
    last: Option<u64>,
    queue: Queue,
    heartbeat: Duration,
    _permit: ConnectionPermit,
}

impl Actor for SseStream {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Registered like a connection: it is counted, rejoined after a broadcast restart and
        // ended at shutdown.
        let me = ctx.address().recipient();
        self.engine.directory.add_connection(self.conn, me);
        log::info!(conn = self.conn, project = &*self.project; "event stream opened");
        ctx.run_interval(self.heartbeat, |act, ctx| {
            act.send(&[Bytes::from_static(b": keepalive\n\n")], ctx)
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.engine.directory.remove_connection(self.conn);
        if let Some(b) = self.engine.directory.broadcast() {
            b.do_send(Disconnect(self.conn));
        }
        log::info!(conn = self.conn; "event stream closed");
    }
}

impl SseStream {
    /// Starts the stream's actor and asks the project to join it, replaying after `since_seq`.
    fn open(
        engine: Arc<Engine>,
        owner: Owner,
        project: &str,
        since_seq: Option<u64>,
        queue: Queue,
        heartbeat: Duration,
        permit: ConnectionPermit,
    ) {
        let conn = engine.directory.next_connection_id();
        let cluster = engine.cluster().cloned();
        let stream = SseStream {
            conn,
            engine,
            project: Arc::from(project),
            last: None,
            queue,
            heartbeat,
            _permit: permit,
        }
        .start();
        match (owner, cluster) {
            (Owner::Here(addr), _) => join(&addr, conn, stream.recipient(), since_seq),
            (Owner::Elsewhere, Some(cluster)) => {
                join_elsewhere(&*cluster, project, conn, stream.recipient(), since_seq)
            }
            (Owner::Elsewhere, None) => {}
        }
    }

    fn send(&mut self, chunks: &[Bytes], ctx: &mut Context<Self>) {
        match self.queue.push(chunks) {
            Ok(()) => {}
            Err(Refused::Gone) => ctx.stop(),
            Err(Refused::Behind) => {
                METRICS.slow_clients.inc();
                log::warn!(
                    conn = self.conn;
                    "closing a slow event stream: its unsent backlog passed {} bytes",
                    self.queue.max_backlog
                );
                ctx.stop();
            }
        }
    }

    /// Sends a frame unless it is a stored event this stream has already sent.
    fn forward(&mut self, frame: &Frame, ctx: &mut Context<Self>) {
        if let (Some(seq), Some(last)) = (frame.seq, self.last.as_mut()) {
            if seq <= *last {
                return;
            }
            *last = seq;
        }
        self.send(&encode(frame), ctx);
    }
}

impl Handler<Deliver> for SseStream {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let joined = self.last.is_some();
        match msg.mark() {
            Mark::Joined { since, .. } => self.last = Some(*since),
            Mark::Left(_) | Mark::None => {}
        }
        for frame in msg.frames() {
            self.forward(frame, ctx);
        }
        // Deleted, or the join itself failed (the error was just sent): nothing more will come.
        let failed_join = !joined && self.last.is_none();
        if matches!(msg.mark(), Mark::Left(_)) || failed_join {
            ctx.stop();
        }
    }
}

impl Handler<ConnectionSignal> for SseStream {
    type Result = ();

    fn handle(&mut self, msg: ConnectionSignal, ctx: &mut Self::Context) {
        match msg {
            // `server_stats` is not about this project.
            ConnectionSignal::Push(_) => {}
            ConnectionSignal::Rejoin => {
                if let ProjectRoute::Up(addr) = self.engine.directory.route(&self.project) {
                    join(&addr, self.conn, ctx.address().recipient(), self.last);
                }
            }
            ConnectionSignal::Shutdown => ctx.stop(),
        }
    }
}

/// Asks the project to (re)subscribe stream `conn`, replaying what came after `since_seq`.
fn join(addr: &ProjectHandle, conn: u64, recipient: Recipient<Deliver>, since_seq: Option<u64>) {
    addr.do_send(Join {
        reply: ReplyTo::new(conn, recipient, None),
        since_seq,
    });
}

/// Joins stream `conn` to another node's project through the cluster, as a client's
/// `project_join` would be.
fn join_elsewhere(
    cluster: &dyn Cluster,
    project: &str,
    conn: u64,
    recipient: Recipient<Deliver>,
    since_seq: Option<u64>,
) {
    let request = Request::ProjectJoin {
        project_id: project.to_string(),
        since_seq,
    };
    let mut text = serde_json::json!({"type": "project_join", "project_id": project});
    if let Some(since) = since_seq {
        text["data"] = serde_json::json!({ "since_seq": since });
    }
    let reply = ReplyTo::new(conn, recipient, None);
    // Not taken: the project is no longer another node's.
    if let Some(reply) = cluster.route(&request, &text.to_string(), reply) {
        let p: Arc<str> = Arc::from(project);
        reply.err(Some(&p), &ApiError::project_not_found(project));
    }
}

/// One frame as an event: `id:` its seq (stored events only), `event:` its type, `data:` the
/// JSON text exactly as the WebSocket carries it. The text is shared, not copied.
fn encode(frame: &Frame) -> [Bytes; 3] {
    let mut head = String::with_capacity(48);
    if let Some(seq) = frame.seq {
        head.push_str(&format!("id: {seq}\n"));
    }
    head.push_str(&format!("event: {}\ndata: ", event_type(&frame.text)));
    // Encoded JSON never holds a raw line break, so the text is one `data:` line.
    debug_assert!(!frame.text.contains('\n'));
    [
        Bytes::from(head),
        frame.text.as_bytes().clone(),
        Bytes::from_static(b"\n\n"),
    ]
}

/// The message's `type`, which the encoder always writes first; anything unexpected is named
/// `message` (the SSE default) rather than risk a line break in the field.
fn event_type(text: &str) -> &str {
    text.strip_prefix(r#"{"type":""#)
        .and_then(|rest| rest.split_once('"'))
        .map(|(kind, _)| kind)
        .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .unwrap_or("message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_type_comes_from_the_envelope() {
        assert_eq!(
            event_type(r#"{"type":"agent_message","seq":1}"#),
            "agent_message"
        );
        assert_eq!(event_type(r#"{"type":"a\nb"}"#), "message");
        assert_eq!(event_type(r#"{"seq":1,"type":"x"}"#), "message");
        assert_eq!(event_type(r#"{"type":""}"#), "message");
    }
}
