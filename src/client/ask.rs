//! Asking on a terminal: while `run` or `watch` follows a project, a permission request is asked
//! on the terminal (`y` allow, `n` deny, `a` allow for the rest of the session), oldest first.
//! Only when standard input is a terminal and the output is for people (not `--json`); a
//! request answered elsewhere is dropped from the questions.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::render::Render;
use super::session::{Incoming, Session};
use super::Failure;

/// The questions waiting for a typed answer, and the lines typed.
pub struct Asker {
    lines: mpsc::UnboundedReceiver<String>,
    /// `(project id, request id)`, oldest first.
    waiting: VecDeque<(String, String)>,
}

impl Asker {
    /// An asker when standard input is a terminal and the output is not JSON.
    pub fn on_terminal(json: bool) -> Option<Self> {
        if json || !std::io::stdin().is_terminal() {
            return None;
        }
        let (tx, lines) = mpsc::unbounded_channel();
        // Reading a terminal blocks: a thread of its own, for the life of the command.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Some(Asker {
            lines,
            waiting: VecDeque::new(),
        })
    }

    /// Notes a request to ask about, or a resolution that makes a question moot.
    pub fn see(&mut self, m: &Incoming) {
        let project = m.value["project_id"].as_str().unwrap_or_default();
        let Some(request) = m.value["data"]["request_id"].as_str() else {
            return;
        };
        match m.kind() {
            "permission_request" => {
                self.waiting
                    .push_back((project.to_string(), request.to_string()));
                if self.waiting.len() == 1 {
                    prompt();
                }
            }
            "permission_resolved" => {
                let first = self.waiting.front().is_some_and(|(_, r)| r == request);
                self.waiting.retain(|(_, r)| r != request);
                if first && !self.waiting.is_empty() {
                    prompt();
                }
            }
            _ => {}
        }
    }

    /// The next typed answer: the project and the `permission_respond` data. Lines typed while
    /// nothing is asked are ignored; an unknown answer asks again.
    async fn answer(&mut self) -> Option<(String, Value)> {
        loop {
            let line = self.lines.recv().await?;
            let Some((project, request)) = self.waiting.front().cloned() else {
                continue;
            };
            let (decision, remember) = match line.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => ("allow", false),
                "a" | "always" => ("allow", true),
                "n" | "no" => ("deny", false),
                _ => {
                    prompt();
                    continue;
                }
            };
            let mut data = json!({"request_id": request, "decision": decision});
            if remember {
                data["remember"] = json!(true);
            }
            return Some((project, data));
        }
    }
}

/// How following a project ended.
pub enum Followed {
    /// An event ended it, with the command's exit code.
    Ended(i32),
    /// Ctrl-C.
    Interrupted,
}

/// Follows the session's events: prints each one `shown` picks, asking its permission requests
/// on the terminal (and sending the answers typed) until `ends` gives an exit code for an event
/// shown, or Ctrl-C. The loop `run` and `watch` share.
pub async fn follow(
    s: &mut Session,
    render: &Render,
    json: bool,
    shown: impl Fn(&Incoming) -> bool,
    ends: impl Fn(&Incoming) -> Option<i32>,
) -> Result<Followed, Failure> {
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut asker = Asker::on_terminal(json);
    loop {
        tokio::select! {
            event = s.next_event() => {
                let m = event?;
                if !shown(&m) {
                    continue;
                }
                render.event(&m);
                if let Some(a) = asker.as_mut() {
                    a.see(&m);
                }
                if let Some(code) = ends(&m) {
                    return Ok(Followed::Ended(code));
                }
            }
            answer = next_answer(&mut asker) => respond(s, answer).await?,
            _ = &mut interrupt => return Ok(Followed::Interrupted),
        }
    }
}

/// The next typed answer of `asker`; never, when there is no asker or its terminal closed.
async fn next_answer(asker: &mut Option<Asker>) -> (String, Value) {
    match asker.as_mut() {
        Some(a) => match a.answer().await {
            Some(answer) => answer,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Sends a typed answer; an answer the daemon refuses (another client was first) is told on
/// stderr and the command goes on.
async fn respond(s: &mut Session, (project, data): (String, Value)) -> Result<(), Failure> {
    match s
        .call("permission_respond", Some(&project), data, true)
        .await
    {
        Err(Failure::Api { code, message }) => {
            eprintln!("agentvisor: {} ({code})", super::render::clean(&message));
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

fn prompt() {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "Allow? [y]es, [n]o, [a]lways for this session: ");
    let _ = err.flush();
}
