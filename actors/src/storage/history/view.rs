//! A read-only view of a history at one moment, and the budgeted scan every reader uses.
//!
//! A view is what a query takes off the actors' thread: each segment's path, length and block
//! index as they were when it was taken (the indexes are shared, not copied). Records appended
//! later lie past the lengths it knows and are not read; a segment that retention removes while
//! a reader is on it reads as already gone, as if retention had come first.

use std::io::ErrorKind;
use std::ops::ControlFlow;

use super::segment::{Head, SegmentView};
use super::{HistoryLog, BLOCK};

/// A read-only snapshot of a history, cheap to take and to send to another thread.
#[derive(Debug, Clone)]
pub struct HistoryView {
    pub(super) segments: Vec<SegmentView>,
    last_seq: u64,
}

/// What one scan may spend: records examined and bytes read. However small the numbers, a scan
/// examines at least two index blocks' worth of records, so that it always gets past the block
/// its cursor falls in.
#[derive(Debug, Clone, Copy)]
pub struct ScanBudget {
    pub records: usize,
    pub bytes: u64,
}

/// Which way a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Way {
    Forward,
    Backward,
}

/// How a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every record in the scan's way was examined.
    Exhausted,
    /// The visitor asked to stop (its page was full).
    Stopped,
    /// The budget ran out.
    Cut,
}

/// The outcome of a scan.
#[derive(Debug, Clone, Copy)]
pub struct Scanned {
    pub ended: Ended,
    /// The seq of the last record examined (the oldest one, backwards): everything between the
    /// start and it was offered to the visitor.
    pub reached: Option<u64>,
}

/// A position in the history: segment and block.
pub(super) type Pos = (usize, usize);

impl HistoryLog {
    /// The history as it is now, for a reader on another thread.
    pub fn view(&self) -> HistoryView {
        HistoryView {
            segments: self.segments.iter().map(|s| s.view()).collect(),
            last_seq: self.last_seq(),
        }
    }
}

impl HistoryView {
    /// The seq of the newest record the view holds (0 when none).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The seq of the oldest record the view holds, if any.
    pub fn first_seq(&self) -> Option<u64> {
        self.segments
            .iter()
            .find_map(|s| s.blocks.first().map(|b| b.first_seq))
    }

    /// Hands `visit` each record's direction and line, newest first, until it breaks or
    /// `budget` is spent; for a search that is not a page (recovery).
    pub fn look_back(
        &self,
        budget: ScanBudget,
        mut visit: impl FnMut(Option<&str>, &[u8]) -> ControlFlow<()>,
    ) -> std::io::Result<Ended> {
        let start = self.pos_for_seq(self.last_seq);
        let scanned = self.scan(Way::Backward, start, budget, |h, line| {
            visit(h.direction, line)
        })?;
        Ok(scanned.ended)
    }

    /// Examines records one by one from the block at `start`, the way given, handing each
    /// readable one to `visit`, until `visit` breaks, the records run out, or `budget` is spent.
    pub(super) fn scan(
        &self,
        way: Way,
        start: Pos,
        budget: ScanBudget,
        mut visit: impl FnMut(&Head, &[u8]) -> ControlFlow<()>,
    ) -> std::io::Result<Scanned> {
        let max_records = budget.records.max(2 * BLOCK as usize);
        let (mut examined, mut read) = (0usize, 0u64);
        let mut reached = None;
        let mut gone = None;
        for (si, bi) in self.positions(way, start) {
            if gone == Some(si) {
                continue;
            }
            if examined > 0 && read >= budget.bytes {
                return Ok(Scanned {
                    ended: Ended::Cut,
                    reached,
                });
            }
            let buf = match self.segments[si].read_block(bi) {
                Ok(buf) => buf,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    gone = Some(si);
                    continue;
                }
                Err(e) => return Err(e),
            };
            read += buf.len() as u64;
            let mut lines: Vec<&[u8]> = buf.split(|c| *c == b'\n').collect();
            if way == Way::Backward {
                lines.reverse();
            }
            for line in lines.into_iter().filter(|l| !l.is_empty()) {
                let Ok(head) = serde_json::from_slice::<Head>(line) else {
                    continue;
                };
                examined += 1;
                reached = Some(head.seq);
                if visit(&head, line).is_break() {
                    return Ok(Scanned {
                        ended: Ended::Stopped,
                        reached,
                    });
                }
                if examined >= max_records {
                    return Ok(Scanned {
                        ended: Ended::Cut,
                        reached,
                    });
                }
            }
        }
        Ok(Scanned {
            ended: Ended::Exhausted,
            reached,
        })
    }

    /// Every block from `start` on, the way given.
    fn positions(&self, way: Way, start: Pos) -> Box<dyn Iterator<Item = Pos> + '_> {
        let (si, bi) = start;
        let segments = self.segments.iter().enumerate();
        match way {
            Way::Forward => Box::new(segments.skip(si).flat_map(move |(i, s)| {
                let from = if i == si { bi } else { 0 };
                (from..s.blocks.len()).map(move |b| (i, b))
            })),
            Way::Backward => Box::new(segments.take(si + 1).rev().flat_map(move |(i, s)| {
                let to = if i == si { bi + 1 } else { s.blocks.len() };
                (0..to.min(s.blocks.len())).rev().map(move |b| (i, b))
            })),
        }
    }

    fn segments_with_blocks(&self) -> impl Iterator<Item = (usize, &SegmentView)> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.blocks.is_empty())
    }

    /// The block that holds `seq`, or the nearest one before it.
    pub(super) fn pos_for_seq(&self, seq: u64) -> Pos {
        let mut pos = (0, 0);
        for (i, s) in self.segments_with_blocks() {
            if s.first_seq > seq {
                break;
            }
            pos = (i, s.block_for_seq(seq));
        }
        pos
    }

    /// The last block whose first record is not after `ts`.
    pub(super) fn pos_for_ts(&self, ts: &str) -> Pos {
        let mut pos = (0, 0);
        for (i, s) in self.segments_with_blocks() {
            if s.blocks[0].first_ts.as_str() > ts {
                break;
            }
            pos = (i, s.block_for_ts(ts));
        }
        pos
    }
}
