//! The environment an agent starts with, built from an allow-list.
//!
//! An agent runs tools that print whatever they like (`env` in a shell tool is enough), and
//! everything it prints lands in history and in every subscriber's stream. So the agent never
//! inherits the daemon's environment wholesale: it gets what a CLI needs to find itself, its
//! configuration and its API (below), the names the operator adds with
//! `AGENTVISOR_AGENT_ENV`, and the run's marker `AGENTVISOR_RUN_ID`, and nothing else. No other
//! `AGENTVISOR_*` variable ever passes (the token, the TLS key path), whatever the operator adds;
//! a project's run adds its own consult capability on top (see [`crate::capability`]).

use std::ffi::OsString;

use super::process::RUN_ID_ENV;

/// Variables passed by exact name.
const NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TMPDIR",
    "SHELL",
    "TZ",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "NODE_EXTRA_CA_CERTS",
];

/// Variables passed by prefix: locale, and the agents' own keys and settings.
const PREFIXES: &[&str] = &["LC_", "ANTHROPIC_", "CLAUDE_", "OPENAI_", "CODEX_"];

/// The daemon's own prefix: never passed.
const DAEMON_PREFIX: &str = "AGENTVISOR_";

/// Whether `name` may reach an agent. `extra` holds operator-given names; one ending in `*` is
/// a prefix.
pub fn allowed(name: &str, extra: &[String]) -> bool {
    if name.starts_with(DAEMON_PREFIX) {
        return false;
    }
    NAMES.contains(&name)
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || extra.iter().any(|e| match e.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == e,
        })
}

/// The environment of one run: the allowed part of the daemon's own, plus the run's marker.
pub fn for_run(run_id: &str, extra: &[String]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k.to_str().is_some_and(|k| allowed(k, extra)))
        .collect();
    env.push((RUN_ID_ENV.into(), run_id.into()));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_pass_and_the_agents_keys_do() {
        let extra = vec!["MOCK_*".to_string(), "AGENTVISOR_*".to_string(), "X".into()];
        for name in [
            "AGENTVISOR_TOKEN",
            "AGENTVISOR_TLS_KEY",
            "AGENTVISOR_RUN_ID",
        ] {
            assert!(!allowed(name, &extra), "{name}");
        }
        for name in ["AWS_SECRET_ACCESS_KEY", "XY", "DATABASE_URL"] {
            assert!(!allowed(name, &extra), "{name}");
        }
        for name in ["PATH", "ANTHROPIC_API_KEY", "LC_ALL", "MOCK_A", "X"] {
            assert!(allowed(name, &extra), "{name}");
        }
    }
}
