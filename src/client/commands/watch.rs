//! `agentvisor watch`: print a project's events as they happen, across drops and restarts.

use clap::Args;

use crate::client::ask::{follow, Followed};
use crate::client::render::Render;
use crate::client::session::{Incoming, Session};
use crate::client::settings::{ConnectOpts, Settings};
use crate::client::{resolve, Failure};

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// An id, a unique id prefix, a name, or a path (`.` for here).
    project: String,
    /// Print the stored events after this seq first [default: only new events].
    #[arg(long)]
    since_seq: Option<u64>,
    /// Print the events as JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: ConnectOpts,
}

pub async fn watch(args: WatchArgs) -> Result<i32, Failure> {
    let render = Render::new(args.json);
    let mut s = Session::open(Settings::new(&args.conn, true)?).await?;
    let project = resolve::project(&mut s, &args.project).await?;
    let id = project["id"].as_str().unwrap_or_default().to_string();
    let since = args
        .since_seq
        .unwrap_or_else(|| project["last_seq"].as_u64().unwrap_or(0));
    s.follow(&id, since).await?;
    let shown = |m: &Incoming| m.value["project_id"] == id.as_str();
    let ends = |m: &Incoming| (m.kind() == "project_deleted").then_some(1);
    match follow(&mut s, &render, args.json, shown, ends).await? {
        Followed::Ended(code) => Ok(code),
        Followed::Interrupted => Err(Failure::Interrupted),
    }
}
