//! The cluster's registry of nodes and their projects, in a JetStream key-value bucket.
//!
//! Each node owns one key, `nodes.<node>`, holding its projects; it puts it again at every
//! heartbeat (a third of the time-to-live) and at once when its projects change. Every node
//! watches all keys. A node whose key has not changed for the time-to-live, as this node's own
//! clock measures it, is unavailable: its projects are listed `UNAVAILABLE` and requests to
//! them are answered `NODE_UNAVAILABLE`. Liveness is measured by when an update is seen here,
//! not by timestamps compared across machines, so clock skew between nodes does not matter.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentvisor_actors::engine::Engine;
use agentvisor_actors::sync::{read, write};
use async_nats::jetstream::kv::{Entry, Operation, Store};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::subjects;
use super::Node;

/// A node's entry in the bucket.
#[derive(Serialize, Deserialize)]
struct NodeEntry {
    node: String,
    version: String,
    /// Changes each time the node's daemon starts: what it published to others is gone then.
    #[serde(default)]
    incarnation: String,
    projects: Vec<Value>,
}

/// What this node knows of another.
struct Member {
    projects: Vec<Value>,
    incarnation: String,
    seen_at: Instant,
}

/// Where a project lives, as far as the registry knows.
pub enum Owner {
    /// A node that answers.
    Up(String),
    /// A node past its time-to-live.
    Unavailable(String),
}

/// The registry as this node sees it.
pub struct Registry {
    ttl: Duration,
    own: String,
    /// This daemon's incarnation (see [`NodeEntry`]).
    incarnation: String,
    members: RwLock<HashMap<String, Member>>,
    /// Whether the bucket is reachable and watched.
    synced: std::sync::atomic::AtomicBool,
}

impl Registry {
    pub fn new(own: &str, ttl: Duration) -> Self {
        Registry {
            ttl,
            own: own.to_string(),
            incarnation: uuid::Uuid::new_v4().to_string(),
            members: RwLock::new(HashMap::new()),
            synced: Default::default(),
        }
    }

    fn available(&self, m: &Member) -> bool {
        m.seen_at.elapsed() < self.ttl
    }

    /// The node that owns `project`, if another node does.
    pub fn owner(&self, project: &str) -> Option<Owner> {
        let members = read(&self.members);
        members.iter().find_map(|(node, m)| {
            let listed = m.projects.iter().any(|p| p["id"] == project);
            listed.then(|| match self.available(m) {
                true => Owner::Up(node.clone()),
                false => Owner::Unavailable(node.clone()),
            })
        })
    }

    /// The incarnation of `node` if it answers now.
    pub fn live_incarnation(&self, node: &str) -> Option<String> {
        read(&self.members)
            .get(node)
            .filter(|m| self.available(m))
            .map(|m| m.incarnation.clone())
    }

    /// Whether `node` is another node that answers now.
    pub fn node_state(&self, node: &str) -> Option<bool> {
        read(&self.members).get(node).map(|m| self.available(m))
    }

    /// The other nodes' projects, each with its `node`, and `UNAVAILABLE` as the state of those
    /// of a node past its time-to-live.
    pub fn remote_views(&self) -> Vec<Value> {
        let members = read(&self.members);
        let mut views = Vec::new();
        for (node, m) in members.iter() {
            let up = self.available(m);
            for p in &m.projects {
                let mut p = p.clone();
                p["node"] = node.as_str().into();
                if !up {
                    p["state"] = "UNAVAILABLE".into();
                }
                views.push(p);
            }
        }
        views
    }

    /// A project another node just created for one of our clients: known at once, before that
    /// node's next heartbeat.
    pub fn add_project(&self, node: &str, view: Value) {
        if let Some(m) = write(&self.members).get_mut(node) {
            if !m.projects.iter().any(|p| p["id"] == view["id"]) {
                m.projects.push(view);
            }
        }
    }

    /// The nodes for `/health`: this one first, then the others with their state.
    pub fn health(&self) -> Value {
        let members = read(&self.members);
        let mut nodes = vec![serde_json::json!({"node": self.own, "state": "self"})];
        let mut others: Vec<_> = members.iter().collect();
        others.sort_by(|a, b| a.0.cmp(b.0));
        for (node, m) in others {
            nodes.push(serde_json::json!({
                "node": node,
                "state": if self.available(m) { "up" } else { "unavailable" },
                "projects": m.projects.len(),
                "last_seen_ms": m.seen_at.elapsed().as_millis() as u64,
            }));
        }
        serde_json::json!({
            "registry": if self.is_synced() { "synced" } else { "unreachable" },
            "nodes": nodes,
        })
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    fn set_synced(&self, on: bool) {
        self.synced.store(on, std::sync::atomic::Ordering::Release);
    }

    /// Takes in one update of the bucket.
    fn apply(&self, entry: &Entry, live: bool) {
        let Some(node) = entry.key.strip_prefix("nodes.") else {
            return;
        };
        let mut members = write(&self.members);
        if entry.operation != Operation::Put {
            members.remove(node);
            return;
        }
        let Ok(e) = serde_json::from_slice::<NodeEntry>(&entry.value) else {
            log::warn!("ignoring an unreadable registry entry for node {node}");
            return;
        };
        if node == self.own {
            // Our own entry, unless another daemon was given the same name (while live: the
            // history may hold this node's previous run).
            if live && e.incarnation != self.incarnation {
                log::error!("another daemon uses the node name {node} in this cluster: give each daemon its own AGENTVISOR_NODE");
            }
            return;
        }
        // An entry read from history may be old: it counts from when it was written.
        let age = match live {
            true => Duration::ZERO,
            false => age_of(entry),
        };
        let seen_at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        members.insert(
            node.to_string(),
            Member {
                projects: e.projects,
                incarnation: e.incarnation,
                seen_at,
            },
        );
    }
}

/// How long ago the server stored `entry` (zero if the clocks disagree the other way).
fn age_of(entry: &Entry) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Duration::from_secs(now.saturating_sub(entry.created.unix_timestamp()).max(0) as u64)
}

/// Keeps this node's entry in the bucket and the others' in the registry, for the life of the
/// daemon: through NATS outages it keeps trying, and once NATS is back it creates the bucket
/// again if it is gone, puts its entry and reads everyone's (the resynchronisation).
pub async fn run(node: Arc<Node>, engine: Arc<Engine>) {
    let retry = node.settings.ttl / 4;
    loop {
        match open(&node).await {
            Ok(store) => {
                if let Err(e) = sync(&node, &engine, &store).await {
                    log::warn!("cluster registry: {e}; resynchronising");
                }
            }
            Err(e) => log::debug!("cluster registry unreachable: {e}"),
        }
        node.registry.set_synced(false);
        actix_rt::time::sleep(retry).await;
    }
}

/// The registry bucket, created if it is not there. The bucket's stream is created here, as
/// the client library would for a key-value bucket, because the library's own bucket creation
/// first reads account fields that NATS 2.9 (Debian's) does not send.
async fn open(node: &Node) -> Result<Store, String> {
    let js = async_nats::jetstream::new(node.client.clone());
    let bucket = subjects::bucket(&node.settings.cluster);
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("agentvisor: the nodes of a cluster and their projects".into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        // A node gone for good leaves the registry after a week.
        max_age: Duration::from_secs(7 * 24 * 3600),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    js.get_key_value(&bucket).await.map_err(|e| e.to_string())
}

/// Puts this node's entry at each heartbeat (or change) and applies every update of the
/// bucket, until something fails.
async fn sync(node: &Node, engine: &Engine, store: &Store) -> Result<(), String> {
    let key = subjects::node_key(&node.settings.node);
    let mut watch = store
        .watch_with_history("nodes.>")
        .await
        .map_err(|e| e.to_string())?;
    let heartbeat = node.settings.ttl / 3;
    let mut tick = actix_rt::time::interval(heartbeat.min(Duration::from_millis(250)));
    let mut last = Published::default();
    let mut live = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let views = engine.directory.project_views();
                if last.due(&views, heartbeat) {
                    last.revision = Some(put(store, &key, node, views.clone()).await?);
                    last.note(&views);
                }
                last.check_echo(heartbeat)?;
                node.registry.set_synced(true);
            }
            update = watch.next() => {
                let entry = match update {
                    Some(Ok(entry)) => entry,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("the registry watch ended".into()),
                };
                if entry.key == key {
                    last.echoed(entry.revision);
                }
                node.registry.apply(&entry, live);
                // The history is read once `delta` (entries still pending) reaches 0.
                live |= entry.delta == 0;
            }
        }
    }
}

async fn put(store: &Store, key: &str, node: &Node, projects: Vec<Value>) -> Result<u64, String> {
    let entry = NodeEntry {
        node: node.settings.node.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        incarnation: node.registry.incarnation.clone(),
        projects,
    };
    let bytes = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
    store
        .put(key, bytes.into())
        .await
        .map_err(|e| format!("cannot put this node's entry: {e}"))
}

/// What this node last put, and whether the watch has shown it back.
#[derive(Default)]
struct Published {
    at: Option<Instant>,
    /// The ids and states of the projects put: a change is put at once.
    shape: Vec<(Value, Value)>,
    revision: Option<u64>,
    echoed: u64,
}

impl Published {
    fn shape_of(views: &[Value]) -> Vec<(Value, Value)> {
        views
            .iter()
            .map(|v| (v["id"].clone(), v["state"].clone()))
            .collect()
    }

    fn due(&self, views: &[Value], heartbeat: Duration) -> bool {
        self.at.is_none_or(|at| at.elapsed() >= heartbeat) || Self::shape_of(views) != self.shape
    }

    fn note(&mut self, views: &[Value]) {
        self.at = Some(Instant::now());
        self.shape = Self::shape_of(views);
    }

    fn echoed(&mut self, revision: u64) {
        self.echoed = self.echoed.max(revision);
    }

    /// A watch that has not shown our own put back within a heartbeat is broken (a consumer
    /// lost with a restarted NATS): it is made again.
    fn check_echo(&self, heartbeat: Duration) -> Result<(), String> {
        match (self.revision, self.at) {
            (Some(rev), Some(at)) if self.echoed < rev && at.elapsed() > heartbeat => {
                Err("the registry watch stopped delivering".into())
            }
            _ => Ok(()),
        }
    }
}
