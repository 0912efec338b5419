//! What each run changed, for projects in a git work tree: a snapshot when the run starts, one
//! when it ends, the summary `run_finished` carries, and `run_diff`. The git work happens in
//! [`crate::gitsnap`], off this actor's thread.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use actix::prelude::*;
use serde_json::json;

use super::ProjectActor;
use crate::connection::ReplyTo;
use crate::error::ApiError;
use crate::gitsnap::{self, RunChanges};
use crate::storage::history::{HistoryView, ScanBudget};

/// How many finished runs' snapshots `run_diff` can still find.
const REMEMBERED_RUNS: usize = 256;
/// The longest path `run_diff` accepts.
const MAX_PATH_BYTES: usize = 4096;

/// The snapshots of recent runs, newest last.
#[derive(Default)]
pub struct ChangeLog {
    runs: VecDeque<(String, RunChanges)>,
}

impl ChangeLog {
    fn record(&mut self, run_id: &str, changes: RunChanges) {
        if self.runs.len() >= REMEMBERED_RUNS {
            self.runs.pop_front();
        }
        self.runs.push_back((run_id.to_string(), changes));
    }

    fn find(&self, run_id: &str) -> Option<&RunChanges> {
        self.runs
            .iter()
            .rev()
            .find(|(id, _)| id == run_id)
            .map(|(_, c)| c)
    }
}

/// How far back `run_diff` reads history to find an older run (off the actors' thread).
const LOOK_BACK: ScanBudget = ScanBudget {
    records: 100_000,
    bytes: 64 << 20,
};

/// A run's snapshots as its stored `run_finished` names them, for runs the in-memory log no
/// longer (or never, before a restart) had; the newest history is read first.
fn stored_changes(history: &HistoryView, run_id: &str) -> Option<RunChanges> {
    let mut found = None;
    let searched = history.look_back(LOOK_BACK, |direction, line| {
        // Most records are not it: only a likely one is parsed.
        let text = std::str::from_utf8(line).unwrap_or_default();
        if direction != Some("system")
            || !text.contains(run_id)
            || !text.contains("\"run_finished\"")
        {
            return ControlFlow::Continue(());
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return ControlFlow::Continue(());
        };
        let d = &v["data"];
        if v["type"] != "run_finished" || d["run_id"] != run_id {
            return ControlFlow::Continue(());
        }
        found = serde_json::from_value::<RunChanges>(d.clone()).ok();
        ControlFlow::Break(())
    });
    searched.ok().and(found)
}

/// A `run_diff` path: relative to the repository's top, without `..` or NUL.
fn check_path(path: &str) -> Result<(), ApiError> {
    let bad = path.is_empty()
        || path.len() > MAX_PATH_BYTES
        || path.contains('\0')
        || path.starts_with('/')
        || path.split('/').any(|c| c == "..");
    if bad {
        return Err(ApiError::validation(
            "'path' must be a relative path inside the repository, without '..'",
        ));
    }
    Ok(())
}

impl ProjectActor {
    /// Snapshots the project directory off this thread, then calls `then` with the tree id
    /// (`None` outside git or when git failed).
    pub(super) fn snapshot_then(
        &self,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, Option<String>, &mut Context<Self>) + 'static,
    ) {
        let dir = self.meta.path.clone();
        let job = async move { gitsnap::snapshot(&dir).await };
        ctx.spawn(
            job.into_actor(self)
                .map(move |tree, act, ctx| then(act, tree, ctx)),
        );
    }

    /// Snapshots the end of a run that had a start snapshot and counts the changes, then calls
    /// `then`; the result is remembered for `run_diff`.
    pub(super) fn changes_then(
        &self,
        run_id: String,
        before: String,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        let dir = self.meta.path.clone();
        let job = async move {
            let after = gitsnap::snapshot(&dir).await?;
            let changes = gitsnap::summary(&dir, &before, &after).await?;
            Some(RunChanges {
                tree_before: before,
                tree_after: after,
                changes,
            })
        };
        ctx.spawn(job.into_actor(self).map(move |changes, act, ctx| {
            if let Some(c) = changes {
                act.changes.record(&run_id, c);
            }
            then(act, ctx)
        }));
    }

    /// The snapshots of a finished run, for its `run_finished`.
    pub(super) fn changes_of(&self, run_id: &str) -> Option<&RunChanges> {
        self.changes.find(run_id)
    }

    /// `run_diff`: the unified diff of what a run changed. A run without snapshots (outside
    /// git, or too long ago) answers `diff: null`, not an error.
    pub(super) fn run_diff(
        &mut self,
        reply: &ReplyTo,
        run_id: String,
        path: Option<String>,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        if let Some(p) = &path {
            check_path(p)?;
        }
        let found = self.changes.find(&run_id).cloned();
        let id = run_id.clone();
        let stored = found
            .is_none()
            .then(|| self.read_off_thread(move |view| stored_changes(&view, &id)));
        let dir = self.meta.path.clone();
        let reply = reply.clone();
        let asked = path.clone();
        let job = async move {
            let c = match (found, stored) {
                (Some(c), _) => c,
                (None, Some(read)) => read.await.flatten()?,
                (None, None) => return None,
            };
            let diff = gitsnap::diff(&dir, &c.tree_before, &c.tree_after, asked.as_deref()).await;
            Some((c, diff))
        };
        ctx.spawn(job.into_actor(self).map(move |found, act, _| {
            let Some((c, diff)) = found else {
                let data =
                    json!({"run_id": run_id, "path": path, "diff": null, "truncated": false});
                return reply.ok("run_diff", Some(&act.id), &data);
            };
            match diff {
                Some(d) => reply.ok(
                    "run_diff",
                    Some(&act.id),
                    &json!({
                        "run_id": run_id, "path": path, "diff": d.text, "truncated": d.truncated,
                        "tree_before": c.tree_before, "tree_after": c.tree_after,
                    }),
                ),
                None => reply.err(
                    Some(&act.id),
                    &ApiError::internal(
                        "git could not compare the run's snapshots (they may have been pruned)",
                    ),
                ),
            }
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_repository() {
        for ok in ["a.txt", "src/lib.rs", "dir/", "a..b"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "a\0b"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_log_keeps_the_newest_runs() {
        let mut log = ChangeLog::default();
        let c = RunChanges {
            tree_before: "a".into(),
            tree_after: "b".into(),
            changes: crate::gitsnap::ChangeSummary::default(),
        };
        for i in 0..REMEMBERED_RUNS + 1 {
            log.record(&format!("r{i}"), c.clone());
        }
        assert!(log.find("r0").is_none());
        assert!(log.find("r1").is_some());
        assert!(log.find(&format!("r{REMEMBERED_RUNS}")).is_some());
    }
}
