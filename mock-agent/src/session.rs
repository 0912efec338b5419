//! One run of the fake agent: its identity, its clock and its stdout.
//!
//! Everything a scenario does goes through a [`Session`], so the cross-cutting
//! rules live in one place: each line is checked against a pending SIGINT
//! before it is written, and every pause is interruptible. That is how the
//! Claude flavour can stop "cleanly" at any point with an Interrupted result.

use std::process;
use std::time::{Duration, Instant};

use crate::args::Flavour;
use crate::events;
use crate::fixtures::{self, Recording};
use crate::output::Out;
use crate::signals;

pub struct Session {
    pub flavour: Flavour,
    /// The session id (claude) / thread id (codex) printed in the output.
    pub id: String,
    /// Whether this run resumes an earlier conversation.
    pub resumed: bool,
    /// The working directory, for the init line and the `env` report.
    pub cwd: Option<String>,
    /// Permission requests go to the parent (`--permission-prompt-tool stdio`).
    pub stdio_permissions: bool,
    /// Permission rules given with `--allowedTools`.
    pub allowed_tools: Vec<String>,
    started: Instant,
    out: Out,
}

impl Session {
    pub fn new(flavour: Flavour, id: String, resumed: bool, cwd: Option<String>) -> Self {
        Session {
            flavour,
            id,
            resumed,
            cwd,
            stdio_permissions: false,
            allowed_tools: Vec::new(),
            started: Instant::now(),
            out: Out::new(),
        }
    }

    /// Milliseconds since the run started, for `duration_ms` fields.
    pub fn elapsed_ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    /// The recording a plain successful turn replays.
    pub fn success_recording(&self) -> Recording {
        if self.resumed {
            Recording::Resume
        } else {
            Recording::Success
        }
    }

    /// A recording's lines, personalised for this run.
    pub fn recording(&self, recording: Recording) -> Vec<String> {
        fixtures::lines(self.flavour, recording, &self.id, self.cwd.as_deref())
    }

    /// The first line of a run: Claude's `system/init` or Codex's
    /// `thread.started`.
    pub fn init_line(&self) -> String {
        match self.flavour {
            Flavour::Claude => self
                .recording(self.success_recording())
                .into_iter()
                .next()
                .unwrap_or_default(),
            Flavour::Codex => events::thread_started(&self.id),
        }
    }

    /// The closing line of a successful synthetic turn.
    pub fn success_result(&self) -> String {
        events::success_result(self.flavour, &self.id, self.elapsed_ms())
    }

    /// Writes and flushes one line, unless a SIGINT is pending.
    pub fn emit(&mut self, line: &str) {
        self.stop_if_interrupted();
        self.out.line(line);
    }

    /// Writes one line without flushing (bulk mode), still honouring SIGINT.
    pub fn emit_buffered(&mut self, line: &[u8]) {
        self.stop_if_interrupted();
        self.out.line_buffered(line);
    }

    pub fn flush(&mut self) {
        self.out.flush();
    }

    /// Sleeps `ms` milliseconds, interruptibly.
    pub fn pause(&mut self, ms: u64) {
        if ms > 0 {
            self.pause_until(Instant::now().checked_add(Duration::from_millis(ms)));
        }
    }

    /// Sleeps until `deadline` (`None`: forever), interruptibly.
    pub fn pause_until(&mut self, deadline: Option<Instant>) {
        self.out.flush();
        if signals::sleep_until(deadline) {
            self.stop_if_interrupted();
        }
    }

    /// Blocks until a signal ends the process.
    pub fn hang(&mut self) -> ! {
        loop {
            self.pause_until(None);
        }
    }

    /// Claude's reaction to SIGINT: flush what was written, print the
    /// Interrupted result, exit 130. (Codex's handler exits by itself.)
    fn stop_if_interrupted(&mut self) {
        if signals::interrupted() {
            let result = events::interrupted_result(&self.id, self.elapsed_ms());
            self.out.line(&result);
            process::exit(130);
        }
    }
}
