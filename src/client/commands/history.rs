//! `agentvisor history`: one page of a project's stored events.

use clap::Args;
use serde_json::json;

use crate::client::render::Render;
use crate::client::session::{Incoming, Session};
use crate::client::settings::{ConnectOpts, Settings};
use crate::client::{resolve, Failure};

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// An id, a unique id prefix, a name, or a path (`.` for here).
    project: String,
    /// Records on the page (1–1000).
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// The records just before this seq.
    #[arg(long, conflicts_with_all = ["since_seq", "since"])]
    before_seq: Option<u64>,
    /// The records after this seq.
    #[arg(long, conflicts_with = "since")]
    since_seq: Option<u64>,
    /// The records after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// `client`, `agent`, `system` or `all`.
    #[arg(long)]
    direction: Option<String>,
    /// Print the records as JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: ConnectOpts,
}

pub async fn history(args: HistoryArgs) -> Result<i32, Failure> {
    let render = Render::new(args.json);
    let mut s = Session::open(Settings::new(&args.conn, false)?).await?;
    let project = resolve::project(&mut s, &args.project).await?;
    let mut query = json!({ "limit": args.limit });
    if let Some(n) = args.before_seq {
        query["before_seq"] = n.into();
    }
    if let Some(n) = args.since_seq {
        query["since_seq"] = n.into();
    }
    if let Some(t) = &args.since {
        query["since"] = t.as_str().into();
    }
    if let Some(d) = &args.direction {
        query["direction"] = d.as_str().into();
    }
    let page = s
        .call("get_messages", project["id"].as_str(), query, false)
        .await?;
    for record in page["data"]["messages"].as_array().into_iter().flatten() {
        render.event(&Incoming {
            text: record.to_string(),
            value: record.clone(),
        });
    }
    if let Some(hint) = next_page(&page["data"]) {
        eprintln!("{hint}");
    }
    s.close().await;
    Ok(0)
}

/// Where the next page is, when the daemon says there is one: backward pages name the seq to
/// go on before (a page cut short by the daemon's scan budget may be empty and still have one),
/// forward pages the seq to go on after.
fn next_page(data: &serde_json::Value) -> Option<String> {
    if data["has_more"] != true {
        return None;
    }
    Some(match data["before_seq"].as_u64() {
        Some(n) => format!("(older records: --before-seq {n})"),
        None => format!("(more records: --since-seq {})", data["next_seq"]),
    })
}
