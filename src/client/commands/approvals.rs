//! `agentvisor approve`, `deny` and `diff`: answering a run's permission request from a script,
//! and printing what a run changed.

use clap::Args;
use serde_json::json;

use super::{open_project, say, ConnectOpts};
use crate::client::render::clean;
use crate::client::Failure;

#[derive(Args, Debug)]
pub struct AnswerArgs {
    /// An id, a unique id prefix, a name, or a path (`.` for here).
    project: String,
    /// The `request_id` of the permission request.
    request_id: String,
    #[command(flatten)]
    conn: ConnectOpts,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// An id, a unique id prefix, a name, or a path (`.` for here).
    project: String,
    /// The run [default: the project's latest finished run].
    run: Option<String>,
    /// Only this file or directory (relative to the repository's top).
    #[arg(long)]
    path: Option<String>,
    #[command(flatten)]
    conn: ConnectOpts,
}

/// `approve` (with `remember`: for the rest of the session) or `deny` (with `message`).
pub async fn answer(
    args: AnswerArgs,
    allow: bool,
    remember: bool,
    message: Option<String>,
) -> Result<i32, Failure> {
    let (mut s, p) = open_project(&args.conn, &args.project).await?;
    let mut data = json!({
        "request_id": args.request_id,
        "decision": if allow { "allow" } else { "deny" },
    });
    if remember {
        data["remember"] = json!(true);
    }
    if let Some(m) = message {
        data["message"] = json!(m);
    }
    s.call("permission_respond", p["id"].as_str(), data, true)
        .await?;
    say(&format!(
        "{} request {}",
        if allow { "allowed" } else { "denied" },
        clean(&args.request_id)
    ));
    Ok(0)
}

/// Prints the unified diff of what a run changed; a run with no recorded changes (outside git)
/// says so on stderr and is not an error.
pub async fn diff(args: DiffArgs) -> Result<i32, Failure> {
    let (mut s, p) = open_project(&args.conn, &args.project).await?;
    let id = p["id"].as_str();
    let run = match args.run {
        Some(r) => r,
        None => latest_run(&mut s, id).await?,
    };
    let mut data = json!({ "run_id": run });
    if let Some(path) = &args.path {
        data["path"] = json!(path);
    }
    let r = s.call("run_diff", id, data, false).await?;
    let d = &r["data"];
    match d["diff"].as_str() {
        None => eprintln!(
            "run {} has no recorded changes (the project is not in a git work tree, or the run is too old)",
            clean(&run)
        ),
        Some("") => eprintln!("run {} changed nothing", clean(&run)),
        Some(text) => {
            say(clean(text).trim_end_matches('\n'));
            if d["truncated"] == true {
                eprintln!("(the diff was cut: it is longer than the daemon sends)");
            }
        }
    }
    Ok(0)
}

/// Pages of system history `latest_run` reads back, at most.
const LATEST_RUN_PAGES: usize = 20;

/// The id of the project's latest finished run, from its history: system pages, newest first,
/// following each page's `before_seq` (a page the daemon cut short may hold none of it).
async fn latest_run(
    s: &mut crate::client::session::Session,
    project: Option<&str>,
) -> Result<String, Failure> {
    let mut query = json!({"direction": "system", "limit": 1000});
    for _ in 0..LATEST_RUN_PAGES {
        let r = s
            .call("get_messages", project, query.clone(), false)
            .await?;
        let found = r["data"]["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .find(|m| m["type"] == "run_finished")
            .and_then(|m| m["data"]["run_id"].as_str().map(String::from));
        if let Some(run) = found {
            return Ok(run);
        }
        match r["data"]["before_seq"].as_u64() {
            Some(n) if r["data"]["has_more"] == true => query["before_seq"] = n.into(),
            _ => break,
        }
    }
    Err(Failure::Failed(
        "the project has no finished run yet".into(),
    ))
}
