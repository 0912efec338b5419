//! The owner's side of the cluster: it answers the requests other nodes forward for its
//! projects, and publishes each event of a project another node watches, once, on the
//! project's subject.
//!
//! Forwarded requests go over [`Loopback`] connections, one per remote client, so that each
//! remote client is limited and ordered as a local one would be. Events come from one more
//! loopback connection, the publisher, joined to every project some other node watches: each
//! event is published once however many nodes and clients watch it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentvisor_actors::sync::lock;
use async_nats::Message;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::loopback::{Answer, Head, Loopback, Target, Want, EVENTS_BOUND};
use super::{subjects, Node};

/// A request another node forwards: the client's text, and which client it is (the origin
/// node and its connection id), so that each remote client gets a connection of its own.
#[derive(Serialize, Deserialize)]
pub struct Forwarded {
    pub origin: String,
    pub conn: u64,
    /// The request's type and project, as the forwarding node decoded them; or [`REWATCH`].
    pub kind: String,
    pub project: Option<String>,
    pub text: String,
    /// For [`REWATCH`]: the last seq the forwarding node received.
    #[serde(default)]
    pub since: Option<u64>,
}

/// Not a client's request: a node whose clients watch a project asks the owner to publish its
/// events again after `since`. It does so when it may have missed some: after its NATS
/// connection came back, or when the owner's daemon restarted (and forgot what it published).
pub const REWATCH: &str = "rewatch";

/// Room kept in a reply for the JSON array around the frames.
const REPLY_MARGIN: usize = 1024;

/// The owner's gateway.
pub struct Gateway {
    node: Arc<Node>,
    target: Target,
    clients: Mutex<HashMap<(String, u64), Loopback>>,
    publisher: Arc<Publisher>,
}

impl Gateway {
    pub fn new(node: Arc<Node>, target: Target) -> Arc<Self> {
        Arc::new(Gateway {
            publisher: Arc::new(Publisher {
                watched: Mutex::new(HashMap::new()),
                conn: Mutex::new(None),
            }),
            node,
            target,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// Answers forwarded requests for the life of the daemon. They are taken one at a time and
    /// sent on in order; only the wait for each reply runs on its own.
    pub async fn serve(self: Arc<Self>) {
        actix_rt::spawn(
            self.publisher
                .clone()
                .run(self.node.clone(), self.target.clone()),
        );
        let subject = subjects::requests(&self.node.settings.cluster, &self.node.settings.node);
        let mut requests = loop {
            match self.node.client.subscribe(subject.clone()).await {
                Ok(s) => break s,
                Err(e) => log::warn!("cannot subscribe to forwarded requests yet: {e}"),
            }
            actix_rt::time::sleep(Duration::from_secs(1)).await;
        };
        while let Some(message) = requests.next().await {
            let Some(reply_to) = message.reply.clone() else {
                continue;
            };
            let answer = self.take(&message).await;
            let client = self.node.client.clone();
            actix_rt::spawn(async move {
                let frames = match answer {
                    Ok((answer, kind)) => answer.frames().await.map(|f| (f, kind)),
                    Err(e) => Err(e),
                };
                let payload = reply_payload(frames, client.server_info().max_payload);
                if let Err(e) = client.publish(reply_to, payload.into()).await {
                    log::warn!("cannot answer a forwarded request: {e}");
                }
            });
        }
    }

    /// Sends one forwarded request on its client's loopback connection; a join or execute
    /// first makes sure the project's events are being published.
    async fn take(&self, message: &Message) -> Result<(Answer, String), String> {
        let f: Forwarded = serde_json::from_slice(&message.payload)
            .map_err(|e| format!("unreadable forwarded request: {e}"))?;
        if let (REWATCH, Some(project)) = (f.kind.as_str(), &f.project) {
            let since = f.since.unwrap_or(0);
            self.publisher.rewatch(project, since).await?;
            return Ok((Answer::ready(Vec::new()), f.kind));
        }
        let want = match f.kind.as_str() {
            "project_join" => Want::Joined,
            _ => Want::Reply,
        };
        let subscribes = matches!(f.kind.as_str(), "project_join" | "execute");
        let watched = f.project.as_deref().filter(|_| subscribes);
        if let Some(project) = watched {
            self.publisher.watch(project).await?;
        }
        let conn = self.client_conn(&f.origin, f.conn).await?;
        let answer = conn.send(&f.text, want)?;
        if let Some(project) = watched {
            // The remote client gets the events from the publisher: this connection, which the
            // request subscribed, leaves again.
            let _ = conn.send(&leave(project), Want::Reply);
        }
        Ok((answer, f.kind))
    }

    /// The loopback connection of one remote client, opened when needed.
    async fn client_conn(&self, origin: &str, conn: u64) -> Result<Loopback, String> {
        let key = (origin.to_string(), conn);
        if let Some(c) = lock(&self.clients).get(&key).filter(|c| c.is_open()) {
            return Ok(c.clone());
        }
        let opened = Loopback::open(&self.target, None).await?;
        let mut clients = lock(&self.clients);
        clients.retain(|_, c| c.is_open());
        Ok(clients.entry(key).or_insert(opened).clone())
    }
}

fn leave(project: &str) -> String {
    serde_json::json!({"type": "project_leave", "project_id": project}).to_string()
}

/// A `project_join`: live events only, or a replay of what came after `since` first.
fn join(project: &str, since: Option<u64>) -> String {
    let mut j = serde_json::json!({"type": "project_join", "project_id": project});
    if let Some(since) = since {
        j["data"] = serde_json::json!({ "since_seq": since });
    }
    j.to_string()
}

/// The owner's answer to a forwarded request.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The reply frames, as the daemon sent them.
    Frames(Vec<String>),
    /// The reply was larger than one NATS message may be (`max_payload`).
    TooLarge,
    /// The owner could not hand the request to its daemon.
    Failed(String),
}

/// The reply to a forwarded request, cut to fit in one NATS message. A replay that does not
/// fit keeps its newest events and says `recovered: false`, as a replay cut by the backlog
/// bound does; any other reply that does not fit is [`Reply::TooLarge`].
fn reply_payload(frames: Result<(Vec<String>, String), String>, max_payload: usize) -> Vec<u8> {
    let limit = max_payload.saturating_sub(REPLY_MARGIN);
    let reply = match frames {
        Ok((frames, _)) if size(&frames) <= limit => Reply::Frames(frames),
        Ok((frames, kind)) if kind == "project_join" && frames.len() > 1 => {
            Reply::Frames(trim_replay(frames, limit))
        }
        Ok(_) => Reply::TooLarge,
        Err(e) => {
            log::warn!("a forwarded request could not be handled: {e}");
            Reply::Failed(e)
        }
    };
    serde_json::to_vec(&reply).unwrap_or_default()
}

fn size(frames: &[String]) -> usize {
    frames.iter().map(|f| f.len() + 3).sum()
}

/// Keeps the join reply and the newest replayed events that fit, saying how many.
fn trim_replay(mut frames: Vec<String>, limit: usize) -> Vec<String> {
    let mut events = frames.split_off(1);
    let mut joined: Value = serde_json::from_str(&frames[0]).unwrap_or(Value::Null);
    let mut total = frames[0].len() + 64;
    let keep = events
        .iter()
        .rev()
        .take_while(|e| {
            total += e.len() + 3;
            total <= limit
        })
        .count();
    let events = events.split_off(events.len() - keep);
    joined["data"]["replayed"] = keep.into();
    joined["data"]["recovered"] = false.into();
    let mut out = vec![joined.to_string()];
    out.extend(events);
    out
}

/// The connection that publishes the watched projects' events, and the last seq published
/// per project (so that a replay after a reconnection publishes only what was missed).
struct Publisher {
    watched: Mutex<HashMap<String, u64>>,
    conn: Mutex<Option<Loopback>>,
}

impl Publisher {
    /// Makes sure `project`'s events are published, joining it if not yet.
    async fn watch(&self, project: &str) -> Result<(), String> {
        if lock(&self.watched).contains_key(project) {
            return Ok(());
        }
        let conn = lock(&self.conn)
            .clone()
            .ok_or("the node's event publisher is reconnecting; try again shortly")?;
        let reply = conn.request(&join(project, None), Want::Reply).await?;
        if reply.first().map(|f| Head::of(f).kind).as_deref() == Some("project_joined") {
            lock(&self.watched).entry(project.to_string()).or_insert(0);
        }
        Ok(())
    }

    /// Publishes the events of `project` after `since` again (and from then on), even those
    /// already published: another node lost them.
    async fn rewatch(&self, project: &str, since: u64) -> Result<(), String> {
        let conn = lock(&self.conn)
            .clone()
            .ok_or("the node's event publisher is reconnecting; try again shortly")?;
        {
            let mut watched = lock(&self.watched);
            let last = watched.entry(project.to_string()).or_insert(since);
            *last = (*last).min(since);
        }
        conn.request(&join(project, Some(since)), Want::Reply)
            .await?;
        Ok(())
    }

    /// Keeps the publisher connection open for the life of the daemon: after a loss it
    /// connects again and rejoins every watched project from the last seq it published.
    async fn run(self: Arc<Self>, node: Arc<Node>, target: Target) {
        loop {
            let (tx, mut events) = mpsc::channel(EVENTS_BOUND);
            match Loopback::open(&target, Some(tx)).await {
                Ok(conn) => {
                    *lock(&self.conn) = Some(conn.clone());
                    let watched: Vec<_> = lock(&self.watched).clone().into_iter().collect();
                    for (project, since) in watched {
                        // Nothing published yet: nothing to catch up on.
                        let since = Some(since).filter(|s| *s > 0);
                        let _ = conn.send(&join(&project, since), Want::Reply);
                    }
                    drop(conn);
                    while let Some((head, text)) = events.recv().await {
                        self.publish(&node, head, text).await;
                    }
                    *lock(&self.conn) = None;
                }
                Err(e) => log::debug!("cluster event publisher: {e}"),
            }
            actix_rt::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Publishes one event of a watched project, unless it was already.
    async fn publish(&self, node: &Node, head: Head, text: String) {
        let Some(project) = head.project_id else {
            return;
        };
        if head.kind == "project_joined" {
            return;
        }
        {
            let mut watched = lock(&self.watched);
            let Some(last) = watched.get_mut(&project) else {
                return;
            };
            match head.seq {
                Some(seq) if seq <= *last => return,
                Some(seq) => *last = seq,
                None => {}
            }
            if head.kind == "project_deleted" {
                watched.remove(&project);
            }
        }
        let subject = subjects::events(&node.settings.cluster, &project);
        if let Err(e) = node.client.publish(subject, text.into()).await {
            log::warn!(project = project.as_str(); "cannot publish an event to the cluster: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_too_large_for_nats_keeps_its_newest_events() {
        let joined = r#"{"type":"project_joined","id":"j","data":{"project":{},"recovered":true,"replayed":3}}"#;
        let frames = vec![
            joined.to_string(),
            "a".repeat(400),
            "b".repeat(400),
            "c".repeat(400),
        ];
        let kept = trim_replay(frames, 800);
        assert_eq!(kept.len(), 2, "the reply and the newest event");
        assert!(kept[1].starts_with('c'));
        let head: Value = serde_json::from_str(&kept[0]).unwrap();
        assert_eq!(head["data"]["replayed"], 1);
        assert_eq!(head["data"]["recovered"], false);
        assert_eq!(head["id"], "j");
    }

    #[test]
    fn other_replies_too_large_for_nats_are_refused() {
        let frames = Ok((vec!["x".repeat(5000)], "get_messages".to_string()));
        let payload = reply_payload(frames, 2048);
        let reply: Reply = serde_json::from_slice(&payload).unwrap();
        assert!(matches!(reply, Reply::TooLarge));
    }
}
