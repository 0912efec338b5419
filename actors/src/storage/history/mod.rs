//! A project's history: every stored event, one JSON object per line, in segments rotated by
//! record count and size.
//!
//! Every record has the next per-project `seq` and a timestamp. Seqs are never reused: a record
//! is counted only once its write has returned, a failed write is cut back off the file, and a
//! line torn by a crash is truncated at start-up. Each segment keeps a small block index (the
//! seq, byte offset and time of every [`BLOCK`]th record) so that a query reads only the blocks it
//! needs instead of scanning files.

mod query;
mod segment;
mod view;

pub use query::{Budget, Page, Replay};
pub use view::{HistoryView, ScanBudget};

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::config::Durability;
use segment::Segment;

/// Records per index block: a query reads at most two partial blocks it does not need.
pub const BLOCK: u64 = 64;

/// Rotation, retention and durability of one project's history.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    pub segment_records: u64,
    pub segment_bytes: u64,
    pub retention_bytes: Option<u64>,
    pub retention_segments: Option<usize>,
    pub durability: Durability,
}

/// One project's history log.
pub struct HistoryLog {
    dir: PathBuf,
    cfg: HistoryConfig,
    /// Segments oldest first; the last one is the one appended to.
    segments: Vec<Segment>,
    file: Option<File>,
    next_seq: u64,
    last_ts: String,
    /// Written but not yet fsynced (batch durability).
    dirty: bool,
    /// A failed write left bytes past this length that must be cut before the next append.
    repair_to: Option<u64>,
    scratch: Vec<u8>,
}

/// The stamp of the next record: its seq and time.
pub struct Stamp {
    pub seq: u64,
    pub ts: String,
}

impl HistoryLog {
    /// Opens (or creates) the history in `dir`, repairing a torn last line.
    pub fn open(dir: PathBuf, cfg: HistoryConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut firsts: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let first = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok());
            match first {
                Some(first) => firsts.push((first, path)),
                None => log::warn!(
                    "ignoring a file that is not a history segment: {}",
                    path.display()
                ),
            }
        }
        firsts.sort();
        let count = firsts.len();
        let mut segments = Vec::with_capacity(count);
        for (i, (first, path)) in firsts.into_iter().enumerate() {
            let last = i + 1 == count;
            segments.push(Segment::load(first, path, last)?);
        }
        let next_seq = segments
            .iter()
            .rev()
            .find(|s| s.records > 0)
            .map(|s| s.last_seq() + 1)
            .or_else(|| segments.last().map(|s| s.first_seq))
            .unwrap_or(1);
        let last_ts = segments
            .iter()
            .rev()
            .find_map(|s| s.last_ts.clone())
            .unwrap_or_default();
        let file = match segments.last() {
            Some(s) => Some(OpenOptions::new().append(true).open(&s.path)?),
            None => None,
        };
        Ok(HistoryLog {
            dir,
            cfg,
            segments,
            file,
            next_seq,
            last_ts,
            dirty: false,
            repair_to: None,
            scratch: Vec::new(),
        })
    }

    /// The seq of the newest record (0 when there is none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The seq of the oldest record still kept, if any.
    pub fn first_seq(&self) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.records > 0)
            .map(|s| s.first_seq)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The seq and time the next record gets. Times never go backwards, even if the clock does,
    /// so that `since` queries can rely on order.
    pub fn stamp(&self, now: DateTime<Utc>) -> Stamp {
        self.stamp_ahead(now, 0)
    }

    /// The stamp of the record `ahead` places after the next one (for a batch being built).
    pub fn stamp_ahead(&self, now: DateTime<Utc>, ahead: u64) -> Stamp {
        let ts = crate::time::format_ts(now);
        let ts = if ts < self.last_ts {
            self.last_ts.clone()
        } else {
            ts
        };
        Stamp {
            seq: self.next_seq + ahead,
            ts,
        }
    }

    /// Appends one record (`line` without its newline) stamped with `stamp`. When this returns
    /// `Ok`, the write has returned and the seq is taken; on error nothing was added.
    pub fn append(&mut self, stamp: &Stamp, line: &[u8]) -> std::io::Result<()> {
        match self.append_batch(&[(stamp, line)]) {
            (_, Some(e)) => Err(e),
            (_, None) => Ok(()),
        }
    }

    /// Appends records stamped with consecutive seqs, with one `write(2)` per segment they
    /// land in (a burst of agent output is one write, not one per line). Returns how many were
    /// stored — always a prefix — and the error that stopped the rest, if any; a failed write
    /// is cut back off the file, so the file only ever holds whole records.
    pub fn append_batch(&mut self, records: &[(&Stamp, &[u8])]) -> (usize, Option<std::io::Error>) {
        let mut done = 0;
        while done < records.len() {
            match self.append_chunk(&records[done..]) {
                Ok(n) => done += n,
                Err(e) => return (done, Some(e)),
            }
        }
        (done, None)
    }

    /// Writes as many of `records` as fit in the current segment (at least one, rotating first
    /// when needed) and returns how many it wrote.
    fn append_chunk(&mut self, records: &[(&Stamp, &[u8])]) -> std::io::Result<usize> {
        debug_assert_eq!(records.first().map(|r| r.0.seq), Some(self.next_seq));
        self.repair()?;
        if self.needs_rotation(records[0].1.len() as u64 + 1) {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.start_segment()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("history segment is not open"));
        };
        let Some(seg) = self.segments.last_mut() else {
            return Err(std::io::Error::other("history has no segment"));
        };
        self.scratch.clear();
        let (mut bytes, mut count) = (seg.bytes, seg.records);
        let mut n = 0;
        for (_, line) in records {
            let len = line.len() as u64 + 1;
            let full = count >= self.cfg.segment_records || bytes + len > self.cfg.segment_bytes;
            if n > 0 && full {
                break;
            }
            self.scratch.extend_from_slice(line);
            self.scratch.push(b'\n');
            bytes += len;
            count += 1;
            n += 1;
        }
        if let Err(e) = file.write_all(&self.scratch) {
            // Cut off whatever part made it, so the file stays whole.
            if file.set_len(seg.bytes).is_err() {
                self.repair_to = Some(seg.bytes);
            }
            return Err(e);
        }
        for (stamp, line) in &records[..n] {
            seg.push(stamp.seq, &stamp.ts, line.len() as u64 + 1);
        }
        let last = records[n - 1].0;
        self.next_seq = last.seq + 1;
        self.last_ts.clone_from(&last.ts);
        match self.cfg.durability {
            Durability::Always => {
                let started = std::time::Instant::now();
                // The records are written (their seqs are taken); a failed fsync only weakens
                // what a power loss can take, so it is reported, not undone.
                if let Err(e) = file.sync_data() {
                    log::error!("history fsync failed: {e}");
                }
                crate::metrics::METRICS.fsync(started.elapsed());
            }
            Durability::Batch => self.dirty = true,
            Durability::Os => {}
        }
        Ok(n)
    }

    /// For batch durability: a handle to fsync off the actor's thread, when anything is unsynced.
    pub fn take_sync_handle(&mut self) -> Option<File> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.file.as_ref().and_then(|f| f.try_clone().ok())
    }

    /// fsyncs now (used at shutdown).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.dirty = false;
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    fn repair(&mut self) -> std::io::Result<()> {
        if let (Some(len), Some(file)) = (self.repair_to, self.file.as_ref()) {
            file.set_len(len)?;
            self.repair_to = None;
        }
        Ok(())
    }

    fn needs_rotation(&self, add: u64) -> bool {
        match self.segments.last() {
            None => false,
            Some(s) => {
                s.records > 0
                    && (s.records >= self.cfg.segment_records
                        || s.bytes + add > self.cfg.segment_bytes)
            }
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_data()?;
        }
        self.dirty = false;
        if let Some(seg) = self.segments.last() {
            if let Err(e) = seg.write_index() {
                log::warn!("could not write a history index (it will be rebuilt): {e}");
            }
        }
        self.start_segment()?;
        self.apply_retention();
        Ok(())
    }

    fn start_segment(&mut self) -> std::io::Result<()> {
        let path = segment_path(&self.dir, self.next_seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        crate::storage::atomic::sync_dir(&self.dir)?;
        self.segments.push(Segment::new(self.next_seq, path));
        self.file = Some(file);
        Ok(())
    }

    /// Drops the oldest sealed segments beyond the retention limits. The segment being written
    /// is never dropped.
    fn apply_retention(&mut self) {
        loop {
            if self.segments.len() <= 1 {
                return;
            }
            let over_count = self
                .cfg
                .retention_segments
                .is_some_and(|max| self.segments.len() > max.max(1));
            let total: u64 = self.segments.iter().map(|s| s.bytes).sum();
            let over_bytes = self.cfg.retention_bytes.is_some_and(|max| total > max);
            if !(over_count || over_bytes) {
                return;
            }
            let old = self.segments.remove(0);
            if let Err(e) = old.remove_files() {
                log::warn!("could not remove an old history segment: {e}");
            }
        }
    }

    /// The directory the segments are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.jsonl"))
}

#[cfg(test)]
mod tests;
