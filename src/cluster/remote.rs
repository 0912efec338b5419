//! The side of a node whose clients use another node's projects: it forwards their requests
//! to the owner and fans the owner's events out to the clients that watch.
//!
//! A node subscribes to a project's event subject only while one of its clients watches the
//! project (joined it, or executed in it), and hands each event to every such client as it
//! would a local one: the connection's own bounded outbox applies, so a slow client is closed
//! here and never slows the owner. The seqs are the owner's, and each connection drops what it
//! already delivered, so a client that moves to another node and re-joins with `since_seq`
//! sees no gap and no duplicate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Recipient;
use agentvisor_actors::connection::{Deliver, Mark, ReplyTo};
use agentvisor_actors::error::ApiError;
use agentvisor_actors::metrics::METRICS;
use agentvisor_actors::protocol::{Frame, Request};
use agentvisor_actors::sync::lock;
use async_nats::Subscriber;
use bytestring::ByteString;
use futures_util::StreamExt;
use serde_json::Value;

use super::gateway::{Forwarded, Reply, REWATCH};
use super::loopback::Head;
use super::{subjects, Node};

/// A client connection that watches a remote project. Until the reply to its join (or execute)
/// is delivered, events wait in `held`, so that none overtakes the reply.
struct Watcher {
    recipient: Recipient<Deliver>,
    held: Option<Vec<Frame>>,
}

/// This node's watchers of one remote project, and what it needs to ask the owner to publish
/// again what it may have missed.
struct Watch {
    owner: String,
    /// The owner's incarnation and this node's NATS reconnections when the owner last
    /// published for us: when either changes, events may have been lost.
    incarnation: Option<String>,
    reconnects: u64,
    /// The last seq received through the subscription; until one is, where the first
    /// watcher's join started. Other watchers' replies say nothing of what the subscription
    /// delivered, and do not change it.
    last_seq: Option<u64>,
    watchers: HashMap<u64, Watcher>,
}

type Watches = HashMap<String, Watch>;

/// This node's watchers of other nodes' projects.
pub struct Remote {
    node: Arc<Node>,
    watches: Mutex<Watches>,
}

impl Remote {
    pub fn new(node: Arc<Node>) -> Arc<Self> {
        Arc::new(Remote {
            node,
            watches: Mutex::new(HashMap::new()),
        })
    }

    /// Forwards a client's request to the project's owner and answers the client with the
    /// owner's reply. A join or execute also makes the client a watcher of the project.
    pub fn forward(self: &Arc<Self>, owner: String, request: &Request, text: &str, reply: ReplyTo) {
        METRICS.cluster_forwarded.inc();
        let project = request.project().map(str::to_string);
        let since = match request {
            Request::ProjectJoin { since_seq, .. } => *since_seq,
            _ => None,
        };
        let watches = matches!(
            request,
            Request::ProjectJoin { .. } | Request::Execute { .. }
        );
        let forwarded = Forwarded {
            origin: self.node.settings.node.clone(),
            conn: reply.conn,
            kind: request.kind().to_string(),
            project: project.clone(),
            text: text.to_string(),
            since: None,
        };
        let this = self.clone();
        actix_rt::spawn(async move {
            let watched = match (&project, watches) {
                (Some(p), true) => this.watch(p, &owner, &reply).await,
                _ => None,
            };
            let answer = this.ask(&owner, &forwarded).await;
            this.answer(answer, &owner, project.as_deref(), since, watched, reply);
        });
    }

    /// Sends the request to the owner and reads its reply.
    async fn ask(&self, owner: &str, forwarded: &Forwarded) -> Result<Reply, ApiError> {
        let subject = subjects::requests(&self.node.settings.cluster, owner);
        let payload = serde_json::to_vec(forwarded).unwrap_or_default();
        let unavailable = |why: String| {
            ApiError::node_unavailable(
                format!("the project's node {owner} cannot be reached ({why}); try again shortly"),
                owner,
            )
        };
        let message = self
            .node
            .client
            .request(subject, payload.into())
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        serde_json::from_slice(&message.payload).map_err(|e| unavailable(e.to_string()))
    }

    /// Delivers the owner's reply (and, to a new watcher, the events held meanwhile).
    fn answer(
        &self,
        answer: Result<Reply, ApiError>,
        owner: &str,
        project: Option<&str>,
        since: Option<u64>,
        watched: Option<u64>,
        reply: ReplyTo,
    ) {
        let p: Option<Arc<str>> = project.map(Arc::from);
        let frames = match answer {
            Ok(Reply::Frames(frames)) if !frames.is_empty() => frames,
            Ok(Reply::Frames(_)) | Ok(Reply::Failed(_)) | Err(_) | Ok(Reply::TooLarge) => {
                self.unwatch(project, watched);
                let e = match answer {
                    Err(e) => e,
                    Ok(Reply::TooLarge) => ApiError::validation("the reply is larger than one NATS message may be (max_payload): ask for fewer messages"),
                    Ok(Reply::Failed(why)) => ApiError::node_unavailable(format!("the project's node {owner} could not handle the request ({why}); try again shortly"), owner),
                    Ok(Reply::Frames(_)) => ApiError::node_unavailable(format!("the project's node {owner} sent an empty reply; try again"), owner),
                };
                return reply.err(p.as_ref(), &e);
            }
        };
        let mut frames = frames.into_iter().map(|t| frame_of(&t));
        let Some((first, head)) = frames.next() else {
            return;
        };
        let rest: Vec<Frame> = frames.map(|(f, _)| f).collect();
        if head.kind == "project_created" {
            self.node
                .registry
                .add_project(owner, created_project(&first));
        }
        let mark = match (&p, head.kind.as_str()) {
            (Some(project), "project_joined") => Mark::Joined {
                project: project.clone(),
                since: since.unwrap_or_else(|| last_seq(&first)),
            },
            _ => Mark::None,
        };
        let failed = head.kind == "error";
        let seen = rest.iter().filter_map(|f| f.seq).max().unwrap_or(0);
        let seen = seen.max(last_seq(&first));
        let mut watches = lock(&self.watches);
        reply.send_marked(first, mark);
        if !rest.is_empty() {
            reply.recipient.do_send(Deliver::batch(rest.into()));
        }
        if let (Some(project), Some(conn)) = (project, watched) {
            release(&mut watches, project, conn, failed, seen);
        }
    }

    /// Makes the requesting connection a watcher of `project` (holding events until its reply
    /// is delivered), subscribing to the project's events if no one here watched it yet.
    /// Returns the connection id, or `None` when NATS refused the subscription.
    async fn watch(self: &Arc<Self>, project: &str, owner: &str, reply: &ReplyTo) -> Option<u64> {
        let watcher = || Watcher {
            recipient: reply.recipient.clone(),
            held: Some(Vec::new()),
        };
        if let Some(w) = lock(&self.watches).get_mut(project) {
            w.watchers.insert(reply.conn, watcher());
            return Some(reply.conn);
        }
        let subject = subjects::events(&self.node.settings.cluster, project);
        let subscriber = match self.node.client.subscribe(subject).await {
            Ok(s) => s,
            Err(e) => {
                log::warn!(project = project; "cannot subscribe to a remote project's events: {e}");
                return None;
            }
        };
        let mut watches = lock(&self.watches);
        let w = watches.entry(project.to_string()).or_insert_with(|| Watch {
            owner: owner.to_string(),
            incarnation: self.node.registry.live_incarnation(owner),
            reconnects: self.node.link.reconnects(),
            last_seq: None,
            watchers: HashMap::new(),
        });
        let first = w.watchers.is_empty();
        w.watchers.insert(reply.conn, watcher());
        if first {
            actix_rt::spawn(self.clone().pump(project.to_string(), subscriber));
        }
        Some(reply.conn)
    }

    /// A request that would have made a watcher failed: the watcher goes.
    fn unwatch(&self, project: Option<&str>, conn: Option<u64>) {
        if let (Some(project), Some(conn)) = (project, conn) {
            let mut watches = lock(&self.watches);
            if let Some(w) = watches.get_mut(project) {
                w.watchers.remove(&conn);
            }
        }
    }

    /// `project_leave` of a remote project: answered here, since the subscription is this
    /// node's own.
    pub fn leave(&self, project: &str, reply: ReplyTo) {
        let p: Arc<str> = Arc::from(project);
        let mut watches = lock(&self.watches);
        if let Some(w) = watches.get_mut(project) {
            w.watchers.remove(&reply.conn);
        }
        let frame = reply.frame(
            "project_left",
            Some(&p),
            &serde_json::json!({ "project_id": project }),
        );
        reply.send_marked(frame, Mark::Left(p));
    }

    /// Hands each event of `project` to its watchers here, until none is left (the
    /// subscription ends with this task).
    async fn pump(self: Arc<Self>, project: String, mut events: Subscriber) {
        while let Some(message) = events.next().await {
            let Ok(text) = std::str::from_utf8(&message.payload) else {
                continue;
            };
            let (frame, head) = frame_of(text);
            if !self.fan_out(&project, frame, head.kind == "project_deleted") {
                break;
            }
        }
    }

    /// Returns whether anyone still watches the project.
    fn fan_out(&self, project: &str, frame: Frame, gone: bool) -> bool {
        let mut watches = lock(&self.watches);
        let Some(w) = watches.get_mut(project) else {
            return false;
        };
        w.watchers
            .retain(|_, watcher| watcher.recipient.connected());
        if let Some(seq) = frame.seq {
            w.last_seq = Some(w.last_seq.map_or(seq, |last| last.max(seq)));
        }
        for watcher in w.watchers.values_mut() {
            match &mut watcher.held {
                Some(held) => held.push(frame.clone()),
                None => {
                    METRICS.cluster_remote_deliveries.inc();
                    watcher.recipient.do_send(delivery(project, &frame, gone));
                }
            }
        }
        if gone || w.watchers.is_empty() {
            watches.remove(project);
            return false;
        }
        true
    }
}

impl Remote {
    /// For the life of the daemon: asks the owner of each watched project to publish again
    /// what this node may have missed (see [`REWATCH`]).
    pub async fn keep_watches(self: Arc<Self>) {
        let period = (self.node.settings.ttl / 3).min(Duration::from_millis(500));
        loop {
            actix_rt::time::sleep(period).await;
            for (project, owner, since) in self.missed() {
                let reconnects = self.node.link.reconnects();
                let incarnation = self.node.registry.live_incarnation(&owner);
                let rewatch = Forwarded {
                    origin: self.node.settings.node.clone(),
                    conn: 0,
                    kind: REWATCH.into(),
                    project: Some(project.clone()),
                    text: String::new(),
                    since: Some(since),
                };
                if let Ok(Reply::Frames(_)) = self.ask(&owner, &rewatch).await {
                    log::info!(project = project.as_str(); "asked node {owner} to publish again after seq {since}");
                    if let Some(w) = lock(&self.watches).get_mut(&project) {
                        (w.reconnects, w.incarnation) = (reconnects, incarnation);
                    }
                }
            }
        }
    }

    /// The watched projects whose events may have been lost since their owner last published
    /// for us: its daemon restarted, or this node's NATS connection was lost meanwhile.
    fn missed(&self) -> Vec<(String, String, u64)> {
        if !self.node.link.is_up() {
            return Vec::new();
        }
        let reconnects = self.node.link.reconnects();
        let watches = lock(&self.watches);
        watches
            .iter()
            .filter(|(_, w)| {
                let now = self.node.registry.live_incarnation(&w.owner);
                now.is_some() && (now != w.incarnation || reconnects != w.reconnects)
            })
            .map(|(p, w)| (p.clone(), w.owner.clone(), w.last_seq.unwrap_or(0)))
            .collect()
    }
}

/// The reply is delivered: the watcher gets what was held and then every event as it comes;
/// or, if the request failed, it goes.
fn release(watches: &mut Watches, project: &str, conn: u64, failed: bool, seen: u64) {
    let Some(w) = watches.get_mut(project) else {
        return;
    };
    if failed {
        w.watchers.remove(&conn);
        return;
    }
    w.last_seq.get_or_insert(seen);
    if let Some(watcher) = w.watchers.get_mut(&conn) {
        if let Some(held) = watcher.held.take().filter(|h| !h.is_empty()) {
            METRICS.cluster_remote_deliveries.inc_by(held.len() as u64);
            watcher.recipient.do_send(Deliver::batch(held.into()));
        }
    }
}

/// An event for a watcher: `project_deleted` also ends its subscription, as a local
/// project's does.
fn delivery(project: &str, frame: &Frame, gone: bool) -> Deliver {
    match gone {
        true => Deliver::marked(frame.clone(), Mark::Left(Arc::from(project))),
        false => Deliver::plain(frame.clone()),
    }
}

/// A frame from its text, with the envelope fields the connection's seq tracking needs.
fn frame_of(text: &str) -> (Frame, Head) {
    let head = Head::of(text);
    let frame = Frame {
        text: ByteString::from(text),
        project: head.project_id.as_deref().map(Arc::from),
        seq: head.seq,
    };
    (frame, head)
}

/// The project's last seq in a `project_joined` reply (where a join without `since_seq`
/// starts).
fn last_seq(joined: &Frame) -> u64 {
    serde_json::from_str::<Value>(&joined.text)
        .ok()
        .and_then(|v| v["data"]["project"]["last_seq"].as_u64())
        .unwrap_or(0)
}

/// The project object of a `project_created` reply.
fn created_project(created: &Frame) -> Value {
    serde_json::from_str::<Value>(&created.text)
        .map(|v| v["data"]["project"].clone())
        .unwrap_or(Value::Null)
}
