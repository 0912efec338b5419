//! Where the daemon is and how to prove who we are: `--url` / `AGENTVISOR_URL`, and the token
//! from `AGENTVISOR_TOKEN` or `AGENTVISOR_TOKEN_FILE` only (a command-line value would show in
//! `ps`).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::Failure;
use crate::config::parse_duration;

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ConnectOpts {
    /// The daemon's WebSocket URL.
    #[arg(long, env = "AGENTVISOR_URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Give up after the daemon has been unreachable this long [default: 5m for run and watch,
    /// 10s for the others] (e.g. 30s, 2m).
    #[arg(long, env = "AGENTVISOR_GIVE_UP", value_parser = parse_duration)]
    pub give_up: Option<Duration>,
}

/// What a session needs to connect.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub token: Option<String>,
    pub give_up: Duration,
    /// A heartbeat ping this often; two silent intervals mean the connection is dead.
    pub heartbeat: Duration,
    /// TLS for a `wss://` URL.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Settings {
    /// `long_lived`: a command that follows a run (`run`, `watch`) waits longer for the daemon.
    pub fn new(opts: &ConnectOpts, long_lived: bool) -> Result<Settings, Failure> {
        if !(opts.url.starts_with("ws://") || opts.url.starts_with("wss://")) {
            return Err(Failure::Usage(format!(
                "the daemon URL must start with ws:// or wss:// (got '{}')",
                opts.url
            )));
        }
        let default = if long_lived { 300 } else { 10 };
        let heartbeat = std::env::var("AGENTVISOR_HEARTBEAT")
            .ok()
            .map(|v| parse_duration(&v).map_err(Failure::Usage))
            .transpose()?
            .unwrap_or(Duration::from_secs(10));
        if heartbeat.is_zero() {
            return Err(Failure::Usage(
                "AGENTVISOR_HEARTBEAT must be greater than 0".into(),
            ));
        }
        Ok(Settings {
            url: opts.url.clone(),
            token: token_from_env()?,
            give_up: opts.give_up.unwrap_or(Duration::from_secs(default)),
            heartbeat,
            tls: super::tls::for_url(&opts.url)?,
        })
    }
}

fn token_from_env() -> Result<Option<String>, Failure> {
    let direct = std::env::var("AGENTVISOR_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let file = std::env::var_os("AGENTVISOR_TOKEN_FILE").filter(|f| !f.is_empty());
    match (direct, file) {
        (Some(t), _) => Ok(Some(t.trim().to_string())),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(&f).map_err(|e| {
                Failure::Usage(format!(
                    "cannot read the token file {}: {e}",
                    std::path::Path::new(&f).display()
                ))
            })?;
            Ok(Some(text.lines().next().unwrap_or("").trim().to_string()))
        }
        (None, None) => Ok(None),
    }
}
