//! Several daemons, one view: the daemon as a node of a cluster on NATS (docs/scaling.md).
//!
//! With `AGENTVISOR_NATS_URL` the daemon joins the cluster `AGENTVISOR_CLUSTER` as node
//! `AGENTVISOR_NODE`. Each node keeps running its own projects exactly as a single daemon does;
//! the cluster adds:
//!
//! - [`registry`]: the nodes and their projects in a JetStream key-value bucket, with
//!   heartbeats, so that any node lists every project and knows whose it is;
//! - [`remote`]: a request for another node's project is forwarded to it, and the events of the
//!   remote projects this node's clients watch are fanned out here;
//! - [`gateway`]: the owner's side, which answers forwarded requests through [`loopback`]
//!   connections to itself and publishes each watched project's events once.
//!
//! Without `AGENTVISOR_NATS_URL` none of this is started and the engine has no cluster.

pub mod gateway;
pub mod link;
pub mod loopback;
pub mod registry;
pub mod remote;
pub mod settings;
pub mod subjects;

use std::sync::{Arc, Weak};

use agentvisor_actors::api::cluster::Cluster;
use agentvisor_actors::connection::ReplyTo;
use agentvisor_actors::directory::ProjectRoute;
use agentvisor_actors::engine::Engine;
use agentvisor_actors::error::ApiError;
use agentvisor_actors::protocol::Request;

use link::LinkState;
use registry::{Owner, Registry};
use remote::Remote;
use settings::ClusterSettings;

/// This daemon as a node: its settings, its NATS client and what it knows of the others.
pub struct Node {
    pub settings: ClusterSettings,
    pub client: async_nats::Client,
    pub link: Arc<LinkState>,
    pub registry: Registry,
}

/// Connects to NATS and starts the node's tasks, then makes the engine a node of the cluster.
/// Fails only on settings NATS cannot use (an unreadable credentials file); NATS being down
/// is not a failure: the node serves its own projects and keeps trying.
/// `own_tls` is how the node reaches its own TLS listener, when it has one.
pub async fn start(
    settings: ClusterSettings,
    engine: &Arc<Engine>,
    own_tls: Option<rustls::ClientConfig>,
) -> Result<(), String> {
    let link = Arc::new(LinkState::default());
    let client = link::connect(&settings, link.clone()).await?;
    log::info!(
        "joining cluster {} as node {} through NATS at {}",
        settings.cluster,
        settings.node,
        settings.nats_url
    );
    let node = Arc::new(Node {
        registry: Registry::new(&settings.node, settings.ttl),
        settings,
        client,
        link,
    });
    let target = loopback::Target {
        url: engine.config.daemon_url.clone().unwrap_or_default(),
        token: engine.config.token.clone(),
        tls: own_tls.map(Arc::new),
    };
    actix_rt::spawn(registry::run(node.clone(), engine.clone()));
    actix_rt::spawn(gateway::Gateway::new(node.clone(), target).serve());
    let remote = Remote::new(node.clone());
    actix_rt::spawn(remote.clone().keep_watches());
    engine.join_cluster(Arc::new(NodeRoute {
        remote,
        node,
        engine: Arc::downgrade(engine),
    }));
    Ok(())
}

/// The cluster as the engine's connections use it.
struct NodeRoute {
    node: Arc<Node>,
    remote: Arc<Remote>,
    /// Weak: the engine holds this route.
    engine: Weak<Engine>,
}

impl NodeRoute {
    fn is_local(&self, project: &str) -> bool {
        self.engine
            .upgrade()
            .is_some_and(|e| !matches!(e.directory.route(project), ProjectRoute::Missing))
    }

    /// Every project of the cluster, oldest first, each with its node.
    fn project_list(&self, reply: ReplyTo) {
        let own = self.node.settings.node.as_str();
        let mut projects = self
            .engine
            .upgrade()
            .map(|e| e.directory.project_views())
            .unwrap_or_default();
        for p in projects.iter_mut() {
            p["node"] = own.into();
        }
        projects.extend(self.node.registry.remote_views());
        projects.sort_by(|a, b| {
            let key = |p: &serde_json::Value| (p["created_at"].to_string(), p["id"].to_string());
            key(a).cmp(&key(b))
        });
        reply.ok(
            "project_list",
            None,
            &serde_json::json!({ "projects": projects }),
        );
    }

    /// `project_create` with `data.node` naming another node.
    fn create_on(&self, node: &str, request: &Request, text: &str, reply: ReplyTo) {
        match self.node.registry.node_state(node) {
            Some(true) => self.remote.forward(node.to_string(), request, text, reply),
            Some(false) => reply.err(None, &unavailable(node)),
            None => reply.err(
                None,
                &ApiError::validation(format!(
                    "no node named '{}' in cluster {}",
                    agentvisor_actors::logfmt::sanitize(node, 64),
                    self.node.settings.cluster
                )),
            ),
        }
    }
}

fn unavailable(node: &str) -> ApiError {
    ApiError::node_unavailable(
        format!("node {node} is unavailable: it has not been heard from within the cluster's time-to-live; try again once it is back"),
        node,
    )
}

impl Cluster for NodeRoute {
    fn route(&self, request: &Request, text: &str, reply: ReplyTo) -> Option<ReplyTo> {
        match request {
            Request::ProjectList => self.project_list(reply),
            Request::ProjectCreate {
                node: Some(node), ..
            } if *node != self.node.settings.node => self.create_on(node, request, text, reply),
            _ => {
                let project = request
                    .project()
                    .filter(|p| subjects::is_token(p) && !self.is_local(p));
                let owner = project.and_then(|p| self.node.registry.owner(p));
                match (owner, request) {
                    (None, _) => return Some(reply),
                    (Some(_), Request::ProjectLeave { project_id }) => {
                        self.remote.leave(project_id, reply)
                    }
                    (Some(Owner::Up(node)), _) => self.remote.forward(node, request, text, reply),
                    (Some(Owner::Unavailable(node)), _) => {
                        let p: Arc<str> = project.map(Arc::from).unwrap_or_else(|| Arc::from(""));
                        reply.err(Some(&p), &unavailable(&node))
                    }
                }
            }
        }
        None
    }

    fn owns_elsewhere(&self, project: &str) -> bool {
        subjects::is_token(project)
            && !self.is_local(project)
            && self.node.registry.owner(project).is_some()
    }

    fn health(&self) -> serde_json::Value {
        let mut h = self.node.registry.health();
        h["name"] = self.node.settings.cluster.as_str().into();
        h["node"] = self.node.settings.node.as_str().into();
        h["nats"] = match self.node.link.is_up() {
            true => "connected",
            false => "disconnected",
        }
        .into();
        h
    }

    fn degraded(&self) -> bool {
        !self.node.link.is_up() || !self.node.registry.is_synced()
    }
}
