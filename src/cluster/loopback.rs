//! A WebSocket from this node's cluster gateway to the daemon itself.
//!
//! A request another node forwards is the client's own text; the owner handles it by sending it
//! over a loopback WebSocket, exactly as a client of its own would, and returns the frames it
//! gets back. So a forwarded request passes the same decoding, limits, idempotency and
//! handlers as a local one, and the cluster depends on the wire protocol only.
//!
//! Requests are multiplexed: each is sent with an id of the gateway's own (`gw-N`), and its
//! reply is handed back with the client's id put back in place. Frames without an id (events)
//! go to the `events` channel of the connection that has one (the publisher), and are dropped
//! by the others.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A connection with nothing in flight is closed after this long.
const IDLE: Duration = Duration::from_secs(60);

/// Events read but not yet handed on. When the reader of the `events` channel cannot keep up
/// (NATS is slow or away), this connection stops reading, the daemon's bounded outbox for it
/// fills, and the daemon closes it (4008): memory stays bounded, and the publisher connects
/// again and rejoins from the last seq it published.
pub const EVENTS_BOUND: usize = 4096;

/// Where the daemon itself is reached.
#[derive(Clone)]
pub struct Target {
    /// `ws://` or, for a daemon that serves TLS, `wss://`.
    pub url: String,
    pub token: Option<String>,
    /// Trusts the daemon's own certificate, when it serves TLS.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// What a request waits for.
#[derive(Clone, Copy, PartialEq)]
pub enum Want {
    /// Its one reply.
    Reply,
    /// A `project_join`: its reply and the events it replays.
    Joined,
}

/// The envelope fields the gateway looks at.
#[derive(Deserialize, Default)]
pub struct Head {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    pub project_id: Option<String>,
    pub seq: Option<u64>,
    #[serde(default)]
    data: HeadData,
}

#[derive(Deserialize, Default)]
struct HeadData {
    replayed: Option<u64>,
}

impl Head {
    pub fn of(text: &str) -> Head {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// An event the daemon sent on the loopback connection, with its envelope read.
pub type Event = (Head, String);

struct Request {
    text: String,
    want: Want,
    done: oneshot::Sender<Vec<String>>,
}

/// A handle on one loopback connection; the connection closes when every handle is dropped.
#[derive(Clone)]
pub struct Loopback {
    tx: mpsc::UnboundedSender<Request>,
}

impl Loopback {
    /// Connects and authenticates. With `events`, the connection never idles out and hands on
    /// every event it receives.
    pub async fn open(
        target: &Target,
        events: Option<mpsc::Sender<Event>>,
    ) -> Result<Loopback, String> {
        let mut request = target
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if let Some(token) = &target.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| "the daemon's token is not a valid header value".to_string())?;
            request.headers_mut().insert("authorization", value);
        }
        let tls = target.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, tls);
        let (ws, _) = tokio::time::timeout(Duration::from_secs(5), connecting)
            .await
            .map_err(|_| "the daemon did not answer on its own address".to_string())?
            .map_err(|e| format!("cannot reach the daemon on its own address: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        actix_rt::spawn(Mux::default().run(ws, rx, events));
        Ok(Loopback { tx })
    }

    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Sends a request (a client's text) at once, in the order of the calls, and returns
    /// where its reply frames will come.
    pub fn send(&self, text: &str, want: Want) -> Result<Answer, String> {
        let (done, answer) = oneshot::channel();
        let request = Request {
            text: text.to_string(),
            want,
            done,
        };
        self.tx.send(request).map_err(|_| CLOSED.to_string())?;
        Ok(Answer(answer))
    }

    /// Sends a request and waits for its reply frames.
    pub async fn request(&self, text: &str, want: Want) -> Result<Vec<String>, String> {
        self.send(text, want)?.frames().await
    }
}

/// The reply frames of a request sent, once they come.
pub struct Answer(oneshot::Receiver<Vec<String>>);

impl Answer {
    /// An answer that is already there.
    pub fn ready(frames: Vec<String>) -> Answer {
        let (done, answer) = oneshot::channel();
        let _ = done.send(frames);
        Answer(answer)
    }

    pub async fn frames(self) -> Result<Vec<String>, String> {
        self.0.await.map_err(|_| CLOSED.to_string())
    }
}

const CLOSED: &str = "the daemon closed the cluster gateway's connection";

/// A join whose replayed events are still coming.
struct Replay {
    project: String,
    remaining: u64,
    frames: Vec<String>,
    done: oneshot::Sender<Vec<String>>,
}

/// A request in flight: the client's id, what it waits for, and where its frames go.
type Pending = (Option<Value>, Want, oneshot::Sender<Vec<String>>);

/// The state of one connection: requests in flight by gateway id, and a replay being read.
#[derive(Default)]
struct Mux {
    next: u64,
    pending: HashMap<String, Pending>,
    replay: Option<Replay>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Mux {
    async fn run(
        mut self,
        mut ws: Ws,
        mut rx: mpsc::UnboundedReceiver<Request>,
        events: Option<mpsc::Sender<Event>>,
    ) {
        loop {
            let idle = events.is_none() && self.pending.is_empty() && self.replay.is_none();
            let idle_for = if idle { IDLE } else { Duration::MAX / 4 };
            tokio::select! {
                request = rx.recv() => {
                    let Some(r) = request else { break };
                    let text = self.tag(r);
                    if ws.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let event = self.on_frame(text);
                        if let (Some(events), Some(event)) = (&events, event) {
                            if events.send(event).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep(idle_for) => break,
            }
        }
        let _ = ws.close(None).await;
    }

    /// Gives the request an id of the gateway's own, remembering the client's.
    fn tag(&mut self, r: Request) -> String {
        self.next += 1;
        let gw = format!("gw-{}", self.next);
        let mut value: Value = serde_json::from_str(&r.text).unwrap_or(Value::Null);
        let original = value.as_object_mut().and_then(|o| {
            let id = o.remove("id");
            o.insert("id".into(), gw.clone().into());
            id
        });
        self.pending.insert(gw, (original, r.want, r.done));
        value.to_string()
    }

    /// Hands a reply (or a replayed event) to its request; returns an event.
    fn on_frame(&mut self, text: String) -> Option<Event> {
        let head = Head::of(&text);
        if let Some(r) = &mut self.replay {
            if head.id.is_none()
                && head.seq.is_some()
                && head.project_id.as_ref() == Some(&r.project)
            {
                r.frames.push(text);
                r.remaining -= 1;
                if r.remaining == 0 {
                    if let Some(r) = self.replay.take() {
                        let _ = r.done.send(r.frames);
                    }
                }
                return None;
            }
        }
        let Some((original, want, done)) = head.id.as_ref().and_then(|id| self.pending.remove(id))
        else {
            return head.id.is_none().then_some((head, text));
        };
        let gw = head.id.as_deref().unwrap_or_default();
        let text = restore_id(&text, gw, original.as_ref());
        match (
            want,
            head.kind.as_str(),
            head.data.replayed,
            head.project_id,
        ) {
            (Want::Joined, "project_joined", Some(n), Some(project)) if n > 0 => {
                self.replay = Some(Replay {
                    project,
                    remaining: n,
                    frames: vec![text],
                    done,
                });
            }
            _ => {
                let _ = done.send(vec![text]);
            }
        }
        None
    }
}

/// The reply with the client's id (or none) where the gateway's was. The id comes right after
/// the type in every server message.
fn restore_id(text: &str, gw: &str, original: Option<&Value>) -> String {
    let needle = format!(",\"id\":\"{gw}\"");
    let with = original.map_or(String::new(), |v| format!(",\"id\":{v}"));
    text.replacen(&needle, &with, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_id_is_put_back_in_the_reply() {
        let reply = r#"{"type":"pong","id":"gw-7","ts":"t","data":{}}"#;
        let id = Value::String("c\"1".into());
        assert_eq!(
            restore_id(reply, "gw-7", Some(&id)),
            r#"{"type":"pong","id":"c\"1","ts":"t","data":{}}"#
        );
        assert_eq!(
            restore_id(reply, "gw-7", None),
            r#"{"type":"pong","ts":"t","data":{}}"#
        );
    }
}
