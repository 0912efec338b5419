//! HTTP routes: `/ws` (the WebSocket upgrade), `/health`, `/ready`, `/metrics`, and the event
//! streams of [`crate::sse`].

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use agentvisor_actors::auth::{bearer, token_matches};
use agentvisor_actors::config::EngineConfig;
use agentvisor_actors::connection::{
    client_addr, close_reason, Accepted, ConnectionActor, ConnectionPermit, Refusal as LimitRefusal,
};
use agentvisor_actors::engine::{Engine, Lifecycle};
use agentvisor_actors::metrics::METRICS;
use agentvisor_actors::supervisor::{Supervisor, SupervisorHandle};

/// What every route can see.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub supervisor: Addr<Supervisor>,
    /// How often an idle event stream gets a comment line.
    pub sse_heartbeat: std::time::Duration,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(ws))
        .route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .route("/projects/{id}/events", web::get().to(crate::sse::events));
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.engine.health_report())
}

async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.engine.lifecycle() {
        Lifecycle::Ready => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Lifecycle::Starting => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "starting"}))
        }
        Lifecycle::ShuttingDown => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "shutting_down"}))
        }
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(METRICS.render(&state.engine.gauges()))
}

/// A connection's permit and, before authentication, its place under the unauthenticated
/// limits; or why it is refused.
type Admitted = Result<(ConnectionPermit, Option<ConnectionPermit>), Refusal>;

/// Why a WebSocket is closed right after the upgrade.
struct Refusal {
    code: u16,
    reason: &'static str,
    metric: &'static str,
}

/// The client's address: the peer's, or the one a trusted proxy forwarded.
pub(crate) fn client_ip(req: &HttpRequest, cfg: &EngineConfig) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    client_addr(peer, &forwarded, &cfg.trusted_proxies)
}

/// The token of an `Authorization: Bearer` header, if any.
pub(crate) fn bearer_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
}

/// Whether the query string carries a token, which is refused wherever it appears: URLs end up
/// in logs and browser history.
pub(crate) fn token_in_url(req: &HttpRequest) -> bool {
    req.query_string()
        .split('&')
        .any(|kv| kv.starts_with("token=") || kv.starts_with("access_token="))
}

/// A browser page may drive the daemon only from the daemon's own origin or an allowed one; a
/// client that sends no `Origin` (not a browser) is not affected.
pub(crate) fn origin_allowed(req: &HttpRequest, allowed: &[String], has_token: bool) -> bool {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a == origin || a == "*") {
        return true;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    let same_origin =
        matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o));
    // Without a token, a same-origin page is trusted only on a loopback name: a DNS-rebound
    // page controls both Origin and Host, but cannot make them say localhost.
    same_origin && (has_token || host.is_some_and(is_loopback_host))
}

/// Whether a `Host` header names this machine's loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A place under the connection limits, and, for a client that has not authenticated yet, one
/// under the much smaller unauthenticated limits too.
fn take_permits(
    engine: &Engine,
    ip: IpAddr,
    authenticated: bool,
) -> Result<(ConnectionPermit, Option<ConnectionPermit>), LimitRefusal> {
    let pending = match authenticated {
        true => None,
        false => Some(engine.unauthenticated.try_acquire(ip)?),
    };
    Ok((engine.limiter.try_acquire(ip)?, pending))
}

async fn ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let engine = state.engine.clone();
    let ip = client_ip(&req, &engine.config);
    let (authenticated, admitted) = admit(&req, &engine, ip);
    let capability = capability_of(&req, &engine);
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    match admitted {
        Ok((permit, pending_auth)) => {
            ConnectionActor::start(Accepted {
                engine,
                supervisor: Some(SupervisorHandle::of(&state.supervisor)),
                session,
                stream,
                peer: ip,
                authenticated,
                capability,
                permit,
                pending_auth,
            });
            METRICS.connections_opened.inc();
        }
        Err(r) => refuse(&engine, ip, r, session, stream),
    }
    Ok(response)
}

/// Whether the upgrade request authenticated the client, and the client's permits (see
/// [`take_permits`]) or why it is refused.
fn admit(req: &HttpRequest, engine: &Engine, ip: IpAddr) -> (bool, Admitted) {
    let (authenticated, refusal) = check_upgrade(req, engine, ip);
    let admitted = match refusal {
        Some(r) => Err(r),
        None => take_permits(engine, ip, authenticated).map_err(|r| Refusal {
            code: 1013,
            reason: r.reason(),
            metric: r.label(),
        }),
    };
    (authenticated, admitted)
}

/// The checks on the upgrade request itself: its token, the auth throttle, a token in the
/// URL, the origin, and shutdown. When several fail, the last one here is the one reported.
fn check_upgrade(req: &HttpRequest, engine: &Engine, ip: IpAddr) -> (bool, Option<Refusal>) {
    let cfg = &engine.config;
    let mut authenticated = cfg.token.is_none();
    let mut refusal = None;
    if let Some(expected) = &cfg.token {
        match bearer_token(req) {
            Some(t) if token_matches(t, expected) => authenticated = true,
            Some(t) if engine.capabilities.valid(t, &engine.directory).is_some() => {
                authenticated = true
            }
            Some(_) => {
                refusal = Some(Refusal {
                    code: 1008,
                    reason: "invalid token",
                    metric: "auth",
                });
            }
            None => {}
        }
        if engine.auth_throttle.is_blocked(ip) {
            refusal = Some(Refusal {
                code: 1008,
                reason: "too many failed authentications; try later",
                metric: "auth_throttled",
            });
        }
    }
    if token_in_url(req) {
        refusal = Some(Refusal { code: 1008, reason: "tokens are not accepted in the URL; use the Authorization header or an auth message", metric: "token_in_url" });
    }
    if !origin_allowed(req, &cfg.allowed_origins, cfg.token.is_some()) {
        refusal = Some(Refusal {
            code: 1008,
            reason: "origin not allowed",
            metric: "origin",
        });
    }
    if engine.lifecycle() == Lifecycle::ShuttingDown {
        refusal = Some(Refusal {
            code: 1001,
            reason: "server shutting down",
            metric: "shutting_down",
        });
    }
    (authenticated, refusal)
}

/// The bearer token when it is a live run's consult capability rather than the daemon's token:
/// the connection may then only consult (see `agentvisor_actors::capability`).
fn capability_of(req: &HttpRequest, engine: &Engine) -> Option<String> {
    let expected = engine.config.token.as_deref()?;
    bearer_token(req)
        .filter(|t| !token_matches(t, expected))
        .filter(|t| engine.capabilities.valid(t, &engine.directory).is_some())
        .map(str::to_string)
}

/// Closes a refused WebSocket with the refusal's code, counting it (and a bad token as a
/// failed authentication).
fn refuse(
    engine: &Engine,
    ip: IpAddr,
    r: Refusal,
    session: actix_ws::Session,
    stream: actix_ws::MessageStream,
) {
    if r.code == 1008 && r.metric == "auth" {
        engine.auth_throttle.record_failure(ip);
    }
    METRICS.refused(r.metric);
    log::info!(peer = ip.to_string().as_str(); "refusing a connection: {} {}", r.code, r.reason);
    actix_rt::spawn(async move {
        let _keep_reading = stream;
        let _ = session.close(Some(close_reason(r.code, r.reason))).await;
    });
}
