//! Closing the runs a crash left open.
//!
//! Every accepted run has its `prompt` stored before `execute_accepted` is sent, so history knows
//! every run a client was promised; a run is over once its `run_finished` is stored. When a
//! project's actor comes back (after its own crash or a `kill -9` of the daemon), whatever was
//! promised and never finished is closed: runs that had started as `failed` (their agent died
//! with them), runs that were queued or waiting for a slot, or whose start had not been recorded
//! yet, as `interrupted`. The queue itself is not persisted: a run that never started is not
//! started behind its client's back after a restart; the client is told to send it again.

use std::collections::HashSet;

use serde_json::Value;

use crate::protocol::request::{Cursor, HistoryQuery};
use crate::protocol::Direction;
use crate::storage::history::HistoryLog;

/// How far back the search looks: far more prompts than a queue holds, and the system events
/// of as many runs.
const PROMPTS_SCANNED: usize = 1024;
const SYSTEM_EVENTS_SCANNED: usize = 8 * PROMPTS_SCANNED;

/// An accepted run that never finished.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct OpenRun {
    pub run_id: String,
    /// Its `run_started` is stored: its agent was (being) started.
    pub started: bool,
}

/// The accepted runs without a `run_finished`, oldest first. Runs execute in order, so the
/// search stops at the newest prompt whose run finished.
pub(super) fn open_runs(history: &HistoryLog) -> std::io::Result<Vec<OpenRun>> {
    let latest = |direction, limit| {
        history.query(&HistoryQuery {
            cursor: Cursor::Latest,
            limit,
            direction: Some(direction),
        })
    };
    let system = latest(Direction::System, SYSTEM_EVENTS_SCANNED)?;
    let (mut finished, mut started) = (HashSet::new(), HashSet::new());
    for (kind, run_id) in system.records.iter().filter_map(|r| run_event(r.get())) {
        match kind.as_str() {
            "run_finished" => finished.insert(run_id),
            "run_started" => started.insert(run_id),
            _ => false,
        };
    }
    let prompts = latest(Direction::Client, PROMPTS_SCANNED)?;
    let mut open = Vec::new();
    // Newest first, back to the newest run that finished.
    for (kind, run_id) in prompts
        .records
        .iter()
        .rev()
        .filter_map(|r| run_event(r.get()))
    {
        if kind != "prompt" {
            continue;
        }
        if finished.contains(&run_id) {
            break;
        }
        open.push(OpenRun {
            started: started.contains(&run_id),
            run_id,
        });
    }
    open.reverse();
    Ok(open)
}

/// The type and run id of a stored event that names a run.
fn run_event(line: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let kind = v.get("type")?.as_str()?.to_string();
    let run_id = v.get("data")?.get("run_id")?.as_str()?.to_string();
    Some((kind, run_id))
}
