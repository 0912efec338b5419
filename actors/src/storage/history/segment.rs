//! One history segment file and its block index.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::BLOCK;

/// Where a block of [`BLOCK`] records starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Block {
    pub first_seq: u64,
    pub offset: u64,
    pub first_ts: String,
}

/// A segment: `<first_seq>.jsonl` and what is known of it.
#[derive(Debug)]
pub struct Segment {
    pub first_seq: u64,
    pub path: Arc<Path>,
    pub records: u64,
    pub bytes: u64,
    pub last_seq_seen: u64,
    pub last_ts: Option<String>,
    /// Shared with the views readers hold: a reader off the actors' thread keeps the index it
    /// started with, and the next block of the segment being written copies it only then.
    pub blocks: Arc<Vec<Block>>,
}

/// What a reader needs of a segment, taken at one moment: the records written by then.
#[derive(Debug, Clone)]
pub struct SegmentView {
    pub first_seq: u64,
    pub path: Arc<Path>,
    pub bytes: u64,
    pub blocks: Arc<Vec<Block>>,
}

/// The part of a record that indexing and filtering need.
#[derive(Debug, Deserialize)]
pub struct Head<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub ts: &'a str,
    #[serde(borrow, default)]
    pub direction: Option<&'a str>,
}

/// The sidecar index written when a segment is sealed.
#[derive(Serialize, Deserialize)]
struct IndexFile {
    records: u64,
    bytes: u64,
    last_seq: u64,
    last_ts: Option<String>,
    blocks: Vec<Block>,
}

impl Segment {
    pub fn new(first_seq: u64, path: PathBuf) -> Self {
        Segment {
            first_seq,
            path: path.into(),
            records: 0,
            bytes: 0,
            last_seq_seen: first_seq.saturating_sub(1),
            last_ts: None,
            blocks: Arc::default(),
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq_seen
    }

    /// Counts one appended record of `len` bytes (newline included).
    pub fn push(&mut self, seq: u64, ts: &str, len: u64) {
        if self.records.is_multiple_of(BLOCK) {
            Arc::make_mut(&mut self.blocks).push(Block {
                first_seq: seq,
                offset: self.bytes,
                first_ts: ts.to_owned(),
            });
        }
        self.records += 1;
        self.bytes += len;
        self.last_seq_seen = seq;
        self.last_ts = Some(ts.to_owned());
    }

    fn index_path(&self) -> PathBuf {
        self.path.with_extension("idx")
    }

    /// Loads a segment: from its index when it has a valid one, otherwise by scanning it. The
    /// segment being written (`is_last`) is always scanned, and a torn last line is cut off.
    pub fn load(first_seq: u64, path: PathBuf, is_last: bool) -> std::io::Result<Self> {
        let mut seg = Segment::new(first_seq, path);
        if !is_last && seg.load_index().is_ok() {
            return Ok(seg);
        }
        seg.scan(is_last)?;
        Ok(seg)
    }

    fn load_index(&mut self) -> std::io::Result<()> {
        let idx: IndexFile = serde_json::from_slice(&std::fs::read(self.index_path())?)
            .map_err(std::io::Error::other)?;
        let len = std::fs::metadata(&self.path)?.len();
        if idx.bytes != len {
            return Err(std::io::Error::other(
                "the index does not match its segment",
            ));
        }
        self.records = idx.records;
        self.bytes = idx.bytes;
        self.last_seq_seen = idx.last_seq;
        self.last_ts = idx.last_ts;
        self.blocks = Arc::new(idx.blocks);
        Ok(())
    }

    /// Writes the sidecar index of a sealed segment.
    pub fn write_index(&self) -> std::io::Result<()> {
        let idx = IndexFile {
            records: self.records,
            bytes: self.bytes,
            last_seq: self.last_seq_seen,
            last_ts: self.last_ts.clone(),
            blocks: self.blocks.to_vec(),
        };
        let bytes = serde_json::to_vec(&idx).map_err(std::io::Error::other)?;
        crate::storage::atomic::write_atomic(&self.index_path(), &bytes)
    }

    fn scan(&mut self, repair_tail: bool) -> std::io::Result<()> {
        let file = File::open(&self.path)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        let mut offset = 0u64;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)? as u64;
            if n == 0 {
                break;
            }
            let whole = line.last() == Some(&b'\n');
            let head = if whole {
                serde_json::from_slice::<Head>(&line[..line.len() - 1]).ok()
            } else {
                None
            };
            match head {
                Some(h) if h.seq > self.last_seq_seen => {
                    self.push(h.seq, h.ts, n);
                }
                _ if !whole => {
                    // A line without its newline: the daemon died while writing it.
                    if repair_tail {
                        log::warn!(
                            "history: cutting a torn last line ({n} bytes) off {}",
                            self.path.display()
                        );
                        let f = std::fs::OpenOptions::new().write(true).open(&self.path)?;
                        f.set_len(offset)?;
                        f.sync_all()?;
                    }
                    break;
                }
                _ => {
                    // A whole line that is not a record (or out of order) is kept on disk but
                    // not indexed; queries skip it.
                    log::warn!(
                        "history: skipping an unreadable line at byte {offset} of {}",
                        self.path.display()
                    );
                    self.bytes += n;
                }
            }
            offset += n;
        }
        Ok(())
    }

    pub fn remove_files(&self) -> std::io::Result<()> {
        let _ = std::fs::remove_file(self.index_path());
        std::fs::remove_file(&self.path)
    }

    /// The segment as a reader sees it now.
    pub fn view(&self) -> SegmentView {
        SegmentView {
            first_seq: self.first_seq,
            path: self.path.clone(),
            bytes: self.bytes,
            blocks: self.blocks.clone(),
        }
    }
}

impl SegmentView {
    /// Reads the bytes of block `i`.
    pub fn read_block(&self, i: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let start = self.blocks[i].offset;
        let end = self.blocks.get(i + 1).map_or(self.bytes, |b| b.offset);
        let mut buf = vec![0u8; (end - start) as usize];
        File::open(&self.path)?.read_exact_at(&mut buf, start)?;
        Ok(buf)
    }

    /// The block that holds `seq` (or would), if the segment has any block.
    pub fn block_for_seq(&self, seq: u64) -> usize {
        self.blocks
            .partition_point(|b| b.first_seq <= seq)
            .saturating_sub(1)
    }

    /// The last block whose first record is not after `ts`.
    pub fn block_for_ts(&self, ts: &str) -> usize {
        self.blocks
            .partition_point(|b| b.first_ts.as_str() <= ts)
            .saturating_sub(1)
    }
}
