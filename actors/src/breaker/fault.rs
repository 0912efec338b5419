//! Whether a finished run failed because of the agent's backend.
//!
//! Only failures that say the backend is unwell count toward opening a breaker: the CLI could
//! not reach its API, the API was overloaded or rate-limited, it refused the credentials, or
//! the CLI died before printing anything. A run the user killed, a prompt the model declined,
//! or a task that ran out of turns all prove the backend answered. The phrases below are what
//! the real CLIs print in those cases (see the `*api-down*` and `*http-500*` fixtures); the
//! agent's text is untrusted, so it can only ever make the daemon *more* careful.

use super::state::Verdict;

/// What the daemon knows about a run once it has ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunEnd<'a> {
    /// The run completed successfully.
    pub completed: bool,
    /// The user (agent_kill) or shutdown stopped it.
    pub stopped: bool,
    /// The run was stopped at its time limit.
    pub timed_out: bool,
    /// The agent process could not be started at all (a missing or unexecutable file, an
    /// argument the OS refuses): a matter of this server, not of the backend.
    pub could_not_start: bool,
    /// The last error the agent reported, if any.
    pub error: Option<&'a str>,
    /// Lines the agent printed on stdout.
    pub stdout_lines: u64,
}

/// Phrases of the CLIs' own error reports that mean the backend, not the task, failed.
const BACKEND_PHRASES: &[&str] = &[
    // Cannot reach the API.
    "unable to connect to api",
    "connectionrefused",
    "connection refused",
    "econnrefused",
    "econnreset",
    "enotfound",
    "connection failed",
    "waiting for network",
    "error sending request",
    "network error",
    // Overloaded, rate-limited or failing server-side.
    "overloaded",
    "rate limit",
    "rate_limit",
    "too many requests",
    "high demand",
    "server-side issue",
    "service unavailable",
    "bad gateway",
    "internal server error",
    "api error: 5",
    "api error: 429",
    // Credentials refused.
    "invalid api key",
    "invalid x-api-key",
    "authentication_error",
    "authentication failed",
    "api error: 401",
    "api error: 403",
    "please run /login",
    "not logged in",
];

/// Whether an error report names a backend failure.
pub fn is_backend_error(text: &str) -> bool {
    let lower = text.to_lowercase();
    BACKEND_PHRASES.iter().any(|p| lower.contains(p))
}

/// How a run's end bears on its backend's breaker.
pub fn classify(end: &RunEnd<'_>) -> Verdict {
    if end.stopped || end.could_not_start {
        return Verdict::Neutral;
    }
    if end.completed {
        return Verdict::Healthy;
    }
    if end.error.is_some_and(is_backend_error) {
        return Verdict::BackendFault;
    }
    if end.timed_out {
        // A slow task is not a sign of a sick backend.
        return Verdict::Neutral;
    }
    if end.stdout_lines == 0 {
        // Died before its first line: a crash at start.
        return Verdict::BackendFault;
    }
    Verdict::Healthy
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/agents");

    fn failed(error: &str) -> RunEnd<'_> {
        RunEnd {
            error: Some(error),
            stdout_lines: 3,
            ..Default::default()
        }
    }

    #[test]
    fn the_real_clis_backend_failures_count() {
        for e in [
            "API Error: Unable to connect to API (ConnectionRefused)",
            "API Error: 500 mock forced failure 500. This is a server-side issue, usually temporary",
            "Reconnecting... waiting for network (Connection failed: error sending request)",
            "We’re currently experiencing high demand, which may cause temporary errors.",
            "API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}",
            "Invalid API key · Please run /login",
            "exceeded retry limit, last status: 429 Too Many Requests",
        ] {
            assert_eq!(classify(&failed(e)), Verdict::BackendFault, "{e}");
        }
    }

    #[test]
    fn the_fixtures_error_lines_are_backend_errors() {
        let dir = std::fs::read_dir(FIXTURES).expect("the recorded fixtures");
        let mut seen = 0;
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.contains("api-down") || name.contains("http-500")) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let last_error = text
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| {
                    v.get("result")
                        .or_else(|| v.get("message").filter(|m| m.is_string()))
                        .and_then(|m| m.as_str().map(String::from))
                })
                .next()
                .unwrap_or_default();
            assert!(is_backend_error(&last_error), "{name}: {last_error}");
            seen += 1;
        }
        assert!(seen >= 4, "fixtures missing: {seen}");
    }

    #[test]
    fn user_kills_refusals_and_task_failures_do_not_count() {
        let killed = RunEnd {
            stopped: true,
            error: Some("API Error: 500"),
            ..Default::default()
        };
        assert_eq!(classify(&killed), Verdict::Neutral);
        assert_eq!(
            classify(&RunEnd {
                completed: true,
                ..Default::default()
            }),
            Verdict::Healthy
        );
        assert_eq!(
            classify(&failed("the agent reported an error: error_max_turns")),
            Verdict::Healthy
        );
        assert_eq!(
            classify(&failed("I can't help with that request.")),
            Verdict::Healthy
        );
        let slow = RunEnd {
            timed_out: true,
            stdout_lines: 0,
            ..Default::default()
        };
        assert_eq!(classify(&slow), Verdict::Neutral);
    }

    #[test]
    fn a_crash_at_start_counts() {
        let crash = RunEnd {
            stdout_lines: 0,
            ..Default::default()
        };
        assert_eq!(classify(&crash), Verdict::BackendFault);
        // Not being able to start the process at all is this server's problem (and a request
        // must never be able to open the breaker, say with an argument the OS refuses).
        let unstartable = RunEnd {
            could_not_start: true,
            ..Default::default()
        };
        assert_eq!(classify(&unstartable), Verdict::Neutral);
    }
}
