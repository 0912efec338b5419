//! What a run changed: snapshots of a git work tree, and the diff between two of them.
//!
//! A snapshot is a tree object holding the work tree as it is (tracked and untracked files,
//! `.gitignore` respected). It is written through a temporary index (`GIT_INDEX_FILE`), seeded
//! from a copy of the user's index so unchanged files are not hashed again; the user's index,
//! stash, branches and HEAD are never touched. Only objects are added to the repository, and as
//! nothing refers to them, `git gc` may prune them once they are older than its prune period.
//!
//! Every git command runs as a child process with a time limit, awaited off the actors' threads;
//! a failure or a timeout means "no snapshot", never an error for the run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::executor::process::{forget_managed, spawn_managed};

/// How long one git command may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(20);
/// The most bytes of diff one `run_diff` answers with.
pub const MAX_DIFF_BYTES: usize = 1 << 20;

/// What a run changed, in numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChangeSummary {
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
}

/// The snapshots around one run, and what changed between them (as `run_finished` carries
/// them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RunChanges {
    pub tree_before: String,
    pub tree_after: String,
    pub changes: ChangeSummary,
}

/// A unified diff, possibly cut at [`MAX_DIFF_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub text: String,
    pub truncated: bool,
}

/// The output of one git command, read up to a bound.
struct GitOutput {
    success: bool,
    stdout: Vec<u8>,
    truncated: bool,
}

/// Runs `git` in `dir` with `args`, reading at most `max` bytes of its output; `None` when git
/// could not be started or did not finish in time.
async fn git(dir: &Path, args: &[&str], index: Option<&Path>, max: usize) -> Option<GitOutput> {
    let mut cmd = tokio::process::Command::new("git");
    // The daemon runs git on a directory an agent has just been writing to: repository settings
    // that could run programs are switched off where git allows it, and whatever git still runs
    // (a clean filter an agent configured, say) gets none of the daemon's environment (its
    // token), only what finding programs and the user's git settings need.
    let keep = ["PATH", "HOME"]
        .into_iter()
        .filter_map(|k| Some((k, std::env::var_os(k)?)));
    cmd.args([
        "-c",
        "core.fsmonitor=false",
        "-c",
        "core.hooksPath=/dev/null",
    ])
    .args(args)
    .current_dir(dir)
    .env_clear()
    .envs(keep)
    .env("LC_ALL", "C")
    .env("GIT_OPTIONAL_LOCKS", "0")
    .env("GIT_TERMINAL_PROMPT", "0")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    if let Some(index) = index {
        cmd.env("GIT_INDEX_FILE", index);
    }
    let mut child = spawn_managed(&mut cmd).ok()?;
    let pid = child.id();
    let mut stdout = child.stdout.take()?;
    let work = async {
        let mut buf = Vec::new();
        (&mut stdout)
            .take(max as u64 + 1)
            .read_to_end(&mut buf)
            .await
            .ok()?;
        let truncated = buf.len() > max;
        if truncated {
            buf.truncate(max);
            let _ = child.start_kill();
        }
        let status = child.wait().await.ok()?;
        Some(GitOutput {
            success: status.success() || truncated,
            stdout: buf,
            truncated,
        })
    };
    let out = tokio::time::timeout(GIT_TIMEOUT, work).await.ok().flatten();
    if let Some(pid) = pid {
        forget_managed(pid as i32);
    }
    out.filter(|o| o.success)
}

async fn git_text(dir: &Path, args: &[&str], index: Option<&Path>) -> Option<String> {
    let out = git(dir, args, index, 64 * 1024).await?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Writes a tree object of `dir`'s work tree as it is now; `None` outside a git work tree (or
/// when git fails).
pub async fn snapshot(dir: &Path) -> Option<String> {
    let inside = git_text(dir, &["rev-parse", "--is-inside-work-tree"], None).await?;
    if inside != "true" {
        return None;
    }
    let top = PathBuf::from(git_text(dir, &["rev-parse", "--show-toplevel"], None).await?);
    let user_index = git_text(dir, &["rev-parse", "--git-path", "index"], None).await?;
    let user_index = dir.join(user_index);
    let index =
        TempIndex(std::env::temp_dir().join(format!("agentvisor-index-{}", uuid::Uuid::new_v4())));
    if user_index.is_file() {
        // A copy keeps the stat cache, so only files that changed are hashed again.
        std::fs::copy(&user_index, &index.0).ok()?;
    }
    git(&top, &["add", "-A", "--", "."], Some(&index.0), 0).await?;
    let tree = git_text(&top, &["write-tree"], Some(&index.0)).await?;
    is_object_id(&tree).then_some(tree)
}

/// A temporary index file, removed (with any lock git left) when dropped.
struct TempIndex(PathBuf);

impl Drop for TempIndex {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("lock"));
    }
}

fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The arguments that compare two snapshots, optionally limited to one path.
fn diff_args<'a>(first: &'a [&'a str], before: &'a str, after: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--no-renames",
    ];
    args.extend_from_slice(first);
    args.push(before);
    args.push(after);
    args
}

/// Files changed, insertions and deletions between two snapshots.
pub async fn summary(dir: &Path, before: &str, after: &str) -> Option<ChangeSummary> {
    if !is_object_id(before) || !is_object_id(after) {
        return None;
    }
    let args = diff_args(&["--numstat", "-z"], before, after);
    let out = git(dir, &args, None, 16 << 20).await?;
    Some(parse_numstat(&out.stdout))
}

/// Reads `git diff --numstat -z` (without renames): `added\tdeleted\tpath\0` per file, `-` for
/// the counts of a binary file.
fn parse_numstat(out: &[u8]) -> ChangeSummary {
    let mut s = ChangeSummary::default();
    for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let text = String::from_utf8_lossy(record);
        let mut fields = text.splitn(3, '\t');
        let added = fields.next().and_then(|n| n.parse::<u64>().ok());
        let deleted = fields.next().and_then(|n| n.parse::<u64>().ok());
        s.files_changed += 1;
        s.insertions += added.unwrap_or(0);
        s.deletions += deleted.unwrap_or(0);
    }
    s
}

/// The unified diff between two snapshots, limited to `path` (relative to the repository's top)
/// when given.
pub async fn diff(dir: &Path, before: &str, after: &str, path: Option<&str>) -> Option<Diff> {
    if !is_object_id(before) || !is_object_id(after) {
        return None;
    }
    let spec = path.map(|p| format!(":(top,literal){p}"));
    let mut args = diff_args(&[], before, after);
    if let Some(spec) = &spec {
        args.push("--");
        args.push(spec);
    }
    let out = git(dir, &args, None, MAX_DIFF_BYTES).await?;
    let mut bytes = out.stdout;
    if out.truncated {
        // Cut at a line end, so a client never gets half a line (or half a character).
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(end);
    }
    Some(Diff {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        truncated: out.truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numstat_counts_text_and_binary_files() {
        let out = b"3\t1\ta.txt\x000\t2\tdir/b c.txt\x00-\t-\timg.png\x00";
        assert_eq!(
            parse_numstat(out),
            ChangeSummary {
                files_changed: 3,
                insertions: 3,
                deletions: 3
            }
        );
        assert_eq!(parse_numstat(b""), ChangeSummary::default());
    }

    #[test]
    fn only_object_ids_reach_git() {
        assert!(is_object_id(&"a".repeat(40)));
        assert!(!is_object_id("--output=/tmp/x"));
        assert!(!is_object_id("HEAD"));
    }
}
