//! Reading history for clients — `get_messages` pages and the replay on `project_join` — off
//! the thread the actors share.
//!
//! Each read takes a [`HistoryView`] on the actor (cheap: shared indexes, no I/O), then runs on
//! tokio's blocking pool, at most [`crate::engine::history_readers`] at a time, within a budget.
//! A page is answered from the pool, so even encoding a large reply costs the actors nothing.
//!
//! A replay must still hand over to live events without a gap or a duplicate. Events are only
//! stored by this actor, so the read covers the history up to the view's last seq, and whatever
//! was stored while it ran is read in a further round; the subscription is made, with everything
//! read as its lead, in the actor's handler that finds nothing new — as before, no event can come
//! between the last read and the `Subscribe`. Until then the project holds the other requests it
//! is sent (in order), so that a client's `execute` after its `project_join` is still answered
//! after the replay, as it always was.

use std::future::Future;

use actix::prelude::*;
use serde_json::json;

use super::ProjectActor;
use crate::api::connection::{Deliver, Mark, ReplyTo};
use crate::error::ApiError;
use crate::protocol::request::HistoryQuery;
use crate::protocol::Frame;
use crate::storage::history::{Budget, HistoryView, Replay, ScanBudget};

/// The most events replayed on one join; a client further behind gets `recovered: false` and
/// pages the rest with `get_messages`.
pub const MAX_REPLAY: usize = 10_000;

/// Read rounds a replay takes off the actor's thread before it reads what is still missing on
/// it: each round only reads what was stored during the one before, so this is hardly reached.
const MAX_ROUNDS: u32 = 8;

/// A replay being read: what it has so far.
struct Replaying {
    reply: ReplyTo,
    since: u64,
    /// Everything after `since` up to `upto`, or the newest part of it (`recovered: false`).
    records: Vec<(u64, String)>,
    recovered: bool,
    upto: u64,
    rounds: u32,
}

impl Replaying {
    /// Adds a round's records (the events after `upto`), keeping the newest that fit.
    fn absorb(&mut self, round: Replay, upto: u64, max_bytes: usize) {
        if !round.recovered {
            // The round's own range is not whole: what came before it would leave a gap.
            self.records.clear();
            self.recovered = false;
        }
        self.records.extend(round.records);
        let over = self.records.len().saturating_sub(MAX_REPLAY);
        self.records.drain(..over);
        self.recovered &= over == 0 && keep_newest_within(&mut self.records, max_bytes);
        self.upto = upto;
    }
}

/// Drops the oldest replay records until the rest fit in `budget` bytes; returns whether all
/// were kept. The replay enters the connection's outbound queue at once, and that queue is
/// bounded (`max_backlog_bytes`): a replay as big as the bound would close the client with 4008
/// before it could read anything, and again on every reconnect. Keeping half the bound leaves
/// room for live events; what is left out is reported as `recovered: false` and the client pages
/// it with `get_messages`, as after retention.
fn keep_newest_within(records: &mut Vec<(u64, String)>, budget: usize) -> bool {
    let mut bytes = 0usize;
    let keep = records
        .iter()
        .rev()
        .take_while(|(_, line)| {
            bytes = bytes.saturating_add(line.len());
            bytes <= budget
        })
        .count();
    let cut = records.len() - keep;
    records.drain(..cut);
    cut == 0
}

impl ProjectActor {
    /// What one `get_messages` reply may cost.
    fn page_budget(&self) -> Budget {
        let c = &self.engine.config;
        Budget {
            scan: ScanBudget {
                records: c.history_scan_records,
                bytes: (c.history_page_bytes as u64).saturating_mul(4),
            },
            reply_bytes: c.history_page_bytes,
        }
    }

    /// The bytes one replay may hold: half a connection's backlog bound.
    fn replay_bytes(&self) -> usize {
        self.engine.config.max_backlog_bytes / 2
    }

    /// Runs `read` on the blocking pool over the history as it is now, when a reader's turn
    /// comes; `None` if the read could not run to its end.
    pub(super) fn read_off_thread<T: Send + 'static>(
        &self,
        read: impl FnOnce(HistoryView) -> T + Send + 'static,
    ) -> impl Future<Output = Option<T>> + 'static {
        let view = self.history.view();
        let readers = self.engine.history_readers.clone();
        async move {
            let _turn = readers.acquire_owned().await.ok()?;
            tokio::task::spawn_blocking(move || read(view)).await.ok()
        }
    }

    /// `get_messages`: read and answered off the actor's thread.
    pub(super) fn get_messages(
        &mut self,
        reply: ReplyTo,
        q: HistoryQuery,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        let (budget, id) = (self.page_budget(), self.id.clone());
        let read = self.read_off_thread(move |view| match view.query(&q, budget) {
            Ok(page) => {
                /// The page as stored: records go out byte for byte, never re-parsed (a stored
                /// agent line may hold numbers that a `serde_json::Value` cannot represent).
                #[derive(serde::Serialize)]
                struct Messages<'a> {
                    messages: &'a [Box<serde_json::value::RawValue>],
                    has_more: bool,
                    next_seq: u64,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    before_seq: Option<u64>,
                }
                let data = Messages {
                    messages: &page.records,
                    has_more: page.has_more,
                    next_seq: page.next_seq,
                    before_seq: page.before_seq,
                };
                reply.ok("messages", Some(&id), &data);
            }
            Err(e) => {
                log::error!(project = &*id; "could not read history: {e}");
                reply.err(Some(&id), &ApiError::storage("read the project's history"));
            }
        });
        // A read that could not finish drops its `ReplyTo`: the client is told to retry.
        ctx.spawn(read.into_actor(self).map(|_, _, _| ()));
        Ok(())
    }

    /// Subscribes the requester, replaying what it missed first. `since_seq: None` subscribes
    /// from now on.
    pub(super) fn join(
        &mut self,
        reply: ReplyTo,
        since_seq: Option<u64>,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        let last = self.history.last_seq();
        match since_seq {
            Some(n) if n < last => {
                self.hold_requests();
                let replaying = Replaying {
                    reply,
                    since: n,
                    records: Vec::new(),
                    recovered: true,
                    upto: n,
                    rounds: 0,
                };
                self.replay_round(replaying, ctx);
                Ok(())
            }
            Some(n) => self.subscribe_joined(&reply, n.min(last), Vec::new(), n <= last),
            None => self.subscribe_joined(&reply, last, Vec::new(), true),
        }
    }

    /// Reads the events stored after what `r` has, off the actor's thread, then goes on.
    fn replay_round(&mut self, mut r: Replaying, ctx: &mut Context<Self>) {
        let (from, max_bytes) = (r.upto, self.replay_bytes());
        let read = self.read_off_thread(move |view| {
            let upto = view.last_seq();
            view.replay_after(from, MAX_REPLAY, max_bytes)
                .map(|round| (round, upto))
        });
        ctx.spawn(read.into_actor(self).map(move |res, act, ctx| {
            match res {
                Some(Ok((round, upto))) => r.absorb(round, upto, max_bytes),
                Some(Err(e)) => return act.replay_failed(&r.reply, &e.to_string(), ctx),
                None => return act.replay_failed(&r.reply, "the read stopped", ctx),
            }
            r.rounds += 1;
            if act.history.last_seq() > r.upto && r.rounds < MAX_ROUNDS {
                return act.replay_round(r, ctx);
            }
            act.finish_replay(r, ctx);
        }));
    }

    /// Reads on the actor's thread whatever is still missing (nothing, unless the rounds ran
    /// out), and subscribes with the replay as the lead.
    fn finish_replay(&mut self, mut r: Replaying, ctx: &mut Context<Self>) {
        let last = self.history.last_seq();
        if last > r.upto {
            let max_bytes = self.replay_bytes();
            match self
                .history
                .view()
                .replay_after(r.upto, MAX_REPLAY, max_bytes)
            {
                Ok(round) => r.absorb(round, last, max_bytes),
                Err(e) => return self.replay_failed(&r.reply, &e.to_string(), ctx),
            }
        }
        crate::metrics::METRICS.replay(r.recovered);
        if let Err(e) = self.subscribe_joined(&r.reply, r.since, r.records, r.recovered) {
            r.reply.err(Some(&self.id), &e);
        }
        self.release_requests(ctx);
    }

    fn replay_failed(&mut self, reply: &ReplyTo, why: &str, ctx: &mut Context<Self>) {
        log::error!(project = &*self.id; "could not read history for replay: {why}");
        reply.err(
            Some(&self.id),
            &ApiError::storage("read the project's history"),
        );
        self.release_requests(ctx);
    }

    /// Answers `project_joined` and subscribes with the replayed events as the lead.
    fn subscribe_joined(
        &mut self,
        reply: &ReplyTo,
        since: u64,
        replay: Vec<(u64, String)>,
        recovered: bool,
    ) -> Result<(), ApiError> {
        let joined = reply.frame(
            "project_joined",
            Some(&self.id),
            &json!({"project": self.view(), "recovered": recovered, "replayed": replay.len()}),
        );
        let mut lead = vec![Deliver::marked(
            joined,
            Mark::Joined {
                project: self.id.clone(),
                since,
            },
        )];
        // One message for the whole replay, not one per event: thousands of sends would cost
        // the broadcast actor (on the actors' thread) and the connection a message each.
        if !replay.is_empty() {
            let frames: Vec<Frame> = replay
                .into_iter()
                .map(|(seq, line)| Frame {
                    text: line.into(),
                    project: Some(self.id.clone()),
                    seq: Some(seq),
                })
                .collect();
            lead.push(Deliver::batch(frames.into()));
        }
        self.subscribe(reply, lead)
    }
}

#[cfg(test)]
mod tests {
    use super::keep_newest_within;

    fn recs(lens: &[usize]) -> Vec<(u64, String)> {
        lens.iter()
            .enumerate()
            .map(|(i, n)| (i as u64 + 1, "x".repeat(*n)))
            .collect()
    }

    #[test]
    fn a_replay_within_budget_is_kept_whole() {
        let mut r = recs(&[10, 10, 10]);
        assert!(keep_newest_within(&mut r, 30));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn a_replay_over_budget_keeps_the_newest() {
        let mut r = recs(&[10, 10, 10, 10]);
        assert!(!keep_newest_within(&mut r, 25));
        assert_eq!(r.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4]);
        let mut r = recs(&[10, 50]);
        assert!(!keep_newest_within(&mut r, 25));
        assert!(r.is_empty());
    }
}
