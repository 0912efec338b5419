//! The parts of an agent's JSON output line the daemon reads, shared by every agent module.

use serde::Deserialize;

/// The fields of an agent line the daemon cares about; everything else is passed through.
/// Each field is read on its own ([`lenient`]): one field of an unexpected type must not hide
/// the others (an `is_error: true` next to an odd `total_cost_usd` still fails the run).
#[derive(Deserialize)]
pub struct AgentLine {
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub subtype: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub session_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub thread_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub is_error: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    pub total_cost_usd: Option<f64>,
    pub result: Option<serde_json::Value>,
    pub message: Option<serde_json::Value>,
    pub error: Option<serde_json::Value>,
}

/// A field of the expected type, or `None` when it has another type.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

/// What one output line said about the run, as an agent module reads it.
#[derive(Debug, Default, PartialEq)]
pub struct Observation {
    /// The agent's session (or thread) id, to resume the conversation next time.
    pub session: Option<String>,
    pub cost_usd: Option<f64>,
    /// The agent reported that the run failed.
    pub failed: bool,
    /// What the agent said went wrong (unsanitised agent text).
    pub error: Option<String>,
}
