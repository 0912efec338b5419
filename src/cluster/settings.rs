//! The cluster's settings: where NATS is, how to log in to it, which cluster this daemon joins
//! and under which node name (docs/configuration.md, "Cluster").

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::parse_duration;

/// The flags and variables of a daemon that joins a cluster. Without `AGENTVISOR_NATS_URL` the
/// others are ignored and no NATS code runs.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// NATS server(s) to join a cluster through (`nats://host:4222`, comma-separated for
    /// several) [default: none, a single daemon].
    #[arg(long, env = "AGENTVISOR_NATS_URL")]
    pub nats_url: Option<String>,
    /// The cluster to join: daemons of one cluster see each other's projects.
    #[arg(long, env = "AGENTVISOR_CLUSTER", default_value = "default")]
    pub cluster: String,
    /// This daemon's name in the cluster [default: the host name].
    #[arg(long, env = "AGENTVISOR_NODE")]
    pub node: Option<String>,
    /// How long a node may stay silent before its projects are shown UNAVAILABLE.
    #[arg(long, env = "AGENTVISOR_CLUSTER_TTL", default_value = "15s", value_parser = parse_duration)]
    pub cluster_ttl: Duration,
    /// NATS user name (with AGENTVISOR_NATS_PASSWORD).
    #[arg(long, env = "AGENTVISOR_NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password (with AGENTVISOR_NATS_USER).
    #[arg(long, env = "AGENTVISOR_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// NATS token.
    #[arg(long, env = "AGENTVISOR_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// NATS credentials file (JWT and nkey seed, as `nsc` writes it).
    #[arg(long, env = "AGENTVISOR_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
}

/// How the daemon logs in to NATS.
#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    UserPassword(String, String),
    Token(String),
    File(PathBuf),
}

/// The validated settings of a daemon that joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub nats_url: String,
    pub cluster: String,
    pub node: String,
    pub ttl: Duration,
    pub credentials: Credentials,
}

impl ClusterArgs {
    /// The settings, or `None` without `AGENTVISOR_NATS_URL`.
    pub fn validate(&self) -> Result<Option<ClusterSettings>, String> {
        let Some(url) = self.nats_url.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if url.is_empty() {
            return Err("AGENTVISOR_NATS_URL is empty".into());
        }
        let cluster = subject_token("AGENTVISOR_CLUSTER", &self.cluster)?;
        let node = match &self.node {
            Some(n) => subject_token("AGENTVISOR_NODE", n)?,
            None => host_node_name()?,
        };
        if self.cluster_ttl < Duration::from_millis(300) {
            return Err("AGENTVISOR_CLUSTER_TTL must be at least 300ms".into());
        }
        Ok(Some(ClusterSettings {
            nats_url: url.to_string(),
            cluster,
            node,
            ttl: self.cluster_ttl,
            credentials: self.credentials()?,
        }))
    }

    fn credentials(&self) -> Result<Credentials, String> {
        let given = [
            self.nats_user.is_some() || self.nats_password.is_some(),
            self.nats_token.is_some(),
            self.nats_creds.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err("give one kind of NATS credentials: a user and password, a token, or a credentials file".into());
        }
        Ok(match (&self.nats_user, &self.nats_password) {
            (Some(u), Some(p)) => Credentials::UserPassword(u.clone(), p.clone()),
            (Some(_), None) | (None, Some(_)) => {
                return Err("AGENTVISOR_NATS_USER and AGENTVISOR_NATS_PASSWORD go together".into())
            }
            (None, None) => match (&self.nats_token, &self.nats_creds) {
                (Some(t), _) => Credentials::Token(t.clone()),
                (_, Some(f)) => Credentials::File(f.clone()),
                _ => Credentials::None,
            },
        })
    }
}

/// A name that becomes one token of NATS subjects and of the registry's keys.
fn subject_token(setting: &str, value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    match ok {
        true => Ok(value.to_string()),
        false => Err(format!(
            "{setting} must be 1 to 64 letters, digits, '-' or '_' (it names NATS subjects)"
        )),
    }
}

/// The host name, with anything a subject token may not hold (the dots of a full name)
/// turned into '-'.
fn host_node_name() -> Result<String, String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into a buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || c == '_' {
            true => c,
            false => '-',
        })
        .take(64)
        .collect();
    match rc == 0 && !name.is_empty() {
        true => Ok(name),
        false => Err("cannot read the host name: set AGENTVISOR_NODE".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_subject_tokens_are_refused() {
        assert!(subject_token("AGENTVISOR_NODE", "node-1_a").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(65)] {
            assert!(subject_token("AGENTVISOR_NODE", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_host_name_is_a_valid_default() {
        let name = host_node_name().unwrap();
        assert!(subject_token("AGENTVISOR_NODE", &name).is_ok(), "{name}");
    }
}
