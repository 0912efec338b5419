//! The client's subcommands: one file for each that follows events (`run`, `watch`,
//! `history`, `consult`), and the one-request commands here.

mod approvals;
mod consult;
mod history;
mod run;
mod watch;

use clap::Subcommand;
use serde_json::{json, Value};

use super::render::{clean, Render};
use super::resolve;
use super::session::Session;
use super::settings::{ConnectOpts, Settings};
use super::Failure;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the projects.
    Projects {
        /// One JSON object per project.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnectOpts,
    },
    /// Create a project for a directory.
    Create {
        /// The directory (as the daemon sees it; a local one is made absolute).
        path: String,
        /// `claude` (the default) or `codex`.
        #[arg(long)]
        agent: Option<String>,
        /// A name [default: the directory's name].
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        conn: ConnectOpts,
    },
    /// Delete a project and its history (not its directory).
    Delete {
        /// An id, a unique id prefix, a name, or a path (`.` for here).
        project: String,
        #[command(flatten)]
        conn: ConnectOpts,
    },
    /// Run the agent on a prompt and print what it does until the run ends.
    Run(run::RunArgs),
    /// Print a project's events as they happen.
    Watch(watch::WatchArgs),
    /// Print a page of a project's history.
    History(history::HistoryArgs),
    /// Ask the other agent for a read-only second opinion and print its structured answer.
    Consult(consult::ConsultArgs),
    /// Allow a run's pending permission request.
    Approve {
        #[command(flatten)]
        request: approvals::AnswerArgs,
        /// Allow the same kind of call for the rest of the agent's session.
        #[arg(long)]
        remember: bool,
    },
    /// Deny a run's pending permission request.
    Deny {
        #[command(flatten)]
        request: approvals::AnswerArgs,
        /// What the agent is told.
        #[arg(long)]
        message: Option<String>,
    },
    /// Print what a run changed, as a unified diff (git projects).
    Diff(approvals::DiffArgs),
    /// Stop the project's active run.
    Kill {
        project: String,
        /// Drop the queued runs too.
        #[arg(long)]
        clear_queue: bool,
        #[command(flatten)]
        conn: ConnectOpts,
    },
    /// Forget the agent's session: the next run starts a fresh conversation.
    NewSession {
        project: String,
        #[command(flatten)]
        conn: ConnectOpts,
    },
    /// The daemon's health (exit 1 when it is not `ok`).
    Health {
        #[command(flatten)]
        conn: ConnectOpts,
    },
    /// Bring an errored actor (a project id) back.
    Reset {
        actor: String,
        #[command(flatten)]
        conn: ConnectOpts,
    },
}

/// Runs one command; `Ok` is the exit code.
pub async fn run(command: Command) -> Result<i32, Failure> {
    match command {
        Command::Run(a) => run::run(a).await,
        Command::Watch(a) => watch::watch(a).await,
        Command::History(a) => history::history(a).await,
        Command::Consult(a) => consult::consult(a).await,
        Command::Approve { request, remember } => {
            approvals::answer(request, true, remember, None).await
        }
        Command::Deny { request, message } => {
            approvals::answer(request, false, false, message).await
        }
        Command::Diff(a) => approvals::diff(a).await,
        Command::Projects { json, conn } => projects(&conn, json).await,
        Command::Create {
            path,
            agent,
            name,
            conn,
        } => create(&conn, &path, agent, name).await,
        Command::Delete { project, conn } => {
            let (mut s, p) = open_project(&conn, &project).await?;
            s.call("project_delete", p["id"].as_str(), Value::Null, true)
                .await?;
            say(&format!("deleted project {}", describe(&p)));
            Ok(0)
        }
        Command::Kill {
            project,
            clear_queue,
            conn,
        } => kill(&conn, &project, clear_queue).await,
        Command::NewSession { project, conn } => {
            let (mut s, p) = open_project(&conn, &project).await?;
            s.call("agent_new_session", p["id"].as_str(), Value::Null, true)
                .await?;
            say(&format!(
                "new session for {}: the next run starts a fresh conversation",
                describe(&p)
            ));
            Ok(0)
        }
        Command::Health { conn } => health(&conn).await,
        Command::Reset { actor, conn } => {
            let mut s = open(&conn, false).await?;
            let r = s
                .call("actor_reset", None, json!({"actor": actor}), false)
                .await?;
            say(&format!(
                "{} is {}",
                clean(&actor),
                r["data"]["status"].as_str().unwrap_or("running")
            ));
            Ok(0)
        }
    }
}

async fn open(conn: &ConnectOpts, long_lived: bool) -> Result<Session, Failure> {
    Session::open(Settings::new(conn, long_lived)?).await
}

/// A session and the project `spec` names.
async fn open_project(conn: &ConnectOpts, spec: &str) -> Result<(Session, Value), Failure> {
    let mut s = open(conn, false).await?;
    let p = resolve::project(&mut s, spec).await?;
    Ok((s, p))
}

fn say(text: &str) {
    Render::new(false).line(text);
}

/// `name (id)`, cleaned for the terminal.
fn describe(p: &Value) -> String {
    clean(&format!(
        "{} ({})",
        p["name"].as_str().unwrap_or_default(),
        p["id"].as_str().unwrap_or_default()
    ))
}

async fn projects(conn: &ConnectOpts, json: bool) -> Result<i32, Failure> {
    let mut s = open(conn, false).await?;
    let r = s.call("project_list", None, Value::Null, false).await?;
    let list = r["data"]["projects"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for p in &list {
        if json {
            say(&p.to_string());
            continue;
        }
        let text = |k: &str| clean(p[k].as_str().unwrap_or_default());
        say(&format!(
            "{}  {:<16} {:<9} {:<6} {}",
            text("id").chars().take(8).collect::<String>(),
            text("name"),
            text("state"),
            text("agent"),
            text("path")
        ));
    }
    if list.is_empty() && !json {
        eprintln!("no projects yet: `agentvisor create <path>` adds one");
    }
    Ok(0)
}

async fn create(
    conn: &ConnectOpts,
    path: &str,
    agent: Option<String>,
    name: Option<String>,
) -> Result<i32, Failure> {
    let path = resolve::local_path(path).unwrap_or_else(|| path.to_string());
    let mut data = json!({ "path": path });
    if let Some(a) = agent {
        data["agent"] = a.into();
    }
    if let Some(n) = name {
        data["name"] = n.into();
    }
    let mut s = open(conn, false).await?;
    let r = s.call("project_create", None, data, true).await?;
    let p = &r["data"]["project"];
    say(&format!(
        "created project {} for {}",
        describe(p),
        clean(p["path"].as_str().unwrap_or_default())
    ));
    Ok(0)
}

async fn kill(conn: &ConnectOpts, spec: &str, clear_queue: bool) -> Result<i32, Failure> {
    let (mut s, p) = open_project(conn, spec).await?;
    let r = s
        .call(
            "agent_kill",
            p["id"].as_str(),
            json!({ "clear_queue": clear_queue }),
            true,
        )
        .await?;
    let d = &r["data"];
    let mut text = match d["run_id"].as_str() {
        Some(run) => format!("stopping run {}", clean(run)),
        None => "no run was active".to_string(),
    };
    if let Some(n) = d["cleared"].as_u64().filter(|n| *n > 0) {
        text.push_str(&format!("; cleared {n} queued run(s)"));
    }
    say(&text);
    Ok(0)
}

async fn health(conn: &ConnectOpts) -> Result<i32, Failure> {
    let mut s = open(conn, false).await?;
    let r = s.call("health_check", None, Value::Null, false).await?;
    let d = &r["data"];
    let status = d["status"].as_str().unwrap_or("unknown");
    say(&format!(
        "{} · agentvisor {} · up {}s",
        clean(status),
        clean(d["version"].as_str().unwrap_or("?")),
        d["uptime_s"].as_u64().unwrap_or(0)
    ));
    for a in d["actors"].as_array().into_iter().flatten() {
        if a["status"] != "running" {
            say(&format!(
                "  {} {} (restarts: {})",
                clean(a["name"].as_str().unwrap_or_default()),
                clean(a["status"].as_str().unwrap_or_default()),
                a["restarts"]
            ));
        }
    }
    Ok(if status == "ok" { 0 } else { 1 })
}
