//! The `idempotency_key` a client may put on a change request: which requests take one, how
//! long it may be, and the fingerprint that tells a repeat from a different request under the
//! same key. The store that keeps the replies is [`crate::api::idempotency`].

use serde_json::Value;

/// The longest key a client may use.
pub const MAX_KEY_BYTES: usize = 128;
/// The request types that take a key.
pub const KEYED_REQUESTS: [&str; 6] = [
    "project_create",
    "project_delete",
    "execute",
    "agent_kill",
    "agent_new_session",
    "permission_respond",
];
/// A request's key and a fingerprint of what it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: u64,
}

impl IdempotencyKey {
    /// The fingerprint covers the type, the project and every field of `data` (serde_json
    /// objects are sorted by key, so field order does not matter). FNV-1a: stable across
    /// builds and restarts, unlike the standard library's hasher.
    pub fn new(key: String, kind: &str, project_id: Option<&str>, data: &Value) -> Self {
        let text = format!(
            "{kind}\0{}\0{}",
            project_id.unwrap_or_default(),
            serde_json::to_string(data).unwrap_or_default()
        );
        let fingerprint = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        IdempotencyKey { key, fingerprint }
    }
}
