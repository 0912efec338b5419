//! Reading history: pages for `get_messages` and ranges for replay, each within a budget.
//!
//! A query finds its first block with the block index (binary search by seq or time), then reads
//! block by block, forwards or backwards, until the page is full or its budget is spent. It never
//! reads a whole file, and no reply examines more records, reads more bytes or grows larger than
//! its [`Budget`] allows: a page cut short says so (`has_more`) and says where to go on.

use std::ops::ControlFlow;

use serde_json::value::RawValue;

use super::view::{Ended, HistoryView, Pos, ScanBudget, Scanned, Way};
use crate::protocol::request::{Cursor, HistoryQuery};

/// What one `get_messages` reply may cost.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Records examined and bytes read to build it.
    pub scan: ScanBudget,
    /// The records returned, in bytes. The first matching record is returned even when it is
    /// larger on its own (otherwise no page could ever get past it).
    pub reply_bytes: usize,
}

/// One page of `get_messages`.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<Box<RawValue>>,
    pub has_more: bool,
    /// Forwards: send it as `since_seq` for the next page. Backwards: the newest seq returned
    /// (the last seq when none), where a client that goes live continues.
    pub next_seq: u64,
    /// Backward pages with `has_more`: send it as `before_seq` for the next older page. It is
    /// the oldest seq examined, so a page cut by the budget before any match still moves on.
    pub before_seq: Option<u64>,
}

/// Stored events after a seq, for replay on join.
#[derive(Debug)]
pub struct Replay {
    /// `(seq, line)` in order.
    pub records: Vec<(u64, String)>,
    /// `false` when part of the asked range is left out (retention, or the replay's limits).
    pub recovered: bool,
}

/// The records a page keeps, within its count and size.
struct Collect {
    out: Vec<(u64, Vec<u8>)>,
    bytes: usize,
    limit: usize,
    max_bytes: usize,
    /// The first record is kept even when it alone is over `max_bytes`.
    first_always: bool,
}

impl Collect {
    fn new(limit: usize, max_bytes: usize, first_always: bool) -> Self {
        Collect {
            out: Vec::with_capacity(limit.min(1024)),
            bytes: 0,
            limit,
            max_bytes,
            first_always,
        }
    }

    /// Keeps the record, or breaks when the page has no room for it.
    fn offer(&mut self, seq: u64, line: &[u8]) -> ControlFlow<()> {
        let fits = self.bytes.saturating_add(line.len()) <= self.max_bytes
            || (self.first_always && self.out.is_empty());
        if self.out.len() >= self.limit || !fits {
            return ControlFlow::Break(());
        }
        self.bytes += line.len();
        self.out.push((seq, line.to_vec()));
        ControlFlow::Continue(())
    }
}

impl HistoryView {
    /// Answers `get_messages` within `budget`.
    pub fn query(&self, q: &HistoryQuery, budget: Budget) -> std::io::Result<Page> {
        let want = |d: Option<&str>| q.direction.is_none_or(|w| d == Some(w.as_str()));
        let mut c = Collect::new(q.limit, budget.reply_bytes, true);
        match &q.cursor {
            Cursor::SinceSeq(n) => {
                let n = *n;
                let start = self.pos_for_seq(n.saturating_add(1));
                let s = self.scan(Way::Forward, start, budget.scan, |h, line| {
                    keep_if(h.seq > n && want(h.direction), &mut c, h.seq, line)
                })?;
                Ok(self.forward_page(c, s, Some(n)))
            }
            Cursor::Since(t) => {
                let t = crate::time::format_ts(*t);
                let start = self.pos_for_ts(&t);
                let s = self.scan(Way::Forward, start, budget.scan, |h, line| {
                    keep_if(h.ts > t.as_str() && want(h.direction), &mut c, h.seq, line)
                })?;
                Ok(self.forward_page(c, s, None))
            }
            Cursor::Latest => self.backward_page(self.last_seq(), want, c, budget.scan),
            Cursor::BeforeSeq(n) => self.backward_page(n.saturating_sub(1), want, c, budget.scan),
        }
    }

    /// A forward page. `after` is the `since_seq` it started from (none for `since`): the
    /// `next_seq` of a page that found nothing, the project's last seq without it.
    fn forward_page(&self, c: Collect, s: Scanned, after: Option<u64>) -> Page {
        let returned = c.out.last().map(|r| r.0);
        let empty = after.unwrap_or(self.last_seq());
        let (has_more, next_seq) = match s.ended {
            Ended::Stopped => (true, returned.unwrap_or(empty)),
            Ended::Cut => {
                let reached = s.reached.unwrap_or(0).max(after.unwrap_or(0));
                (reached < self.last_seq(), reached)
            }
            Ended::Exhausted => (false, returned.unwrap_or(empty)),
        };
        Page {
            records: raw(c.out),
            has_more,
            next_seq,
            before_seq: None,
        }
    }

    /// Reads backward from the record `end` (inclusive), keeping what `want` accepts; the page
    /// is in chronological order.
    fn backward_page(
        &self,
        end: u64,
        want: impl Fn(Option<&str>) -> bool,
        mut c: Collect,
        budget: ScanBudget,
    ) -> std::io::Result<Page> {
        let s = if end == 0 {
            Scanned {
                ended: Ended::Exhausted,
                reached: None,
            }
        } else {
            self.scan(Way::Backward, self.pos_for_seq(end), budget, |h, line| {
                keep_if(h.seq <= end && want(h.direction), &mut c, h.seq, line)
            })?
        };
        c.out.reverse();
        let oldest = c.out.first().map(|r| r.0);
        let before_seq = match s.ended {
            Ended::Stopped => oldest,
            Ended::Cut => s
                .reached
                .map(|r| r.min(oldest.unwrap_or(r)).min(end + 1))
                .filter(|r| self.first_seq().is_some_and(|first| *r > first)),
            Ended::Exhausted => None,
        };
        Ok(Page {
            next_seq: c.out.last().map_or(self.last_seq(), |r| r.0),
            has_more: before_seq.is_some(),
            before_seq,
            records: raw(c.out),
        })
    }

    /// The stored events with `seq > after`: the newest ones when there are more than
    /// `max_records`, or than fit in `max_bytes` (a record larger than that on its own is not
    /// replayed). Reads backward from the end, so it reads no more than it returns (and one
    /// index block).
    pub fn replay_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> std::io::Result<Replay> {
        let last = self.last_seq();
        if after >= last {
            return Ok(Replay {
                records: Vec::new(),
                recovered: true,
            });
        }
        let mut c = Collect::new(max_records, max_bytes, false);
        let budget = ScanBudget {
            records: max_records.saturating_add(2 * super::BLOCK as usize),
            bytes: u64::MAX,
        };
        let start: Pos = self.pos_for_seq(last);
        self.scan(Way::Backward, start, budget, |h, line| {
            if h.seq <= after {
                return ControlFlow::Break(());
            }
            keep_if(h.seq <= last, &mut c, h.seq, line)
        })?;
        c.out.reverse();
        let recovered = c.out.first().is_some_and(|r| r.0 == after + 1);
        let records = c
            .out
            .into_iter()
            .filter_map(|(seq, line)| String::from_utf8(line).ok().map(|s| (seq, s)))
            .collect();
        Ok(Replay { records, recovered })
    }
}

/// Offers the record to the page when `wanted`, or passes it by.
fn keep_if(wanted: bool, c: &mut Collect, seq: u64, line: &[u8]) -> ControlFlow<()> {
    if wanted {
        c.offer(seq, line)
    } else {
        ControlFlow::Continue(())
    }
}

fn raw(recs: Vec<(u64, Vec<u8>)>) -> Vec<Box<RawValue>> {
    recs.into_iter()
        .filter_map(|(_, line)| {
            String::from_utf8(line)
                .ok()
                .and_then(|s| RawValue::from_string(s).ok())
        })
        .collect()
}
