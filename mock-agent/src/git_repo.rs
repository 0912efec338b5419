//! Codex refuses to work outside a git repository unless told
//! `--skip-git-repo-check`; the mock imitates that so the daemon's use of the
//! flag is tested.

use std::path::Path;

/// Whether `dir` or one of its ancestors has a `.git` entry (a directory, or
/// the `.git` file of a worktree or submodule).
pub fn is_inside(dir: &Path) -> bool {
    dir.ancestors().any(|d| d.join(".git").exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_crate_is_in_a_repo_and_root_is_not() {
        assert!(is_inside(Path::new(env!("CARGO_MANIFEST_DIR"))));
        assert!(!is_inside(Path::new("/proc/self")));
    }
}
