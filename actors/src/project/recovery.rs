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
use std::ops::ControlFlow;

use serde_json::Value;

use crate::storage::history::{HistoryView, ScanBudget};

/// How far back the search may look: far more than the records of a few runs in most projects.
/// It reads on the thread the actors share, before the project is registered, so it is bounded
/// like a query: a prompt further back than this behind the output of the runs after it (a
/// queued run behind a run that printed more than this) is not found.
pub(super) const LOOK_BACK: ScanBudget = ScanBudget {
    records: 100_000,
    bytes: 64 << 20,
};

/// An accepted run that never finished.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct OpenRun {
    pub run_id: String,
    /// Its `run_started` is stored: its agent was (being) started.
    pub started: bool,
}

/// The accepted runs without a `run_finished`, oldest first, found by reading history backward.
/// Runs execute in order, so the search stops at the newest prompt whose run finished; a run's
/// `run_finished` and `run_started` come after its prompt, so they are seen first.
pub(super) fn open_runs(history: &HistoryView) -> std::io::Result<Vec<OpenRun>> {
    let (mut finished, mut started) = (HashSet::new(), HashSet::new());
    let mut open = Vec::new();
    history.look_back(LOOK_BACK, |direction, line| {
        // Agent output names no run: most records are passed over without being parsed.
        if direction == Some("agent") {
            return ControlFlow::Continue(());
        }
        let Some((kind, run_id)) = std::str::from_utf8(line).ok().and_then(run_event) else {
            return ControlFlow::Continue(());
        };
        match kind.as_str() {
            "run_finished" => {
                finished.insert(run_id);
            }
            "run_started" => {
                started.insert(run_id);
            }
            "prompt" if finished.contains(&run_id) => return ControlFlow::Break(()),
            "prompt" => open.push(OpenRun {
                started: started.contains(&run_id),
                run_id,
            }),
            _ => {}
        }
        ControlFlow::Continue(())
    })?;
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
