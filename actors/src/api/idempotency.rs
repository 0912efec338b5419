//! Exactly-once change requests: the `idempotency_key` of `project_create`, `project_delete`,
//! `execute`, `agent_kill` and `agent_new_session`.
//!
//! A client that lost a reply (a cut connection, a daemon restart) cannot tell whether its
//! request was carried out, so it sends it again with the same key. The first request with a key
//! is carried out; its successful reply is stored durably *before* it is sent, and every later
//! request with that key within [`TTL_MS`] gets that reply again instead of a second change. A
//! repeat that arrives while the first is still in flight waits for the first one's reply. An
//! error is not stored (nothing was changed, so doing the request again is safe), and the same
//! key on a different request is refused.
//!
//! Stored replies live in `<data_dir>/idempotency.jsonl`, one JSON object per line, appended and
//! fsynced per reply and compacted (expired and evicted entries dropped) when it has grown.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::connection::ReplyTo;
use crate::error::ApiError;
pub use crate::protocol::key::{IdempotencyKey, KEYED_REQUESTS, MAX_KEY_BYTES};
use crate::protocol::Frame;
use crate::sync::lock as lock_ignoring_poison;

/// How long a stored reply is given again: a day.
pub const TTL_MS: i64 = 24 * 3600 * 1000;
/// The most stored replies; past it the oldest are forgotten first.
pub const MAX_ENTRIES: usize = 10_000;
const FILE_NAME: &str = "idempotency.jsonl";

/// One line of the file: a stored reply.
#[derive(Serialize, Deserialize, Clone)]
struct Stored {
    key: String,
    fp: u64,
    at: i64,
    reply: Value,
}

/// A keyed request being carried out, and repeats waiting for its reply.
struct InFlight {
    fingerprint: u64,
    waiters: Vec<ReplyTo>,
}

#[derive(Default)]
struct Inner {
    done: HashMap<String, Stored>,
    /// Keys of `done`, oldest first.
    order: VecDeque<String>,
    in_flight: HashMap<String, InFlight>,
    file: Option<File>,
    /// Lines in the file, to know when compaction pays.
    lines: usize,
}

/// The stored replies of keyed requests; one per daemon, shared by every actor.
pub struct IdempotencyStore {
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
}

/// What [`IdempotencyStore::admit`] decided about a keyed request.
pub enum Admission {
    /// Carry it out; its reply will be stored.
    Proceed(ReplyTo),
    /// It has been answered (a stored reply, or a refusal) or will be (it waits for the first).
    Handled,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl IdempotencyStore {
    /// A store that keeps nothing on disk (for engines without a data directory of their own).
    pub fn in_memory() -> Self {
        IdempotencyStore {
            path: None,
            inner: Mutex::default(),
        }
    }

    /// Loads the stored replies of `data_dir`, dropping expired ones. A file that cannot be
    /// read or written is logged and the store works from memory: losing exactly-once across a
    /// restart is better than refusing to start.
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join(FILE_NAME);
        let mut inner = Inner::default();
        let existed = match File::open(&path) {
            Ok(f) => {
                // A torn last line (a crash mid-append) or a damaged one is skipped.
                for line in BufReader::new(f).lines().map_while(Result::ok) {
                    if let Ok(s) = serde_json::from_str::<Stored>(&line) {
                        inner.remember(s);
                    }
                }
                true
            }
            Err(_) => false,
        };
        let store = IdempotencyStore {
            path: Some(path),
            inner: Mutex::new(inner),
        };
        if existed {
            store.compact(&mut lock_ignoring_poison(&store.inner));
        }
        store
    }

    /// Decides about a request with a key: the stored reply, a refusal, a wait behind the same
    /// request in flight, or go ahead (with `reply` set to store its answer).
    pub fn admit(self: &Arc<Self>, key: IdempotencyKey, mut reply: ReplyTo) -> Admission {
        let mut inner = lock_ignoring_poison(&self.inner);
        inner.forget_expired(now_ms());
        let seen = match (inner.done.get(&key.key), inner.in_flight.get(&key.key)) {
            (Some(s), _) => Some(s.fp),
            (None, Some(f)) => Some(f.fingerprint),
            (None, None) => None,
        };
        if seen.is_some_and(|fp| fp != key.fingerprint) {
            drop(inner);
            reply.err(None, &ApiError::validation(
                "this idempotency_key was already used for a different request; use a fresh key for a new request",
            ));
            return Admission::Handled;
        }
        if let Some(stored) = inner.done.get(&key.key) {
            let frame = replay(&stored.reply, reply.id.as_deref());
            drop(inner);
            reply.send(frame);
            return Admission::Handled;
        }
        if let Some(f) = inner.in_flight.get_mut(&key.key) {
            f.waiters.push(reply);
            return Admission::Handled;
        }
        inner.in_flight.insert(
            key.key.clone(),
            InFlight {
                fingerprint: key.fingerprint,
                waiters: Vec::new(),
            },
        );
        drop(inner);
        reply.store_answer_in(self.clone(), key);
        Admission::Proceed(reply)
    }

    /// Called with the reply of a request admitted with `key`, before it is sent: a success is
    /// stored durably and given to the repeats waiting for it; after an error the key is free
    /// again and the waiting repeats are answered (as unanswered, retryable) when dropped here.
    pub fn settle(&self, key: &IdempotencyKey, frame: &Frame) {
        let reply: Value = serde_json::from_str(&frame.text).unwrap_or(Value::Null);
        let mut inner = lock_ignoring_poison(&self.inner);
        let waiters = inner
            .in_flight
            .remove(&key.key)
            .map(|f| f.waiters)
            .unwrap_or_default();
        if reply["type"] == "error" || reply.is_null() {
            drop(inner);
            drop(waiters);
            return;
        }
        let stored = Stored {
            key: key.key.clone(),
            fp: key.fingerprint,
            at: now_ms(),
            reply,
        };
        self.append(&mut inner, &stored);
        inner.remember(stored.clone());
        if inner.lines > 2 * inner.done.len() + 1000 {
            self.compact(&mut inner);
        }
        drop(inner);
        for w in waiters {
            w.send(replay(&stored.reply, w.id.as_deref()));
        }
    }

    /// Forgets a request admitted with `key` that ends without a reply; repeats waiting for it
    /// are dropped too (and so answered as retryable).
    pub fn abandon(&self, key: &IdempotencyKey) {
        let waiters = lock_ignoring_poison(&self.inner).in_flight.remove(&key.key);
        drop(waiters);
    }

    fn append(&self, inner: &mut Inner, stored: &Stored) {
        let Some(path) = &self.path else { return };
        if inner.file.is_none() {
            inner.file = OpenOptions::new().create(true).append(true).open(path).ok();
        }
        let Some(file) = inner.file.as_mut() else {
            log::error!("cannot open {FILE_NAME}: this reply is kept in memory only");
            return;
        };
        let mut line = serde_json::to_vec(stored).unwrap_or_default();
        line.push(b'\n');
        match file.write_all(&line).and_then(|()| file.sync_data()) {
            Ok(()) => inner.lines += 1,
            Err(e) => {
                log::error!("cannot store an idempotent reply: {e}");
                inner.file = None;
            }
        }
    }

    /// Rewrites the file with the live entries only.
    fn compact(&self, inner: &mut Inner) {
        let Some(path) = &self.path else { return };
        inner.forget_expired(now_ms());
        let mut text = Vec::new();
        for key in &inner.order {
            if let Some(s) = inner.done.get(key) {
                text.extend(serde_json::to_vec(s).unwrap_or_default());
                text.push(b'\n');
            }
        }
        inner.file = None;
        match crate::storage::atomic::write_atomic(path, &text) {
            Ok(()) => inner.lines = inner.done.len(),
            Err(e) => log::error!("cannot compact {FILE_NAME}: {e}"),
        }
    }

    /// How many replies are stored (for tests and health).
    pub fn len(&self) -> usize {
        lock_ignoring_poison(&self.inner).done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn remember(&mut self, s: Stored) {
        if now_ms() - s.at >= TTL_MS {
            return;
        }
        if self.done.insert(s.key.clone(), s.clone()).is_none() {
            self.order.push_back(s.key);
        }
        while self.done.len() > MAX_ENTRIES {
            match self.order.pop_front() {
                Some(old) => self.done.remove(&old),
                None => break,
            };
        }
    }

    /// Drops entries older than a day; `order` is oldest first, so only its front is looked at.
    fn forget_expired(&mut self, now: i64) {
        while let Some(key) = self.order.front() {
            match self.done.get(key) {
                Some(s) if now - s.at < TTL_MS => break,
                _ => {
                    if let Some(k) = self.order.pop_front() {
                        self.done.remove(&k);
                    }
                }
            }
        }
    }
}

/// A stored reply, sent again with the id of the request that repeats it.
fn replay(stored: &Value, id: Option<&str>) -> Frame {
    let mut v = stored.clone();
    if let Some(obj) = v.as_object_mut() {
        match id {
            Some(id) => obj.insert("id".into(), id.into()),
            None => obj.remove("id"),
        };
    }
    let project = v["project_id"].as_str().map(Arc::from);
    Frame {
        text: serde_json::to_string(&v).unwrap_or_default().into(),
        project,
        seq: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(key: &str, at: i64) -> Stored {
        Stored {
            key: key.into(),
            fp: 1,
            at,
            reply: json!({"type": "execute_accepted", "id": "a"}),
        }
    }

    #[test]
    fn fingerprints_ignore_field_order_but_not_values() {
        let a = IdempotencyKey::new(
            "k".into(),
            "execute",
            Some("p"),
            &json!({"prompt": "x", "options": {"model": "m"}}),
        );
        let b = IdempotencyKey::new(
            "k".into(),
            "execute",
            Some("p"),
            &json!({"options": {"model": "m"}, "prompt": "x"}),
        );
        let c = IdempotencyKey::new("k".into(), "execute", Some("p"), &json!({"prompt": "y"}));
        let d = IdempotencyKey::new(
            "k".into(),
            "execute",
            Some("q"),
            &json!({"prompt": "x", "options": {"model": "m"}}),
        );
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_ne!(a.fingerprint, d.fingerprint);
    }

    #[test]
    fn expired_and_excess_entries_are_forgotten_oldest_first() {
        let mut inner = Inner::default();
        inner.remember(stored("old", now_ms() - TTL_MS - 1));
        assert!(inner.done.is_empty(), "an expired entry is not loaded");
        for i in 0..MAX_ENTRIES + 2 {
            inner.remember(stored(&i.to_string(), now_ms()));
        }
        assert_eq!(inner.done.len(), MAX_ENTRIES);
        assert!(!inner.done.contains_key("0") && !inner.done.contains_key("1"));
        inner.forget_expired(now_ms() + TTL_MS);
        assert!(inner.done.is_empty() && inner.order.is_empty());
    }

    #[test]
    fn replies_survive_reopening_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = IdempotencyStore::open(dir.path());
        let key = IdempotencyKey::new("k1".into(), "execute", Some("p"), &json!({}));
        let frame = replay(
            &json!({"type": "execute_accepted", "id": "x", "data": {"run_id": "r"}}),
            Some("x"),
        );
        store.settle(&key, &frame);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap();
        f.write_all(b"{\"key\":\"torn").unwrap();
        let again = IdempotencyStore::open(dir.path());
        assert_eq!(again.len(), 1);
        let inner = lock_ignoring_poison(&again.inner);
        assert_eq!(inner.done["k1"].reply["data"]["run_id"], "r");
        assert_eq!(inner.done["k1"].fp, key.fingerprint);
    }

    #[test]
    fn an_error_reply_is_not_stored() {
        let store = IdempotencyStore::in_memory();
        let key = IdempotencyKey::new("k".into(), "project_delete", Some("p"), &json!({}));
        store.settle(&key, &replay(&json!({"type": "error"}), None));
        assert!(store.is_empty());
    }
}
