//! Reading history: pages for `get_messages` and ranges for replay.
//!
//! A query finds its first block with the block index (binary search by seq or time), then reads
//! block by block, forwards or backwards, until the page is full. It never reads a whole file.

use serde_json::value::RawValue;

use super::segment::{Head, Segment};
use super::HistoryLog;
use crate::protocol::request::{Cursor, HistoryQuery};

/// One page of `get_messages`.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<Box<RawValue>>,
    pub has_more: bool,
    pub next_seq: u64,
}

/// Stored events after a seq, for replay on join.
#[derive(Debug)]
pub struct Replay {
    /// `(seq, line)` in order.
    pub records: Vec<(u64, String)>,
    /// `false` when part of the asked range is gone (retention, or more than the replay cap).
    pub recovered: bool,
}

/// A position in the history: segment and block.
type Pos = (usize, usize);

/// One record read back: its seq and its line.
type Rec = (u64, Vec<u8>);

impl HistoryLog {
    /// Answers `get_messages`.
    pub fn query(&self, q: &HistoryQuery) -> std::io::Result<Page> {
        let want = |h: &Head| q.direction.is_none_or(|d| h.direction == Some(d.as_str()));
        let (recs, has_more) = match &q.cursor {
            Cursor::SinceSeq(n) => {
                let n = *n;
                self.forward(
                    self.pos_for_seq(n.saturating_add(1)),
                    |h| h.seq > n && want(h),
                    q.limit,
                )?
            }
            Cursor::Since(t) => {
                let t = crate::time::format_ts(*t);
                self.forward(
                    self.pos_for_ts(&t),
                    |h| h.ts > t.as_str() && want(h),
                    q.limit,
                )?
            }
            Cursor::Latest => self.backward(self.last_seq(), want, q.limit)?,
            Cursor::BeforeSeq(n) => self.backward(n.saturating_sub(1), want, q.limit)?,
        };
        let next_seq = recs.last().map_or_else(
            || match q.cursor {
                Cursor::SinceSeq(n) => n,
                _ => self.last_seq(),
            },
            |r| r.0,
        );
        let records = recs
            .into_iter()
            .filter_map(|(_, line)| {
                String::from_utf8(line)
                    .ok()
                    .and_then(|s| RawValue::from_string(s).ok())
            })
            .collect();
        Ok(Page {
            records,
            has_more,
            next_seq,
        })
    }

    /// The stored events with `seq > after`, at most `max` of them (the latest ones when there
    /// are more).
    pub fn replay_after(&self, after: u64, max: usize) -> std::io::Result<Replay> {
        let last = self.last_seq();
        if after >= last {
            return Ok(Replay {
                records: Vec::new(),
                recovered: true,
            });
        }
        let oldest = self.first_seq().unwrap_or(last + 1);
        let mut recovered = after + 1 >= oldest;
        let mut from = after;
        if last - after > max as u64 {
            from = last - max as u64;
            recovered = false;
        }
        let (recs, _) = self.forward(self.pos_for_seq(from + 1), |h| h.seq > from, max)?;
        let records = recs
            .into_iter()
            .filter_map(|(seq, line)| String::from_utf8(line).ok().map(|s| (seq, s)))
            .collect();
        Ok(Replay { records, recovered })
    }

    fn segments_with_blocks(&self) -> impl DoubleEndedIterator<Item = (usize, &Segment)> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.blocks.is_empty())
    }

    fn pos_for_seq(&self, seq: u64) -> Pos {
        let mut pos = (0, 0);
        for (i, s) in self.segments_with_blocks() {
            if s.first_seq > seq {
                break;
            }
            pos = (i, s.block_for_seq(seq));
        }
        pos
    }

    fn pos_for_ts(&self, ts: &str) -> Pos {
        let mut pos = (0, 0);
        for (i, s) in self.segments_with_blocks() {
            if s.blocks[0].first_ts.as_str() > ts {
                break;
            }
            pos = (i, s.block_for_ts(ts));
        }
        pos
    }

    /// Reads forward from `start`, keeping records that `keep` accepts, until `limit` are kept;
    /// then looks for one more to tell whether there is a next page.
    fn forward(
        &self,
        start: Pos,
        keep: impl Fn(&Head) -> bool,
        limit: usize,
    ) -> std::io::Result<(Vec<Rec>, bool)> {
        let mut out = Vec::with_capacity(limit.min(1024));
        let (si, bi) = start;
        for (i, seg) in self.segments.iter().enumerate().skip(si) {
            let first_block = if i == si { bi } else { 0 };
            for b in first_block..seg.blocks.len() {
                let buf = seg.read_block(b)?;
                for line in buf.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
                    let Ok(head) = serde_json::from_slice::<Head>(line) else {
                        continue;
                    };
                    if keep(&head) {
                        if out.len() == limit {
                            return Ok((out, true));
                        }
                        out.push((head.seq, line.to_vec()));
                    }
                }
            }
        }
        Ok((out, false))
    }

    /// Reads backward from the record `end` (inclusive), keeping what `keep` accepts, until
    /// `limit` are kept; returns them in chronological order.
    fn backward(
        &self,
        end: u64,
        keep: impl Fn(&Head) -> bool,
        limit: usize,
    ) -> std::io::Result<(Vec<Rec>, bool)> {
        let mut out: Vec<Rec> = Vec::with_capacity(limit.min(1024));
        if end == 0 {
            return Ok((out, false));
        }
        let (si, bi) = self.pos_for_seq(end);
        let mut has_more = false;
        'outer: for (i, seg) in self.segments.iter().enumerate().take(si + 1).rev() {
            let last_block = if i == si {
                bi
            } else {
                seg.blocks.len().wrapping_sub(1)
            };
            if seg.blocks.is_empty() {
                continue;
            }
            for b in (0..=last_block).rev() {
                let buf = seg.read_block(b)?;
                for line in buf.rsplit(|c| *c == b'\n').filter(|l| !l.is_empty()) {
                    let Ok(head) = serde_json::from_slice::<Head>(line) else {
                        continue;
                    };
                    if head.seq <= end && keep(&head) {
                        if out.len() == limit {
                            has_more = true;
                            break 'outer;
                        }
                        out.push((head.seq, line.to_vec()));
                    }
                }
            }
        }
        out.reverse();
        Ok((out, has_more))
    }
}
