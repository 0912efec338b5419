//! One attempt to open a WebSocket to the daemon, and what its failure means: try again (the
//! daemon is down or restarting), or stop (it refuses the token, or TLS cannot be trusted).

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::settings::Settings;
use super::Failure;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub enum DialError {
    /// Worth another attempt (refused, reset, timed out).
    Failed,
    /// The daemon refuses us: no use trying again.
    Refused(String),
    /// TLS failed (an untrusted certificate, a name that does not match): trying again would
    /// fail the same way.
    Tls(String),
}

/// Connects and upgrades, with the token in the `Authorization` header; bounded by two
/// heartbeat intervals.
pub async fn dial(settings: &Settings) -> Result<Ws, DialError> {
    let mut request = settings
        .url
        .as_str()
        .into_client_request()
        .map_err(|_| DialError::Failed)?;
    if let Some(token) = &settings.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| DialError::Refused("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    let tls = settings.tls.clone().map(Connector::Rustls);
    let attempt = tokio_tungstenite::connect_async_tls_with_config(request, None, false, tls);
    match tokio::time::timeout(settings.heartbeat * 2, attempt).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(WsError::Http(r))) if r.status() == 401 || r.status() == 403 => {
            Err(DialError::Refused(format!("HTTP {}", r.status())))
        }
        Ok(Err(e)) => match tls_failure(&e) {
            Some(why) => Err(DialError::Tls(why)),
            None => Err(DialError::Failed),
        },
        Err(_) => Err(DialError::Failed),
    }
}

/// The TLS error behind a failed connection attempt, if that is what it was.
fn tls_failure(e: &WsError) -> Option<String> {
    match e {
        WsError::Tls(t) => Some(t.to_string()),
        WsError::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(ToString::to_string),
        _ => None,
    }
}

/// The sentence for a daemon that refused the connection (close 1008).
pub fn refused(settings: &Settings, reason: &str) -> Failure {
    let hint = if settings.token.is_some() {
        "check AGENTVISOR_TOKEN or AGENTVISOR_TOKEN_FILE"
    } else {
        "it needs a token: set AGENTVISOR_TOKEN or AGENTVISOR_TOKEN_FILE"
    };
    let reason = if reason.is_empty() { "policy" } else { reason };
    Failure::Refused(format!(
        "the daemon at {} refused the connection ({reason}); {hint}",
        settings.url
    ))
}
