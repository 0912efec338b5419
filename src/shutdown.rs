//! Graceful shutdown on SIGTERM or SIGINT (PM2 sends SIGINT; it must drain, not abort): stop
//! accepting, tell every client (1001), stop every run, flush history, exit within the bound.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use agentvisor_actors::connection::ConnectionSignal;
use agentvisor_actors::engine::{Engine, Lifecycle};
use agentvisor_actors::executor::process;
use agentvisor_actors::project::Shutdown;
use signal_hook::consts::{SIGINT, SIGTERM};

/// SIGTERM and SIGINT, caught from the first instant of the process.
///
/// Installed at the top of `main`, before the data directory is locked, the port bound or
/// readiness reported: until a handler exists, either signal kills the process by its default
/// action (no drain, no close frame, no flush), and a process manager may send one at any moment
/// after it starts the daemon. A signal that arrives while the daemon is still starting is kept
/// and acted on as soon as the start has finished.
pub struct StopSignals {
    rx: tokio::sync::watch::Receiver<Option<&'static str>>,
}

impl StopSignals {
    /// Installs the handlers; the signals are read on a thread of their own.
    pub fn install() -> std::io::Result<Self> {
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        let (tx, rx) = tokio::sync::watch::channel(None);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                    // Only the first one counts: a second signal during the drain changes nothing.
                    tx.send_if_modified(|first| {
                        let is_first = first.is_none();
                        if is_first {
                            *first = Some(name);
                        }
                        is_first
                    });
                }
            })?;
        Ok(StopSignals { rx })
    }

    /// The first signal received so far, if any.
    pub fn received(&self) -> Option<&'static str> {
        *self.rx.borrow()
    }

    /// Waits for the first signal (returns at once when one has already come).
    pub async fn wait(&mut self) -> &'static str {
        match self.rx.wait_for(Option::is_some).await {
            Ok(name) => name.unwrap_or("a signal"),
            // The signal thread never ends while the process runs; if it did, wait forever.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Runs the shutdown and returns the exit code: 0 when everything was stopped and flushed in
/// time, 1 when runs had to be killed at the deadline.
pub async fn graceful(engine: &Arc<Engine>, server: &ServerHandle, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    engine.set_lifecycle(Lifecycle::ShuttingDown);
    server.pause().await;
    engine
        .directory
        .signal_connections(|| ConnectionSignal::Shutdown);
    // Each stage of a run's stop escalation gets a share of the time we have.
    let grace = engine.config.kill_grace.min(timeout / 4);
    let projects = engine.directory.project_addrs();
    for p in &projects {
        p.do_send(Shutdown { grace });
    }
    let mut code = 0;
    while engine.stats.runs_active.load(Ordering::Relaxed) > 0 || process::live_runs() > 0 {
        if Instant::now() >= deadline {
            log::error!("runs still active at the shutdown deadline: killing them");
            process::kill_all_runs();
            code = 1;
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Flush what the last run events wrote.
    for p in &projects {
        let _ = tokio::time::timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100)),
            p.send(Shutdown { grace }),
        )
        .await;
    }
    // Graceful: each WebSocket ends once its close frame (1001) is written, so waiting for the
    // connections lets that frame reach the client instead of a bare TCP reset. A client that
    // stopped reading would hold this up, so the wait ends at the deadline (the process exits
    // right after, which drops whatever is left).
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    if tokio::time::timeout(remaining, server.stop(true))
        .await
        .is_err()
    {
        log::warn!("some connections were still open at the shutdown deadline");
    }
    log::info!("shutdown complete");
    code
}
