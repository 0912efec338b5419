//! One attempt of a consult: the consultant CLI run once, read-only, within a time limit.
//!
//! Unlike a project's run, an attempt has no actor of its own: it is short, it writes nothing,
//! and the consult that started it waits for its end. Its process is registered like a run's,
//! so shutdown and the sweeps find it, and a timed-out attempt is killed with its whole group.

use std::time::Duration;

use tokio::io::BufReader;

use super::{process, RunSpec};
use crate::consult::transcript::Transcript;
use crate::lines::{read_batch, Line};

/// How an attempt ended.
#[derive(Debug, Default)]
pub struct AttemptEnd {
    pub transcript: Transcript,
    pub timed_out: bool,
    /// Stopped because the daemon is shutting down.
    pub stopped: bool,
    /// The CLI could not be started at all.
    pub could_not_start: bool,
    pub exit_code: Option<i32>,
    pub stdout_lines: u64,
}

/// Runs the attempt (`spec.run_id` marks its processes) for at most `limit`, handing each batch
/// of stdout lines to `on_lines` as it comes. When `stop` resolves first (shutdown), the attempt
/// is killed like a timed-out one.
pub async fn run(
    spec: RunSpec,
    limit: Duration,
    stop: impl std::future::Future<Output = ()>,
    mut on_lines: impl FnMut(Vec<Line>),
) -> AttemptEnd {
    let mut end = AttemptEnd::default();
    let mut child = match process::spawn_agent(&spec) {
        Ok(c) => c,
        Err(e) => {
            log::error!(consult = spec.run_id.as_str(); "could not start the consultant: {e}");
            end.could_not_start = true;
            return end;
        }
    };
    let pid = child.id().map(|p| p as i32);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read = async {
        // Stderr is drained so that a chatty CLI never blocks on a full pipe.
        let drain = async {
            if let Some(e) = stderr {
                let mut r = BufReader::new(e);
                while let Ok(Some(_)) = read_batch(&mut r).await {}
            }
        };
        let lines = async {
            if let Some(o) = stdout {
                let mut r = BufReader::new(o);
                while let Ok(Some(batch)) = read_batch(&mut r).await {
                    for line in &batch {
                        end.stdout_lines += 1;
                        end.transcript.feed(&String::from_utf8_lossy(&line.bytes));
                    }
                    on_lines(batch);
                }
            }
        };
        futures_util::future::join(drain, lines).await;
        child.wait().await.ok()
    };
    // `Err(true)`: stopped for shutdown; `Err(false)`: timed out.
    let status = {
        let limited = std::pin::pin!(tokio::time::timeout(limit, read));
        let stop = std::pin::pin!(stop);
        match futures_util::future::select(limited, stop).await {
            futures_util::future::Either::Left((status, _)) => status.map_err(|_| false),
            futures_util::future::Either::Right(((), _)) => Err(true),
        }
    };
    if let Some(pgid) = pid {
        match status {
            Ok(Some(s)) => end.exit_code = s.code(),
            Ok(None) => {}
            Err(stopped) => {
                end.timed_out = !stopped;
                end.stopped = stopped;
                process::signal_group(pgid, libc::SIGKILL);
            }
        }
        process::sweep(&spec.run_id, pgid);
        process::forget_managed(pgid);
    }
    process::forget_run(&spec.run_id);
    end
}
