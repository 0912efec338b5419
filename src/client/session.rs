//! The connection to the daemon, kept alive across whatever the network does.
//!
//! A [`Session`] moves through an explicit [`State`]: `Connecting` until the first connection
//! works, `Open`, `Reconnecting` after a drop (waiting out a [`Backoff`] delay with full jitter
//! between attempts), `Closed` at the end. While open it pings every heartbeat interval and
//! treats two intervals without any frame from the daemon as a dead connection. After every
//! reconnect it joins each followed project again from the last seq it handed to its caller and
//! sends every unanswered request again (see [`Pending`]), so the caller sees each event once,
//! in order, and gets one reply per request. When the daemon's replay on join does not reach
//! back far enough, the gap is filled from history first (see [`Gaps`]). It gives up only when
//! the daemon has been unreachable for the configured time, or refuses the token or its TLS
//! cannot be trusted (see [`dial`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::backoff::Backoff;
use super::dial::{dial, refused, DialError, Ws};
use super::gaps::{Gaps, PAGE_LIMIT};
use super::pending::Pending;
use super::settings::Settings;
use super::Failure;

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Open,
    Reconnecting,
    Closed,
}

/// A message from the daemon: parsed, and as it came (printed verbatim by `--json`).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub value: Value,
    pub text: String,
}

impl Incoming {
    pub fn kind(&self) -> &str {
        self.value["type"].as_str().unwrap_or_default()
    }

    fn reply_id(&self) -> Option<&str> {
        self.value["id"].as_str()
    }
}

/// Ids of the joins a session sends by itself after a reconnect.
const REJOIN: &str = "rejoin-";
/// Ids of the history pages it reads to fill a gap the replay left.
const PAGE: &str = "page-";

pub struct Session {
    settings: Settings,
    state: State,
    ws: Option<Ws>,
    backoff: Backoff,
    /// Delays between retries of requests answered with a retryable error.
    retry: Backoff,
    pending: Pending,
    /// Followed projects and the last seq handed to the caller.
    followed: BTreeMap<String, u64>,
    next_id: u64,
    /// Events that arrived while the caller waited for a reply.
    backlog: VecDeque<Incoming>,
    /// Messages sorted and ready to hand up, oldest first.
    ready: VecDeque<Incoming>,
    gaps: Gaps,
    last_heard: Instant,
    next_ping: Instant,
}

impl Session {
    /// Connects, retrying until the give-up time.
    pub async fn open(settings: Settings) -> Result<Session, Failure> {
        let now = Instant::now();
        let mut s = Session {
            next_ping: now + settings.heartbeat,
            settings,
            state: State::Connecting,
            ws: None,
            backoff: Backoff::default(),
            retry: Backoff::default(),
            pending: Pending::default(),
            followed: BTreeMap::new(),
            next_id: 0,
            backlog: VecDeque::new(),
            ready: VecDeque::new(),
            gaps: Gaps::default(),
            last_heard: now,
        };
        s.connect().await?;
        Ok(s)
    }

    /// Sends a request and waits for its reply; events that arrive meanwhile are kept for
    /// [`Session::next_event`]. `keyed` requests carry a fresh idempotency key, kept across
    /// re-sends. An `error` reply becomes [`Failure::Api`].
    pub async fn call(
        &mut self,
        kind: &str,
        project: Option<&str>,
        data: Value,
        keyed: bool,
    ) -> Result<Value, Failure> {
        let id = self.send_request("c-", kind, project, data, keyed).await;
        loop {
            let m = self.recv().await?;
            match m.reply_id() {
                Some(r) if r == id => return reply_or_failure(m.value),
                Some(_) => {}
                None => self.backlog.push_back(m),
            }
        }
    }

    /// Follows a project from `since_seq`: events after it, then live ones, each once; the
    /// same after every reconnect. Returns the `project_joined` reply.
    pub async fn follow(&mut self, project: &str, since_seq: u64) -> Result<Value, Failure> {
        self.followed.insert(project.to_string(), since_seq);
        self.call(
            "project_join",
            Some(project),
            json!({"since_seq": since_seq}),
            false,
        )
        .await
    }

    /// The next event (not a reply) of the followed projects, or any unsolicited message.
    pub async fn next_event(&mut self) -> Result<Incoming, Failure> {
        if let Some(m) = self.backlog.pop_front() {
            return Ok(m);
        }
        loop {
            let m = self.recv().await?;
            if m.reply_id().is_none() {
                return Ok(m);
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        if let Some(ws) = self.ws.as_mut() {
            let _ = ws.close(None).await;
        }
        self.state = State::Closed;
    }

    async fn send_request(
        &mut self,
        prefix: &str,
        kind: &str,
        project: Option<&str>,
        data: Value,
        keyed: bool,
    ) -> String {
        self.next_id += 1;
        let id = format!("{prefix}{}", self.next_id);
        let mut frame = json!({"type": kind, "id": id, "data": data});
        if let Some(p) = project {
            frame["project_id"] = p.into();
        }
        if keyed {
            frame["idempotency_key"] = uuid::Uuid::new_v4().to_string().into();
        }
        let text = frame.to_string();
        self.pending.add(id.clone(), text.clone());
        self.transmit(text).await;
        id
    }

    /// Sends on the open connection; a failure drops it (the request stays pending).
    async fn transmit(&mut self, text: String) {
        if let Some(ws) = self.ws.as_mut() {
            if ws.send(Message::Text(text)).await.is_err() {
                self.lost();
            }
        }
    }

    /// The next message worth handing up, reconnecting as needed.
    async fn recv(&mut self) -> Result<Incoming, Failure> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Ok(m);
            }
            if self.ws.is_none() {
                self.connect().await?;
            }
            self.ask_for_pages().await;
            let retry_at = self.pending.next_retry();
            let Some(ws) = self.ws.as_mut() else { continue };
            tokio::select! {
                frame = ws.next() => self.on_frame(frame)?,
                () = tokio::time::sleep_until(self.next_ping.into()) => self.heartbeat().await,
                () = sleep_until_or_never(retry_at) => {
                    for text in self.pending.due(Instant::now()) {
                        self.transmit(text).await;
                    }
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Result<(), Failure> {
        match frame {
            Some(Ok(Message::Text(text))) => {
                self.heard();
                self.accept(text);
                Ok(())
            }
            Some(Ok(Message::Close(close))) => {
                let (code, reason) = close
                    .map(|c| (c.code, c.reason.to_string()))
                    .unwrap_or((CloseCode::Status, String::new()));
                if code == CloseCode::Policy {
                    self.state = State::Closed;
                    return Err(refused(&self.settings, &reason));
                }
                self.lost();
                Ok(())
            }
            Some(Ok(_)) => {
                self.heard();
                Ok(())
            }
            Some(Err(_)) | None => {
                self.lost();
                Ok(())
            }
        }
    }

    /// Sorts a text frame: replies settle their request (a retryable error schedules a
    /// re-send instead); events of a project with a gap are held; the rest go to `ready`.
    fn accept(&mut self, text: String) {
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            return;
        };
        let m = Incoming { value, text };
        let Some(id) = m.reply_id().map(str::to_string) else {
            if let Some(m) = self.gaps.hold(m) {
                self.deliver(m);
            }
            return;
        };
        if m.kind() == "error" && m.value["data"]["details"]["retryable"] == true {
            if self.pending.contains(&id) {
                let at = Instant::now() + self.retry.next_delay();
                self.pending.retry_at(&id, at);
            }
            return;
        }
        self.retry.reset();
        self.pending.answered(&id);
        let project = m.value["project_id"].as_str().unwrap_or_default();
        if m.kind() == "project_joined"
            && m.value["data"]["recovered"] == false
            && self.followed.contains_key(project)
        {
            self.gaps.open(project);
        }
        if id.starts_with(PAGE) {
            for m in self.gaps.page(&m) {
                self.deliver(m);
            }
        } else if !id.starts_with(REJOIN) {
            self.ready.push_back(m);
        }
    }

    /// Hands an event up unless it was handed up already.
    fn deliver(&mut self, m: Incoming) {
        if let (Some(project), Some(seq)) =
            (m.value["project_id"].as_str(), m.value["seq"].as_u64())
        {
            if let Some(last) = self.followed.get_mut(project) {
                if seq <= *last {
                    return;
                }
                *last = seq;
            }
        }
        self.ready.push_back(m);
    }

    /// Sends the page requests that are due.
    async fn ask_for_pages(&mut self) {
        for (project, next) in self.gaps.due() {
            let since = next.unwrap_or_else(|| self.followed.get(&project).copied().unwrap_or(0));
            let query = json!({"since_seq": since, "limit": PAGE_LIMIT});
            self.send_request(PAGE, "get_messages", Some(&project), query, false)
                .await;
        }
    }

    fn heard(&mut self) {
        self.last_heard = Instant::now();
        // Anything from the daemon proves the connection works: the next drop starts the
        // backoff from its first step.
        self.backoff.reset();
    }

    async fn heartbeat(&mut self) {
        let every = self.settings.heartbeat;
        self.next_ping = Instant::now() + every;
        if self.last_heard.elapsed() > every * 2 {
            self.lost();
            return;
        }
        if let Some(ws) = self.ws.as_mut() {
            if ws.send(Message::Ping(Vec::new())).await.is_err() {
                self.lost();
            }
        }
    }

    fn lost(&mut self) {
        self.ws = None;
        self.state = State::Reconnecting;
    }

    /// Connects (again), then restores the follows and re-sends what is unanswered.
    async fn connect(&mut self) -> Result<(), Failure> {
        let started = Instant::now();
        let mut first = self.state == State::Connecting;
        loop {
            if !first {
                let delay = self.backoff.next_delay();
                if started.elapsed() + delay > self.settings.give_up {
                    self.state = State::Closed;
                    return Err(Failure::Unreachable(format!(
                        "cannot reach the daemon at {} (gave up after {}s); is it running?",
                        self.settings.url,
                        self.settings.give_up.as_secs()
                    )));
                }
                tokio::time::sleep(delay).await;
            }
            first = false;
            match dial(&self.settings).await {
                Ok(ws) => {
                    self.ws = Some(ws);
                    self.state = State::Open;
                    self.last_heard = Instant::now();
                    self.next_ping = self.last_heard + self.settings.heartbeat;
                    self.restore().await;
                    return Ok(());
                }
                Err(DialError::Refused(reason)) => {
                    self.state = State::Closed;
                    return Err(refused(&self.settings, &reason));
                }
                Err(DialError::Tls(why)) => {
                    self.state = State::Closed;
                    return Err(Failure::Unreachable(format!(
                        "cannot connect to the daemon at {} securely: {why}",
                        self.settings.url
                    )));
                }
                Err(DialError::Failed) => {}
            }
        }
    }

    /// After a (re)connect: join the followed projects from where the caller is, then send
    /// every unanswered request again.
    async fn restore(&mut self) {
        self.pending.drop_prefixed(REJOIN);
        let follows: Vec<(String, u64)> =
            self.followed.iter().map(|(p, s)| (p.clone(), *s)).collect();
        let mut texts = self.pending.resend_all();
        for (project, since) in follows {
            self.next_id += 1;
            let id = format!("{REJOIN}{}", self.next_id);
            let text = json!({"type": "project_join", "id": id, "project_id": project,
                              "data": {"since_seq": since}})
            .to_string();
            self.pending.add(id, text.clone());
            texts.insert(0, text);
        }
        for text in texts {
            self.transmit(text).await;
        }
    }
}

fn reply_or_failure(v: Value) -> Result<Value, Failure> {
    if v["type"] == "error" {
        return Err(Failure::Api {
            code: v["data"]["code"].as_str().unwrap_or("ERROR").to_string(),
            message: v["data"]["error"].as_str().unwrap_or("error").to_string(),
        });
    }
    Ok(v)
}

async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
