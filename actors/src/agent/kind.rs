//! An agent as the rest of the daemon names it: its place in the registry
//! ([`super::AGENTS`]), written as its name on the wire and in `metadata.json`.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::{Agent, AGENTS};

/// One of the agents in the registry.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgentKind(u8);

impl AgentKind {
    /// The agent registered under `name`.
    pub fn parse(name: &str) -> Option<Self> {
        AGENTS
            .iter()
            .position(|a| a.name() == name)
            .map(|i| AgentKind(i as u8))
    }

    /// Every registered agent, in the registry's order.
    pub fn all() -> impl Iterator<Item = AgentKind> {
        (0..AGENTS.len()).map(|i| AgentKind(i as u8))
    }

    pub fn as_str(self) -> &'static str {
        self.agent().name()
    }

    /// The module that knows this agent.
    pub fn agent(self) -> &'static dyn Agent {
        AGENTS[self.index()]
    }

    /// Its place in the registry, for tables that hold one entry per agent.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The variable naming its executable: `AGENTVISOR_<NAME>_BIN`.
    pub fn bin_variable(self) -> String {
        format!("AGENTVISOR_{}_BIN", self.as_str().to_ascii_uppercase())
    }

    /// Every name between `quote`s, as an error lists them: `'claude' or 'codex'`.
    pub fn choices(quote: char) -> String {
        let names: Vec<String> = Self::all()
            .map(|k| format!("{quote}{}{quote}", k.as_str()))
            .collect();
        match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

/// The first agent in the registry: a new project's agent when none is named.
impl Default for AgentKind {
    fn default() -> Self {
        AgentKind(0)
    }
}

impl fmt::Debug for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AgentKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AgentKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        AgentKind::parse(&name).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown agent `{name}`, expected {}",
                AgentKind::choices('`')
            ))
        })
    }
}
