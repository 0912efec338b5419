//! What a run changed (issue 16), black-box: on a real git repository made by the test, a run
//! that edits, adds and deletes files, and one that changes nothing, each reported in
//! `run_finished` and by `run_diff`, with the user's index, staged changes, stash, branches and
//! HEAD left exactly as they were; outside git, no diff and no error.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// Runs git in `dir` and returns its stdout; the test fails if git does.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A repository with one commit, a staged change, an unstaged change, a stash and an ignored
/// file: everything the daemon must leave alone.
fn make_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("edit.txt"), "first\n").unwrap();
    std::fs::write(dir.join("remove.txt"), "one\ntwo\n").unwrap();
    std::fs::write(dir.join("keep.txt"), "kept\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "*.log\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "start"]);
    std::fs::write(dir.join("keep.txt"), "stashed\n").unwrap();
    git(dir, &["stash", "-q"]);
    std::fs::write(dir.join("keep.txt"), "kept\nstaged\n").unwrap();
    git(dir, &["add", "keep.txt"]);
    std::fs::write(dir.join("keep.txt"), "kept\nstaged\nunstaged\n").unwrap();
    std::fs::write(dir.join("debug.log"), "ignored\n").unwrap();
}

/// What the user sees of their repository: index, staged and unstaged changes, stash, refs.
fn user_state(dir: &Path) -> Vec<String> {
    vec![
        git(dir, &["diff", "--cached"]),
        git(dir, &["diff"]),
        git(dir, &["status", "--porcelain", "--untracked-files=all"]),
        git(dir, &["stash", "list"]),
        git(dir, &["show-ref"]),
        git(dir, &["rev-parse", "HEAD"]),
        git(dir, &["ls-files", "--stage"]),
    ]
}

/// A daemon with a project in a fresh repository; returns the repository's state as the user
/// left it, for comparing afterwards.
async fn repo_project(d: &Daemon) -> (Client, String, std::path::PathBuf, Vec<String>) {
    let dir = d.project_dir("repo");
    make_repo(&dir);
    let before = user_state(&dir);
    let mut c = d.client().await;
    let p = c.create_project(&dir).await;
    (c, p, dir, before)
}

async fn diff(c: &mut Client, project: &str, run: &str, path: Option<&str>) -> Value {
    let mut data = json!({"project_id": project, "run_id": run});
    if let Some(p) = path {
        data["path"] = json!(p);
    }
    let r = c.call("run_diff", data).await;
    assert_eq!(r["type"], "run_diff", "{r}");
    r["data"].clone()
}

#[tokio::test]
async fn a_run_that_edits_adds_and_deletes_is_summarised_and_diffed() {
    let mut d = Daemon::start();
    let (mut c, p, dir, before) = repo_project(&d).await;

    let fin = c.run(&p, "mock:edit").await;
    assert_eq!(fin["data"]["status"], "completed", "{fin}");
    let data = &fin["data"];
    assert_ne!(data["tree_before"], data["tree_after"], "{fin}");
    assert_eq!(
        data["changes"],
        json!({"files_changed": 3, "insertions": 2, "deletions": 2}),
        "{fin}"
    );

    let run = data["run_id"].as_str().unwrap();
    let whole = diff(&mut c, &p, run, None).await;
    assert_eq!(whole["truncated"], false);
    let text = whole["diff"].as_str().unwrap();
    assert!(text.contains("+a line the agent added"), "{text}");
    assert!(text.contains("+++ b/added.txt"), "{text}");
    assert!(text.contains("--- a/remove.txt"), "{text}");
    // The user's own changes were there before the run and after it: not the run's doing.
    assert!(!text.contains("keep.txt"), "{text}");
    assert!(!text.contains("debug.log"), "{text}");

    let one = diff(&mut c, &p, run, Some("added.txt")).await;
    let text = one["diff"].as_str().unwrap();
    assert!(text.contains("+a new file"), "{text}");
    assert!(!text.contains("edit.txt"), "{text}");

    // The agent's edits are in the work tree; everything else of the user's is untouched.
    let after = user_state(&dir);
    let porcelain = after[2].clone();
    assert!(porcelain.contains("?? added.txt"), "{porcelain}");
    assert!(porcelain.contains(" D remove.txt"), "{porcelain}");
    for i in [0, 3, 4, 5, 6] {
        assert_eq!(before[i], after[i], "user state {i} changed");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "kept\nstaged\nunstaged\n"
    );

    // After a restart the snapshots are found through the stored run_finished.
    assert!(d.stop().success());
    d.restart();
    let mut c = d.client().await;
    assert_eq!(diff(&mut c, &p, run, None).await["diff"], whole["diff"]);
}

#[tokio::test]
async fn a_run_that_changes_nothing_has_an_empty_diff() {
    let d = Daemon::start();
    let (mut c, p, dir, before) = repo_project(&d).await;

    let fin = c.run(&p, "mock:success").await;
    let data = &fin["data"];
    assert_eq!(data["status"], "completed", "{fin}");
    assert!(data["tree_before"].is_string(), "{fin}");
    assert_eq!(data["tree_before"], data["tree_after"], "{fin}");
    assert_eq!(
        data["changes"],
        json!({"files_changed": 0, "insertions": 0, "deletions": 0})
    );
    let r = diff(&mut c, &p, data["run_id"].as_str().unwrap(), None).await;
    assert_eq!(r["diff"], "", "{r}");
    assert_eq!(user_state(&dir), before);
}

#[tokio::test]
async fn outside_git_there_is_no_diff_and_no_error() {
    let d = Daemon::start();
    let dir = d.project_dir("plain");
    let mut c = d.client().await;
    let p = c.create_project(&dir).await;

    let fin = c.run(&p, "mock:edit").await;
    assert_eq!(fin["data"]["status"], "completed", "{fin}");
    assert!(fin["data"].get("tree_before").is_none(), "{fin}");
    assert!(fin["data"].get("changes").is_none(), "{fin}");
    let r = diff(&mut c, &p, fin["data"]["run_id"].as_str().unwrap(), None).await;
    assert_eq!(r["diff"], Value::Null, "{r}");
    let r = diff(&mut c, &p, "no-such-run", None).await;
    assert_eq!(r["diff"], Value::Null, "{r}");
}

#[tokio::test]
async fn run_diff_refuses_paths_outside_the_repository() {
    let d = Daemon::start();
    let dir = d.project_dir("plain");
    let mut c = d.client().await;
    let p = c.create_project(&dir).await;
    for path in ["../etc/passwd", "/etc/passwd", ""] {
        let r = c
            .call(
                "run_diff",
                json!({"project_id": p, "run_id": "r", "path": path}),
            )
            .await;
        assert_eq!(r["type"], "error", "{r}");
        assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
    }
    let r = c.call("run_diff", json!({"project_id": p})).await;
    assert_eq!(r["data"]["code"], "VALIDATION_FAILED", "{r}");
}

#[tokio::test]
async fn programs_git_runs_for_the_repository_never_see_the_daemons_token() {
    const TOKEN: &str = "a-long-enough-test-token-0123456789";
    let d = Daemon::builder().env("AGENTVISOR_TOKEN", TOKEN).start();
    let dir = d.project_dir("repo");
    make_repo(&dir);
    // A clean filter, as an agent could configure one, that records its environment.
    let spy = dir.join("spy.log");
    let filter = format!("env > '{}'; cat", spy.display());
    git(&dir, &["config", "filter.spy.clean", &filter]);
    std::fs::write(dir.join(".gitattributes"), "*.txt filter=spy\n").unwrap();
    let auth = format!("Bearer {TOKEN}");
    let mut c = d.client_with(&[("authorization", &auth)]).await;
    let p = c.create_project(&dir).await;
    let fin = c.run(&p, "mock:edit").await;
    assert_eq!(fin["data"]["status"], "completed", "{fin}");
    assert!(
        fin["data"]["changes"]["files_changed"].as_u64() >= Some(3),
        "{fin}"
    );
    let seen = std::fs::read_to_string(&spy).expect("git ran the filter");
    assert!(!seen.contains(TOKEN), "the filter saw the token");
    assert!(
        !seen.contains("AGENTVISOR_"),
        "the filter saw the daemon's settings"
    );
}
