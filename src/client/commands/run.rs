//! `agentvisor run`: execute a prompt and follow its run to the end.

use clap::Args;
use serde_json::{json, Value};

use crate::client::ask::{follow, Followed};
use crate::client::render::Render;
use crate::client::session::{Incoming, Session};
use crate::client::settings::{ConnectOpts, Settings};
use crate::client::{resolve, Failure};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// An id, a unique id prefix, a name, or a path (`.` for here).
    project: String,
    /// The prompt (the words are joined with spaces).
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
    prompt: Vec<String>,
    /// The model to use.
    #[arg(long)]
    model: Option<String>,
    /// Ask before tool calls the permission mode does not allow (Claude Code): each request is
    /// printed with the `approve`/`deny` commands that answer it.
    #[arg(long)]
    approvals: bool,
    /// Print the events as JSON lines.
    #[arg(long)]
    json: bool,
    /// Print the run id once the run is accepted and exit; the run goes on.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    conn: ConnectOpts,
}

pub async fn run(args: RunArgs) -> Result<i32, Failure> {
    let prompt = args.prompt.join(" ");
    if prompt.trim().is_empty() {
        return Err(Failure::Usage("the prompt is empty".into()));
    }
    let render = Render::new(args.json);
    let mut s = Session::open(Settings::new(&args.conn, true)?).await?;
    let project = resolve::project(&mut s, &args.project).await?;
    let id = project["id"].as_str().unwrap_or_default().to_string();
    if !args.detach {
        // Followed from the project's current end: everything the run prints comes after.
        s.follow(&id, project["last_seq"].as_u64().unwrap_or(0))
            .await?;
    }
    let mut options = json!({});
    if let Some(m) = &args.model {
        options["model"] = json!(m);
    }
    if args.approvals {
        options["approvals"] = json!(true);
    }
    let mut data = json!({ "prompt": prompt });
    if options != json!({}) {
        data["options"] = options;
    }
    let accepted = s.call("execute", Some(&id), data, true).await?;
    let run_id = accepted["data"]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if args.detach {
        render.line(&if args.json {
            accepted.to_string()
        } else {
            run_id
        });
        s.close().await;
        return Ok(0);
    }
    let shown = |m: &Incoming| {
        m.value["project_id"] == id.as_str() && m.value["data"]["run_id"] == run_id.as_str()
    };
    let ends = |m: &Incoming| (m.kind() == "run_finished").then(|| exit_code(&m.value["data"]));
    match follow(&mut s, &render, args.json, shown, ends).await? {
        Followed::Ended(code) => {
            s.close().await;
            Ok(code)
        }
        Followed::Interrupted => stop(s, &id).await,
    }
}

fn exit_code(d: &Value) -> i32 {
    i32::from(d["status"] != "completed")
}

/// Ctrl-C: stop the run, then exit 130.
async fn stop(mut s: Session, project: &str) -> Result<i32, Failure> {
    eprintln!("agentvisor: interrupted; stopping the run");
    let kill = s.call("agent_kill", Some(project), json!({}), true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), kill).await;
    Err(Failure::Interrupted)
}
