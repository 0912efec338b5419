//! The connection actor: one per WebSocket.
//!
//! It decodes each frame into a typed request and routes it to the actor that owns it (a
//! project, the registry) together with a [`ReplyTo`], so replies go straight back without
//! passing through here twice. It keeps the connection's own state: authentication, rate,
//! heartbeat, the last seq seen per project (which drops duplicates between replay and live
//! events), and a bounded outbound queue.

mod outbox;
mod route;

pub use crate::api::connection::{ConnectionSignal, Deliver, Mark, ReplyTo};
pub use crate::limits::{client_addr, ConnectionLimiter, ConnectionPermit, RateLimiter, Refusal};
pub use outbox::close_reason;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::error::PayloadError;
use actix_ws::{AggregatedMessage, ProtocolError, Session};

use crate::api::supervisor::{ChildGuard, ChildId, SupervisorHandle};
use crate::directory::ProjectRoute;
use crate::engine::Engine;
use crate::protocol::frame::error_frame;
use crate::protocol::{decode, Frame};
use outbox::Outbox;

/// The largest first message of a client that has not authenticated (an `auth` message is far
/// smaller): anything bigger is closed with 1008 without being parsed.
const MAX_AUTH_MESSAGE_BYTES: usize = 4096;

/// What the HTTP layer hands over when a WebSocket opens.
pub struct Accepted {
    pub engine: Arc<Engine>,
    pub supervisor: Option<SupervisorHandle>,
    pub session: Session,
    pub stream: actix_ws::MessageStream,
    pub peer: IpAddr,
    pub authenticated: bool,
    /// Set when the client authenticated with a run's consult capability instead of the
    /// daemon's token: it may then only consult (see [`crate::capability`]).
    pub capability: Option<String>,
    pub permit: ConnectionPermit,
    /// The place under the unauthenticated cap, held until the client authenticates.
    pub pending_auth: Option<ConnectionPermit>,
}

pub struct ConnectionActor {
    id: u64,
    engine: Arc<Engine>,
    peer: IpAddr,
    outbox: Outbox,
    writer: Option<actix_rt::task::JoinHandle<()>>,
    authenticated: bool,
    capability: Option<String>,
    rate: RateLimiter,
    last_seen: Instant,
    last_ping: Instant,
    /// The last seq delivered per subscribed project.
    seen: HashMap<Arc<str>, u64>,
    supervisor: Option<SupervisorHandle>,
    _permit: ConnectionPermit,
    pending_auth: Option<ConnectionPermit>,
    _guard: ChildGuard,
}

impl ConnectionActor {
    /// Starts the actor for an accepted WebSocket on the current arbiter.
    pub fn start(a: Accepted) -> Addr<ConnectionActor> {
        let max = a.engine.config.max_message_bytes;
        let stream = a
            .stream
            .max_frame_size(max)
            .aggregate_continuations()
            .max_continuation_size(max);
        ConnectionActor::create(move |ctx| {
            ctx.add_stream(stream);
            let (outbox, writer) = Outbox::start(a.session, a.engine.config.max_backlog_bytes);
            let now = Instant::now();
            // Registered now, before the 101 answer leaves, not in `started` (a later poll): a
            // shutdown that begins once the client holds its 101 must find the connection, to
            // close it with 1001 rather than drop it.
            let id = a.engine.directory.next_connection_id();
            a.engine
                .directory
                .add_connection(id, ctx.address().recipient());
            ConnectionActor {
                id,
                rate: RateLimiter::new(a.engine.config.rate_limit),
                engine: a.engine,
                peer: a.peer,
                outbox,
                writer: Some(writer),
                authenticated: a.authenticated,
                capability: a.capability,
                last_seen: now,
                last_ping: now,
                seen: HashMap::new(),
                _permit: a.permit,
                pending_auth: a.pending_auth,
                _guard: ChildGuard::new(ChildId::Connection, a.supervisor.clone()),
                supervisor: a.supervisor,
            }
        })
    }

    /// Queues a frame, closing the connection with 4008 if the client has fallen too far behind.
    fn send(&mut self, frame: &Frame, ctx: &mut Context<Self>) {
        self.engine
            .stats
            .messages_out
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::METRICS.bytes_out.inc_by(frame.len() as u64);
        let queued = self.outbox.text(frame.text.clone());
        self.check_backlog(queued, ctx);
    }

    /// Closes the connection with 4008 when a frame did not fit under the backlog bound.
    fn check_backlog(&mut self, queued: Result<(), outbox::Overflow>, ctx: &mut Context<Self>) {
        if queued.is_err() {
            crate::metrics::METRICS.slow_clients.inc();
            log::warn!(
                conn = self.id, peer = self.peer.to_string().as_str(), backlog = self.outbox.backlog();
                "closing a slow client: its unsent backlog passed {} bytes",
                self.engine.config.max_backlog_bytes
            );
            self.outbox
                .abort(4008, "slow consumer: reconnect and replay with since_seq");
            ctx.stop();
        }
    }

    fn close(&mut self, code: u16, reason: &str, ctx: &mut Context<Self>) {
        log::info!(conn = self.id; "closing connection: {code} {reason}");
        self.outbox.close(code, reason);
        ctx.stop();
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let cfg = &self.engine.config;
        let tick = (cfg.ping_interval.min(cfg.pong_timeout) / 4).max(Duration::from_millis(10));
        ctx.run_interval(tick, |act, ctx| {
            let now = Instant::now();
            let cfg = &act.engine.config;
            if now.duration_since(act.last_seen) > cfg.ping_interval + cfg.pong_timeout {
                act.close(4000, "heartbeat timeout", ctx);
                return;
            }
            if now.duration_since(act.last_ping) >= cfg.ping_interval {
                act.last_ping = now;
                let queued = act.outbox.ping();
                act.check_backlog(queued, ctx);
            }
        });
    }

    /// Answers a client's ping, unless the client is over its message rate (pings count like
    /// messages) or has not authenticated (then nothing but `auth` does any work).
    fn on_ping(&mut self, payload: bytes::Bytes, ctx: &mut Context<Self>) {
        if self.authenticated && self.rate.allow(Instant::now()) {
            let queued = self.outbox.pong(payload);
            self.check_backlog(queued, ctx);
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        if !self.authenticated && text.len() > MAX_AUTH_MESSAGE_BYTES {
            self.close(1008, "authentication required", ctx);
            return;
        }
        self.engine
            .stats
            .messages_in
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::METRICS.bytes_in.inc_by(text.len() as u64);
        if !self.rate.allow(Instant::now()) {
            let err = crate::error::ApiError::new(
                crate::error::Code::RateLimited,
                format!(
                    "too many messages: at most {} per second (bursts of {})",
                    self.engine.config.rate_limit,
                    self.engine.config.rate_limit * 2
                ),
            );
            // Echo the request id, so a client waiting for this request's answer gets one.
            let id = crate::protocol::request::peek_id(text);
            self.send(&error_frame(id.as_deref(), None, &err), ctx);
            return;
        }
        match decode(text, self.engine.config.fault_injection) {
            Ok(inbound) => {
                crate::metrics::METRICS.message_in(inbound.request.kind());
                if !self.authenticated {
                    self.authenticate(inbound, ctx);
                } else {
                    self.route(inbound, text, ctx);
                }
            }
            Err(e) => {
                if !self.authenticated {
                    self.close(1008, "authentication required", ctx);
                    return;
                }
                let project: Option<Arc<str>> = e.project_id.as_deref().map(Arc::from);
                self.send(
                    &error_frame(e.id.as_deref(), project.as_ref(), &e.error),
                    ctx,
                );
            }
        }
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        log::info!(conn = self.id, peer = self.peer.to_string().as_str(); "connection opened");
        self.heartbeat(ctx);
        if !self.authenticated {
            ctx.run_later(self.engine.config.auth_timeout, |act, ctx| {
                if !act.authenticated {
                    act.engine.auth_throttle.record_failure(act.peer);
                    act.close(1008, "authentication required", ctx);
                }
            });
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // A connection ends whenever its client goes away: that is no crash. A panic still is
        // one: actix runs `stopped` during the unwind too, and the guard checks for that first.
        self._guard.stop_expected();
        self.engine.directory.remove_connection(self.id);
        if let Some(b) = self.engine.directory.broadcast() {
            b.do_send(crate::api::broadcast::Disconnect(self.id));
        }
        // A client that never reads would keep the writer waiting forever. It gets as long as
        // the heartbeat allows a silent client (the pong timeout) to take its close frame —
        // its queue is already emptied, so only the socket is held — then the socket is dropped.
        if let Some(writer) = self.writer.take() {
            let linger = self.engine.config.pong_timeout;
            actix_rt::spawn(async move {
                actix_rt::time::sleep(linger).await;
                writer.abort();
            });
        }
        log::info!(conn = self.id; "connection closed");
    }
}

/// Whether the socket ended without a close frame: a client that exits, crashes or loses its
/// network does that, and it is no protocol error of its.
fn went_away(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<PayloadError>()),
        Some(PayloadError::Incomplete(_))
    )
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for ConnectionActor {
    fn handle(&mut self, msg: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match msg {
            Ok(AggregatedMessage::Text(text)) => self.on_text(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) if !self.authenticated => {
                self.close(1008, "authentication required", ctx)
            }
            Ok(AggregatedMessage::Binary(_)) => {
                let err = crate::error::ApiError::new(
                    crate::error::Code::InvalidMessage,
                    "binary frames are not accepted: send JSON in text frames",
                );
                self.send(&error_frame(None, None, &err), ctx);
            }
            Ok(AggregatedMessage::Ping(p)) => self.on_ping(p, ctx),
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => self.close(1000, "", ctx),
            Err(ProtocolError::Overflow) => self.close(1009, "message too big", ctx),
            Err(ProtocolError::Io(e)) if e.to_string().contains("maximum continuation size") => {
                self.close(1009, "message too big", ctx)
            }
            Err(ProtocolError::Io(e)) if went_away(&e) => {
                self.close(1001, "the client went away without a close frame", ctx)
            }
            Err(e) => {
                log::info!(conn = self.id; "protocol error: {e}");
                self.close(1002, "protocol error", ctx)
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Deliver> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        match msg.mark() {
            Mark::None => {}
            Mark::Joined { project, since } => {
                self.seen.insert(project.clone(), *since);
            }
            Mark::Left(project) => {
                self.seen.remove(project);
            }
        }
        for frame in msg.frames() {
            if let (Some(project), Some(seq)) = (&frame.project, frame.seq) {
                match self.seen.get_mut(project) {
                    Some(last) if seq <= *last => continue, // already delivered
                    Some(last) => *last = seq,
                    None => {
                        self.seen.insert(project.clone(), seq);
                    }
                }
            }
            self.send(frame, ctx);
            if self.outbox.is_closed() {
                return;
            }
        }
    }
}

impl Handler<ConnectionSignal> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: ConnectionSignal, ctx: &mut Self::Context) {
        match msg {
            ConnectionSignal::Push(frame) => {
                if self.authenticated {
                    self.send(&frame, ctx);
                }
            }
            ConnectionSignal::Shutdown => self.close(1001, "server shutting down", ctx),
            ConnectionSignal::Rejoin => {
                // Only this daemon's projects: another node's reach the connection through the
                // cluster, which the broadcast actor's restart did not touch.
                let directory = &self.engine.directory;
                let projects: Vec<_> = self
                    .seen
                    .iter()
                    .filter(|(p, _)| !matches!(directory.route(p), ProjectRoute::Missing))
                    .map(|(p, s)| (p.clone(), *s))
                    .collect();
                for (project, since) in projects {
                    self.rejoin(project, since, ctx);
                }
            }
        }
    }
}
