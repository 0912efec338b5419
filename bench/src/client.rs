//! The WebSocket client side: connecting, sending, receiving with deadlines.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::{err, Res};

pub type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `ws://127.0.0.1:<port><path>`.
pub async fn connect(port: u16, path: &str) -> Res<Ws> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    // Write each message at once: these clients send one request and wait.
    let cfg = WebSocketConfig {
        write_buffer_size: 0,
        ..WebSocketConfig::default()
    };
    let url = format!("ws://127.0.0.1:{port}{path}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(cfg)).await?;
    Ok(ws)
}

pub async fn send(ws: &mut Ws, v: &Value) -> Res<()> {
    ws.send(Message::Text(v.to_string())).await?;
    Ok(())
}

pub async fn send_text(ws: &mut Ws, text: String) -> Res<()> {
    ws.send(Message::Text(text)).await?;
    Ok(())
}

/// The next text message before `deadline`. Reading is also what answers the server's pings
/// (tungstenite queues the pong and writes it on the next read or write).
pub async fn recv(ws: &mut Ws, deadline: Instant) -> Res<String> {
    loop {
        let next = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .map_err(|_| err("timed out waiting for a message from the server"))?;
        match next {
            None => return Err(err("the server closed the connection")),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Close(c))) => {
                return Err(err(format!("the server closed the connection: {c:?}")))
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Asks the kernel to acknowledge what this socket receives at once instead of delaying the ACK
/// (up to 40 ms on Linux). Quick-ACK mode does not last, so it is set again after every read.
/// Used to show how much of a latency is the server's Nagle algorithm waiting for a delayed ACK:
/// a server with `TCP_NODELAY` would not wait.
pub fn quickack(ws: &Ws) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket this process owns, with a valid int option.
    unsafe {
        libc::setsockopt(
            ws.get_ref().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The `type` of a server message, read from its first field without parsing it all (every
/// server message starts with `{"type":"…"`).
pub fn msg_type(text: &str) -> &str {
    text.strip_prefix("{\"type\":\"")
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
}

/// Sends a request with an `id` and waits for the reply carrying that id (other messages are
/// skipped). An `error` reply is returned as an error.
pub async fn request(ws: &mut Ws, req: &Value, deadline: Instant) -> Res<Value> {
    let id = req["id"]
        .as_str()
        .ok_or_else(|| err("request without an id"))?
        .to_string();
    send(ws, req).await?;
    let needle = format!(",\"id\":\"{id}\"");
    loop {
        let text = recv(ws, deadline).await?;
        if !text.contains(&needle) {
            continue;
        }
        let v: Value = serde_json::from_str(&text)?;
        if v["id"] != id.as_str() {
            continue;
        }
        if v["type"] == "error" {
            return Err(err(format!(
                "the daemon answered {} with an error: {}",
                req["type"], v["data"]
            )));
        }
        return Ok(v);
    }
}

/// Creates a project in `path`; returns its id.
pub async fn create_project(ws: &mut Ws, path: &std::path::Path, deadline: Instant) -> Res<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bench".into());
    let v = request(
        ws,
        &serde_json::json!({"type": "project_create", "id": format!("create-{name}"),
            "data": {"path": path, "name": name}}),
        deadline,
    )
    .await?;
    v["data"]["project"]["id"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| err(format!("project_created without a project id: {v}")))
}

/// Wall-clock time in nanoseconds since the Unix epoch (what the mock agent writes in `t_ns`).
pub fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Reads the unsigned integer that follows `key` in `text` (e.g. `"seq":`).
pub fn number_after(text: &str, key: &str) -> Option<u128> {
    let i = text.find(key)? + key.len();
    let digits = text[i..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(None, |acc: Option<u128>, d| {
            Some(acc.unwrap_or(0) * 10 + u128::from(d - b'0'))
        });
    digits
}

/// `(n, t_ns)` of a mock agent line carried in `text` (as the daemon's `agent_message` or as
/// the floor's frame), without parsing the whole message.
pub fn parse_mock_line(text: &str) -> Option<(u64, u128)> {
    const KEY: &str = "\"type\":\"mock_line\",\"n\":";
    let i = text.find(KEY)? + KEY.len();
    let rest = &text[i..];
    let n = number_after(rest, "")? as u64;
    let t = number_after(rest, ",\"t_ns\":")?;
    Some((n, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mock_lines_and_types() {
        let t = r#"{"type":"agent_message","project_id":"p","seq":12,"ts":"x","direction":"agent","data":{"run_id":"r","message":{"type":"mock_line","n":17,"t_ns":1700000000123456789,"pad":"xx"}}}"#;
        assert_eq!(parse_mock_line(t), Some((17, 1_700_000_000_123_456_789)));
        assert_eq!(msg_type(t), "agent_message");
        assert_eq!(number_after(t, ",\"seq\":"), Some(12));
        assert_eq!(parse_mock_line(r#"{"type":"end"}"#), None);
    }
}
