//! `agentvisor consult`: ask the other agent for a read-only second opinion and print the
//! structured result.
//!
//! Run by a person, it authenticates like every command. Run by a lead agent inside its run, it
//! uses the run's capability (`AGENTVISOR_CONSULT_TOKEN`, `AGENTVISOR_PROJECT_ID`; the daemon's
//! address is already in `AGENTVISOR_URL`): that token allows nothing but `consult` on the run's
//! project, so the project is taken as given instead of being looked up.

use clap::Args;
use serde_json::{json, Value};

use crate::client::render::Render;
use crate::client::session::Session;
use crate::client::settings::{ConnectOpts, Settings};
use crate::client::{resolve, Failure};

/// The run's capability, in a lead agent's environment.
const CAPABILITY_ENV: &str = "AGENTVISOR_CONSULT_TOKEN";
const PROJECT_ENV: &str = "AGENTVISOR_PROJECT_ID";

#[derive(Args, Debug)]
pub struct ConsultArgs {
    /// An id, a unique id prefix, a name, or a path (`.` for here; with a run's capability,
    /// `.` is the run's project).
    project: String,
    /// The consultant: `claude` or `codex`.
    #[arg(long)]
    to: String,
    /// requirements, design, implementation, review, verification or context.
    #[arg(long)]
    kind: String,
    /// Context sent with the question.
    #[arg(long)]
    context: Option<String>,
    /// The time limit of each attempt, in seconds.
    #[arg(long)]
    timeout_s: Option<u64>,
    /// Continue that consult's conversation.
    #[arg(long)]
    consult_id: Option<String>,
    /// Print the `consult_result` data as one JSON object.
    #[arg(long)]
    json: bool,
    /// The question (the words are joined with spaces).
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
    question: Vec<String>,
    #[command(flatten)]
    conn: ConnectOpts,
}

/// Exit 0 when the answer is complete, 1 when it is partial or the consult failed.
pub async fn consult(args: ConsultArgs) -> Result<i32, Failure> {
    let question = args.question.join(" ");
    if question.trim().is_empty() {
        return Err(Failure::Usage("the question is empty".into()));
    }
    let mut settings = Settings::new(&args.conn, true)?;
    let capability = std::env::var(CAPABILITY_ENV).ok().filter(|t| !t.is_empty());
    if capability.is_some() {
        settings.token = capability.clone();
    }
    let mut s = Session::open(settings).await?;
    let project = match (&capability, std::env::var(PROJECT_ENV)) {
        (Some(_), Ok(own)) if args.project == "." => own,
        (Some(_), _) => args.project.clone(),
        (None, _) => {
            let p = resolve::project(&mut s, &args.project).await?;
            p["id"].as_str().unwrap_or_default().to_string()
        }
    };
    let mut data = json!({"to": args.to, "kind": args.kind, "question": question});
    for (key, value) in [
        ("context", args.context.map(Value::from)),
        ("timeout_s", args.timeout_s.map(Value::from)),
        ("consult_id", args.consult_id.map(Value::from)),
    ] {
        if let Some(v) = value {
            data[key] = v;
        }
    }
    let accepted = s.call("consult", Some(&project), data, false).await?;
    let id = accepted["data"]["consult_id"].clone();
    let result = loop {
        let m = s.next_event().await?;
        if m.kind() == "consult_result" && m.value["data"]["consult_id"] == id {
            break m.value["data"].clone();
        }
    };
    s.close().await;
    let render = Render::new(args.json);
    if args.json {
        render.line(&result.to_string());
    } else {
        render.consult_result(&result);
    }
    Ok(i32::from(result["status"] != "complete"))
}
