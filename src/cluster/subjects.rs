//! Every name this daemon uses in NATS, namespaced by the cluster so that several clusters can
//! share one NATS. Cluster and node names are checked to be single subject tokens at start;
//! project ids come from the registry, where nodes put the UUIDs they created.

/// Where a node receives the requests other nodes forward to it.
pub fn requests(cluster: &str, node: &str) -> String {
    format!("agentvisor.{cluster}.node.{node}.requests")
}

/// Where a project's owner publishes each of its events, once.
pub fn events(cluster: &str, project: &str) -> String {
    format!("agentvisor.{cluster}.project.{project}.events")
}

/// The JetStream key-value bucket of the cluster's registry.
pub fn bucket(cluster: &str) -> String {
    format!("agentvisor-{cluster}")
}

/// A node's key in the registry.
pub fn node_key(node: &str) -> String {
    format!("nodes.{node}")
}

/// Whether a project id can be put in a subject as one token.
pub fn is_token(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
