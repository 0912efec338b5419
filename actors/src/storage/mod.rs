//! What the daemon keeps on disk:
//!
//! ```text
//! <data_dir>/projects/<project_id>/metadata.json               one file, replaced atomically
//! <data_dir>/projects/<project_id>/history/<first_seq>.jsonl    append-only segments
//! <data_dir>/projects/<project_id>/history/<first_seq>.idx      block index of a sealed segment
//! <data_dir>/idempotency.jsonl                                  stored replies (crate::api::idempotency)
//! ```

pub mod atomic;
pub mod history;
pub mod metadata;

use std::path::{Path, PathBuf};

/// Where every project's directory lives.
pub fn projects_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("projects")
}

/// One project's directory.
pub fn project_dir(data_dir: &Path, id: &str) -> PathBuf {
    projects_dir(data_dir).join(id)
}

/// Removes a project's directory so that it disappears at once: a rename to a hidden name first
/// (atomic), then the slow recursive delete. A crash in between leaves only a hidden directory,
/// which start-up finishes deleting.
pub fn remove_project_dir(data_dir: &Path, id: &str) -> std::io::Result<()> {
    let dir = project_dir(data_dir, id);
    let trash = projects_dir(data_dir).join(format!(".deleted-{id}"));
    std::fs::rename(&dir, &trash)?;
    atomic::sync_dir(&projects_dir(data_dir))?;
    std::fs::remove_dir_all(&trash)
}
