//! A project's durable description: `metadata.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{atomic, project_dir, projects_dir};

pub use crate::agent::AgentKind;

/// A project's state machine. `EXECUTING` while a run is active; `ERROR` after a run failed or
/// timed out (the next run is still accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProjectState {
    Idle,
    Executing,
    Error,
}

/// What `metadata.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectMeta {
    pub id: String,
    pub path: PathBuf,
    pub name: String,
    pub agent: AgentKind,
    pub session_id: Option<String>,
    pub created_at: String,
    pub last_active: String,
    /// The state as of the last change; `EXECUTING` found at start-up means the daemon died
    /// during a run.
    pub state: ProjectState,
    /// The run in progress, kept so that a restart can close it as failed.
    #[serde(default)]
    pub active_run: Option<String>,
    /// Runs ask the clients before tool calls unless `execute` says otherwise.
    #[serde(default)]
    pub approvals: bool,
}

impl ProjectMeta {
    pub fn file(data_dir: &Path, id: &str) -> PathBuf {
        project_dir(data_dir, id).join("metadata.json")
    }

    /// Writes the metadata durably (see [`atomic::write_atomic`]).
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        atomic::write_atomic(&Self::file(data_dir, &self.id), &bytes)
    }

    pub fn load(data_dir: &Path, id: &str) -> std::io::Result<Self> {
        let bytes = std::fs::read(Self::file(data_dir, id))?;
        let meta: ProjectMeta = serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if meta.id != id {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the id inside metadata.json does not match its directory",
            ));
        }
        Ok(meta)
    }
}

/// Writes one project's metadata from several threads (the actor's own, and background writes
/// of the run path) so that the newest state always wins: writes are serialised, and a write of
/// a state older than the one already on disk is skipped. Versions are handed out here, so they
/// keep growing across restarts of the project's actor.
#[derive(Default)]
pub struct MetaWriter {
    /// The version of the state on disk.
    on_disk: std::sync::Mutex<u64>,
    /// The last version handed out.
    issued: std::sync::atomic::AtomicU64,
}

impl MetaWriter {
    /// A version newer than every one handed out before.
    pub fn next_version(&self) -> u64 {
        self.issued
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1
    }

    /// Whether the state on disk is older than `version`.
    pub fn is_behind(&self, version: u64) -> bool {
        *crate::sync::lock(&self.on_disk) < version
    }

    /// Stores `meta` as state number `version` (versions grow with every change).
    pub fn write(&self, version: u64, meta: &ProjectMeta, data_dir: &Path) -> std::io::Result<()> {
        let mut on_disk = crate::sync::lock(&self.on_disk);
        if *on_disk >= version {
            return Ok(());
        }
        meta.save(data_dir)?;
        *on_disk = version;
        Ok(())
    }
}

/// Loads every project's metadata, oldest first. A project whose metadata cannot be read is
/// logged and skipped so that one bad file cannot keep the others from loading. Leftovers of an
/// interrupted delete are finished off.
pub fn load_all(data_dir: &Path) -> std::io::Result<Vec<ProjectMeta>> {
    let dir = projects_dir(data_dir);
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".deleted-") {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                log::warn!("could not finish deleting {}: {e}", entry.path().display());
            }
            continue;
        }
        if name.starts_with('.') || !entry.file_type()?.is_dir() {
            continue;
        }
        match ProjectMeta::load(data_dir, &name) {
            Ok(meta) => out.push(meta),
            Err(e) => log::error!(
                project = name.as_str();
                "skipping project: its metadata.json cannot be loaded: {e}"
            ),
        }
    }
    out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str, created: &str) -> ProjectMeta {
        ProjectMeta {
            id: id.into(),
            path: "/tmp".into(),
            name: "n".into(),
            agent: AgentKind::default(),
            session_id: Some("s".into()),
            created_at: created.into(),
            last_active: created.into(),
            state: ProjectState::Idle,
            active_run: None,
            approvals: false,
        }
    }

    #[test]
    fn an_older_state_never_overwrites_a_newer_one() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(project_dir(d.path(), "a")).unwrap();
        let w = MetaWriter::default();
        let mut newer = meta("a", "2026-01-01T00:00:00.000Z");
        newer.session_id = Some("new".into());
        w.write(2, &newer, d.path()).unwrap();
        w.write(1, &meta("a", "2026-01-01T00:00:00.000Z"), d.path())
            .unwrap();
        assert_eq!(ProjectMeta::load(d.path(), "a").unwrap(), newer);
    }

    #[test]
    fn a_crashed_actors_late_write_never_lands_after_its_successors() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(project_dir(d.path(), "a")).unwrap();
        // One writer per project, kept across actor restarts: the successor's versions are
        // newer than any the crashed actor handed out, even one whose write is still pending.
        let w = MetaWriter::default();
        let pending = w.next_version();
        let successor = w.next_version();
        let mut recovered = meta("a", "2026-01-01T00:00:00.000Z");
        recovered.state = ProjectState::Error;
        w.write(successor, &recovered, d.path()).unwrap();
        let mut stale = meta("a", "2026-01-01T00:00:00.000Z");
        stale.state = ProjectState::Executing;
        w.write(pending, &stale, d.path()).unwrap();
        assert_eq!(ProjectMeta::load(d.path(), "a").unwrap(), recovered);
    }

    #[test]
    fn round_trips_and_skips_corrupt_files() {
        let d = tempfile::tempdir().unwrap();
        for (id, t) in [
            ("b", "2026-01-02T00:00:00.000Z"),
            ("a", "2026-01-01T00:00:00.000Z"),
        ] {
            std::fs::create_dir_all(project_dir(d.path(), id)).unwrap();
            meta(id, t).save(d.path()).unwrap();
        }
        std::fs::create_dir_all(project_dir(d.path(), "bad")).unwrap();
        std::fs::write(ProjectMeta::file(d.path(), "bad"), "{not json").unwrap();
        let all = load_all(d.path()).unwrap();
        let ids: Vec<_> = all.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(all[0], meta("a", "2026-01-01T00:00:00.000Z"));
    }
}
