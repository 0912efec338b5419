//! Requests sent and not answered yet.
//!
//! Every request stays here, as the exact text that was sent, until its reply arrives. After a
//! reconnect all of them are sent again, in their original order, with the same `id` and the
//! same `idempotency_key`: the daemon carries each out at most once and answers each. A request
//! answered with a retryable error waits for its retry time and is sent again.

use std::time::Instant;

struct Entry {
    id: String,
    text: String,
    retry_at: Option<Instant>,
}

#[derive(Default)]
pub struct Pending {
    /// Oldest first.
    entries: Vec<Entry>,
}

impl Pending {
    pub fn add(&mut self, id: String, text: String) {
        self.entries.push(Entry {
            id,
            text,
            retry_at: None,
        });
    }

    /// The reply to `id` arrived: forget it. Whether it was still waiting.
    pub fn answered(&mut self, id: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        self.entries.len() != before
    }

    pub fn contains(&self, id: &str) -> bool {
        self.entries.iter().any(|e| e.id == id)
    }

    /// `id` got a retryable error: send it again at `at`.
    pub fn retry_at(&mut self, id: &str, at: Instant) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.retry_at = Some(at);
        }
    }

    /// Forgets the requests whose id starts with `prefix` (joins that a new connection replaces).
    pub fn drop_prefixed(&mut self, prefix: &str) {
        self.entries.retain(|e| !e.id.starts_with(prefix));
    }

    /// Everything, in order, for a new connection (retry times are moot: it is a new chance).
    pub fn resend_all(&mut self) -> Vec<String> {
        self.entries
            .iter_mut()
            .map(|e| {
                e.retry_at = None;
                e.text.clone()
            })
            .collect()
    }

    /// The requests whose retry time has come.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        self.entries
            .iter_mut()
            .filter(|e| e.retry_at.is_some_and(|t| t <= now))
            .map(|e| {
                e.retry_at = None;
                e.text.clone()
            })
            .collect()
    }

    pub fn next_retry(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.retry_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_stay_until_answered_and_are_resent_in_order() {
        let mut p = Pending::default();
        p.add("c-1".into(), "one".into());
        p.add("c-2".into(), "two".into());
        p.add("rejoin-3".into(), "three".into());
        assert_eq!(p.resend_all(), ["one", "two", "three"]);
        assert!(p.answered("c-1"));
        assert!(!p.answered("c-1"));
        p.drop_prefixed("rejoin-");
        assert_eq!(p.resend_all(), ["two"]);
        let now = Instant::now();
        p.retry_at("c-2", now + Duration::from_secs(1));
        assert!(p.due(now).is_empty());
        assert_eq!(p.next_retry(), Some(now + Duration::from_secs(1)));
        assert_eq!(p.due(now + Duration::from_secs(2)), ["two"]);
        assert_eq!(p.next_retry(), None);
    }
}
