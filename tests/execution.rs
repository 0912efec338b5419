//! Agent execution through the real daemon (issue 3), black-box over WebSocket: streaming to
//! every subscriber, sessions and resume, the command lines of both CLIs, per-run options,
//! stopping (kill, escalation, timeout, shutdown) with no process left behind, scheduling
//! (queue, concurrency limit) and failures. The mock agent stands in for `claude` and `codex`;
//! the prompt picks its behaviour (`mock:<scenario> key=value`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Stop escalation grace for most tests: the mock reacts to SIGINT at once, so this only bounds
/// the escalation tests and keeps them quick.
const GRACE: &str = "500ms";

/// How long a process the daemon killed may take to disappear from the process table (the
/// machine is small and busy; a leaked process lives for an hour, so this still tells them
/// apart).
const GONE_WITHIN: Duration = Duration::from_secs(5);

/// How long a zombie re-parented to the daemon may wait to be reaped (the health actor's
/// periodic sample reaps any the run's own sweep missed).
const REAPED_WITHIN: Duration = Duration::from_secs(12);

/// A daemon whose agent records how it was invoked, and the scratch directory for the records.
struct Setup {
    d: Daemon,
    scratch: tempfile::TempDir,
}

impl Setup {
    fn argv_log(&self) -> PathBuf {
        self.scratch.path().join("argv.jsonl")
    }

    /// Every agent invocation so far, oldest first.
    fn invocations(&self) -> Vec<Value> {
        std::fs::read_to_string(self.argv_log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("argv log line is JSON"))
            .collect()
    }

    /// The invocation that ran `prompt`, waiting for the mock to record it.
    async fn invocation(&self, prompt: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = self
                .invocations()
                .into_iter()
                .find(|v| v["prompt"] == prompt)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "the agent never ran {prompt:?}; invocations: {:?}",
                self.invocations()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The pid of the agent that ran `prompt`.
    async fn agent_pid(&self, prompt: &str) -> i32 {
        self.invocation(prompt).await["pid"].as_i64().unwrap() as i32
    }

    /// Asserts that a run left nothing behind: `pids` and every process of the run are gone,
    /// and the daemon has reaped all its children.
    async fn assert_nothing_left(&self, pids: &[i32], run_id: &str) {
        assert_gone(pids, run_id).await;
        assert_eq!(daemon_children_left(self.d.pid(), REAPED_WITHIN).await, []);
    }
}

fn builder() -> (DaemonBuilder, tempfile::TempDir) {
    let scratch = tempfile::tempdir().unwrap();
    let b = Daemon::builder()
        .env("AGENTVISOR_KILL_GRACE", GRACE)
        .env(
            "MOCK_AGENT_ARGV_LOG",
            scratch.path().join("argv.jsonl").display().to_string(),
        )
        .env(
            "MOCK_AGENT_PIDFILE",
            scratch.path().join("pids").display().to_string(),
        );
    (b, scratch)
}

fn start_with(env: &[(&str, &str)]) -> Setup {
    let (mut b, scratch) = builder();
    for (k, v) in env {
        b = b.env(k, *v);
    }
    Setup {
        d: b.start(),
        scratch,
    }
}

/// The directory of the project that [`start_with_project`] creates, under the project root.
const PROJECT_DIR: &str = "p";

/// A daemon started with `env`, a client, and a project it created in [`PROJECT_DIR`].
async fn start_with_project(env: &[(&str, &str)]) -> (Setup, Client, String) {
    let s = start_with(env);
    let mut c = s.d.client().await;
    let p = c.create_project(&s.d.project_dir(PROJECT_DIR)).await;
    (s, c, p)
}

/// Kills what a run left behind if the test ends early, so that a broken daemon cannot leave
/// `sleep 3600` strays on the machine. Only processes carrying the run's id are touched.
struct Leftovers(Vec<String>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for run in &self.0 {
            for pid in processes_of_run(run) {
                signal(pid, 9);
            }
        }
    }
}

/// Waits until none of `pids` is alive; returns those still alive after `limit`.
async fn still_alive(pids: &[i32], limit: Duration) -> Vec<i32> {
    left_after(limit, Duration::from_millis(20), || {
        pids.iter().copied().filter(|p| alive(*p)).collect()
    })
    .await
}

/// Asserts that `pids` and every process of the run are gone (or go within [`GONE_WITHIN`]).
async fn assert_gone(pids: &[i32], run_id: &str) {
    assert_eq!(still_alive(pids, GONE_WITHIN).await, [] as [i32; 0]);
    assert_eq!(run_leftovers(run_id, GONE_WITHIN).await, [] as [i32; 0]);
}

/// Child processes of `ppid`, zombies included, as (pid, state letter).
fn children_of(ppid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut f = stat.rsplit_once(')')?.1.split_whitespace();
            let state = f.next()?.to_string();
            let parent: i32 = f.next()?.parse().ok()?;
            (parent == ppid).then_some((pid, state))
        })
        .collect()
}

/// Waits until the daemon has no child process left, alive or zombie (it is a subreaper, so
/// escaped strays come back to it and must be reaped); returns what is left after `limit`.
async fn daemon_children_left(daemon: i32, limit: Duration) -> Vec<(i32, String)> {
    left_after(limit, Duration::from_millis(50), || children_of(daemon)).await
}

fn execute_body(project: &str, prompt: &str, options: Option<Value>) -> Value {
    let mut body = json!({"project_id": project, "prompt": prompt});
    if let Some(o) = options {
        body["options"] = o;
    }
    body
}

/// What one client saw of one run.
struct Run {
    run_id: String,
    /// Every message received, from the `execute` request to the `project_state` after
    /// `run_finished`.
    msgs: Vec<Value>,
}

impl Run {
    fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.msgs.iter().filter(|m| m["type"] == kind).collect()
    }

    /// `run_finished.data` of this run.
    fn finished(&self) -> &Value {
        self.event("run_finished")
    }

    /// `run_started.data` of this run.
    fn started(&self) -> &Value {
        self.event("run_started")
    }

    /// `data` of this run's `kind` event.
    fn event(&self, kind: &str) -> &Value {
        &self
            .msgs
            .iter()
            .find(|m| m["type"] == kind && m["data"]["run_id"] == self.run_id.as_str())
            .unwrap_or_else(|| panic!("no {kind} for run {}", self.run_id))["data"]
    }

    /// The agent's stdout lines as forwarded (`agent_message.data.message`), JSON ones only.
    fn agent_lines(&self) -> Vec<&Value> {
        self.of_type("agent_message")
            .into_iter()
            .filter(|m| m["data"]["run_id"] == self.run_id.as_str())
            .filter_map(|m| m["data"].get("message"))
            .collect()
    }

    /// The agent's first stdout line of type `kind`.
    fn agent_line(&self, kind: &str) -> &Value {
        self.agent_lines()
            .into_iter()
            .find(|m| m["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} line from the agent"))
    }

    /// The last `project_state` (the one after the run).
    fn final_state(&self) -> &Value {
        &self.of_type("project_state").last().expect("project_state")["data"]
    }

    /// The stored events of `project`, as broadcast.
    fn stored(&self, project: &str) -> Vec<Value> {
        stored(&self.msgs, project)
    }
}

fn stored(msgs: &[Value], project: &str) -> Vec<Value> {
    msgs.iter()
        .filter(|m| m["project_id"] == project && m.get("seq").is_some())
        .cloned()
        .collect()
}

/// Sends `execute` and reads until its reply; returns the run id (panics on an error reply) and
/// everything read.
async fn accept(
    c: &mut Client,
    project: &str,
    prompt: &str,
    options: Option<Value>,
) -> (String, Vec<Value>) {
    let id = c
        .request("execute", execute_body(project, prompt, options))
        .await;
    let mut msgs = Vec::new();
    loop {
        let m = c.recv().await;
        let reply = m["id"] == id.as_str();
        msgs.push(m);
        if reply {
            let m = &msgs[msgs.len() - 1];
            assert_eq!(m["type"], "execute_accepted", "{m}");
            let run_id = m["data"]["run_id"].as_str().expect("run_id").to_string();
            return (run_id, msgs);
        }
    }
}

/// Reads until `run_id` has finished and the project's state after it has arrived.
async fn until_finished(c: &mut Client, project: &str, run_id: &str) -> Vec<Value> {
    let mut msgs = Vec::new();
    let mut finished = false;
    loop {
        let m = c.recv().await;
        let ours = m["project_id"] == project;
        if ours && m["type"] == "run_finished" && m["data"]["run_id"] == run_id {
            finished = true;
        } else if ours && finished && m["type"] == "project_state" {
            msgs.push(m);
            return msgs;
        }
        msgs.push(m);
    }
}

/// Reads until the run's first `agent_message` satisfying `pred` (the agent is then running).
async fn until_output(
    c: &mut Client,
    run_id: &str,
    pred: impl Fn(&Value) -> bool,
) -> (Value, Vec<Value>) {
    let mut msgs = Vec::new();
    loop {
        let m = c.recv().await;
        assert_ne!(m["type"], "run_finished", "the run ended early: {m}");
        let hit = m["type"] == "agent_message"
            && m["data"]["run_id"] == run_id
            && pred(&m["data"]["message"]);
        msgs.push(m);
        if hit {
            let data = msgs[msgs.len() - 1]["data"].clone();
            return (data, msgs);
        }
    }
}

/// Starts `prompt` and reads until the run's first output line satisfying `pred` (the agent is
/// then running); returns the run id, that line's `data`, and the guard against leftovers.
async fn start_running(
    c: &mut Client,
    project: &str,
    prompt: &str,
    pred: impl Fn(&Value) -> bool,
) -> (String, Value, Leftovers) {
    let (run_id, _) = accept(c, project, prompt, None).await;
    let guard = Leftovers(vec![run_id.clone()]);
    let (line, _) = until_output(c, &run_id, pred).await;
    (run_id, line, guard)
}

/// Reads the accepted run `run_id` to its end.
async fn finish(c: &mut Client, project: &str, run_id: String) -> Run {
    Run {
        msgs: until_finished(c, project, &run_id).await,
        run_id,
    }
}

/// Kills the project's run `run_id` and reads it to its end.
async fn kill_run(c: &mut Client, project: &str, run_id: String) -> Run {
    c.kill(project).await;
    finish(c, project, run_id).await
}

/// Sends `execute` and checks the `queue_position` the run was accepted at (0: it starts at
/// once); returns the run id.
async fn queued(c: &mut Client, project: &str, prompt: &str, position: u64) -> String {
    let r = c.call("execute", execute_body(project, prompt, None)).await;
    assert_eq!(r["type"], "execute_accepted", "{r}");
    assert_eq!(r["data"]["queue_position"], position, "{r}");
    r["data"]["run_id"].as_str().unwrap().to_string()
}

/// Runs `prompt` to the end and asserts that it completed.
async fn run_completed(c: &mut Client, project: &str, prompt: &str) -> Run {
    let run = execute(c, project, prompt, None).await;
    assert_eq!(run.finished()["status"], "completed", "{}", run.finished());
    run
}

/// Runs `prompt` to the end.
async fn execute(c: &mut Client, project: &str, prompt: &str, options: Option<Value>) -> Run {
    let (run_id, mut msgs) = accept(c, project, prompt, options).await;
    msgs.extend(until_finished(c, project, &run_id).await);
    Run { run_id, msgs }
}

async fn expect_error(c: &mut Client, kind: &str, data: Value, code: &str) -> Value {
    let r = c.call(kind, data).await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["data"]["code"], code, "{r}");
    r
}

/// Asserts that `agent_kill` finds no run in the project.
async fn assert_nothing_to_kill(c: &mut Client, project: &str) {
    let kill = json!({"project_id": project});
    expect_error(c, "agent_kill", kill, "NO_ACTIVE_RUN").await;
}

/// A project using `agent`.
async fn create_agent_project(c: &mut Client, dir: &Path, agent: &str) -> String {
    let p = c
        .create_project_with(json!({"path": dir, "agent": agent}))
        .await;
    assert_eq!(p["agent"], agent, "{p}");
    p["id"].as_str().unwrap().to_string()
}

fn argv(inv: &Value) -> Vec<String> {
    inv["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .map(|a| a.as_str().expect("argv entry").to_string())
        .collect()
}

/// Asserts that the agent's working directory `cwd` is `dir` (whatever links lead to either).
fn assert_runs_in(cwd: &str, dir: &Path) {
    assert_eq!(
        Path::new(cwd).canonicalize().unwrap(),
        dir.canonicalize().unwrap(),
        "the agent runs in the project directory"
    );
}

fn types(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().filter_map(|m| m["type"].as_str()).collect()
}

#[tokio::test]
async fn two_subscribers_see_the_same_ordered_stream() {
    let (s, mut a, p) = start_with_project(&[]).await;
    let mut b = s.d.client().await;
    for c in [&mut a, &mut b] {
        c.join(&p).await;
    }

    let run = execute(&mut a, &p, "hello there", None).await;
    let seen_by_b = until_finished(&mut b, &p, &run.run_id).await;

    // The lifecycle, in order, around the agent's output.
    let lifecycle: Vec<&Value> = run.msgs.iter().filter(|m| m["type"] != "prompt").collect();
    let kinds: Vec<&str> = lifecycle
        .iter()
        .filter_map(|m| m["type"].as_str())
        .collect();
    let n = kinds.len();
    assert!(n >= 6, "{kinds:?}");
    assert_eq!(
        kinds[..3],
        ["execute_accepted", "project_state", "run_started"],
        "{kinds:?}"
    );
    assert_eq!(
        kinds[n - 2..],
        ["run_finished", "project_state"],
        "{kinds:?}"
    );
    assert!(
        kinds[3..n - 2].iter().all(|k| *k == "agent_message"),
        "{kinds:?}"
    );
    assert_eq!(lifecycle[0]["data"]["queue_position"], 0);
    assert_eq!(
        lifecycle[1]["data"]["state"], "EXECUTING",
        "{}",
        lifecycle[1]
    );
    assert_eq!(
        lifecycle[n - 1]["data"]["state"],
        "IDLE",
        "{}",
        lifecycle[n - 1]
    );
    let started = run.started();
    assert_eq!(started["prompt"], "hello there");
    assert!(started["resumed_session_id"].is_null(), "{started}");

    // Every stdout line, forwarded as a JSON object, closing with the agent's result.
    let lines = run.agent_lines();
    assert_eq!(
        lines.len(),
        run.of_type("agent_message").len(),
        "all lines are JSON"
    );
    assert_eq!(lines[0]["type"], "system");
    assert_eq!(lines[0]["subtype"], "init");
    let result = *lines.last().unwrap();
    assert_eq!(result["type"], "result", "{result}");

    let f = run.finished();
    assert_eq!(f["status"], "completed", "{f}");
    assert_eq!(f["exit_code"], 0, "{f}");
    assert!(f["duration_ms"].is_u64(), "{f}");
    assert!(f.get("error").is_none(), "{f}");
    assert_eq!(f["cost_usd"], result["total_cost_usd"], "{f}");
    assert!(f["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "{f}");
    assert_eq!(f["session_id"], result["session_id"], "{f}");

    // Stored events carry increasing seqs, and both subscribers got exactly the same ones.
    let from_a = run.stored(&p);
    let from_b = stored(&seen_by_b, &p);
    let seqs: Vec<u64> = from_a.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(
        from_a.len(),
        from_b.len(),
        "{:?} / {:?}",
        types(&from_a),
        types(&from_b)
    );
    assert_eq!(from_a, from_b);

    // The prompt is in history, as the client's.
    let records = a.messages(&p, json!({"direction": "client"})).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["direction"], "client", "{records:?}");
    assert_eq!(records[0]["data"]["prompt"], "hello there", "{records:?}");
    assert_eq!(
        records[0]["data"]["run_id"],
        run.run_id.as_str(),
        "{records:?}"
    );
}

#[tokio::test]
async fn resume_uses_the_saved_session_and_lines_pass_unchanged() {
    let (s, mut c, p) = start_with_project(&[]).await;
    let dir = s.d.root.join(PROJECT_DIR);

    let first = run_completed(&mut c, &p, "first").await;
    let session = first.finished()["session_id"]
        .as_str()
        .expect("session id saved")
        .to_string();
    assert_eq!(first.agent_lines()[0]["session_id"], session.as_str());
    let inv = s.invocation("first").await;
    assert_eq!(
        argv(&inv),
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--",
            "first"
        ]
    );
    assert!(inv["resume"].is_null(), "{inv}");
    let cwd = inv["cwd"].as_str().expect("cwd").to_string();
    assert_runs_in(&cwd, &dir);

    // The project shows the session too.
    let r = c.call("project_list", json!({})).await;
    assert_eq!(
        r["data"]["projects"][0]["session_id"],
        session.as_str(),
        "{r}"
    );

    let second = run_completed(&mut c, &p, "second").await;
    assert_eq!(second.started()["resumed_session_id"], session.as_str());
    let inv = s.invocation("second").await;
    let args = argv(&inv);
    assert!(args.contains(&format!("--resume={session}")), "{args:?}");
    assert_eq!(args[args.len() - 2..], ["--", "second"], "{args:?}");
    assert_eq!(inv["resume"], session.as_str(), "{inv}");

    // The same invocation run by hand prints exactly what the subscriber received.
    let out = std::process::Command::new(mock_agent())
        .args(&args)
        .current_dir(&cwd)
        .env_remove("MOCK_AGENT_ARGV_LOG")
        .env_remove("MOCK_AGENT_SCENARIO")
        .env_remove("MOCK_AGENT_PARAMS")
        .output()
        .expect("run the mock agent");
    assert!(out.status.success());
    let direct: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("mock prints JSON"))
        .collect();
    let forwarded: Vec<Value> = second.agent_lines().into_iter().cloned().collect();
    assert_eq!(forwarded.len(), direct.len());
    assert_eq!(forwarded, direct);
}

#[tokio::test]
async fn codex_project_runs_exec_and_resumes_its_thread() {
    let s = start_with(&[]);
    let mut c = s.d.client().await;
    let p = create_agent_project(&mut c, &s.d.project_dir("cx"), "codex").await;

    let first = execute(&mut c, &p, "first", None).await;
    let f = first.finished();
    assert_eq!(f["status"], "completed", "{f}");
    assert_eq!(f["exit_code"], 0, "{f}");
    assert!(f.get("cost_usd").is_none(), "codex reports no cost: {f}");
    let lines = first.agent_lines();
    assert_eq!(lines[0]["type"], "thread.started");
    let thread = lines[0]["thread_id"]
        .as_str()
        .expect("thread id")
        .to_string();
    assert_eq!(f["session_id"], thread.as_str(), "{f}");
    let inv = s.invocation("first").await;
    assert_eq!(inv["flavour"], "codex");
    assert_eq!(
        argv(&inv),
        ["exec", "--json", "--skip-git-repo-check", "--", "first"]
    );

    let second = run_completed(&mut c, &p, "second").await;
    assert_eq!(second.started()["resumed_session_id"], thread.as_str());
    let inv = s.invocation("second").await;
    let args = argv(&inv);
    assert_eq!(args[..2], ["exec", "resume"], "{args:?}");
    assert!(args.contains(&"--json".to_string()), "{args:?}");
    assert!(
        args.contains(&"--skip-git-repo-check".to_string()),
        "{args:?}"
    );
    assert_eq!(
        args[args.len() - 2..],
        [thread.as_str(), "second"],
        "{args:?}"
    );
    assert_eq!(inv["resume"], thread.as_str(), "{inv}");

    // Codex exits at once on SIGINT, without a closing event: still a clean kill.
    let (run_id, _, _guard) = start_running(&mut c, &p, "mock:hang", |_| true).await;
    let run = kill_run(&mut c, &p, run_id).await;
    assert_eq!(run.finished()["status"], "killed", "{}", run.finished());
    assert_eq!(run.final_state()["state"], "IDLE");
    assert_eq!(run.final_state()["session_id"], thread.as_str());
    assert_gone(&[], &run.run_id).await;
}

#[tokio::test]
async fn a_prompt_starting_with_a_dash_stays_a_prompt() {
    let (s, mut c, p) = start_with_project(&[]).await;
    let run = run_completed(&mut c, &p, "--help").await;
    // The mock records only runs: had `--help` been read as an option it would have printed
    // usage instead.
    let inv = s.invocation("--help").await;
    let args = argv(&inv);
    assert_eq!(args[args.len() - 2..], ["--", "--help"], "{args:?}");
    assert_eq!(run.agent_lines().last().unwrap()["type"], "result");
}

#[tokio::test]
async fn the_agent_runs_in_the_project_directory_marked_with_its_run() {
    let (s, mut c, p) = start_with_project(&[]).await;
    let run = run_completed(&mut c, &p, "mock:env").await;
    let report = run.agent_line("mock_env");
    assert_eq!(report["run_id"], run.run_id.as_str(), "{report}");
    let dir = s.d.root.join(PROJECT_DIR);
    assert_runs_in(report["cwd"].as_str().expect("cwd"), &dir);
}

#[tokio::test]
async fn options_map_to_flags_and_unknown_ones_are_refused() {
    let (s, mut c, p) = start_with_project(&[]).await;
    let options = json!({
        "model": "claude-sonnet-4-5",
        "max_turns": 3,
        "permission_mode": "plan",
        "allowed_tools": ["Read", "Bash(git log:*)"],
    });
    let run = execute(&mut c, &p, "with options", Some(options)).await;
    assert_eq!(run.finished()["status"], "completed");
    let args = argv(&s.invocation("with options").await);
    let dash = args.iter().position(|a| a == "--").expect("--");
    for flag in [
        "--model=claude-sonnet-4-5",
        "--max-turns=3",
        "--permission-mode=plan",
        "--allowedTools=Read,Bash(git log:*)",
    ] {
        let at = args.iter().position(|a| a == flag);
        assert!(at.is_some_and(|i| i < dash), "{flag} in {args:?}");
    }

    for bad in [
        json!({"temperature": 0.5}),
        json!({"dangerously_skip_permissions": true}),
        json!({"model": "--dangerously-skip-permissions"}),
        json!({"max_turns": 0}),
        json!({"permission_mode": "yolo"}),
    ] {
        let r = expect_error(
            &mut c,
            "execute",
            execute_body(&p, "refused", Some(bad.clone())),
            "VALIDATION_FAILED",
        )
        .await;
        let msg = r["data"]["error"].as_str().unwrap_or_default();
        assert!(msg.contains("option"), "{bad}: {r}");
    }
    // Codex has no `max_turns`: refused there too, not silently dropped.
    let cx = create_agent_project(&mut c, &s.d.project_dir("cx"), "codex").await;
    expect_error(
        &mut c,
        "execute",
        execute_body(&cx, "refused", Some(json!({"max_turns": 2}))),
        "VALIDATION_FAILED",
    )
    .await;

    // Nothing refused was run or stored.
    c.ping().await;
    assert_eq!(s.invocations().len(), 1, "{:?}", s.invocations());
    let records = c.messages(&p, json!({"direction": "client"})).await;
    assert_eq!(records.len(), 1, "{records:?}");
}

#[tokio::test]
async fn new_session_drops_the_id_and_tells_every_subscriber() {
    let (s, mut a, p) = start_with_project(&[]).await;
    let mut b = s.d.client().await;
    b.join(&p).await;

    let first = execute(&mut a, &p, "first", None).await;
    let old = first.finished()["session_id"].as_str().unwrap().to_string();

    let r = a.call("agent_new_session", json!({"project_id": p})).await;
    assert_eq!(r["type"], "session_reset", "{r}");
    assert_eq!(r["data"]["old_session_id"], old.as_str(), "{r}");
    let notice = b
        .recv_where(|m| m["type"] == "session_reset" && m.get("seq").is_some())
        .await;
    assert_eq!(notice["data"]["old_session_id"], old.as_str(), "{notice}");
    assert_eq!(notice["data"]["project_id"], p.as_str(), "{notice}");
    let r = a.call("project_list", json!({})).await;
    assert!(r["data"]["projects"][0]["session_id"].is_null(), "{r}");

    let second = run_completed(&mut a, &p, "second").await;
    assert!(second.started()["resumed_session_id"].is_null());
    let args = argv(&s.invocation("second").await);
    assert!(
        !args.iter().any(|a| a.starts_with("--resume") || a == "-r"),
        "{args:?}"
    );
    let new = second.finished()["session_id"].as_str().unwrap();
    assert_ne!(new, old);

    // The reset is in history, with its time.
    let reset = a
        .messages(&p, json!({"direction": "system"}))
        .await
        .into_iter()
        .find(|m| m["type"] == "session_reset")
        .expect("session_reset stored");
    assert!(reset["data"]["reset_at"].is_string(), "{reset}");
}

#[tokio::test]
async fn kill_stops_the_run_and_leaves_no_process() {
    let (s, mut c, p) = start_with_project(&[]).await;
    assert_nothing_to_kill(&mut c, &p).await;

    let (run_id, _, _guard) = start_running(&mut c, &p, "mock:hang", |_| true).await;
    let pid = s.agent_pid("mock:hang").await;
    assert!(alive(pid));
    assert!(processes_of_run(&run_id).contains(&pid));
    let r = c.call("project_list", json!({})).await;
    assert_eq!(r["data"]["projects"][0]["state"], "EXECUTING", "{r}");

    let r = c.kill(&p).await;
    assert_eq!(r["data"]["run_id"], run_id.as_str(), "{r}");
    let run = finish(&mut c, &p, run_id).await;
    let f = run.finished();
    assert_eq!(f["status"], "killed", "{f}");
    assert!(f["error"].as_str().is_some_and(|e| !e.is_empty()), "{f}");
    assert_eq!(run.final_state()["state"], "IDLE");
    s.assert_nothing_left(&[pid], &run.run_id).await;

    assert_nothing_to_kill(&mut c, &p).await;
    // The project is usable afterwards.
    run_completed(&mut c, &p, "after the kill").await;
}

#[tokio::test]
async fn kill_escalates_when_the_agent_ignores_signals() {
    let (s, mut c, p) = start_with_project(&[("AGENTVISOR_KILL_GRACE", "300ms")]).await;
    let prompt = "mock:hang ignore_sigint=1 ignore_sigterm=1";
    let (run_id, _, _guard) = start_running(&mut c, &p, prompt, |_| true).await;
    let pid = s.agent_pid(prompt).await;

    let asked = Instant::now();
    let run = kill_run(&mut c, &p, run_id).await;
    let took = asked.elapsed();
    let f = run.finished();
    assert_eq!(f["status"], "killed", "{f}");
    assert!(f["exit_code"].is_null(), "killed by a signal: {f}");
    // SIGINT and SIGTERM were ignored: only SIGKILL, two grace periods later, ended it.
    assert!(took >= Duration::from_millis(550), "{took:?}");
    assert_eq!(run.final_state()["state"], "IDLE");
    s.assert_nothing_left(&[pid], &run.run_id).await;
}

/// Starts `prompt` (a `mock:escape`) and waits for the grandchild it leaves in its own
/// session; returns the run id, the grandchild's pid and the guard against leftovers.
async fn start_escape(c: &mut Client, project: &str, prompt: &str) -> (String, i32, Leftovers) {
    let (run_id, line, guard) =
        start_running(c, project, prompt, |m| m["type"] == "mock_grandchild").await;
    let stray = line["message"]["pid"].as_i64().expect("grandchild pid") as i32;
    (run_id, stray, guard)
}

#[tokio::test]
async fn kill_also_kills_a_grandchild_that_left_the_process_group() {
    let (s, mut c, p) = start_with_project(&[]).await;
    let (run_id, stray, _guard) = start_escape(&mut c, &p, "mock:escape").await;
    let pid = s.agent_pid("mock:escape").await;
    assert!(alive(stray), "the grandchild runs");
    assert!(processes_of_run(&run_id).contains(&stray));

    let run = kill_run(&mut c, &p, run_id).await;
    assert_eq!(run.finished()["status"], "killed");
    s.assert_nothing_left(&[pid, stray], &run.run_id).await;
}

#[tokio::test]
async fn a_grandchild_dies_with_its_run_when_the_agent_exits() {
    let (s, mut c, p) = start_with_project(&[]).await;
    let (run_id, stray, _guard) = start_escape(&mut c, &p, "mock:escape then=exit").await;
    let run = finish(&mut c, &p, run_id).await;
    let f = run.finished();
    assert_eq!(f["status"], "completed", "{f}");
    assert_eq!(run.final_state()["state"], "IDLE");
    s.assert_nothing_left(&[stray], &run.run_id).await;
}

#[tokio::test]
async fn timeout_stops_the_run_and_sets_error() {
    let (s, mut c, p) = start_with_project(&[("AGENTVISOR_RUN_TIMEOUT", "1s")]).await;
    let (run_id, _) = accept(&mut c, &p, "mock:hang", None).await;
    let _guard = Leftovers(vec![run_id.clone()]);
    let run = finish(&mut c, &p, run_id).await;
    let f = run.finished();
    assert_eq!(f["status"], "timeout", "{f}");
    assert!(
        f["error"]
            .as_str()
            .is_some_and(|e| e.contains("time limit of 1s")),
        "{f}"
    );
    assert!(f["duration_ms"].as_u64().is_some_and(|d| d >= 900), "{f}");
    assert_eq!(run.final_state()["state"], "ERROR");
    let pid = s.agent_pid("mock:hang").await;
    s.assert_nothing_left(&[pid], &run.run_id).await;
}

#[tokio::test]
async fn a_hundred_thousand_lines_all_arrive_in_order() {
    const COUNT: u64 = 100_000;
    let (_s, mut c, p) = start_with_project(&[("AGENTVISOR_MAX_BACKLOG_BYTES", "1GB")]).await;
    let (run_id, _) = accept(&mut c, &p, &format!("mock:lines count={COUNT}"), None).await;
    // Read without keeping the lines: only the count and the order matter.
    let mut next = 1;
    let finished = loop {
        let m = c.recv().await;
        match m["type"].as_str() {
            Some("agent_message") if m["data"]["message"]["type"] == "mock_line" => {
                assert_eq!(m["data"]["message"]["n"], next, "line out of order or lost");
                next += 1;
            }
            Some("run_finished") if m["data"]["run_id"] == run_id.as_str() => break m,
            _ => {}
        }
    };
    assert_eq!(next - 1, COUNT, "lines delivered");
    assert_eq!(finished["data"]["status"], "completed", "{finished}");
}

#[tokio::test]
async fn a_ten_megabyte_line_arrives_and_the_daemon_keeps_serving() {
    let (_s, mut c, p) = start_with_project(&[]).await;
    let run = run_completed(&mut c, &p, "mock:huge").await;
    let big = run.agent_line("assistant");
    let text = big["message"]["content"][0]["text"].as_str().unwrap();
    assert!(text.len() > 10_000_000, "{}", text.len());
    assert!(text.bytes().all(|b| b == b'a'));

    c.ping().await;
    run_completed(&mut c, &p, "small again").await;
}

#[tokio::test]
async fn non_json_lines_come_raw_and_do_not_fail_the_run() {
    let (_s, mut c, p) = start_with_project(&[]).await;
    let run = execute(&mut c, &p, "mock:nonjson", None).await;
    let f = run.finished();
    assert_eq!(f["status"], "completed", "{f}");
    let raw: Vec<&str> = run
        .of_type("agent_message")
        .iter()
        .filter_map(|m| m["data"]["raw"].as_str())
        .collect();
    let json_lines = run.agent_lines();
    assert!(!raw.is_empty());
    assert_eq!(
        raw.len(),
        json_lines.len(),
        "one raw line before each JSON line"
    );
    for (i, line) in raw.iter().enumerate() {
        assert_eq!(*line, format!("this is not json {}", i + 1));
    }
    assert_eq!(json_lines.last().unwrap()["type"], "result");
    assert_eq!(run.final_state()["state"], "IDLE");
}

#[tokio::test]
async fn stderr_comes_apart_as_agent_stderr() {
    let (_s, mut c, p) = start_with_project(&[]).await;
    let run = run_completed(&mut c, &p, "mock:stderr count=5").await;
    let lines: Vec<String> = run
        .of_type("agent_stderr")
        .iter()
        .map(|m| {
            assert_eq!(m["data"]["run_id"], run.run_id.as_str(), "{m}");
            m["data"]["line"].as_str().unwrap().to_string()
        })
        .collect();
    let want: Vec<String> = (1..=5).map(|i| format!("mock stderr line {i}")).collect();
    assert_eq!(lines, want);
    assert!(run
        .of_type("agent_message")
        .iter()
        .all(|m| m["data"].get("raw").is_none()));
}

#[tokio::test]
async fn queued_runs_report_their_position_and_run_in_order() {
    let (s, mut c, p) = start_with_project(&[]).await;
    let (first, _) = accept(&mut c, &p, "mock:hang", None).await;
    let _guard = Leftovers(vec![first.clone()]);
    let mut runs = vec![first.clone()];
    for (prompt, position) in [("queued one", 1), ("queued two", 2)] {
        runs.push(queued(&mut c, &p, prompt, position).await);
    }
    let r = c.call("project_list", json!({})).await;
    assert_eq!(r["data"]["projects"][0]["queue_len"], 2, "{r}");

    // Killing the running one (without clear_queue) lets the queue go on.
    until_output(&mut c, &first, |_| true).await;
    c.kill(&p).await;
    let mut msgs = until_finished(&mut c, &p, &runs[2]).await;
    msgs.retain(|m| m["project_id"] == p.as_str());
    let lifecycle: Vec<(String, String)> = msgs
        .iter()
        .filter(|m| m["type"] == "run_started" || m["type"] == "run_finished")
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_string(),
                m["data"]["run_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("run_finished", 0),
        ("run_started", 1),
        ("run_finished", 1),
        ("run_started", 2),
        ("run_finished", 2),
    ]
    .iter()
    .map(|(k, i)| (k.to_string(), runs[*i].clone()))
    .collect();
    assert_eq!(lifecycle, expected);
    let statuses: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["type"] == "run_finished")
        .map(|m| &m["data"]["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!("killed"), &json!("completed"), &json!("completed")]
    );
    let prompts: Vec<Value> = s
        .invocations()
        .iter()
        .map(|v| v["prompt"].clone())
        .collect();
    assert_eq!(
        prompts,
        [json!("mock:hang"), json!("queued one"), json!("queued two")]
    );
}

#[tokio::test]
async fn a_full_queue_is_refused_and_kill_can_clear_it() {
    let (s, mut c, p) = start_with_project(&[("AGENTVISOR_MAX_QUEUE", "1")]).await;
    let (first, _) = accept(&mut c, &p, "mock:hang", None).await;
    let _guard = Leftovers(vec![first.clone()]);
    let waiting = queued(&mut c, &p, "waiting", 1).await;
    expect_error(
        &mut c,
        "execute",
        execute_body(&p, "one too many", None),
        "QUEUE_FULL",
    )
    .await;

    let r = c
        .call("agent_kill", json!({"project_id": p, "clear_queue": true}))
        .await;
    assert_eq!(r["type"], "agent_killed", "{r}");
    assert_eq!(r["data"]["run_id"], first.as_str(), "{r}");
    assert_eq!(r["data"]["cleared"], 1, "{r}");
    let run = finish(&mut c, &p, first).await;
    assert_eq!(run.finished()["status"], "killed");
    assert_eq!(run.final_state()["state"], "IDLE");
    assert_eq!(run.final_state()["queue_len"], 0);

    // The cleared run was closed, never started.
    let records = c.messages(&p, json!({"direction": "system"})).await;
    let about = |kind: &str, run: &str| {
        records
            .iter()
            .filter(|m| m["type"] == kind && m["data"]["run_id"] == run)
            .count()
    };
    assert_eq!(about("run_finished", &waiting), 1, "{records:?}");
    assert_eq!(about("run_started", &waiting), 0, "{records:?}");
    let cleared = records
        .iter()
        .find(|m| m["type"] == "run_finished" && m["data"]["run_id"] == waiting.as_str())
        .unwrap();
    assert_eq!(cleared["data"]["status"], "killed", "{cleared}");
    assert!(s.invocations().iter().all(|v| v["prompt"] != "waiting"));
}

/// Starts a daemon with `env` and a slow run in each of two projects; returns the order in which
/// one subscriber saw their `run_started` and `run_finished`, as (type, project index).
async fn two_project_runs(env: &[(&str, &str)]) -> Vec<(String, usize)> {
    let s = start_with(env);
    let mut c = s.d.client().await;
    let projects = [
        c.create_project(&s.d.project_dir("one")).await,
        c.create_project(&s.d.project_dir("two")).await,
    ];
    let mut runs = Vec::new();
    for p in &projects {
        runs.push(queued(&mut c, p, "mock:success delay_ms=2500", 0).await);
    }
    let mut order = Vec::new();
    let mut done = 0;
    while done < 2 {
        let m = c.recv().await;
        let kind = m["type"].as_str().unwrap_or_default();
        if kind != "run_started" && kind != "run_finished" {
            continue;
        }
        let i = runs
            .iter()
            .position(|r| m["data"]["run_id"] == r.as_str())
            .expect("a run of ours");
        if kind == "run_finished" {
            assert_eq!(m["data"]["status"], "completed", "{m}");
            done += 1;
        }
        order.push((kind.to_string(), i));
    }
    order
}

#[tokio::test]
async fn runs_in_different_projects_overlap() {
    let order = two_project_runs(&[]).await;
    let kinds: Vec<&str> = order.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["run_started", "run_started", "run_finished", "run_finished"],
        "{order:?}"
    );
}

#[tokio::test]
async fn the_global_run_limit_serializes_projects() {
    let order = two_project_runs(&[("AGENTVISOR_MAX_CONCURRENT_RUNS", "1")]).await;
    let kinds: Vec<&str> = order.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["run_started", "run_finished", "run_started", "run_finished"],
        "{order:?}"
    );
    assert_eq!(order[0].1, order[1].1, "{order:?}");
}

#[tokio::test]
async fn a_missing_agent_is_reported_and_the_daemon_still_serves() {
    let (s, mut c, p) =
        start_with_project(&[("AGENTVISOR_CLAUDE_BIN", "/nonexistent/claude")]).await;
    let r = expect_error(
        &mut c,
        "execute",
        execute_body(&p, "hello", None),
        "AGENT_NOT_FOUND",
    )
    .await;
    let msg = r["data"]["error"].as_str().unwrap();
    assert!(msg.contains("npm install"), "{r}");
    assert!(!msg.contains("/nonexistent"), "no server paths: {r}");

    // Health shows the agent as unavailable once the probe has run.
    let r = c
        .health_when("agent probes", |r| {
            let agents = &r["data"]["checks"]["agents"];
            agents.get("claude").is_some() && agents.get("codex").is_some()
        })
        .await;
    let agents = &r["data"]["checks"]["agents"];
    assert_eq!(agents["claude"]["available"], false, "{agents}");
    assert_eq!(agents["codex"]["available"], true, "{agents}");

    // The rest of the daemon works: another project, a codex run, HTTP.
    let cx = create_agent_project(&mut c, &s.d.project_dir("cx"), "codex").await;
    run_completed(&mut c, &cx, "hello").await;
    let (status, _) = s.d.http_get("/health").await;
    assert_eq!(status, 200);
    let r = c.call("project_list", json!({})).await;
    assert_eq!(r["data"]["projects"][0]["state"], "IDLE", "{r}");
}

#[tokio::test]
async fn a_crash_fails_the_run_and_the_project_stays_usable() {
    let (_s, mut c, p) = start_with_project(&[]).await;
    let run = execute(&mut c, &p, "mock:crash", None).await;
    let f = run.finished();
    assert_eq!(f["status"], "failed", "{f}");
    let why = f["error"].as_str().unwrap_or_default();
    assert!(why.len() > 10 && why.contains(' '), "a sentence: {f}");
    assert!(f["exit_code"].is_null(), "died by a signal: {f}");
    assert_eq!(run.final_state()["state"], "ERROR");
    // The crash came after the init line: its session is kept and resumed.
    let session = run.agent_lines()[0]["session_id"].clone();
    assert!(session.is_string());
    assert_eq!(f["session_id"], session, "{f}");

    let next = run_completed(&mut c, &p, "mock:success").await;
    assert_eq!(next.started()["resumed_session_id"], session);
    assert_eq!(next.final_state()["state"], "IDLE");
}

#[tokio::test]
async fn an_error_result_fails_the_run() {
    let (_s, mut c, p) = start_with_project(&[]).await;
    let run = execute(&mut c, &p, "mock:error", None).await;
    let f = run.finished();
    assert_eq!(f["status"], "failed", "{f}");
    assert_eq!(f["exit_code"], 1, "{f}");
    let why = f["error"].as_str().unwrap_or_default();
    assert!(why.contains("API Error"), "the agent's own reason: {f}");
    assert_eq!(run.final_state()["state"], "ERROR");
    assert!(run
        .agent_lines()
        .iter()
        .any(|m| m["type"] == "result" && m["is_error"] == true));
}

#[tokio::test]
async fn shutdown_during_a_run_kills_its_processes() {
    let (mut s, mut c, p) = start_with_project(&[]).await;
    let (run_id, stray, _guard) = start_escape(&mut c, &p, "mock:escape").await;
    let pid = s.agent_pid("mock:escape").await;
    assert!(alive(pid) && alive(stray));

    let status = s.d.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", s.d.log_text());
    // The grandchild is not the daemon's child: only the daemon's own clean-up kills it.
    assert_gone(&[pid, stray], &run_id).await;
}

/// A daemon with a single run slot, taken by a hanging run in project `busy`; `waiting` is a
/// second project, idle.
struct SlotTaken {
    s: Setup,
    c: Client,
    busy: String,
    waiting: String,
    /// The run holding the slot.
    hang: String,
    guard: Leftovers,
}

async fn slot_taken() -> SlotTaken {
    let s = start_with(&[("AGENTVISOR_MAX_CONCURRENT_RUNS", "1")]);
    let mut c = s.d.client().await;
    let busy = c.create_project(&s.d.project_dir("busy")).await;
    let waiting = c.create_project(&s.d.project_dir("waiting")).await;
    let (hang, _, guard) = start_running(&mut c, &busy, "mock:hang", |_| true).await;
    SlotTaken {
        s,
        c,
        busy,
        waiting,
        hang,
        guard,
    }
}

#[tokio::test]
async fn a_run_waiting_for_a_slot_can_be_killed_and_then_runs_later() {
    let SlotTaken {
        s,
        mut c,
        busy,
        waiting,
        hang,
        guard: _guard,
    } = slot_taken().await;
    let (blocked, _) = accept(&mut c, &waiting, "blocked", None).await;

    let run = kill_run(&mut c, &waiting, blocked).await;
    assert_eq!(run.finished()["status"], "killed");
    assert_eq!(run.final_state()["state"], "IDLE");
    assert!(run.of_type("run_started").is_empty());

    // Once the slot is free, the project runs again.
    kill_run(&mut c, &busy, hang).await;
    run_completed(&mut c, &waiting, "now it runs").await;
    assert!(s.invocations().iter().all(|v| v["prompt"] != "blocked"));
}

#[tokio::test]
async fn shutdown_does_not_start_a_run_that_waits_for_a_slot() {
    let SlotTaken {
        mut s,
        mut c,
        waiting,
        mut guard,
        ..
    } = slot_taken().await;
    let (blocked, _) = accept(&mut c, &waiting, "mock:hang blocked", None).await;
    guard.0.push(blocked);
    let pid = s.agent_pid("mock:hang").await;

    let status = s.d.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", s.d.log_text());
    assert_eq!(still_alive(&[pid], GONE_WITHIN).await, [] as [i32; 0]);
    let started: Vec<Value> = s
        .invocations()
        .into_iter()
        .filter(|v| v["prompt"] == "mock:hang blocked")
        .collect();
    assert!(
        started.is_empty(),
        "a run started during shutdown: {started:?}"
    );
}

#[tokio::test]
async fn kill_stops_an_agent_in_the_middle_of_a_flood() {
    let (_s, mut c, p) = start_with_project(&[("AGENTVISOR_MAX_BACKLOG_BYTES", "1GB")]).await;
    let (run_id, _, _guard) = start_running(&mut c, &p, "mock:lines count=100000000", |m| {
        m["type"] == "mock_line"
    })
    .await;
    let asked = Instant::now();
    let id = c.request("agent_kill", json!({"project_id": p})).await;
    // Read on while the flood drains: the kill must get through it.
    let mut replied = false;
    let mut lines = 0u64;
    let finished = loop {
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "the kill did not get through the flood"
        );
        let m = c.recv().await;
        if m["id"] == id.as_str() {
            assert_eq!(m["type"], "agent_killed", "{m}");
            replied = true;
        } else if m["type"] == "agent_message" {
            lines += 1;
        } else if m["type"] == "run_finished" {
            break m;
        }
    };
    assert!(replied);
    assert_eq!(finished["data"]["status"], "killed", "{finished}");
    assert!(asked.elapsed() < WAIT, "{:?}", asked.elapsed());
    assert!(lines < 100_000_000);
    assert_gone(&[], &run_id).await;
}

#[tokio::test]
async fn the_session_id_survives_a_daemon_crash_mid_run() {
    let (mut s, mut c, p) = start_with_project(&[]).await;
    let (run_id, init, _guard) =
        start_running(&mut c, &p, "mock:hang", |m| m["type"] == "system").await;
    let session = init["message"]["session_id"].as_str().unwrap().to_string();
    let pid = s.agent_pid("mock:hang").await;
    drop(c);

    // Saved as soon as the agent said it, not only at the end of the run.
    s.d.kill9();
    assert_eq!(still_alive(&[pid], GONE_WITHIN).await, [] as [i32; 0]);
    s.d.restart();
    let mut c = s.d.client().await;
    let r = c.call("project_list", json!({})).await;
    let project = &r["data"]["projects"][0];
    assert_eq!(project["session_id"], session.as_str(), "{r}");
    assert_eq!(project["state"], "ERROR", "the interrupted run failed: {r}");
    let closed = c
        .messages(&p, json!({"direction": "system"}))
        .await
        .into_iter()
        .find(|m| m["type"] == "run_finished" && m["data"]["run_id"] == run_id.as_str())
        .expect("the interrupted run is closed in history");
    assert_eq!(closed["data"]["status"], "failed", "{closed}");

    let next = run_completed(&mut c, &p, "after the crash").await;
    assert_eq!(next.started()["resumed_session_id"], session.as_str());
    let args = argv(&s.invocation("after the crash").await);
    assert!(args.contains(&format!("--resume={session}")), "{args:?}");
}

/// Writes an executable shell script standing in for an agent that prints `body`'s lines.
fn script_agent(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("agent.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn every_json_object_line_is_forwarded_whatever_its_fields() {
    let scratch = tempfile::tempdir().unwrap();
    let agent = script_agent(
        scratch.path(),
        r#"for prompt; do :; done
if [ "$prompt" = "env" ]; then
  printf '{"type":"env","key":"%s"}\n' "$ANTHROPIC_API_KEY"
  exit 0
fi
if [ "$prompt" = "odd result" ]; then
  printf '%s\n' '{"type":"result","is_error":true,"total_cost_usd":"free","result":"boom"}'
  exit 0
fi
printf '%s\n' '{"type":"system","subtype":"init","session_id":"s-script"}'
printf '%s\n' '{"type":5,"session_id":7,"is_error":"no","total_cost_usd":"free"}'
printf '%s\n' '{"type":"brand_new","nested":{"a":[1,2.5,null,true]},"text":"h\u00e9llo \u2713"}'
printf '%s\r\n' '{"type":"crlf"}'
printf '\n'
printf 'no newline at the end'"#,
    );
    let (_s, mut c, p) = start_with_project(&[
        ("AGENTVISOR_CLAUDE_BIN", &agent.display().to_string()),
        ("ANTHROPIC_API_KEY", "sk-test-123"),
    ])
    .await;
    let run = execute(&mut c, &p, "hello", None).await;
    let f = run.finished();
    assert_eq!(f["status"], "completed", "{f}");
    assert_eq!(f["session_id"], "s-script", "{f}");
    let lines: Vec<Value> = run.agent_lines().into_iter().cloned().collect();
    assert_eq!(
        lines,
        [
            json!({"type":"system","subtype":"init","session_id":"s-script"}),
            json!({"type":5,"session_id":7,"is_error":"no","total_cost_usd":"free"}),
            json!({"type":"brand_new","nested":{"a":[1,2.5,null,true]},"text":"héllo ✓"}),
            json!({"type":"crlf"}),
        ]
    );
    let raw: Vec<&Value> = run
        .of_type("agent_message")
        .into_iter()
        .filter(|m| m["data"].get("raw").is_some())
        .map(|m| &m["data"])
        .collect();
    assert_eq!(
        raw,
        [&json!({"run_id": run.run_id, "raw": "no newline at the end"})]
    );

    // A field of an unexpected type does not hide the others: `is_error` still fails the run.
    let run = execute(&mut c, &p, "odd result", None).await;
    let f = run.finished();
    assert_eq!(f["status"], "failed", "{f}");
    assert!(
        f["error"].as_str().unwrap_or_default().contains("boom"),
        "{f}"
    );
    assert!(f.get("cost_usd").is_none(), "{f}");
    assert_eq!(run.agent_lines()[0]["total_cost_usd"], "free");

    // The agent gets its API keys (and never the daemon's own AGENTVISOR_* settings).
    let run = execute(&mut c, &p, "env", None).await;
    assert_eq!(run.agent_lines()[0]["key"], "sk-test-123");
}

#[tokio::test]
async fn an_agent_that_cannot_be_started_fails_the_run_and_says_why() {
    let scratch = tempfile::tempdir().unwrap();
    // Executable, but its interpreter is missing: exec(2) fails.
    let agent = script_agent(scratch.path(), "");
    std::fs::write(&agent, "#!/nonexistent/interpreter\n").unwrap();
    let (_s, mut c, p) =
        start_with_project(&[("AGENTVISOR_CLAUDE_BIN", &agent.display().to_string())]).await;
    let run = execute(&mut c, &p, "hello", None).await;
    let f = run.finished();
    assert_eq!(f["status"], "failed", "{f}");
    let why = f["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("agent") && why.contains(' '),
        "a sentence: {f}"
    );
    assert!(
        !why.contains(scratch.path().to_str().unwrap()),
        "no server paths: {f}"
    );
    assert_eq!(run.final_state()["state"], "ERROR");
    c.ping().await;
}

#[tokio::test]
async fn a_new_run_waiting_for_a_slot_survives_the_killed_one_before_it() {
    let SlotTaken {
        s: _s,
        mut c,
        busy,
        waiting,
        guard: _guard,
        ..
    } = slot_taken().await;

    // A run waits for the slot and is killed; another takes its place, still waiting.
    let (killed, _) = accept(&mut c, &waiting, "killed while waiting", None).await;
    kill_run(&mut c, &waiting, killed).await;
    let (second, _) = accept(&mut c, &waiting, "second", None).await;

    // When the slot frees, the second run starts and completes.
    c.kill(&busy).await;
    let run = finish(&mut c, &waiting, second).await;
    assert_eq!(run.finished()["status"], "completed", "{}", run.finished());
    assert_eq!(run.final_state()["state"], "IDLE");
}
